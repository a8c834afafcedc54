"""The merge stage: adapter(s) in, a merged model folder out (``merge.recipe``: a class of platypus/stages/merge/recipes/)."""

from __future__ import annotations

from dataclasses import dataclass

import json
import logging
from pathlib import Path

from platypus.runtime import models
from platypus.fields import Role
from platypus.runtime.cache import MANIFEST
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import identity
from platypus.stages.base import Artifact, Stage
from platypus.stages.merge import recipes
from platypus.stages.merge.compat import adapter_config
from platypus.stages.merge.fold import merge, resolve_target

BASE, TARGET = Role.base.value, Role.target.value  # the models it folds from and into (input keys)
RUN_ADAPTER = "train"  # in merge.adapters: this run's train adapter

log = logging.getLogger("platypus")


@dataclass
class MergeStage(Stage):
    sections = ("merge", "model", "seed")
    produces = {Artifact.merged: "model"}

    def check(self, cfg) -> None:
        if recipes.build(cfg.merge).folds:
            models.base_model(cfg, convert=False)
            for entry in cfg.merge.adapters:
                if entry != RUN_ADAPTER:
                    adapter_config(Path(entry))

    def inputs(self, cfg, found, run) -> dict | None:
        """``merge.adapters`` (``train``: this run's adapter), else this run's adapter."""
        recipe = recipes.build(cfg.merge)
        if not recipe.folds:
            log.info("[platypus] merge: recipe 'none', nothing to fold")
            return None
        trained = found.get(Artifact.adapter)
        chosen = []
        for entry in cfg.merge.adapters:
            if entry == RUN_ADAPTER and trained is None:
                raise PlatypusError(
                    "merge.adapters: 'train' means this run's train adapter, but this run folder has no finished train "
                    "stage. Add train to stages, or give the adapter's path."
                )
            chosen.append(trained if entry == RUN_ADAPTER else Path(entry))
        if chosen and trained and trained not in chosen:
            log.info("[platypus] merge: using merge.adapters; this run's train adapter is not among them "
                     "(list 'train' in merge.adapters to include it)")
        chosen = chosen or ([trained] if trained else [])
        recipe.check(chosen)  # before hashing or loading anything
        base = models.base_model(cfg)
        return {"adapters": chosen, BASE: base, TARGET: resolve_target(cfg.merge, base, cfg.cache_dir)}

    def identity(self, cfg, inputs) -> dict:
        found = {"adapters": [identity(a) for a in inputs["adapters"]], "base_model": identity(inputs[BASE])}
        if inputs[TARGET] != inputs[BASE]:
            found[TARGET] = identity(inputs[TARGET])
        return found

    def outputs(self, folder: Path) -> dict:
        """The merged model, and the model it was folded into when that is not the base (evaluated beside it)."""
        found = super().outputs(folder)
        target = json.loads((folder / MANIFEST).read_text())["inputs"].get(TARGET)  # recorded when not the base
        if target:
            found[Artifact.target] = target.get("path") or target["hub_id"]
        return found

    def run(self, cfg, inputs, out: Path, run) -> dict:
        return merge(cfg.merge, cfg.model, inputs[BASE], inputs["adapters"], out, cfg.cache_dir, seed=cfg.seed)

    def plan(self, cfg, model, made):
        from platypus.stages.merge.plan import plan_merge

        return plan_merge(cfg, model)

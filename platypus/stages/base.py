"""The stage contract: what every stage declares and does, and the artifacts stages hand each other.

A stage is one class (``platypus/stages/<name>/stage.py``) registered under its name. The pipeline runs
``cfg.stages`` in order; for each it calls ``check`` (before any stage works), then ``inputs`` (its own explicit
inputs from the config, else the artifacts earlier stages produced or this run folder holds), ``identity``
(the content identity of those inputs, part of the stage key), ``run`` inside a fresh partial folder, and
``log`` on the finished folder; ``produces`` names what the finished folder hands to later stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig

from platypus.fields import Role
from platypus.planning import ModelFacts, StagePlan


class Artifact(str, Enum):
    """What one stage hands the next (the files are named in each stage's ``produces``)."""

    dataset = "dataset"  # curate -> train: the curated JSONL
    adapter = Role.adapter.value  # train -> merge, evaluate: a PEFT adapter folder
    merged = Role.merged.value  # merge -> evaluate: a model folder
    target = Role.target.value  # merge -> evaluate: the model folded into, when not the base (a folder or hub id)


Artifacts = dict  # Artifact -> Path (a hub id, as a string, for a target not on disk)


@dataclass
class Stage:
    """A stage: a dataclass (its fields, if any, are set in its ``stage_classes`` node) named by ``_target_``."""

    sections: ClassVar[tuple[str, ...]]  # the config sections the stage's result depends on (part of its key)
    produces: ClassVar[dict[Artifact, str]] = {}
    distributed: ClassVar[bool] = False  # runs under a multi-process launcher (accelerate, torchrun)  # artifact -> its path inside the finished stage folder

    def check(self, cfg: DictConfig) -> None:
        """What the stage can check before any stage works: its settings and the inputs its config names."""

    def config(self, cfg: DictConfig) -> dict[str, Any]:
        return {section: cfg[section] for section in self.sections}

    def inputs(self, cfg: DictConfig, found: Artifacts, run) -> dict[str, Any] | None:
        """The stage's inputs; None when it has nothing to do (e.g. merge=none)."""
        return {}

    def identity(self, cfg: DictConfig, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs by content (file hashes, model identities): the manifest's ``inputs``, keyed without paths."""
        return {}

    def run(self, cfg: DictConfig, inputs: dict[str, Any], out: Path, run) -> dict[str, Any]:
        """Compute into ``out``; return the metrics recorded in the manifest."""
        raise NotImplementedError

    def log(self, run, folder: Path, manifest: dict[str, Any]) -> None:
        """Send the finished stage's metrics, tables and images to the run's tracker."""

    def plan(self, cfg: DictConfig, model: ModelFacts, made: list[str]) -> StagePlan:
        """The stage's part of ``plan=true`` (downloads, memory, FLOPs), from the config alone; ``made``: the models
        earlier stages of the run make (adapter, target, merged)."""
        return StagePlan()

    def summary_row(self, folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """The finished stage's columns in a sweep summary (``platypus.report``)."""
        return {}

    def compare_runs(self, folders: list[Path]) -> list[dict[str, Any]]:
        """Columns comparing runs (one finished folder of this stage each) against the first; none by default."""
        return [{} for _ in folders]

    def objective(self, manifest: dict[str, Any]) -> float | None:
        """What a sweeper maximises, if this stage measures it (the last stage that does wins)."""
        return None

    def outputs(self, folder: Path) -> Artifacts:
        return {artifact: folder / path for artifact, path in self.produces.items()}

"""The evaluate stage: the run's models (or ``evaluate.models``) on the suite of ``eval``, side by side.

With ``evaluate.plan=true`` it plans instead (requests, tokens, time, the smallest significant delta) and
writes ``evaluate_plan.md`` into the run folder, evaluating nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import json
import logging
import tempfile
from pathlib import Path

from platypus.fields import Role
from platypus.runtime import models
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import identity, to_plain
from platypus.runtime.tracking import flatten
from platypus.stages.base import Artifact, Stage
from platypus.stages.evaluate.aggregate import AVERAGE
from platypus.stages.evaluate.backends import EvalModel, eval_backend, resolve_batch_size, resolve_dtype
from platypus.runtime.io import read_json
from platypus.stages.evaluate.files import FILES
from platypus.stages.evaluate.report import DELTAS, delta_columns, published_table
from platypus.stages.evaluate.tasks import resolve_benchmark

log = logging.getLogger("platypus")
DELTA_COLUMNS = ["model", "reference", "task", "delta", "low", "high", "p", "significant", "n"]


def evaluated_models(include: list[str], candidates: dict[str, dict]) -> list[str]:
    """The run's models named in ``evaluate.include``. ``merged`` stands for the run's final model: a run that
    folds nothing (``merge=none``) evaluates its unmerged adapter in its place, so a ``merge=into_base,none``
    sweep compares merged against unmerged instead of the base alone."""
    names = [name for name in candidates if name in include]
    if Role.merged in include and Role.merged not in candidates and Role.adapter in candidates \
            and Role.adapter not in names:
        log.info("[platypus] evaluate: this run merges nothing; evaluating its adapter in place of 'merged'")
        names.append(Role.adapter.value)
    return names


def distinct_labels(paths: list[str]) -> list[str]:
    """A label per ``evaluate.models`` entry: its last path part, or as many last parts as make the labels
    distinct (``token/merge/model`` and ``sequence/merge/model`` -> ``token-merge-model``, ``sequence-merge-model``)."""
    parts = [Path(p).expanduser().resolve().parts if Path(p).expanduser().exists() else tuple(p.split("/")) for p in paths]
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["-".join(p[-k:]).lstrip("-") or p[-1] for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise PlatypusError(f"evaluate.models lists the same model twice: {paths}. Give each model once.")


@dataclass
class EvaluateStage(Stage):
    sections = ("eval", "benchmarks", "published")  # published: its table is one of the outputs

    def check(self, cfg) -> None:
        eval_cfg, benchmarks = to_plain(cfg.eval), to_plain(cfg.benchmarks)
        eval_backend(eval_cfg).check()
        resolve_batch_size(eval_cfg)
        resolve_dtype(cfg.eval.dtype, cfg.eval.device)
        if not eval_cfg["tasks"]:
            raise PlatypusError(f"eval.tasks of suite '{cfg.eval.name}' is empty: nothing to evaluate; pick eval=quick "
                                f"or eval=leaderboard_v1.")
        for key, task_cfg in eval_cfg["tasks"].items():
            resolve_benchmark(key, task_cfg, benchmarks)
        if cfg.evaluate.models:
            for entry in cfg.evaluate.models:
                models.resolve(entry, None, cfg.cache_dir, "evaluate.models", convert=False)
        else:
            models.base_model(cfg, convert=False)

    def inputs(self, cfg, found, run) -> dict | None:
        if cfg.evaluate.models:
            chosen = {label: {"pretrained": models.resolve(p, None, cfg.cache_dir, "evaluate.models")}
                      for label, p in zip(distinct_labels(list(cfg.evaluate.models)), cfg.evaluate.models)}
        else:
            candidates = {Role.base.value: {"pretrained": models.base_model(cfg)}}
            if found.get(Artifact.target):
                candidates[Role.target.value] = {"pretrained": str(found[Artifact.target])}
            if found.get(Artifact.adapter):
                candidates[Role.adapter.value] = {"pretrained": candidates[Role.base.value]["pretrained"], "peft": str(found[Artifact.adapter])}
            if found.get(Artifact.merged):
                candidates[Role.merged.value] = {"pretrained": str(found[Artifact.merged])}
            chosen = {name: candidates[name] for name in evaluated_models(list(cfg.evaluate.include), candidates)}
        if not chosen:
            raise PlatypusError(
                "evaluate: no model to evaluate. Give evaluate.models=[folder or hub id, ...], or run the stages "
                "that produce them (e.g. stages=[train,merge,evaluate])."
            )
        eval_models = [EvalModel(label=label, pretrained=spec["pretrained"], peft=spec.get("peft"))
                       for label, spec in chosen.items()]
        if cfg.evaluate.plan:
            plan_evaluation(cfg, run.root, eval_models)
            return None
        return {"models": eval_models}

    def identity(self, cfg, inputs) -> dict:
        return {m.label: {"model": identity(m.pretrained), "peft": m.peft and identity(m.peft)} for m in inputs["models"]}

    def run(self, cfg, inputs, out: Path, run) -> dict:
        from platypus.stages.evaluate.runner import evaluate_models

        result = evaluate_models(cfg.eval, cfg.benchmarks, inputs["models"], out, Path(cfg.cache_dir), log=log.info)
        if cfg.get("published"):  # a paper preset: its published numbers beside ours
            columns = list(dict.fromkeys([*cfg.eval.tasks, *cfg.published.scores, AVERAGE]))
            (out / FILES.published).write_text(published_table(to_plain(cfg.published), result["summary"], columns))
        return {"summary": result["summary"], "table": result["table"]}

    def plan(self, cfg, model, made):
        from platypus.stages.evaluate.budget import plan_evaluation

        return plan_evaluation(cfg, model, made)

    def objective(self, manifest: dict) -> float | None:
        """The leaderboard average of the last model evaluated: what a sweeper maximises."""
        averages = [v.get(AVERAGE) for v in manifest["metrics"]["summary"].values() if isinstance(v, dict)]
        return averages[-1] if averages else None

    def summary_row(self, folder: Path, manifest: dict) -> dict:
        """Every benchmark metric per model (``<model>/<task>/<metric>``) and each paired delta's columns."""
        row: dict = {}
        for model, tasks in (read_json(folder / FILES.summary) or manifest["metrics"].get("summary") or {}).items():
            for task, metrics in (tasks.items() if isinstance(tasks, dict) else []):
                if task in DELTAS:  # paired deltas vs the run's first model (and the merged model's vs the target)
                    row.update(delta_columns(f"{model}/{task}", {t: d for t, d in metrics.items() if t != "reference"}))
                elif isinstance(metrics, dict):
                    row.update({f"{model}/{task}/{metric}": value for metric, value in metrics.items()})
                else:
                    row[f"{model}/{task}"] = metrics
        return row

    def compare_runs(self, folders: list[Path]) -> list[dict]:
        """Each run's final model against the first run's, paired on the documents both were scored on."""
        from platypus.stages.evaluate.comparison import compare_with_reference

        return compare_with_reference(folders)

    def log(self, run, folder: Path, manifest: dict) -> None:
        summary = manifest["metrics"]["summary"]
        for label, tasks in summary.items():
            run.tracker.log(flatten(tasks, f"eval/{label}"))
        run.tracker.image("eval/chart", folder / FILES.chart)
        rows = [[label, task, metric, value] for label, tasks in summary.items() for task, metrics in tasks.items()
                if task not in DELTAS for metric, value in (metrics.items() if isinstance(metrics, dict) else [("value", metrics)])]
        run.tracker.table("eval/results", ["model", "task", "metric", "value"], rows)
        deltas = [[label, d["reference"], task, v["value"], v["low"], v["high"], v["p"], v["significant"], v["n"]]
                  for label, tasks in summary.items() for kind in DELTAS if (d := tasks.get(kind))
                  for task, v in d.items() if task != "reference"]
        if deltas:
            run.tracker.table("eval/deltas", DELTA_COLUMNS, deltas)
        headline = manifest["metrics"]["table"].split("\n### ")[0]  # the per-category/subject tables stay in table.md
        log.info(f"\n{headline}\n(full table with MMLU per category and subject: {folder / FILES.table})")
        if (folder / FILES.published).is_file():
            run.tracker.log({f"published/{task}": value for task, value in run.cfg.published.scores.items()
                             if value is not None})
            log.info(f"\n{(folder / FILES.published).read_text()}")


def plan_evaluation(cfg, root: Path, eval_models: list[EvalModel]) -> None:
    """``evaluate.plan=true``: requests per task, a time estimate from a measured warm-up and the smallest
    significant delta; evaluates nothing."""
    from platypus.stages.evaluate.plan import plan

    with tempfile.TemporaryDirectory(prefix="platypus-plan-") as scratch:
        found = plan(cfg.eval, cfg.benchmarks, eval_models, Path(scratch), Path(cfg.cache_dir),
                     cfg.evaluate.plan_warmup_docs, log=log.info, disagreement=cfg.evaluate.plan_disagreement,
                     mc2_sd=cfg.evaluate.plan_mc2_sd)
    names = ", ".join(f"{m.label} ({m.pretrained}{' + ' + m.peft if m.peft else ''})" for m in eval_models)
    dtype = resolve_dtype(cfg.eval.dtype, cfg.eval.device)
    text = (f"# Evaluation plan: eval={cfg.eval.name}, backend {eval_backend(cfg.eval).model}, batch size "
            f"{resolve_batch_size(cfg.eval)}, {dtype}\n\nModels: {names}\n\n{found['table']}")
    (root / "evaluate_plan.md").write_text(text)
    (root / "evaluate_plan.json").write_text(json.dumps({k: v for k, v in found.items() if k != "table"}, indent=1))
    log.info(f"\n{text}\n(plan only: nothing was evaluated; written to {root / 'evaluate_plan.md'})")



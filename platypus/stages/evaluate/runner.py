"""Evaluate models on a suite with lm-eval's Python API and write results, summary, table, chart.

Each model is loaded once and each suite task is one ``simple_evaluate`` call, because few-shot counts and
documents differ per task. A task's result file carries a settings key (model identity, task, few-shot,
documents, batch size, dtype, backend, lm-eval version, benchmark definition), so a rerun skips tasks already
done with the same settings and a model whose tasks are all done is never loaded. Finished task results are
also kept under ``<cache_dir>/eval_results/<key>.json``, so another run evaluating the same model files with
the same settings reuses them; each file carries the digest of its content and one that does not match it is
moved aside and computed again. Each result keeps every document's outcome (``items``), so any two models
scored on the same documents are compared pair by pair (platypus/stages/evaluate/stats.py), in this run and across
runs. Seeds are lm-eval's CLI defaults, so numbers match ``lm_eval`` run by hand.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from platypus.runtime import integrity
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import digest
from platypus.runtime.io import read_json, write_json_atomic
import platypus.stages.evaluate.report as report
from platypus.config import BenchmarksConfig, EvalConfig, filled
from platypus.fields import BenchmarkSource, Role, Subset
from platypus.stages.evaluate.files import FILES
import platypus.stages.evaluate.stats as stats
from platypus.stages.evaluate.aggregate import AVERAGE, leaderboard_v1, standard_errors, v1_average_tasks
from platypus.stages.evaluate.backends import (
    EvalModel,
    eval_backend,
    load_lm,
    model_dtype,
    model_identity,
    release,
    resolve_batch_size,
    resolve_device,
)
from platypus.stages.evaluate.documents import choose, task_items, task_limit
from platypus.stages.evaluate.tasks import Suite, SuiteTask, build_suite, check_hub_names, data_definition

# lm-eval's own defaults (lm_eval.defaults), pinned so a given model + settings gives fixed numbers.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
LM_EVAL_KEYS = ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better")

__all__ = ["EvalModel", "SEEDS", "evaluate_models", "load_lm"]


def _reusable(path: Path, key: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The task result in ``path`` if it has this settings ``key`` and its content is intact; a damaged one is
    moved aside (kept) so that the task is computed again."""
    cached = read_json(path)
    if not cached or cached.get("key") != key:
        return None
    if integrity.intact(cached):
        return cached
    aside = path.with_name(f"{path.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(aside)
    why = "changed since it was written" if "content_sha256" in cached else "has no content digest (an older version)"
    log(f"[evaluate] {path} {why}: moved aside to {aside} (kept); evaluating the task again")
    return None


def _run_task(lm, task: SuiteTask, task_manager, num_fewshot: int, documents: Mapping[str, Any]) -> dict[str, Any]:
    """One suite task through ``simple_evaluate`` on the chosen documents; lm-eval's output without its logged
    samples, plus ``items``: every document's outcome per lm-eval task."""
    import lm_eval

    from platypus.stages.evaluate.documents import items_from_samples

    output = lm_eval.simple_evaluate(model=lm, tasks=list(task.lm_eval_names), num_fewshot=num_fewshot,
                                     task_manager=task_manager, log_samples=True, **documents, **SEEDS)
    return {**{key: output.get(key, {}) for key in LM_EVAL_KEYS}, "items": items_from_samples(output["samples"])}


def _documents(eval_cfg: Mapping[str, Any], key: str, task: SuiteTask, task_manager) -> dict[str, Any]:
    """lm-eval's document selection for a suite task (tasks are loaded only to draw a random subset)."""
    limit, subset = task_limit(eval_cfg, key), eval_cfg["subset"]
    if limit is None or subset == Subset.first:
        return choose({}, limit, subset, 0)
    return choose(task_manager.load(task.lm_eval_names)["tasks"], limit, subset, int(eval_cfg["subset_seed"]))


@dataclasses.dataclass
class Evaluation:
    """What every model of one ``evaluate_models`` call shares: settings, suite and documents."""

    eval_cfg: dict[str, Any]
    benchmarks_cfg: dict[str, Any]
    suite: Suite
    task_manager: Any
    documents: dict[str, Any]
    batch_size: int | str
    backend: dict[str, Any]  # Backend.key(): recorded, and keyed on
    out_dir: Path
    cache_dir: Path
    log: Callable[[str], None]


def _check_labels(models: list[EvalModel]) -> None:
    if not models:
        raise PlatypusError("No models to evaluate: give evaluate.models or run the train/merge stages first.")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels) or any(not label or "/" in label for label in labels):
        raise PlatypusError(f"Model labels must be unique, non-empty and contain no '/': got {labels}.")


def _prepare(eval_cfg, benchmarks_cfg, out_dir: Path, cache_dir: Path, log: Callable[[str], None]) -> Evaluation:
    eval_cfg, benchmarks_cfg = filled(EvalConfig, eval_cfg, "eval"), filled(BenchmarksConfig, benchmarks_cfg, "benchmarks")
    eval_cfg = {**eval_cfg, "device": resolve_device(eval_cfg)}  # recorded, and named in the table's header
    suite = build_suite(eval_cfg, benchmarks_cfg, Path(out_dir) / "tasks", Path(cache_dir), log)
    task_manager = suite.task_manager()
    if suite.source == BenchmarkSource.hub:
        check_hub_names(suite, benchmarks_cfg, task_manager)
    documents = {key: _documents(eval_cfg, key, task, task_manager) for key, task in suite.tasks.items()}
    return Evaluation(eval_cfg, benchmarks_cfg, suite, task_manager, documents, resolve_batch_size(eval_cfg),
                      eval_backend(eval_cfg).key(), Path(out_dir), Path(cache_dir), log)


def _task_settings(ev: Evaluation, key: str, task: SuiteTask, identity: dict[str, Any], dtype: str) -> dict[str, Any]:
    """What a task's result is keyed on."""
    import lm_eval

    return {
        "model": identity,
        "task": key,
        "lm_eval_tasks": task.lm_eval_names,
        "benchmark": {"source": ev.suite.source, **data_definition(ev.benchmarks_cfg["sets"][task.benchmark])},
        "num_fewshot": int(ev.eval_cfg["tasks"][key]["num_fewshot"]),
        "fewshot_stream": task.fewshot_stream,  # v1: the exemplars are in the documents, lm-eval runs 0-shot
        "limit": task_limit(ev.eval_cfg, key),
        "documents": ev.documents[key],
        "batch_size": ev.batch_size,
        "dtype": dtype,
        "device": ev.eval_cfg["device"],
        "backend": ev.backend,
        "add_bos_token": ev.eval_cfg["add_bos_token"],
        "lm_eval_version": lm_eval.__version__,
        "seeds": SEEDS,
    }


def _evaluate_task(ev: Evaluation, lm, label: str, key: str, task: SuiteTask, settings: dict[str, Any],
                   key_hash: str) -> dict[str, Any]:
    """One task run on the loaded ``lm``, sealed; with the prefix scorer's token counts."""
    from lm_eval.utils import handle_non_serializable

    limit = settings["limit"]
    described = "all documents" if limit is None else f"limit {limit} ({ev.eval_cfg['subset']})"
    ev.log(f"[evaluate] {label}/{key}: {len(task.lm_eval_names)} lm-eval task(s), "
           f"{settings['num_fewshot']}-shot ({task.fewshot_stream} stream), {described}")
    start = time.perf_counter()
    before = dataclasses.replace(lm.counts) if hasattr(lm, "counts") else None
    output = _run_task(lm, task, ev.task_manager, task.lm_eval_fewshot(settings["num_fewshot"]), ev.documents[key])
    result = {"key": key_hash, "settings": settings, "seconds": time.perf_counter() - start, **output}
    if before is not None:  # the prefix scorer: tokens HFLM would have run, and tokens computed
        result["tokens"] = {"requested": lm.counts.requested - before.requested,
                            "hflm": lm.counts.hflm - before.hflm,
                            "computed": lm.counts.computed - before.computed}
    result = integrity.sealed(json.loads(json.dumps(result, default=handle_non_serializable)))
    tokens = result.get("tokens")
    shares = f" ({tokens['computed']:,} of {tokens['requested']:,} tokens computed)" if tokens else ""
    ev.log(f"[evaluate] {label}/{key}: {result['seconds']:.1f} s{shares}")
    return result


class _Loader:
    """The model's lm-eval model, loaded on first use (never when every task is reused)."""

    def __init__(self, model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any], log: Callable[[str], None]):
        self.model, self.dtype, self.eval_cfg, self.log, self.lm = model, dtype, eval_cfg, log, None

    def get(self):
        if self.lm is None:
            m = self.model
            self.log(f"[evaluate] loading {m.label}: {m.pretrained}" + (f" + {m.peft}" if m.peft else ""))
            self.lm = load_lm(m, self.dtype, self.eval_cfg)
        return self.lm

    def release(self) -> None:
        if self.lm is not None:
            release(self.lm)
        self.lm = None


def _task_result(ev: Evaluation, loader: _Loader, key: str, task: SuiteTask, settings: dict[str, Any]) -> dict:
    """The task's result: this run's file, else the shared cache's, else computed (and written to both)."""
    label = loader.model.label
    key_hash = digest(settings)
    path = ev.out_dir / label / f"{key}.json"
    shared = ev.cache_dir / "eval_results" / f"{key_hash}.json"  # across runs: same model + settings
    if cached := _reusable(path, key_hash, ev.log):
        ev.log(f"[evaluate] {label}/{key}: reusing {path}")
        return cached
    if cached := _reusable(shared, key_hash, ev.log):
        write_json_atomic(path, cached)
        ev.log(f"[evaluate] {label}/{key}: reusing the identical evaluation cached in {shared}")
        return cached
    result = _evaluate_task(ev, loader.get(), label, key, task, settings, key_hash)
    write_json_atomic(path, result)
    write_json_atomic(shared, result)
    return result


def _evaluate_model(ev: Evaluation, model: EvalModel) -> dict[str, Any]:
    """Every suite task on one model (loaded only if a task is not reused), as ``results.json`` records it."""
    import lm_eval

    dtype = model_dtype(model, ev.eval_cfg)
    identity = model_identity(model)
    loader = _Loader(model, dtype, ev.eval_cfg, ev.log)
    tasks_out, seconds, task_settings, items = {}, {}, {}, {}
    for key, task in ev.suite.tasks.items():
        settings = _task_settings(ev, key, task, identity, dtype)
        cached = _task_result(ev, loader, key, task, settings)
        tasks_out[key] = {k: cached[k] for k in LM_EVAL_KEYS}
        items[key] = cached["items"]
        seconds[key] = cached["seconds"]
        task_settings[key] = {k: settings[k] for k in ("num_fewshot", "fewshot_stream", "limit")}
        note = ev.benchmarks_cfg["sets"][task.benchmark].get("note")
        if ev.suite.source == BenchmarkSource.bundled and note:
            task_settings[key]["note"] = note
    loader.release()
    settings = {
        "batch_size": ev.batch_size, "dtype": dtype, "device": ev.eval_cfg["device"], "backend": ev.backend,
        "subset": {"mode": ev.eval_cfg["subset"], "seed": ev.eval_cfg["subset_seed"]},
        "benchmarks_source": ev.suite.source, "lm_eval_version": lm_eval.__version__, "seeds": SEEDS,
        "tasks": task_settings,
    }
    return {"model": model.describe(dtype), "settings": settings, "seconds": seconds, "tasks": tasks_out, "items": items}


def _write_reports(ev: Evaluation, all_results: dict[str, Any]) -> dict[str, Any]:
    from lm_eval.utils import handle_non_serializable

    summary = summarize(ev.suite, ev.eval_cfg, v1_average_tasks(ev.eval_cfg["tasks"], ev.benchmarks_cfg["sets"]),
                        all_results)
    subjects = report.subject_results(ev.suite, ev.eval_cfg, ev.benchmarks_cfg, all_results)
    table = report.markdown_table(summary, subjects, ev.eval_cfg)
    files = {name: ev.out_dir / getattr(FILES, name) for name in ("results", "summary", "subjects", "table", "chart")}
    files["results"].write_text(json.dumps(all_results, indent=1, default=handle_non_serializable))
    files["summary"].write_text(json.dumps(summary, indent=1))
    files["subjects"].write_text(json.dumps(subjects, indent=1))
    files["table"].write_text(table)
    report.bar_chart(summary, files["chart"])
    return {"summary": summary, "subjects": subjects, "table": table, "results": all_results, "files": files}


def evaluate_models(
    eval_cfg: Mapping[str, Any],
    benchmarks_cfg: Mapping[str, Any],
    models: list[EvalModel],
    out_dir: Path,
    cache_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every suite task on every model; the first model is the reference of the table's deltas."""
    _check_labels(models)
    ev = _prepare(eval_cfg, benchmarks_cfg, out_dir, cache_dir, log)
    all_results = {model.label: _evaluate_model(ev, model) for model in models}
    return _write_reports(ev, all_results)


def summarize(suite: Suite, eval_cfg: Mapping[str, Any], average_of: tuple[str, ...],
              all_results: Mapping[str, Any]) -> dict[str, Any]:
    """Per model: the v1 numbers with lm-eval's standard errors, and for every model after the first its paired
    delta against the first on each task and the average over ``average_of`` (``delta``); the merged model's
    against the merge target too (``delta_target``), when both were evaluated."""
    summary, per_model = {}, {}
    for label, res in all_results.items():
        results = {key: res["tasks"][key]["results"] for key in suite.tasks}
        summary[label] = leaderboard_v1(results, eval_cfg["tasks"], average_of)
        for key, error in standard_errors(results, eval_cfg["tasks"]).items():
            summary[label][key]["stderr"] = error
        per_model[label] = task_items(res["items"], eval_cfg["tasks"])
    reference, *others = list(all_results)
    for label in others:
        deltas = stats.compare(per_model[reference], per_model[label], average_of=average_of, average_key=AVERAGE)
        summary[label][report.DELTA] = {"reference": reference, **{k: d.as_dict() for k, d in deltas.items()}}
    if Role.target in others and Role.merged in others:  # the paper's comparison: the merged model against what it was folded into
        deltas = stats.compare(per_model[Role.target.value], per_model[Role.merged.value], average_of=average_of,
                               average_key=AVERAGE)
        summary[Role.merged.value][report.DELTA_TARGET] = {"reference": Role.target.value, **{k: d.as_dict() for k, d in deltas.items()}}
    return summary

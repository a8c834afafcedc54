"""Open LLM Leaderboard v1 numbers from lm-eval's per-task results.

v1 reports MMLU as the *unweighted* mean of the 57 subject accuracies, while lm-eval's ``mmlu``
group weights subjects by size; here every multi-task entry (MMLU) is the plain mean of its
subtasks, read with the entry's ``lm_eval_metric`` and reported under its ``metric`` name
(TruthfulQA: lm-eval's ``acc`` is the leaderboard's ``mc2``).
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any, Mapping

AVERAGE = "leaderboard_avg"

# {eval task key: {lm-eval task name: {"acc,none": v, ...}}}
TaskResults = Mapping[str, Mapping[str, Mapping[str, Any]]]


def _metric(results: Mapping[str, Any], lm_eval_name: str, metric_key: str) -> float:
    if metric_key not in results:
        known = sorted(k for k in results if not k.endswith("_stderr") and k != "alias")
        raise KeyError(f"lm-eval reported no {metric_key!r} for task {lm_eval_name!r}; it has {known}")
    return float(results[metric_key])


def task_value(subtasks: Mapping[str, Mapping[str, Any]], metric_key: str) -> float:
    """One task's value: its own metric, or the unweighted mean over its subtasks (MMLU)."""
    return fmean(_metric(res, name, metric_key) for name, res in subtasks.items())


def v1_average_tasks(tasks_cfg: Mapping[str, Any], sets: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``eval.tasks`` keys the v1 average is taken over: one per benchmark whose ``facts.v1_average`` is true,
    in the order of ``benchmarks.sets``; empty (no average) when one of those benchmarks has no task."""
    counted = [name for name, bench in sets.items() if (bench.get("facts") or {}).get("v1_average")]
    task_of = {task["benchmark"]: key for key, task in tasks_cfg.items()}
    return tuple(task_of[name] for name in counted) if counted and all(n in task_of for n in counted) else ()


def leaderboard_v1(task_results: TaskResults, tasks_cfg: Mapping[str, Any], average_of: tuple[str, ...]) -> dict[str, Any]:
    """``{task: {metric: value}, "leaderboard_avg": mean}`` (the average over ``average_of``, when it has them)."""
    summary: dict[str, Any] = {}
    for key, subtasks in task_results.items():
        cfg = tasks_cfg[key]
        summary[key] = {cfg["metric"]: task_value(subtasks, cfg["lm_eval_metric"])}
    if average_of and all(key in summary for key in average_of):
        summary[AVERAGE] = fmean(next(iter(summary[key].values())) for key in average_of)
    return summary


def subject_breakdown(
    subtasks: Mapping[str, Mapping[str, Any]],
    metric_key: str,
    subjects: Mapping[str, str],
    categories: Mapping[str, str],
) -> dict[str, dict[str, float]]:
    """Per-subject values and per-category unweighted means of the subjects present.

    ``subjects`` maps lm-eval task name -> subject, ``categories`` subject -> category.
    """
    per_subject = {subjects[name]: _metric(res, name, metric_key) for name, res in subtasks.items()}
    grouped: dict[str, list[float]] = {}
    for subject, value in per_subject.items():
        grouped.setdefault(categories[subject], []).append(value)
    return {
        "categories": {category: fmean(values) for category, values in sorted(grouped.items())},
        "subjects": dict(sorted(per_subject.items())),
    }


def size_weighted_mean(subtasks: Mapping[str, Mapping[str, Any]], metric_key: str, sizes: Mapping[str, int]) -> float:
    """lm-eval's group aggregation (weight_by_size), for comparison with the v1 mean."""
    total = sum(sizes[name] for name in subtasks)
    return sum(_metric(res, name, metric_key) * sizes[name] for name, res in subtasks.items()) / total


def standard_errors(task_results: TaskResults, tasks_cfg: Mapping[str, Any]) -> dict[str, float | None]:
    """Each entry's standard error from lm-eval's (``<metric>_stderr``): a multi-task entry's is that of the mean
    of its subtasks, sqrt(sum se^2) / k; None where lm-eval gave none (one document: "N/A")."""
    out: dict[str, float | None] = {}
    for key, subtasks in task_results.items():
        name, _, suffix = tasks_cfg[key]["lm_eval_metric"].partition(",")
        errors = [res.get(f"{name}_stderr,{suffix}") for res in subtasks.values()]
        valid = all(isinstance(e, (int, float)) and math.isfinite(e) for e in errors)
        out[key] = math.sqrt(sum(e * e for e in errors)) / len(errors) if valid and errors else None
    return out

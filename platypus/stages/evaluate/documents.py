"""Which documents a task evaluates, and the per-document outcomes kept for paired comparisons.

``eval.limit`` (or a task's own ``limit``): a count per lm-eval task (per MMLU subject: the v1 mean weights
subjects equally, so every subject gets the same count), or a fraction (< 1) of each. ``eval.subset=random``
(the default) draws those documents at random, seeded by ``eval.subset_seed`` and the lm-eval task's name,
so every model of a run, and every run with the same settings, sees the same documents: what makes a
paired comparison valid. ``first`` takes the first ones (lm-eval's ``limit``; HellaSwag's validation set
is ordered by source activity, so these are no sample of it). The chosen ids go to lm-eval through its own
``samples=`` argument, and each task's result file records them with the outcomes.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping

import numpy as np

from platypus.fields import Subset
from platypus.runtime.errors import PlatypusError



def task_limit(eval_cfg: Mapping[str, Any], key: str) -> int | float | None:
    """The task's limit, else the suite's; counts become ints, fractions (<1) stay floats."""
    own = eval_cfg["tasks"][key].get("limit")
    limit = own if own is not None else eval_cfg.get("limit")
    if limit is None:
        return None
    if limit <= 0:
        raise PlatypusError(f"eval.tasks.{key}.limit / eval.limit={limit}: use a count >= 1 or a fraction in (0, 1).")
    return int(limit) if limit >= 1 else float(limit)


def sample_size(n_docs: int, limit: int | float | None) -> int:
    """Documents evaluated out of ``n_docs`` under ``limit``: lm-eval's own rule (a fraction rounds up)."""
    if limit is None:
        return n_docs
    return min(n_docs, math.ceil(n_docs * limit) if limit < 1 else int(limit))


def random_documents(name: str, n_docs: int, limit: int | float | None, seed: int) -> list[int]:
    """A seeded random choice of ``sample_size`` document indices of lm-eval task ``name``, in order."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return sorted(int(i) for i in rng.choice(n_docs, sample_size(n_docs, limit), replace=False))


def choose(tasks: Mapping[str, Any], limit: int | float | None, subset: str, seed: int) -> dict[str, Any]:
    """lm-eval's arguments selecting the documents of ``tasks`` (lm-eval task name -> Task):
    ``{"limit": ...}`` (everything, or ``first``) or ``{"samples": {name: [ids]}}`` (``random``)."""
    if limit is None or Subset(subset) == Subset.first:
        return {"limit": limit}
    return {"samples": {name: random_documents(name, len(task.eval_docs), limit, seed) for name, task in tasks.items()}}


def items_from_samples(samples: Mapping[str, list[dict]], metrics: tuple[str, ...] = ("acc", "acc_norm")) -> dict:
    """lm-eval's logged samples -> ``{lm-eval task: {"doc_id": [...], metric: [...]}}``, ordered by document."""
    items = {}
    for name, logged in samples.items():
        logged = sorted(logged, key=lambda s: s["doc_id"])
        items[name] = {"doc_id": [int(s["doc_id"]) for s in logged]}
        for metric in metrics:
            if logged and metric in logged[0]:
                items[name][metric] = [float(s[metric]) for s in logged]
    return items


def outcomes(items: Mapping[str, Mapping[str, list]], metric: str,
             rename: Mapping[str, str] | None = None) -> dict[str, dict[int, float]]:
    """One task's per-document values of ``metric``, one stratum per lm-eval task (per MMLU subject; ``rename``:
    lm-eval task -> another name, e.g. the subject): the input of platypus.stages.evaluate.stats."""
    return {(rename or {}).get(name, name): dict(zip(columns["doc_id"], columns[metric])) for name, columns in items.items()}


def task_items(items: Mapping[str, Any], tasks_cfg: Mapping[str, Any]) -> dict[str, dict[str, dict[int, float]]]:
    """One model's ``items`` (suite task -> lm-eval task -> columns) -> {task: {stratum: {doc id: value}}} of each
    task's metric (``eval.tasks.<task>.lm_eval_metric``)."""
    return {key: outcomes(by_name, tasks_cfg[key]["lm_eval_metric"].split(",")[0])
            for key, by_name in items.items() if key in tasks_cfg}

"""Paired comparisons of two models evaluated on the same documents: deltas with 95% intervals.

A task's score is a mean over documents; MMLU's v1 score is the mean of its 57 subject means; the
leaderboard average is the mean of four task scores. One procedure covers the three: a **paired
bootstrap**. Each resample draws, with replacement, the documents of every stratum (an MMLU subject, or
the whole task) independently, keeping each document's pair of outcomes together; the resampled delta
is computed exactly as the score is (mean per stratum, then the mean of the strata; the average: the
mean of the tasks' resampled deltas, tasks resampled independently). The interval is the 2.5th-97.5th
percentile of ``RESAMPLES`` = 10,000 resampled deltas drawn with seed ``SEED`` = 0, so a table is
reproducible to the digit; ``p`` is twice the smaller share of resampled deltas on either side of zero
(the level at which the percentile interval just touches 0), and a delta is called significant when its
95% interval excludes 0. Why not an analytic interval: mc2 is no 0/1 outcome (so no McNemar test), and
the subject-stratified MMLU mean and the four-task average would each need their own variance formula,
where the bootstrap applies the score's own aggregation. With few documents (the CPU default's tens per
task) the bootstrap interval is somewhat too narrow, like any large-sample interval; the coverage test
(tests/test_evaluate_stats.py) measures it at 200 documents.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Mapping, Sequence

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
Z = 1.959963984540054  # the normal quantile of LEVEL, for the planned minimum detectable differences

# One model's per-document values on one task: stratum (an MMLU subject, else the task) -> {doc id: value}.
Items = Mapping[str, Mapping[int, float]]


@dataclass(frozen=True)
class Delta:
    """``value`` = b - a on the documents both models were scored on (``n``), with its percentile interval."""

    value: float
    low: float
    high: float
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def score(items: Items) -> float:
    """The task's score from its items: the mean of the strata's means (one stratum: the plain mean)."""
    return fmean(fmean(values.values()) for values in items.values())


def paired(a: Items, b: Items) -> dict[str, np.ndarray]:
    """Per stratum, b - a on the documents present for both models."""
    out = {}
    for stratum, values in a.items():
        common = sorted(set(values) & set(b.get(stratum, {})))
        if common:
            out[stratum] = np.array([b[stratum][i] - values[i] for i in common], dtype=np.float64)
    return out


def resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Means of ``resamples`` draws of len(values) values with replacement (in chunks of ~4M draws)."""
    n, out = len(values), np.empty(resamples)
    step = max(1, (1 << 22) // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def resampled_deltas(diffs: Mapping[str, np.ndarray], rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """``resamples`` bootstrap replicates of the task delta: each stratum resampled on its own, then the mean
    of the strata's means. A stratum of one document cannot be resampled on its own (it would never vary):
    such strata draw from the pool of all single-document strata instead (MMLU at one question per subject)."""
    single = np.array([values[0] for values in diffs.values() if len(values) == 1])
    means = [resampled_means(values, rng, resamples) for values in diffs.values() if len(values) > 1]
    if len(single):
        means += list(single[rng.integers(0, len(single), size=(len(single), resamples))])
    return np.mean(means, axis=0)


def summarize(observed: float, replicates: np.ndarray, n: int) -> Delta:
    low, high = np.quantile(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    p = min(1.0, 2 * min(float(np.mean(replicates <= 0)), float(np.mean(replicates >= 0))))
    return Delta(float(observed), float(low), float(high), p, n)


def compare(a: Mapping[str, Items], b: Mapping[str, Items], average_of: Sequence[str] = (),
            resamples: int = RESAMPLES, seed: int = SEED, average_key: str = "average") -> dict[str, Delta]:
    """{task: Delta of b vs a} for every task both have, and ``average_key`` over ``average_of`` when all of
    them are there (the leaderboard average)."""
    rng = np.random.default_rng(seed)
    deltas, replicates = {}, {}
    for task in a:
        if task not in b:
            continue
        diffs = paired(a[task], b[task])
        if not diffs:
            continue
        replicates[task] = resampled_deltas(diffs, rng, resamples)
        observed = fmean(float(values.mean()) for values in diffs.values())
        deltas[task] = summarize(observed, replicates[task], sum(len(v) for v in diffs.values()))
    if average_of and all(task in deltas for task in average_of):
        observed = fmean(deltas[task].value for task in average_of)
        joint = np.mean([replicates[task] for task in average_of], axis=0)
        deltas[average_key] = summarize(observed, joint, sum(deltas[task].n for task in average_of))
    return deltas


# --------------------------------------------------------------------------- planning: the smallest visible delta
def detectable(per_item_variance: float, strata_sizes: Sequence[int]) -> float:
    """Half-width of the paired interval for a task whose strata have these sizes, if each document's
    difference has this variance: a smaller observed delta cannot be significant."""
    if not strata_sizes or min(strata_sizes) < 1:
        return math.nan
    return Z * math.sqrt(sum(per_item_variance / n for n in strata_sizes)) / len(strata_sizes)


def detectable_average(half_widths: Sequence[float]) -> float:
    """The same for the mean of independent task deltas."""
    return math.sqrt(sum(h * h for h in half_widths)) / len(half_widths)

"""Paired bootstrap intervals (platypus/stages/evaluate/stats.py): coverage, the null, MMLU's stratified mean, the average."""

from __future__ import annotations

import numpy as np
import pytest

from platypus.stages.evaluate import stats
from platypus.stages.evaluate.aggregate import leaderboard_v1


def binary_pair(rng: np.random.Generator, n: int, p_a: float, delta: float, disagree: float):
    """Paired 0/1 outcomes with P(a)=p_a, P(b)=p_a+delta, disagreeing on about ``disagree`` of the documents."""
    up, down = (disagree + delta) / 2, (disagree - delta) / 2  # P(a=0,b=1), P(a=1,b=0)
    u = rng.random(n)
    a = (rng.random(n) < p_a).astype(float)
    b = a.copy()
    b[(a == 0) & (u < up / (1 - p_a))] = 1
    b[(a == 1) & (u < down / p_a)] = 0
    return ({"task": dict(enumerate(a))}, {"task": dict(enumerate(b))})


def test_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """400 synthetic pairs of 200 documents with a true delta of +0.05: the 95% interval must cover it in
    92-98% of them (the binomial standard error of the coverage over 400 trials is 1.1 points)."""
    rng = np.random.default_rng(123)
    covered = 0
    for trial in range(400):
        a, b = binary_pair(rng, 200, 0.5, 0.05, 0.3)
        true = 0.05
        delta = stats.compare({"t": a}, {"t": b}, resamples=2000, seed=trial)["t"]
        covered += delta.low <= true <= delta.high
    assert 0.92 <= covered / 400 <= 0.98, covered / 400


def test_false_positives_stay_near_five_percent_without_a_difference():
    rng = np.random.default_rng(7)
    flagged = sum(stats.compare({"t": a}, {"t": b}, resamples=2000, seed=i)["t"].significant
                  for i, (a, b) in enumerate(binary_pair(rng, 200, 0.5, 0.0, 0.3) for _ in range(300)))
    assert flagged / 300 <= 0.09, flagged / 300


def test_identical_models_are_not_significant_and_a_clear_win_is():
    same = {"t": {"task": {i: float(i % 2) for i in range(50)}}}
    delta = stats.compare(same, same)["t"]
    assert (delta.value, delta.low, delta.high, delta.p, delta.significant) == (0.0, 0.0, 0.0, 1.0, False)
    better = {"t": {"task": {i: 1.0 for i in range(50)}}}
    win = stats.compare(same, better)["t"]
    assert win.value == 0.5 and win.significant and win.p < 0.001 and win.low > 0.3


def test_mmlu_items_reproduce_the_v1_mean_and_resample_within_subjects():
    """Subjects of unequal size: the score from items is the plain mean of subject means (the v1 number),
    which the resampling keeps: every replicate of identical models is that exact delta, 0."""
    rng = np.random.default_rng(0)
    subjects = {f"s{k}": {i: float(rng.random() < 0.3 + 0.1 * k) for i in range(n)} for k, n in enumerate((5, 40, 200))}
    v1 = leaderboard_v1({"mmlu": {f"mmlu_{s}": {"acc,none": np.mean(list(v.values()))} for s, v in subjects.items()}},
                        {"mmlu": {"metric": "acc", "lm_eval_metric": "acc,none"}}, ())["mmlu"]["acc"]
    assert stats.score(subjects) == pytest.approx(v1, abs=1e-12)
    weighted = np.mean([x for v in subjects.values() for x in v.values()])
    assert abs(stats.score(subjects) - weighted) > 0.01  # not the pooled mean
    shifted = {s: {i: 1.0 for i in v} for s, v in subjects.items()}  # every document right in b
    replicates = stats.resampled_deltas(stats.paired(subjects, shifted), np.random.default_rng(0), 500)
    # within-subject resampling: each replicate averages the three subject means with equal weight
    assert replicates.mean() == pytest.approx(stats.score(shifted) - stats.score(subjects), abs=0.02)


def test_average_delta_is_the_mean_of_task_deltas_and_narrower_than_its_parts():
    rng = np.random.default_rng(1)
    a, b = {}, {}
    for task in ("arc", "hs", "mmlu", "tqa"):
        a[task], b[task] = binary_pair(rng, 300, 0.4, 0.04, 0.3)
    deltas = stats.compare(a, b, average_of=("arc", "hs", "mmlu", "tqa"))
    assert deltas["average"].value == pytest.approx(np.mean([deltas[t].value for t in ("arc", "hs", "mmlu", "tqa")]))
    width = deltas["average"].high - deltas["average"].low
    assert width < min(deltas[t].high - deltas[t].low for t in ("arc", "hs", "mmlu", "tqa"))
    assert "average" not in stats.compare(a, b, average_of=("arc", "missing"))


def test_interval_is_the_seeded_percentile_bootstrap_recomputed_by_hand():
    """One task, one stratum of 100 documents: 10,000 resamples of the paired differences drawn with
    default_rng(0), the 2.5 and 97.5 percentiles of their means, and the two-sided p of the replicates' sign."""
    rng = np.random.default_rng(2)
    a, b = binary_pair(rng, 100, 0.5, 0.1, 0.3)
    diffs = np.array([b["task"][i] - a["task"][i] for i in range(100)])
    draws = np.random.default_rng(0).integers(0, 100, size=(10_000, 100))
    replicates = diffs[draws].mean(axis=1)
    low, high = np.percentile(replicates, [2.5, 97.5])
    p = min(1.0, 2 * min((replicates <= 0).mean(), (replicates >= 0).mean()))

    delta = stats.compare({"t": a}, {"t": b})["t"]
    assert (delta.value, delta.n) == (pytest.approx(diffs.mean()), 100)
    assert (delta.low, delta.high, delta.p) == (pytest.approx(low), pytest.approx(high), pytest.approx(p))


def test_only_documents_scored_for_both_models_are_paired():
    a = {"t": {"task": {0: 1.0, 1: 0.0, 2: 1.0}}}
    b = {"t": {"task": {1: 1.0, 2: 1.0, 3: 0.0}}}
    delta = stats.compare(a, b)["t"]
    assert delta.n == 2 and delta.value == 0.5


def test_detectable_difference_shrinks_with_the_square_root_of_documents():
    one = stats.detectable(0.2, [100])
    assert one == pytest.approx(1.959964 * (0.2 / 100) ** 0.5, rel=1e-6)
    assert stats.detectable(0.2, [400]) == pytest.approx(one / 2)
    assert stats.detectable(0.2, [100] * 57) == pytest.approx(one / 57 ** 0.5)  # 57 subjects of 100
    assert stats.detectable_average([one] * 4) == pytest.approx(one / 2)


def test_single_document_strata_still_vary():
    """MMLU at one question per subject: each subject's difference is drawn from the pool of all of them, so
    a mixed result is not called significant (resampled within itself, every subject would be fixed)."""
    a = {"mmlu": {f"s{k}": {0: float(k % 2)} for k in range(57)}}
    b = {"mmlu": {f"s{k}": {0: float(k % 3 == 0)} for k in range(57)}}
    delta = stats.compare(a, b)["mmlu"]
    assert delta.low < 0 < delta.high and not delta.significant

"""Leaderboard v1 aggregation on synthetic lm-eval results."""

from __future__ import annotations

import pytest

from platypus.stages.evaluate.aggregate import leaderboard_v1, size_weighted_mean, subject_breakdown, v1_average_tasks
from tests.helpers import compose_config

TASKS = {
    "arc_challenge": {"benchmark": "arc_challenge", "metric": "acc_norm", "lm_eval_metric": "acc_norm,none"},
    "hellaswag": {"benchmark": "hellaswag", "metric": "acc_norm", "lm_eval_metric": "acc_norm,none"},
    "mmlu": {"benchmark": "mmlu", "metric": "acc", "lm_eval_metric": "acc,none"},
    "truthfulqa_mc2": {"benchmark": "truthfulqa_mc2", "metric": "mc2", "lm_eval_metric": "acc,none"},
}
SETS = compose_config().benchmarks.sets  # conf/benchmarks/: which benchmarks count in the v1 average
AVERAGE_OF = v1_average_tasks(TASKS, SETS)
# Two big subjects at 0.2, one small one at 0.8: weighting by size pulls the mean down.
MMLU = {
    "mmlu_anatomy": {"acc,none": 0.2, "acc_stderr,none": 0.01, "alias": "anatomy"},
    "mmlu_virology": {"acc,none": 0.2, "acc_stderr,none": 0.01, "alias": "virology"},
    "mmlu_marketing": {"acc,none": 0.8, "acc_stderr,none": 0.01, "alias": "marketing"},
}
SIZES = {"mmlu_anatomy": 500, "mmlu_virology": 500, "mmlu_marketing": 10}
RESULTS = {
    "arc_challenge": {"arc_challenge": {"acc,none": 0.3, "acc_norm,none": 0.4}},
    "hellaswag": {"hellaswag": {"acc,none": 0.5, "acc_norm,none": 0.6}},
    "mmlu": MMLU,
    "truthfulqa_mc2": {"truthfulqa_mc2": {"acc,none": 0.45}},
}


def test_the_v1_average_is_over_the_four_benchmarks_marked_in_conf():
    assert AVERAGE_OF == ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")
    renamed = {("arc" if key == "arc_challenge" else key): task for key, task in TASKS.items()}
    assert v1_average_tasks(renamed, SETS) == ("arc", "hellaswag", "mmlu", "truthfulqa_mc2")  # task keys, by benchmark
    assert v1_average_tasks({k: v for k, v in TASKS.items() if k != "mmlu"}, SETS) == ()  # one missing: no average


def test_mmlu_is_the_unweighted_subject_mean_not_lm_evals_weighted_group():
    summary = leaderboard_v1(RESULTS, TASKS, AVERAGE_OF)
    assert summary["mmlu"] == {"acc": pytest.approx(0.4)}
    weighted = size_weighted_mean(MMLU, "acc,none", SIZES)
    assert weighted == pytest.approx((0.2 * 1000 + 0.8 * 10) / 1010)
    assert abs(summary["mmlu"]["acc"] - weighted) > 0.1


def test_metric_names_mc2_and_average():
    summary = leaderboard_v1(RESULTS, TASKS, AVERAGE_OF)
    assert summary["arc_challenge"] == {"acc_norm": 0.4}
    assert summary["hellaswag"] == {"acc_norm": 0.6}
    assert summary["truthfulqa_mc2"] == {"mc2": 0.45}
    assert summary["leaderboard_avg"] == pytest.approx((0.4 + 0.6 + 0.4 + 0.45) / 4)


def test_no_average_without_all_four():
    partial = {k: v for k, v in RESULTS.items() if k != "hellaswag"}
    assert "leaderboard_avg" not in leaderboard_v1(partial, TASKS, AVERAGE_OF)


def test_missing_metric_is_named():
    with pytest.raises(KeyError, match="acc_norm,none"):
        leaderboard_v1({"truthfulqa_mc2": RESULTS["truthfulqa_mc2"]}, {"truthfulqa_mc2": TASKS["arc_challenge"]}, ())


def test_subject_breakdown_categories_are_unweighted_means():
    subjects = {"mmlu_anatomy": "anatomy", "mmlu_virology": "virology", "mmlu_marketing": "marketing"}
    categories = {"anatomy": "stem", "virology": "other", "marketing": "other"}
    out = subject_breakdown(MMLU, "acc,none", subjects, categories)
    assert out["subjects"] == {"anatomy": 0.2, "marketing": 0.8, "virology": 0.2}
    assert out["categories"] == {"other": pytest.approx(0.5), "stem": 0.2}

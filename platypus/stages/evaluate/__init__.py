"""Evaluate stage: lm-eval on the Open LLM Leaderboard v1 suite, bundled or hub benchmarks."""

from platypus.stages.evaluate.aggregate import leaderboard_v1, subject_breakdown
from platypus.stages.evaluate.backends import EvalModel
from platypus.stages.evaluate.plan import plan
from platypus.stages.evaluate.runner import evaluate_models
from platypus.stages.evaluate.tasks import Suite, build_suite, subject_categories

__all__ = [
    "EvalModel",
    "Suite",
    "build_suite",
    "evaluate_models",
    "leaderboard_v1",
    "plan",
    "subject_breakdown",
    "subject_categories",
]

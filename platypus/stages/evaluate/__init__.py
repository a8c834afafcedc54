"""Evaluate stage: lm-eval on the Open LLM Leaderboard v1 suite, bundled or hub benchmarks."""

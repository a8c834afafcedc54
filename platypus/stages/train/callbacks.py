"""Trainer callbacks the train stage adds."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class TokensPerSecond(TrainerCallback):
    """Adds ``tokens_per_second`` (non-padding input tokens since the previous log) to every training log,
    so W&B and the console show throughput per step. Registered first, so the reporting callbacks see it."""

    def __init__(self):
        self.last: tuple[float, int] | None = None  # (time, tokens) at the previous log

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self.last is None:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        if now > self.last[0]:
            logs["tokens_per_second"] = round((tokens - self.last[1]) / (now - self.last[0]), 2)
        self.last = (now, tokens)

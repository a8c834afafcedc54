"""Removal of training rows that share a word n-gram with a benchmark test question, without embeddings
(GPT-3 / lm-eval style; ``curate.decontaminate.ngram`` words, 13 when null; ``curate.decontaminate.benchmarks``).
A step of its own, so a recipe can order it (conf/curate/ngram_only.yaml) or run it beside the
embedding filter."""

from __future__ import annotations

import time

from platypus.stages.curate.audit import Removal
from platypus.stages.curate.decontaminate import ngram_contamination
from platypus.stages.curate.steps import State

METRIC = "removed_ngram"
NEEDS_QUESTIONS = True
DEFAULT_N = 13


def run(state: State) -> None:
    n = state.cfg.decontaminate.ngram or DEFAULT_N
    t0 = time.perf_counter()
    hits = ngram_contamination(state.texts(), state.questions, n)
    for local, (name, q) in hits.items():
        row = state.row(local)
        state.removed.append(Removal("ngram_decontaminate", row["data_source"], row["instruction"],
                                     f"{name}: {state.questions[name][q]}", None))
    state.metrics[METRIC] = len(hits)
    state.settings["ngram_decontaminate"] = {"n": n, "benchmark_questions": {k: len(v) for k, v in state.questions.items()}}
    state.keep("ngram_decontaminate", [i for i in range(len(state.current)) if i not in hits], time.perf_counter() - t0)

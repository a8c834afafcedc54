"""Removal of training rows that share a word n-gram with a benchmark test question, without embeddings
(GPT-3 / lm-eval style; ``curate.steps.ngram_decontaminate.n`` words; the questions of ``curate.benchmarks``).
A step of its own, so a recipe can order it (conf/curate/ngram_only.yaml) or run it beside the
embedding filter."""

from __future__ import annotations

import time
from dataclasses import dataclass

from platypus.fields import positive, ranged
from platypus.stages.curate.audit import Removal
from platypus.stages.curate.decontaminate import ngram_contamination
from platypus.stages.curate.steps import State, Step


@dataclass
class NgramDecontaminate(Step):
    label = "ngram_decontaminate"
    metric = "removed_ngram"
    needs_questions = True
    n: int = ranged(13, positive)  # words per n-gram (13: GPT-3's)

    def run(self, state: State) -> None:
        t0 = time.perf_counter()
        hits = ngram_contamination(state.texts(), state.questions, self.n)
        for local, (name, q) in hits.items():
            row = state.row(local)
            state.removed.append(Removal(self.label, row["data_source"], row["instruction"],
                                         f"{name}: {state.questions[name][q]}", None))
        state.metrics[self.metric] = len(hits)
        state.settings[self.label] = {"n": self.n,
                                      "benchmark_questions": {k: len(v) for k, v in state.questions.items()}}
        state.keep(self.label, [i for i in range(len(state.current)) if i not in hits], time.perf_counter() - t0)

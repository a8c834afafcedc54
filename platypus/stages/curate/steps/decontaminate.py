"""Removal of training rows close to a benchmark test question (curate.steps.decontaminate): embedding
similarity under a policy, plus an optional n-gram overlap detector (``curate.steps.decontaminate.ngram``).
The benchmarks are ``curate.benchmarks``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from platypus.fields import SIMILARITY, DecontaminationPolicy, Search, positive, ranged, unit_interval
from platypus.stages.curate.audit import Removal
from platypus.stages.curate.decontaminate import decontaminate, ngram_contamination
from platypus.stages.curate.search import describe, use_approximate
from platypus.stages.curate.steps import State, Step


@dataclass
class Decontaminate(Step):
    label = "decontaminate"
    metric = "removed_contamination"
    needs_questions = True
    threshold: float = ranged(0.8, unit_interval, SIMILARITY)
    policy: DecontaminationPolicy = DecontaminationPolicy.all  # nearest_only: the paper's notebook
    search: Search = Search.auto  # as curate.steps.dedup.search (index over the rows)
    # e.g. 13: independent n-gram overlap detector
    ngram: Optional[int] = ranged(None, positive, "{key}={value} must be a positive integer or null.")

    def run(self, state: State) -> None:
        questions = state.questions
        embeddings = state.embedded()
        t0 = time.perf_counter()
        bench_embeddings = {name: state.embedder.encode(qs) for name, qs in questions.items() if qs}
        state.timings["embed_benchmarks"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        approximate = use_approximate(self.search, len(embeddings), state.cfg.search.exact_up_to)
        found = decontaminate(embeddings, bench_embeddings, self.threshold, self.policy,
                              state.index_params() if approximate else None)
        drop = found.remove.copy()
        for local in np.flatnonzero(found.remove):
            row, name = state.row(local), found.benchmark[local]
            state.removed.append(Removal(self.label, row["data_source"], row["instruction"],
                                         f"{name}: {questions[name][found.question[local]]}", float(found.score[local])))
        ngram_report = self.remove_ngram_overlap(state, drop) if self.ngram else None
        state.benchmark_nearest, state.benchmark_threshold = found.nearest, self.threshold
        state.metrics[self.metric] = int(drop.sum())
        state.settings[self.label] = {
            "threshold": self.threshold,
            "policy": self.policy,
            "search": ({"search": "approximate", "per_benchmark": {name: describe(state.index_params().resolved(len(qs)))
                                                                 for name, qs in questions.items() if qs}}
                       if approximate else {"search": "exact"}),
            "benchmark_questions": {name: len(qs) for name, qs in questions.items()},
            "rows_flagged_per_policy": found.counts,
            "rows_flagged_total_per_policy": found.totals,
            "ngram": ngram_report,
        }
        state.metrics.update({f"contamination_{b}": c for b, c in found.counts[self.policy].items()})
        state.metrics.update({f"contamination_total_{p}": c for p, c in found.totals.items()})
        state.keep(self.label, ~drop, time.perf_counter() - t0)

    def remove_ngram_overlap(self, state: State, drop: np.ndarray) -> dict:
        """Mark in ``drop`` the rows sharing an n-gram with a question that the similarity filter kept."""
        hits = ngram_contamination(state.texts(), state.questions, self.ngram)
        only = {i: hit for i, hit in hits.items() if not drop[i]}
        for local, (name, q) in only.items():
            row = state.row(local)
            state.removed.append(Removal("decontaminate_ngram", row["data_source"], row["instruction"],
                                         f"{name}: {state.questions[name][q]}", None))
            drop[local] = True
        state.metrics["contamination_ngram"] = len(hits)
        state.metrics["removed_ngram_only"] = len(only)
        return {"n": self.ngram, "flagged": len(hits), "removed_only_by_ngram": len(only)}

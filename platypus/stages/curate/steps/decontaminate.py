"""Removal of training rows close to a benchmark test question (curate.decontaminate): embedding similarity
under a policy, plus an optional n-gram overlap detector (``curate.decontaminate.ngram``)."""

from __future__ import annotations

import time

import numpy as np

from platypus.stages.curate.audit import Removal
from platypus.stages.curate.decontaminate import decontaminate, ngram_contamination
from platypus.stages.curate.search import describe, use_approximate
from platypus.stages.curate.steps import State

SECTION = "decontaminate"
METRIC = "removed_contamination"
NEEDS_QUESTIONS = True


def run(state: State) -> None:
    cfg, questions = state.cfg.decontaminate, state.questions
    embeddings = state.embedded()
    t0 = time.perf_counter()
    bench_embeddings = {name: state.embedder.encode(qs) for name, qs in questions.items() if qs}
    state.timings["embed_benchmarks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    approximate = use_approximate(cfg.search, len(embeddings), state.cfg.search.exact_up_to)
    found = decontaminate(embeddings, bench_embeddings, cfg.threshold, cfg.policy,
                          state.index_params() if approximate else None)
    drop = found.remove.copy()
    for local in np.flatnonzero(found.remove):
        row, name = state.row(local), found.benchmark[local]
        state.removed.append(Removal("decontaminate", row["data_source"], row["instruction"],
                                     f"{name}: {questions[name][found.question[local]]}", float(found.score[local])))
    ngram_report = None
    if cfg.ngram:
        hits = ngram_contamination(state.texts(), questions, cfg.ngram)
        only = {i: hit for i, hit in hits.items() if not drop[i]}
        for local, (name, q) in only.items():
            row = state.row(local)
            state.removed.append(Removal("decontaminate_ngram", row["data_source"], row["instruction"],
                                         f"{name}: {questions[name][q]}", None))
            drop[local] = True
        ngram_report = {"n": cfg.ngram, "flagged": len(hits), "removed_only_by_ngram": len(only)}
        state.metrics["contamination_ngram"] = len(hits)
        state.metrics["removed_ngram_only"] = len(only)
    state.benchmark_nearest = found.nearest
    state.metrics[METRIC] = int(drop.sum())
    state.settings["decontaminate"] = {
        "threshold": cfg.threshold,
        "policy": cfg.policy,
        "search": ({"search": "approximate", "per_benchmark": {name: describe(state.index_params().resolved(len(qs)))
                                                             for name, qs in questions.items() if qs}}
                   if approximate else {"search": "exact"}),
        "benchmark_questions": {name: len(qs) for name, qs in questions.items()},
        "rows_flagged_per_policy": found.counts,
        "rows_flagged_total_per_policy": found.totals,
        "ngram": ngram_report,
    }
    state.metrics.update({f"contamination_{b}": c for b, c in found.counts[cfg.policy].items()})
    state.metrics.update({f"contamination_total_{p}": c for p, c in found.totals.items()})
    state.keep("decontaminate", ~drop, time.perf_counter() - t0)

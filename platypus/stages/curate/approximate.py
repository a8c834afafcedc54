"""The paper's greedy dedup over candidate pairs from the approximate search (search.py).

The rows are walked in the processing order (``keep``); a row is dropped iff an earlier *kept* row is among
its candidates at or above the threshold (every candidate was re-scored exactly). With every true pair
found this is the exact kept set. A pair the index misses keeps a row the exact rule drops; through chains
it can also drop one the exact rule keeps (A~B~C: exact drops B and so keeps C; if A~B is missed, B is kept
and drops C). ``prefix_agreement`` measures both on a prefix of the order against the exact pass.
"""

from __future__ import annotations

import time

import numpy as np

from platypus.stages.curate.search import IndexParams, approximate_pairs, build_index, describe
from platypus.stages.curate.semantic import DedupResult, processing_order, semantic_dedup
from platypus.stages.curate.vectors import InMemory


def greedy_over_pairs(n: int, later: np.ndarray, earlier: np.ndarray, sims: np.ndarray,
                      rank: np.ndarray) -> DedupResult:
    """Greedy rule over pairs (``later``, ``earlier``) where rank[earlier] < rank[later]."""
    result = DedupResult(np.ones(n, bool), np.full(n, -1, np.int64), np.full(n, np.nan, np.float32))
    order = np.lexsort((-sims, rank[later]))  # by the later row's rank, most similar first
    keep = result.keep
    for b, a, s in zip(later[order].tolist(), earlier[order].tolist(), sims[order].tolist()):
        if keep[b] and keep[a]:  # every pair of a (a later row) came before: keep[a] is final
            keep[b] = False
            result.match[b] = a
            result.score[b] = s
    return result


def approximate_dedup(vectors, threshold: float, keep: str = "first", output_lengths=None,
                      params: IndexParams | None = None, recall_sample: int = 0, log=print):
    """(DedupResult, report dict) for ``vectors`` (an ndarray or a ``vectors.VectorFile``)."""
    source = InMemory(vectors) if isinstance(vectors, np.ndarray) else vectors
    n = source.rows
    params = (params or IndexParams()).resolved(n)
    t0 = time.perf_counter()
    index = build_index(source, params, log)
    t_build = time.perf_counter() - t0
    q, b, s = approximate_pairs(index, source, source, threshold, self_join=True, log=log)
    del index
    order = processing_order(keep, output_lengths, n)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    later = np.where(rank[q] > rank[b], q, b)
    earlier = np.where(rank[q] > rank[b], b, q)
    result = greedy_over_pairs(n, later, earlier, s, rank)
    report = {"search": "approximate", **describe(params), "candidate_pairs": int(len(q)),
              "seconds_index": round(t_build, 3), "seconds_total": round(time.perf_counter() - t0, 3)}
    if recall_sample:
        report["recall_sample"] = prefix_agreement(source, order, rank, later, earlier, s, threshold, recall_sample)
    return result, report


def prefix_agreement(source, order, rank, later, earlier, sims, threshold: float, size: int) -> dict:
    """Exact greedy pass over the first ``size`` rows of the order vs the greedy rule over the candidate
    pairs inside that prefix (a prefix's decisions depend on nothing after it)."""
    size = min(size, source.rows)
    prefix = order[:size]
    exact = semantic_dedup(source.take(prefix), threshold).keep
    inside = (rank[later] < size) & (rank[earlier] < size)
    approx = greedy_over_pairs(size, rank[later[inside]], rank[earlier[inside]], sims[inside], np.arange(size)).keep
    dropped_exact, dropped_approx = ~exact, ~approx
    return {"rows": size, "dropped_exact": int(dropped_exact.sum()), "dropped_approximate": int(dropped_approx.sum()),
            "recall_of_dropped": round(float((dropped_exact & dropped_approx).sum() / max(1, dropped_exact.sum())), 5),
            "dropped_that_exact_keeps": int((dropped_approx & exact).sum())}

"""Greedy semantic dedup of MiniLM embeddings at a cosine threshold (curate.steps.dedup)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from platypus.fields import SIMILARITY, DedupKeep, DedupScreen, Search, positive, ranged, unit_interval
from platypus.stages.curate.approximate import approximate_dedup
from platypus.stages.curate.audit import Removal
from platypus.stages.curate.search import use_approximate
from platypus.stages.curate.semantic import semantic_dedup
from platypus.stages.curate.steps import State, Step, row_text


@dataclass
class SemanticDedup(Step):
    label = "semantic_dedup"
    metric = "removed_semantic"
    threshold: float = ranged(0.8, unit_interval, SIMILARITY)
    keep: DedupKeep = DedupKeep.first  # first (the paper) | longest output wins
    block_size: int = ranged(2048, positive)
    # bfloat16 screening pass + exact float32 re-check of close rows: same kept set, ~2-3x faster on CPUs with
    # AMX. auto = on for >= 50,000 rows on such CPUs | off | bfloat16.
    screen: DedupScreen = DedupScreen.auto
    # exact: the blocked greedy pass (cost ~ rows x kept) | approximate: faiss index, candidates re-scored
    # exactly (platypus/stages/curate/search.py) | auto: exact up to curate.search.exact_up_to rows
    search: Search = Search.auto
    # approximate only: also run the exact pass on the first N rows and report the recall of the dropped set
    recall_sample: int = ranged(0, lambda v: v >= 0, "{key}={value} must be >= 0 (0: no sample).")

    def run(self, state: State) -> None:
        embeddings = state.embedded()
        t0 = time.perf_counter()
        lengths = [len(state.row(i)["output"]) for i in range(len(state.current))]
        if use_approximate(self.search, len(embeddings), state.cfg.search.exact_up_to):
            dedup, search = approximate_dedup(embeddings, self.threshold, self.keep, lengths, state.index_params(),
                                              self.recall_sample, log=lambda _: None)
        else:
            dedup = semantic_dedup(embeddings, self.threshold, self.keep, lengths, self.block_size, self.screen)
            search = {"search": "exact"}
        for local in np.flatnonzero(~dedup.keep):
            row, kept = state.row(local), state.row(int(dedup.match[local]))
            state.removed.append(Removal(self.label, row["data_source"], row["instruction"], row_text(kept),
                                         float(dedup.score[local])))
        state.neighbour, state.neighbour_threshold = dedup.score, self.threshold
        state.metrics[self.metric] = int((~dedup.keep).sum())
        state.settings[self.label] = {"threshold": self.threshold, "keep": self.keep, **search}
        state.keep(self.label, dedup.keep, time.perf_counter() - t0)

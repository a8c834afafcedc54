"""Greedy semantic dedup of MiniLM embeddings at a cosine threshold (curate.dedup)."""

from __future__ import annotations

import time

import numpy as np

from platypus.stages.curate.approximate import approximate_dedup
from platypus.stages.curate.audit import Removal
from platypus.stages.curate.search import use_approximate
from platypus.stages.curate.semantic import semantic_dedup
from platypus.stages.curate.steps import State, row_text

SECTION = "dedup"
METRIC = "removed_semantic"


def run(state: State) -> None:
    cfg = state.cfg.dedup
    embeddings = state.embedded()
    t0 = time.perf_counter()
    lengths = [len(state.row(i)["output"]) for i in range(len(state.current))]
    if use_approximate(cfg.search, len(embeddings), state.cfg.search.exact_up_to):
        dedup, search = approximate_dedup(embeddings, cfg.threshold, cfg.keep, lengths, state.index_params(),
                                          cfg.recall_sample, log=lambda _: None)
    else:
        dedup = semantic_dedup(embeddings, cfg.threshold, cfg.keep, lengths, cfg.block_size, cfg.screen)
        search = {"search": "exact"}
    for local in np.flatnonzero(~dedup.keep):
        row, kept = state.row(local), state.row(int(dedup.match[local]))
        state.removed.append(Removal("semantic_dedup", row["data_source"], row["instruction"], row_text(kept),
                                     float(dedup.score[local])))
    state.neighbour = dedup.score
    state.metrics[METRIC] = int((~dedup.keep).sum())
    state.settings["semantic_dedup"] = {"threshold": cfg.threshold, "keep": cfg.keep, **search}
    state.keep("semantic_dedup", dedup.keep, time.perf_counter() - t0)

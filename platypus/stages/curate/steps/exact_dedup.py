"""Exact dedup on (instruction, input), keeping the longest output (curate.exact_dedup)."""

from __future__ import annotations

import time

from platypus.stages.curate.audit import Removal
from platypus.stages.curate.exact import exact_dedup
from platypus.stages.curate.steps import State, row_text

SECTION = "exact_dedup"
METRIC = "removed_exact"


def run(state: State) -> None:
    t0 = time.perf_counter()
    exact = exact_dedup([state.row(i) for i in range(len(state.current))],
                        state.cfg[SECTION].normalise_whitespace)
    for local, winner in exact.removed.items():
        row = state.row(local)
        state.removed.append(Removal("exact_dedup", row["data_source"], row["instruction"], row_text(state.row(winner)), None))
    state.metrics[METRIC] = len(exact.removed)
    state.keep("exact_dedup", exact.kept, time.perf_counter() - t0)

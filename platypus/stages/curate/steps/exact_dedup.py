"""Exact dedup on (instruction, input), keeping the longest output (curate.steps.exact_dedup)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from platypus.stages.curate.audit import Removal
from platypus.stages.curate.exact import exact_dedup
from platypus.stages.curate.steps import State, Step, row_text


@dataclass
class ExactDedup(Step):
    label = "exact_dedup"
    metric = "removed_exact"
    # false: the authors' key, f"{instruction}-{input}" as is (merged_largest_keep.py; curate=notebook)
    normalise_whitespace: bool = True

    def run(self, state: State) -> None:
        t0 = time.perf_counter()
        exact = exact_dedup([state.row(i) for i in range(len(state.current))], self.normalise_whitespace)
        for local, winner in exact.removed.items():
            row = state.row(local)
            state.removed.append(Removal(self.label, row["data_source"], row["instruction"],
                                         row_text(state.row(winner)), None))
        state.metrics[self.metric] = len(exact.removed)
        state.keep(self.label, exact.kept, time.perf_counter() - t0)

"""A curate step: drop the rows whose output is shorter than ``min_chars`` characters."""

import time
from dataclasses import dataclass

from platypus.stages.curate.audit import Removal
from platypus.stages.curate.steps import State, Step


@dataclass
class ShortOutputs(Step):
    label = "short_outputs"
    metric = "removed_short"
    min_chars: int = 2

    def __post_init__(self):
        if self.min_chars < 1:
            raise ValueError(f"min_chars={self.min_chars} must be >= 1")

    def run(self, state: State) -> None:
        t0 = time.perf_counter()
        kept = []
        for local in range(len(state.current)):
            row = state.row(local)
            if len(row["output"]) >= self.min_chars:
                kept.append(local)
            else:
                state.removed.append(Removal(self.label, row["data_source"], row["instruction"],
                                             f"output {row['output']!r}", None))
        state.metrics[self.metric] = len(state.current) - len(kept)
        state.settings[self.label] = {"min_chars": self.min_chars}
        state.keep(self.label, kept, time.perf_counter() - t0)

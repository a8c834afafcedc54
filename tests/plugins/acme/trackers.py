"""A tracker that appends every logged metric to a JSONL file."""

import json
from dataclasses import dataclass
from pathlib import Path

from platypus.runtime.tracking import Tracker


@dataclass
class JsonlTracker(Tracker):
    file: str = "metrics.jsonl"

    def start(self, name, run_dir, run_config, group, job_type) -> None:
        self.path = Path(run_dir) / self.file

    def log(self, metrics) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics, default=str) + "\n")

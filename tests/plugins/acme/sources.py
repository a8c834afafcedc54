"""A data source kind: instructions generated on the fly (times tables), no file needed."""

from dataclasses import dataclass
from typing import Iterator

from platypus.data.kinds import Record, SourceKind


@dataclass
class TimesTables(SourceKind):
    up_to: int = 6

    def records(self, path: str, key: str) -> Iterator[Record]:
        for a in range(2, self.up_to + 1):
            for b in range(2, self.up_to + 1):
                yield Record(f"times-tables row {a}x{b}",
                             {"instruction": f"What is {a} times {b}?", "input": "", "output": str(a * b)})

    def identity(self, path: str) -> dict:
        return {"times_tables": self.up_to}

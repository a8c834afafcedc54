"""Exact dedup on (instruction, input), keeping the longest output (``merged_largest_keep.py``).

Keys are compared after whitespace normalisation (runs collapsed, ends stripped), or as the authors' script
built them, ``f"{instruction}-{input}"`` as is (``curate.steps.exact_dedup.normalise_whitespace=false``). Each group
of duplicates becomes one row: the one with the longest output (ties: the earliest), placed
at the position of the group's *first* occurrence, so the mixture order is preserved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WHITESPACE = re.compile(r"\s+")


@dataclass
class ExactResult:
    kept: list[int]  # indices of the kept rows, in output order
    removed: dict[int, int]  # removed row index -> index of the kept row it duplicates


def normalise(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def dedup_key(row: dict, normalise_whitespace: bool = True) -> tuple[str, str] | str:
    if normalise_whitespace:
        return normalise(row["instruction"]), normalise(row["input"])
    return f"{row['instruction']}-{row['input']}"  # merged_largest_keep.py's unique_key


def exact_dedup(rows: list[dict], normalise_whitespace: bool = True) -> ExactResult:
    groups: dict[tuple[str, str] | str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(dedup_key(row, normalise_whitespace), []).append(i)
    kept: list[int] = []
    removed: dict[int, int] = {}
    for members in groups.values():  # dicts keep insertion order: first occurrences in order
        winner = max(members, key=lambda i: (len(rows[i]["output"]), -i))
        kept.append(winner)
        removed.update({i: winner for i in members if i != winner})
    return ExactResult(kept, removed)

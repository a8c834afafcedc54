"""The benchmark test questions: the one place curate learns what it must not train on."""

from __future__ import annotations

import gzip
import json
from typing import Any

from platypus.fields import BenchmarkSource
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256
from platypus.resources import BENCHMARKS, bundled


def load_benchmark_questions(benchmarks_cfg: Any, names: list[str]) -> dict[str, list[str]]:
    """``question_field`` of each named benchmark's ``test_split``, from bundled files or the hub."""
    questions: dict[str, list[str]] = {}
    for name in names:
        if name not in benchmarks_cfg.sets:
            raise PlatypusError(
                f"Benchmark '{name}' (curate.benchmarks) is not defined in benchmarks.sets; "
                f"valid names: {', '.join(sorted(benchmarks_cfg.sets))}."
            )
        bench = benchmarks_cfg.sets[name]
        bundled_copy = benchmarks_cfg.source == BenchmarkSource.bundled
        records = _bundled_records(name, bench) if bundled_copy else _hub_records(name, bench)
        questions[name] = [_question(r, name, bench.question_field) for r in records]
    return questions


def _bundled_records(name: str, bench: Any) -> list[dict]:
    if bench.test_split not in bench.files:
        raise PlatypusError(
            f"benchmarks.sets.{name}.files has no file for test_split '{bench.test_split}' "
            f"(it has: {', '.join(bench.files) or 'none'}); add it or use benchmarks=hub."
        )
    path = bundled(BENCHMARKS, bench.files[bench.test_split])
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _hub_records(name: str, bench: Any) -> Any:
    from datasets import load_dataset

    try:
        return load_dataset(bench.hub_path, bench.hub_name, split=bench.test_split)
    except Exception as exc:  # network, unknown id, unknown split: all user-fixable
        raise PlatypusError(
            f"Could not load benchmark '{name}' from the hub ({bench.hub_path}, {bench.hub_name}, split "
            f"{bench.test_split}): {type(exc).__name__}: {exc}. Check the network / HF_HUB_OFFLINE, or use benchmarks=bundled."
        ) from None


def _question(record: dict, name: str, field: str) -> str:
    if field not in record:
        raise PlatypusError(
            f"benchmarks.sets.{name}.question_field={field!r} is not a field of its test records "
            f"(fields: {', '.join(record)})."
        )
    return str(record[field])


def benchmark_identity(benchmarks_cfg: Any, names: list[str]) -> dict[str, dict]:
    """The named benchmarks' test questions by content: sha256 of a bundled file, or hub id + name + split."""
    found: dict[str, dict] = {}
    for name in names:
        bench = benchmarks_cfg.sets.get(name)
        if bench is None:
            continue  # unknown name: loading the questions says so, with the valid ones
        if benchmarks_cfg.source == BenchmarkSource.bundled and bench.test_split in bench.files:
            file = bench.files[bench.test_split]
            found[name] = {"bundled": file, "sha256": file_sha256(bundled(BENCHMARKS, file))}
        else:
            found[name] = {"hub_id": bench.hub_path, "name": bench.hub_name, "split": bench.test_split}
    return found

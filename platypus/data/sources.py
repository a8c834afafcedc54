"""Load a data mixture (``conf/data``) into rows ``{instruction, input, output, data_source}``.

Every source is read record by record so that a bad record can be named by file and line;
the per-source filters (keywords, fraction, max_rows) and the mixture-level ``sample`` are
seeded, so the same config and seed always give the same rows in the same order.
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any, Iterator

from platypus.config import DataConfig
from platypus.data.kinds import Record, kind_of
from platypus.fields import OnBadRow, validate
from platypus.runtime.errors import PlatypusError

TARGET_FIELDS = ("instruction", "input", "output")
BAD_ROW_EXAMPLES = 20


class BadRow(Exception):
    """A record that cannot become a training row (unparseable, missing field, empty text)."""


def check_mixture(data_cfg: Any) -> None:
    """The mixture's settings that need no file (sources listed, field maps, the schema's ranges): checked at
    the start of the run and again when the mixture is loaded."""
    if not data_cfg.sources:
        raise PlatypusError(
            f"data.sources of data mixture '{data_cfg.name}' is empty; list at least one source "
            f"(see conf/data/ for examples)."
        )
    for name, src in data_cfg.sources.items():
        key = f"data.sources.{name}"
        fields = dict(src.fields)
        for required in ("instruction", "output"):
            if required not in fields:
                raise PlatypusError(
                    f"{key}.fields has no mapping for '{required}' (it maps {fields}); add one, e.g. "
                    f"+{key}.fields.{required}=<column of the source>."
                )
        kind_of(src, key)  # a kind's unknown keys or wrong types: refused before any work
    validate(data_cfg, DataConfig, "data.")  # fraction, max_rows, sample: the schema's ranges


def load_mixture(data_cfg: Any, on_bad_row: str, seed: int) -> tuple[list[dict], dict]:
    """All rows of ``data_cfg.sources`` in source order, and a report of what each step kept."""
    check_mixture(data_cfg)
    rows: list[dict] = []
    report: dict[str, Any] = {"sources": {}}
    for name, src in data_cfg.sources.items():
        source_rows, source_report = _load_source(name, src, on_bad_row, seed)
        rows.extend(source_rows)
        report["sources"][name] = source_report
    report["rows_before_sample"] = len(rows)
    if data_cfg.sample is not None:
        rows = _sample_in_order(rows, data_cfg.sample, random.Random(f"{seed}:sample"))
    report["sample"] = data_cfg.sample
    report["total"] = len(rows)
    if not rows:
        raise PlatypusError(
            f"Data mixture '{data_cfg.name}' is empty after filtering (see the per-source counts: "
            f"{ {n: r['after_cap'] for n, r in report['sources'].items()} }); relax data.sources.*.keywords, "
            "fraction or max_rows."
        )
    return rows, report


def _load_source(name: str, src: Any, on_bad_row: str, seed: int) -> tuple[list[dict], dict]:
    key = f"data.sources.{name}"
    fields = dict(src.fields)  # required mappings, fraction and max_rows: checked by check_mixture
    rows: list[dict] = []
    bad: list[str] = []
    n_read = 0
    try:
        for record in _records(src, key):
            n_read += 1
            try:
                rows.append(_to_row(record, fields, src.data_source or name))
            except BadRow as exc:
                message = f"{record.where}: {exc}"
                if on_bad_row == OnBadRow.error:
                    raise PlatypusError(
                        f"Bad row in source {key} at {message}. Fix the file (or the column mapping {key}.fields), "
                        "or set curate.on_bad_row=skip to drop such rows (they are counted and listed in the curate "
                        "report)."
                    ) from None
                bad.append(message)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:  # unreadable file: permissions, broken gzip
        raise PlatypusError(
            f"Data file '{src.path}' (config key {key}.path) could not be read after {n_read} record(s): "
            f"{type(exc).__name__}: {exc}. Check that the file is readable and complete (a .gz must be a whole gzip "
            f"file), or point {key}.path at another file."
        ) from None
    rows = _keyword_filter(rows, list(src.keywords))
    after_keywords = len(rows)
    if src.fraction is not None:
        rows = _sample_in_order(rows, round(src.fraction * len(rows)), random.Random(f"{seed}:{name}"))
    if src.max_rows is not None:
        rows = rows[: src.max_rows]
    report = {
        "path": str(src.path),
        **kind_of(src, key).resolved(str(src.path)),
        "rows_read": n_read,
        "bad_rows": len(bad),
        "bad_row_examples": bad[:BAD_ROW_EXAMPLES],
        "after_keywords": after_keywords,
        "after_cap": len(rows),
    }
    return rows, report


def _to_row(record: Record, fields: dict[str, str], default_source: str) -> dict:
    if isinstance(record.value, Exception):
        raise BadRow(f"unreadable record ({record.value})")
    if not isinstance(record.value, dict):
        raise BadRow(f"expected a JSON object, got {type(record.value).__name__}")
    row = {}
    for target in TARGET_FIELDS:
        column = fields.get(target)
        if column is None or (target == "input" and column not in record.value):
            row[target] = ""  # `input` is optional: Alpaca-style files omit empty inputs
            continue
        if column not in record.value:
            raise BadRow(f"missing field '{column}' (mapped to '{target}')")
        value = record.value[column]
        row[target] = "" if value is None else str(value)
    for target in ("instruction", "output"):
        if not row[target].strip():
            raise BadRow(f"empty {target} (column '{fields[target]}')")
    source_column = fields.get("data_source")
    mapped = record.value.get(source_column) if source_column else None
    row["data_source"] = default_source if not mapped else str(mapped)
    return row


def _keyword_filter(rows: list[dict], keywords: list[str]) -> list[dict]:
    """Rows whose instruction or input contains one of ``keywords`` as a whole word."""
    if not keywords:
        return rows
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)
    return [r for r in rows if pattern.search(r["instruction"] + "\n" + r["input"])]


def _sample_in_order(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """``n`` rows chosen at random, kept in their original order."""
    if n >= len(rows):
        return rows
    chosen = sorted(rng.sample(range(len(rows)), n))
    return [rows[i] for i in chosen]


# --------------------------------------------------------------------------- source kinds (platypus/data/kinds.py)
def _records(src: Any, key: str) -> Iterator[Record]:
    return kind_of(src, key).records(str(src.path), key)


def mixture_identity(data_cfg: Any) -> dict[str, dict]:
    """Every source by content: sha256 of a bundled or local file, id + split + revision of a hub dataset."""
    return {name: kind_of(src, f"data.sources.{name}").identity(str(src.path)) for name, src in data_cfg.sources.items()}

"""Data source kinds: where a ``data.sources.<name>`` reads its records. Each kind is a plug-in (``platypus.plugins``):
a dataclass named by ``_target_`` under ``data.sources.<name>.kind``, whose fields are its parameters, e.g.

    kind: {_target_: platypus.data.kinds.HubDataset, split: train, revision: 7ba4746}

Without ``kind`` the source's ``path`` chooses one: ``bundled:<file>`` a :class:`BundledFile`, an existing or
file-like path a :class:`LocalFile`, anything else a :class:`HubDataset` (train split, newest revision). A kind of
your own subclasses :class:`SourceKind` (``records`` and ``identity``) and may live in your own package.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from platypus.plugins import build
from platypus.resources import BUNDLED_PREFIX, DATASETS, bundled
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


@dataclass(frozen=True)
class Record:
    """One raw record and where it came from (``where`` is ``file:line`` or ``id[split] row i``)."""

    where: str
    value: Any  # a dict, or an Exception when the record could not be parsed


@dataclass
class SourceKind:
    """Where a source's records come from: ``records`` reads them, ``identity`` says what they are by content (the
    curate stage's key and manifest). ``path`` is the source's ``data.sources.<name>.path``, ``key`` that config key."""

    def records(self, path: str, key: str) -> Iterator[Record]:
        raise NotImplementedError

    def identity(self, path: str) -> dict:
        raise NotImplementedError

    def resolved(self, path: str) -> dict:
        """What was read, as far as ``identity`` could not know it before (the curate load report records it)."""
        return {}


@dataclass
class BundledFile(SourceKind):
    """A file shipped in platypus/resources/datasets (``path: bundled:<file>``)."""

    def file(self, path: str) -> Path:
        return bundled(DATASETS, path[len(BUNDLED_PREFIX):] if path.startswith(BUNDLED_PREFIX) else path)

    def records(self, path: str, key: str) -> Iterator[Record]:
        return read_file(self.file(path))

    def identity(self, path: str) -> dict:
        return {"bundled": path, "sha256": file_sha256(self.file(path))}


@dataclass
class LocalFile(SourceKind):
    """A .json/.jsonl/.parquet/.csv file (optionally .gz) on this machine."""

    def records(self, path: str, key: str) -> Iterator[Record]:
        local = Path(path).expanduser()
        if not local.is_file():
            raise PlatypusError(
                f"Data file '{path}' (config key {key}.path) does not exist. Give an existing "
                ".json/.jsonl/.parquet/.csv file (optionally .gz), bundled:<file>, or a hub dataset id."
            )
        return read_file(local)

    def identity(self, path: str) -> dict:
        local = Path(path).expanduser()
        return {"path": str(local.resolve()), "sha256": file_sha256(local)} if local.is_file() else {"missing": path}


@dataclass
class HubDataset(SourceKind):
    """A dataset on the Hugging Face hub (``path`` is its id), read with ``datasets.load_dataset``."""

    split: str = "train"
    revision: Optional[str] = None  # a branch, tag or commit; null: the newest

    def records(self, path: str, key: str) -> Iterator[Record]:
        from datasets import load_dataset

        try:
            dataset = load_dataset(path, split=self.split, revision=self.revision)
        except Exception as exc:  # network, unknown id, unknown split or revision: all user-fixable
            at = f" at revision '{self.revision}'" if self.revision else ""
            raise PlatypusError(
                f"Could not load hub dataset '{path}' split '{self.split}'{at} ({type(exc).__name__}: {exc}). Check "
                f"the id ({key}.path), split and revision ({key}.kind), your network / HF_HUB_OFFLINE setting, or "
                "point the source at a local file."
            ) from None
        for i, value in enumerate(dataset):
            yield Record(f"{path}[{self.split}] row {i}", value)

    def identity(self, path: str) -> dict:
        return {"hub_id": path, "split": self.split, "revision": self.revision}

    def resolved(self, path: str) -> dict:
        """The commit ``revision`` named when the rows were read (None offline: then the cached copy was read)."""
        from huggingface_hub import dataset_info

        try:
            return {"resolved_revision": dataset_info(path, revision=self.revision).sha}
        except Exception:  # noqa: BLE001 - offline, no network: best effort, as the identity of a hub model is
            return {"resolved_revision": None}


def kind_of(src: Any, key: str) -> SourceKind:
    """The source's kind: built from ``src.kind`` (checked: unknown keys, wrong types), else chosen by its path."""
    if src.get("kind"):
        return build(src.kind, SourceKind, f"{key}.kind")
    path = str(src.path)
    if path.startswith(BUNDLED_PREFIX):
        return BundledFile()
    if Path(path).expanduser().exists() or _is_local_name(path):
        return LocalFile()
    return HubDataset()


def _is_local_name(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith(LOCAL_SUFFIXES) or path.startswith(("/", "./", "../", "~"))


def read_file(path: Path) -> Iterator[Record]:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        return _read_jsonl(path)
    if name.endswith(".json"):
        return _read_json(path)
    if name.endswith(".parquet"):
        import pandas as pd

        return _frame_records(pd.read_parquet(path), f"{path}:row ", first_row=1)
    if name.endswith(".csv"):
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return _frame_records(frame, f"{path}:", first_row=2)  # line 1 is the header
    raise PlatypusError(f"Data file '{path}' has an unknown format; use .json, .jsonl, .parquet or .csv (optionally .gz).")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[Record]:
    """Line by line as bytes, so that a line that is not UTF-8 is named by its number like any bad row."""
    with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield Record(f"{path}:{line_no}", ValueError(f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
                continue
            if not line.strip():
                continue
            try:
                value: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                value = exc
            yield Record(f"{path}:{line_no}", value)


def _read_json(path: Path) -> Iterator[Record]:
    with _open_text(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise PlatypusError(
                f"Data file '{path}' is not valid JSON (line {exc.lineno}: {exc.msg}); fix it or convert it to JSONL."
            ) from None
    if not isinstance(data, list):
        raise PlatypusError(f"Data file '{path}' must hold a JSON array of objects (or be JSONL).")
    for i, value in enumerate(data):
        yield Record(f"{path}:item {i}", value)


def _frame_records(frame: Any, prefix: str, first_row: int) -> Iterator[Record]:
    for i, value in enumerate(frame.to_dict(orient="records")):
        yield Record(f"{prefix}{i + first_row}", value)

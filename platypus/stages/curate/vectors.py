"""Embeddings too large for RAM: one float16 file on disk, read in chunks.

``VectorFile`` is a raw little-endian float16 array of ``(rows, dim)`` (10M x 384 is 7.7 GB) plus a small
JSON header; reads go through ``np.fromfile`` (not a memory map), so the pages read do not stay in this
process's resident set. ``fill_chunked`` writes it chunk by chunk: each chunk is computed, written to its
own file and atomically renamed, so a run killed half-way redoes only the unfinished chunk; the chunks are
joined into the one file at the end. ``InMemory`` gives an ndarray the same reading interface.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

DTYPE = np.float16


class InMemory:
    """An (n, dim) array read as fp32 chunks (the interface of ``VectorFile``)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.rows, self.dim = array.shape

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self.array[start:stop], dtype=np.float32)

    def take(self, ids: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.array[ids], dtype=np.float32)


class VectorFile:
    """A float16 ``(rows, dim)`` file at ``path`` (header at ``path.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        header = json.loads(self.path.with_suffix(".json").read_text())
        self.rows, self.dim = header["rows"], header["dim"]

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.rows)
        row_bytes = self.dim * np.dtype(DTYPE).itemsize
        with open(self.path, "rb") as handle:
            handle.seek(start * row_bytes)
            chunk = np.fromfile(handle, dtype=DTYPE, count=(stop - start) * self.dim)
        return chunk.reshape(-1, self.dim).astype(np.float32)

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (a map opened and closed for this gather only)."""
        mapped = np.memmap(self.path, dtype=DTYPE, mode="r", shape=(self.rows, self.dim))
        try:
            return np.asarray(mapped[np.asarray(ids)], dtype=np.float32)
        finally:
            del mapped


def write_header(path: Path, rows: int, dim: int) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"rows": rows, "dim": dim, "dtype": "float16"}))
    os.replace(tmp, path.with_suffix(".json"))


def fill_chunked(path: Path, rows: int, dim: int, compute: Callable[[int, int], np.ndarray],
                 chunk_rows: int = 65_536) -> VectorFile:
    """Write ``compute(start, stop)`` for every chunk into the file ``path``; resumable (see module doc)."""
    path = Path(path)
    if path.with_suffix(".json").is_file():
        return VectorFile(path)
    parts = path.parent / f"{path.name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    starts = range(0, rows, chunk_rows)
    for start in starts:
        part = parts / f"{start:012d}.npy"
        if part.is_file():
            continue  # finished before a kill
        block = np.asarray(compute(start, min(start + chunk_rows, rows)), dtype=DTYPE)
        tmp = parts / f".{start:012d}.tmp.npy"
        np.save(tmp, block)
        os.replace(tmp, part)
    tmp_path = path.with_name(path.name + ".tmp")
    with open(tmp_path, "wb") as out:
        for start in starts:
            np.load(parts / f"{start:012d}.npy").tofile(out)
    os.replace(tmp_path, path)
    write_header(path, rows, dim)
    for part in parts.iterdir():
        part.unlink()
    parts.rmdir()
    return VectorFile(path)

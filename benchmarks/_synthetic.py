"""Clustered unit 384-d vectors with planted near-duplicates, written as a float16 ``VectorFile``.

Rows are drawn around ``n / 1000`` random cluster centres (cosine to a same-cluster row ~0.3, far below the
threshold), and 5% of rows are replaced by a noisy copy of an earlier row with cosine ~0.80-0.97 to it: the
planted pairs, saved beside the file (``.planted.npy``: later row, its source). Built chunk by chunk, so
10M rows (7.7 GB) never sit in RAM; the same seed gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from platypus.stages.curate.vectors import VectorFile, fill_chunked

DIM = 384
PLANTED_SHARE = 0.05
CHUNK_ROWS = 65_536  # planted pairs stay within one chunk, so a chunk is generated alone
CLUSTER_WEIGHT = 0.55  # share of a row's norm along its centre: same-cluster cosine ~0.3


def centres(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((max(16, n // 1000), DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def base_rows(start: int, stop: int, cs: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, start])
    which = rng.integers(0, len(cs), stop - start)
    noise = rng.standard_normal((stop - start, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    rows = CLUSTER_WEIGHT * cs[which] + np.sqrt(1 - CLUSTER_WEIGHT**2) * noise
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def planted_pairs(n: int, seed: int) -> np.ndarray:
    """(copies, 2): row, the earlier row of its chunk that it copies (sources are never copies themselves)."""
    rng = np.random.default_rng([seed, 1])
    copies = np.sort(rng.choice(np.arange(1, n), size=int(n * PLANTED_SHARE), replace=False))
    first = copies // CHUNK_ROWS * CHUNK_ROWS
    copies = copies[copies > first]
    first = copies // CHUNK_ROWS * CHUNK_ROWS
    sources = first + (rng.random(len(copies)) * (copies - first)).astype(np.int64)
    is_copy = np.zeros(n, bool)
    is_copy[copies] = True
    ok = ~is_copy[sources]
    return np.stack([copies[ok], sources[ok]], axis=1)


def make(path: Path, n: int, seed: int = 0) -> tuple[VectorFile, np.ndarray]:
    path = Path(path)
    cs = centres(n, seed)
    planted = planted_pairs(n, seed)
    planted_file = path.with_name(path.name + ".planted.npy")
    if not planted_file.is_file():
        np.save(planted_file, planted)

    def chunk(start: int, stop: int) -> np.ndarray:
        rows = base_rows(start, stop, cs, seed)
        inside = planted[(planted[:, 0] >= start) & (planted[:, 0] < stop)]
        if len(inside):
            rng = np.random.default_rng([seed, 2, start])
            sources = rows[inside[:, 1] - start]  # read before any copy is written: sources are not copies
            sigma = rng.uniform(0.25, 0.7, (len(inside), 1)).astype(np.float32)
            noise = rng.standard_normal((len(inside), DIM)).astype(np.float32) / np.sqrt(DIM)
            copy = sources + sigma * noise
            rows[inside[:, 0] - start] = copy / np.linalg.norm(copy, axis=1, keepdims=True)
        return rows

    return fill_chunked(path, n, DIM, chunk, CHUNK_ROWS), planted


"""Greedy semantic dedup (the paper's rule), computed in blocks of matrix products.

The paper walks the rows in order and keeps a row only if its cosine similarity to every row
kept so far is below the threshold. We give exactly that kept set, but per block of rows:
1. similarities of the block against every row kept before the block (chunked matrix
   products) remove the rows that already collide with an earlier kept row;
2. the survivors' block-internal similarity matrix resolves the greedy order exactly: a row
   is kept iff no *kept* earlier row of the block reaches the threshold, so only rows that
   collide with a later one need a sequential step.
The naive loop costs a Python iteration and a growing vector product per row; this costs
one matrix product per (block, kept chunk).

Screening (``screen="bfloat16"``, the default for large sets on CPUs with AMX): step 1 runs
as a bf16 product (~3x faster) that only *screens*; every row whose bf16 maximum comes within
``SCREEN_MARGIN`` of the threshold is re-scored exactly in fp32 against all kept rows. For unit
vectors the bf16 error of a cosine is below 2**-8 * 2 + output rounding (< 0.006), so the margin of
0.02 cannot change a decision: the kept set stays identical. Only the audit value of rows that
are clearly below the threshold (their nearest kept predecessor) is then the bf16 estimate, with
``match`` -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from platypus.fields import DedupKeep, DedupScreen

KEPT_CHUNK_ELEMENTS = 1 << 25  # block x kept-chunk similarity entries per product (128 MiB)
SCREEN_MARGIN = 0.02
SCREEN_AUTO_ROWS = 50_000  # below this the exact pass takes seconds: no screening


def use_screen(screen: str, n: int) -> bool:
    if DedupScreen(screen) == DedupScreen.auto:
        from platypus.runtime.hardware import cpu_has_native_bf16

        return n >= SCREEN_AUTO_ROWS and cpu_has_native_bf16()
    return screen == DedupScreen.bfloat16


@dataclass
class DedupResult:
    """Per row, in the original order.

    ``match`` is the most similar row among those kept *before this row was decided* (for a
    removed row: the kept row it collided with; for a kept row: its nearest kept predecessor,
    below the threshold), -1 when none; ``score`` is that similarity (nan when none).
    """

    keep: np.ndarray  # bool (n,)
    match: np.ndarray  # int64 (n,)
    score: np.ndarray  # float32 (n,)


def processing_order(keep: str, output_lengths: list[int] | np.ndarray | None, n: int) -> np.ndarray:
    """``first``: original order; ``longest``: decreasing output length, ties by original order."""
    if DedupKeep(keep) == DedupKeep.first:
        return np.arange(n)
    if output_lengths is None or len(output_lengths) != n:
        raise ValueError("keep='longest' needs one output length per row")
    return np.argsort(-np.asarray(output_lengths, dtype=np.int64), kind="stable")


def semantic_dedup(
    embeddings: np.ndarray,
    threshold: float,
    keep: str = "first",
    output_lengths: list[int] | np.ndarray | None = None,
    block_size: int = 2048,
    screen: str = "off",
) -> DedupResult:
    """Greedy dedup of L2-normalised ``embeddings``: same kept set as the row-by-row loop."""
    n, dim = embeddings.shape
    screener = _Bf16Screen(n, dim) if use_screen(screen, n) else None
    order = processing_order(keep, output_lengths, n)
    ordered = np.ascontiguousarray(embeddings[order], dtype=np.float32)
    kept = np.empty((n, dim), dtype=np.float32)  # kept vectors, in processing order
    kept_pos = np.empty(n, dtype=np.int64)  # their positions in `ordered`
    n_kept = 0
    keep_mask = np.zeros(n, dtype=bool)
    best = np.full(n, -np.inf, dtype=np.float32)
    match = np.full(n, -1, dtype=np.int64)  # positions in `ordered`
    thr = np.float32(threshold)
    for start in range(0, n, block_size):
        block = ordered[start : start + block_size]
        b = len(block)
        if screener is None:
            score, arg = _best_against(block, kept[:n_kept])
        else:
            score, arg = screener.best_against(block, kept[:n_kept], thr)
        best[start : start + b] = score
        match[start : start + b] = np.where(arg >= 0, kept_pos[np.maximum(arg, 0)], -1)
        cand = np.flatnonzero(score < thr)
        alive = np.zeros(0, dtype=bool)
        if len(cand):
            within = block[cand] @ block[cand].T
            alive = _resolve_greedy(within >= thr)
            # Within-block nearest kept predecessor, to complete best/match of every candidate.
            earlier_kept = np.triu(np.ones_like(within, dtype=bool), k=1) & alive[:, None]
            masked = np.where(earlier_kept, within, -np.inf)
            inner_arg = masked.argmax(axis=0)
            inner_best = masked[inner_arg, np.arange(len(cand))]
            better = inner_best > score[cand]
            best[start + cand[better]] = inner_best[better]
            match[start + cand[better]] = start + cand[inner_arg[better]]
        winners = cand[alive]
        keep_mask[start + winners] = True
        kept[n_kept : n_kept + len(winners)] = block[winners]
        if screener is not None:
            screener.add(n_kept, block[winners])
        kept_pos[n_kept : n_kept + len(winners)] = start + winners
        n_kept += len(winners)
    result = DedupResult(np.zeros(n, bool), np.full(n, -1, np.int64), np.full(n, np.nan, np.float32))
    result.keep[order] = keep_mask
    result.match[order] = np.where(match >= 0, order[np.maximum(match, 0)], -1)
    result.score[order] = np.where(np.isfinite(best), best, np.nan)
    return result


def _best_against(block: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max similarity of each block row to the kept rows and the kept index reaching it."""
    score = np.full(len(block), -np.inf, dtype=np.float32)
    arg = np.full(len(block), -1, dtype=np.int64)
    chunk = max(1, KEPT_CHUNK_ELEMENTS // max(1, len(block)))
    for k0 in range(0, len(kept), chunk):
        sims = block @ kept[k0 : k0 + chunk].T
        chunk_arg = sims.argmax(axis=1)
        chunk_best = sims[np.arange(len(block)), chunk_arg]
        better = chunk_best > score
        score[better] = chunk_best[better]
        arg[better] = k0 + chunk_arg[better]
    return score, arg


class _Bf16Screen:
    """A bf16 copy of the kept rows; screens a block, then re-scores the close rows exactly."""

    def __init__(self, n: int, dim: int):
        import torch

        self.torch = torch
        self.kept = torch.empty((n, dim), dtype=torch.bfloat16)

    def add(self, start: int, rows: np.ndarray) -> None:
        self.kept[start : start + len(rows)] = self.torch.from_numpy(rows).to(self.torch.bfloat16)

    def best_against(self, block: np.ndarray, kept: np.ndarray, thr: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Exact best score/match for every row within SCREEN_MARGIN of the threshold (only kept rows
        within the margin can reach it), the bf16 estimate and -1 for the others."""
        torch = self.torch
        score = np.full(len(block), -np.inf, dtype=np.float32)
        arg = np.full(len(block), -1, dtype=np.int64)
        if not len(kept):
            return score, arg
        query = torch.from_numpy(block).to(torch.bfloat16)
        floor = float(thr) - SCREEN_MARGIN
        chunk = max(1, KEPT_CHUNK_ELEMENTS // max(1, len(block)))
        estimate = np.full(len(block), -np.inf, dtype=np.float32)
        exact = np.full(len(block), -np.inf, dtype=np.float32)
        for k0 in range(0, len(kept), chunk):
            sims = query @ self.kept[k0 : min(k0 + chunk, len(kept))].T
            estimate = np.maximum(estimate, sims.amax(dim=1).float().numpy())
            close = np.flatnonzero(estimate >= floor)
            if not len(close):
                continue
            rows, cols = (sims[torch.from_numpy(close)] >= floor).nonzero(as_tuple=True)
            rows, cols = close[rows.numpy()], k0 + cols.numpy()
            values = np.einsum("ij,ij->i", block[rows], kept[cols])  # exact fp32 re-score of the close pairs
            for row, col, value in zip(rows, cols, values):
                if value > exact[row]:
                    exact[row], arg[row] = value, col
        known = arg >= 0
        score[known] = exact[known]
        score[~known] = estimate[~known]
        return score, arg


def _resolve_greedy(collides: np.ndarray) -> np.ndarray:
    """Exact greedy order within a block: row j survives iff no surviving i < j collides with it.

    Rows that collide with no later row cannot remove anything, so only the others are
    visited, in order; when row i is visited every row before it is already final.
    """
    later = np.triu(collides, k=1)
    alive = np.ones(len(collides), dtype=bool)
    for i in np.flatnonzero(later.any(axis=1)):
        if alive[i]:
            alive &= ~later[i]
    return alive

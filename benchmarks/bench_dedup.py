"""Blocked greedy semantic dedup vs the paper's loop, then scaling on synthetic vectors.

    HF_HUB_OFFLINE=1 python benchmarks/bench_dedup.py [--cache-dir DIR] [--sizes 10000 100000]

1. All 13,984 rows of the bundled raw rebuild (embedded once, cached): ours vs a faithful
   re-implementation of the paper's loop (sklearn ``cosine_similarity`` of each new row
   against the list of kept rows); asserts the same kept set, prints both times and the ratio.
2. Synthetic L2-normalised vectors (dim 384, ~10% planted near-duplicates of earlier rows),
   each size in a fresh subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_CACHE, MODEL, data_mixture, timed

from platypus.stages.curate.embed import Embedder
from platypus.stages.curate.semantic import semantic_dedup

THRESHOLD = 0.8


def paper_loop(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's rule as it is usually written: one sklearn call per row against the kept list."""
    from sklearn.metrics.pairwise import cosine_similarity

    kept_embeddings: list[np.ndarray] = []
    kept: list[int] = []
    for i, embedding in enumerate(embeddings):
        if not kept_embeddings or cosine_similarity([embedding], kept_embeddings).max() < threshold:
            kept_embeddings.append(embedding)
            kept.append(i)
    return np.array(kept)


def synthetic(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Random unit vectors, ~10% replaced by noisy copies of earlier rows (cosine ~0.78-0.98)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    copies = rng.choice(np.arange(1, n), size=n // 10, replace=False)
    sources = (rng.random(len(copies)) * copies).astype(np.int64)
    sigma = rng.uniform(0.2, 0.8, (len(copies), 1)).astype(np.float32)
    noise = rng.standard_normal((len(copies), dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32)
    vectors[copies] = vectors[sources] + sigma * noise
    vectors[copies] /= np.linalg.norm(vectors[copies], axis=1, keepdims=True)
    return vectors


def real_rows(cache_dir: Path) -> None:
    from platypus.data import load_mixture

    rows, _ = load_mixture(data_mixture("open_platypus_rebuild"), "error", 0)
    texts = [r["instruction"] + " " + r["input"] for r in rows]
    embeddings, seconds = timed(Embedder(MODEL, cache_dir).encode, texts)
    print(f"real: {len(rows)} rows embedded in {seconds:.1f} s (cached after the first run)", flush=True)
    ours, t_ours = timed(semantic_dedup, embeddings, THRESHOLD)
    ours_kept = np.flatnonzero(ours.keep)
    print(f"real: ours kept {len(ours_kept)} in {t_ours:.3f} s", flush=True)
    paper_kept, t_paper = timed(paper_loop, embeddings, THRESHOLD)
    print(f"real: paper loop kept {len(paper_kept)} in {t_paper:.1f} s", flush=True)
    if not np.array_equal(ours_kept, paper_kept):
        differ = np.setxor1d(ours_kept, paper_kept)
        raise AssertionError(f"kept sets differ on {len(differ)} rows: {differ[:20]}")
    print(f"real: same kept set; speed-up {t_paper / t_ours:.0f}x", flush=True)


def one_synthetic(n: int, check: bool, screen: str, compare_exact: bool) -> None:
    vectors = synthetic(n)
    start = time.perf_counter()
    result = semantic_dedup(vectors, THRESHOLD, screen=screen)
    seconds = time.perf_counter() - start
    peak_gib = peak_rss_kib() / 2**20
    line = f"synthetic n={n} screen={screen}: kept {int(result.keep.sum())} in {seconds:.2f} s, peak RSS {peak_gib:.2f} GiB"
    if compare_exact:
        exact, t_exact = timed(semantic_dedup, vectors, THRESHOLD, screen="off")
        assert np.array_equal(exact.keep, result.keep), "screened != exact fp32"
        line += f"; exact fp32 pass {t_exact:.1f} s, same kept set ({t_exact / seconds:.1f}x)"
    if check:
        naive, t_naive = timed(naive_loop, vectors, THRESHOLD)
        assert np.array_equal(naive, result.keep), "blocked != naive loop"
        line += f"; naive numpy loop {t_naive:.1f} s, same kept set"
    print(line, flush=True)


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM, reset by exec unlike ru_maxrss, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # non-Linux fallback


def naive_loop(vectors: np.ndarray, threshold: float) -> np.ndarray:
    kept = np.empty_like(vectors)
    mask = np.zeros(len(vectors), bool)
    n_kept = 0
    for i, v in enumerate(vectors):
        if n_kept == 0 or (kept[:n_kept] @ v).max() < threshold:
            kept[n_kept] = v
            n_kept += 1
            mask[i] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--screen", default="auto", help="curate.dedup.screen for the synthetic sizes (auto|off|bf16)")
    parser.add_argument("--compare-exact-up-to", type=int, default=100_000,
                        help="also run the unscreened fp32 pass up to this size and assert the same kept set")
    parser.add_argument("--synthetic", type=int, help=argparse.SUPPRESS)  # one size, in a subprocess
    args = parser.parse_args()
    if args.synthetic:
        one_synthetic(args.synthetic, args.synthetic <= 10_000, args.screen,
                      args.screen != "off" and args.synthetic <= args.compare_exact_up_to)
        return
    if not args.skip_real:
        real_rows(args.cache_dir)
    for n in args.sizes:
        subprocess.run([sys.executable, __file__, "--synthetic", str(n), "--screen", args.screen,
                        "--compare-exact-up-to", str(args.compare_exact_up_to)], check=True)


if __name__ == "__main__":
    main()

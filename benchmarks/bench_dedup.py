"""Semantic dedup: exact vs approximate search, on the bundled rows and on synthetic sets up to 10M rows.

    HF_HUB_OFFLINE=1 python benchmarks/bench_dedup.py [--cache-dir DIR] [--sizes 1000000 10000000]
        [--exact-up-to 200000] [--recall-sample 200000] [--data-dir /tmp/curate-bench]

1. All 13,984 rows of the bundled raw rebuild (embedded once, cached): the paper's loop (sklearn
   ``cosine_similarity`` per row against the kept list), the exact blocked pass and the approximate search;
   asserts that all three keep the same rows.
2. Synthetic clustered unit vectors with planted near-duplicates (_synthetic.py; float16 files under
   --data-dir, reused by later runs). Each (size, search) runs in a child process, so its wall time, CPU time
   and peak RSS are its own. Exact runs only up to --exact-up-to rows. Approximate runs report the recall of
   the dropped set and the rows dropped that exact keeps, against an exact pass over the first
   --recall-sample rows (a prefix decides alone), and the share of planted copies dropped.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_CACHE, MODEL, data_mixture, timed

from platypus.stages.curate.approximate import approximate_dedup
from platypus.stages.curate.embed import Embedder
from platypus.stages.curate.search import IndexParams
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


def real_rows(cache_dir: Path) -> None:
    from platypus.data import load_mixture

    rows, _ = load_mixture(data_mixture("open_platypus_rebuild"), "error", 0)
    embeddings, seconds = timed(Embedder(MODEL, cache_dir).encode, [r["instruction"] + " " + r["input"] for r in rows])
    print(f"real: {len(rows)} rows embedded in {seconds:.1f} s (cached after the first run)", flush=True)
    ours, t_ours = timed(semantic_dedup, embeddings, THRESHOLD)
    (approx, report), t_approx = timed(approximate_dedup, embeddings, THRESHOLD, log=lambda _: None)
    paper_kept, t_paper = timed(paper_loop, embeddings, THRESHOLD)
    for name, kept in (("paper loop", paper_kept), ("approximate", np.flatnonzero(approx.keep))):
        if not np.array_equal(np.flatnonzero(ours.keep), kept):
            raise AssertionError(f"{name}: kept set differs from the exact pass on {len(np.setxor1d(ours.keep, kept))} rows")
    print(f"real: all three keep the same {int(ours.keep.sum())} rows; exact {t_ours:.2f} s, approximate "
          f"{t_approx:.2f} s ({report['index']}, nprobe {report['nprobe']}), paper loop {t_paper:.1f} s", flush=True)


def one_run(n: int, search: str, data_dir: Path, recall_sample: int, nprobe: int) -> dict:
    from _synthetic import make

    vectors, planted = make(data_dir / f"synthetic-{n}.f16", n)
    wall, cpu = time.perf_counter(), time.process_time()
    if search == "exact":
        result = semantic_dedup(vectors.read(0, n), THRESHOLD)
        report = {}
    else:
        result, report = approximate_dedup(vectors, THRESHOLD, params=IndexParams(nprobe=nprobe),
                                           recall_sample=recall_sample)
    return {"rows": n, "search": search, "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(time.process_time() - cpu, 1), "peak_rss_gib": round(peak_rss_kib() / 2**20, 2),
            "dropped": int((~result.keep).sum()), "planted_dropped": round(float((~result.keep[planted[:, 0]]).mean()), 5),
            **report}


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM, reset by exec unlike ru_maxrss, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # non-Linux fallback


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/curate-bench"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--exact-up-to", type=int, default=200_000)
    parser.add_argument("--recall-sample", type=int, default=200_000)
    parser.add_argument("--nprobe", type=int, default=IndexParams.nprobe)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # size, search: in a child process
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_run(int(args.one[0]), args.one[1], args.data_dir, args.recall_sample,
                                             args.nprobe)), flush=True)
        return
    if not args.skip_real:
        real_rows(args.cache_dir)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for search in ("exact", "approximate") if n <= args.exact_up_to else ("approximate",):
            subprocess.run([sys.executable, __file__, "--one", str(n), search, "--data-dir", str(args.data_dir),
                            "--recall-sample", str(args.recall_sample), "--nprobe", str(args.nprobe)], check=True)


if __name__ == "__main__":
    main()

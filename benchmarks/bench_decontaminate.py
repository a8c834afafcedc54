"""Contamination filter at full size: every bundled benchmark test question (~26k) against the training rows.

    HF_HUB_OFFLINE=1 python benchmarks/bench_decontaminate.py [--cold] [--cache-dir DIR]

All pairs are scored in blocks (platypus.stages.curate.decontaminate); reported: the time and the peak memory of
the search alone (tracemalloc of numpy's buffers), the process's peak RSS, and -- separately, since they are
the floor any method pays -- the embedding time of each side. ``--cold`` embeds both sides into a fresh cache
(minutes on a 2-core CPU); by default the cache is warm, as on every curate run after the first.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from _common import DEFAULT_CACHE, MODEL, bundled_benchmarks, data_mixture, timed

from platypus.stages.curate.decontaminate import decontaminate
from platypus.stages.curate.embed import Embedder
from platypus.data import load_benchmark_questions, load_mixture

THRESHOLD = 0.8


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cold", action="store_true", help="embed into a fresh temporary cache")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="platypus-cold-")) if args.cold else args.cache_dir
    rows, _ = load_mixture(data_mixture("open_platypus_rebuild"), "error", 0)
    cfg = bundled_benchmarks()
    questions = load_benchmark_questions(cfg, list(cfg.sets))
    if args.cold:  # really cold: not even the shipped seed of benchmark-question embeddings
        Embedder._import_seed = lambda self: None
    embedder = Embedder(MODEL, cache)
    train, t_train = timed(embedder.encode, [r["instruction"] + " " + r["input"] for r in rows])
    bench, t_bench = timed(lambda: {name: embedder.encode(q) for name, q in questions.items()})
    n_questions = sum(len(q) for q in questions.values())
    state = "cold" if args.cold else "warm cache"
    print(f"embedding ({state}): {len(rows):,} training rows {t_train:.1f} s; {n_questions:,} test questions {t_bench:.1f} s")

    tracemalloc.start()
    found, t_search = timed(decontaminate, train, bench, THRESHOLD, "all")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pairs = len(train) * n_questions
    print(f"search: {pairs / 1e6:,.0f} M pairs ({len(train):,} x {n_questions:,}) in {t_search:.2f} s "
          f"({pairs / t_search / 1e6:,.0f} M pairs/s), peak search memory {peak / 2**20:,.0f} MiB; "
          f"process peak RSS {peak_rss_gib():.2f} GiB")
    for policy in ("all", "nearest_only"):
        print(f"  policy {policy}: {found.totals[policy]} rows flagged {found.counts[policy]}")
    print(f"  rows at >= {THRESHOLD} to some question: {int((found.nearest >= THRESHOLD).sum())}; "
          f"max similarity {float(np.max(found.nearest)):.4f}")
    if args.cold:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()

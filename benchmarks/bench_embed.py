"""Cold vs warm (cached) embedding of every bundled benchmark test question (~26k texts).

    HF_HUB_OFFLINE=1 python benchmarks/bench_embed.py [--cache-dir DIR]

Cold uses a fresh cache folder; warm re-reads it, which is what every later curate run pays.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import MODEL, bundled_benchmarks, timed

from platypus.stages.curate.embed import Embedder
from platypus.data import load_benchmark_questions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", type=Path, default=None, help="kept for later runs (default: a temp folder)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="platypus-embed-"))
    shutil.rmtree(cache / "embeddings", ignore_errors=True)
    cfg = bundled_benchmarks()
    questions = load_benchmark_questions(cfg, list(cfg.sets))
    total = sum(len(q) for q in questions.values())
    print({name: len(q) for name, q in questions.items()}, "total", total)
    for label in ("cold", "warm"):
        embedder = Embedder(MODEL, cache, args.batch_size)
        _, seconds = timed(lambda: [embedder.encode(q) for q in questions.values()])
        print(f"{label}: {seconds:.1f} s ({total / seconds:.0f} texts/s)", flush=True)


if __name__ == "__main__":
    main()

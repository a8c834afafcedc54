"""Embedding throughput of the bundled 13,984 training rows, and whether cheaper vectors change decisions.

    HF_HUB_OFFLINE=1 python benchmarks/bench_embed.py [--cache-dir DIR] [--rows 2000] [--modes fp32 fp32x2 bf16]

Throughput: the first --rows bundled rows in each mode, side by side in one run (a fresh cache each, so every
text is embedded):
- ``fp32``: one process, float32 (the default; "before");
- ``fp32x2``: sentence-transformers' multi-process pool with two CPU processes (curate.embedding.processes=2);
- ``bf16``: the model cast to bfloat16 (fast only on CPUs with native bf16 matrix units).
Decisions: the share of rows whose semantic-dedup decision (kept/dropped at 0.8) or contamination decision
(against the shipped float16 embeddings of the bundled benchmark questions, at 0.8) equals fp32's: for
float16 storage on all 13,984 rows (or --agreement-rows; fp32 vectors from --cache-dir, embedded there once), for the other modes
on the --rows rows they embedded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import DEFAULT_CACHE, MODEL, bundled_benchmarks, data_mixture, timed

from platypus.data import load_benchmark_questions, load_mixture
from platypus.stages.curate.decontaminate import decontaminate
from platypus.stages.curate.embed import Embedder
from platypus.stages.curate.semantic import semantic_dedup

THRESHOLD = 0.8


def embed(texts: list[str], mode: str) -> tuple[np.ndarray, float]:
    embedder = Embedder(MODEL, Path(tempfile.mkdtemp(prefix="platypus-embed-")), processes=2 if mode == "fp32x2" else 1)
    if mode == "bf16":
        import torch
        from sentence_transformers import SentenceTransformer

        embedder._model = SentenceTransformer(embedder.location, device="cpu").to(torch.bfloat16)
    return timed(embedder.encode, texts)


def decisions(vectors: np.ndarray, questions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return semantic_dedup(vectors, THRESHOLD).keep, decontaminate(vectors, questions, THRESHOLD).remove


def agreement(label: str, vectors: np.ndarray, reference: tuple, questions: dict[str, np.ndarray]) -> str:
    keep, remove = decisions(vectors, questions)
    return (f"{label} on {len(vectors)} rows: dedup decisions agree {np.mean(keep == reference[0]):.5f}, "
            f"contamination {np.mean(remove == reference[1]):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--rows", type=int, default=2000, help="rows embedded per mode for throughput")
    parser.add_argument("--agreement-rows", type=int, default=None, help="rows for fp16 storage (default: all)")
    parser.add_argument("--modes", nargs="*", default=["fp32", "fp32x2", "bf16"])
    args = parser.parse_args()
    rows, _ = load_mixture(data_mixture("open_platypus_rebuild"), "error", 0)
    texts = [r["instruction"] + " " + r["input"] for r in rows[: args.agreement_rows]]
    cfg = bundled_benchmarks()
    seeded = Embedder(MODEL, Path(tempfile.mkdtemp(prefix="platypus-embed-")))  # shipped question vectors
    questions = {name: seeded.encode(q) for name, q in load_benchmark_questions(cfg, list(cfg.sets)).items()}
    full, seconds = timed(Embedder(MODEL, args.cache_dir).encode, texts)
    print(f"fp32 vectors of all {len(texts)} rows in {seconds:.1f} s (from {args.cache_dir})", flush=True)
    print(agreement("fp16 storage", full.astype(np.float16).astype(np.float32), decisions(full, questions), questions))
    subset = texts[: args.rows]
    reference = decisions(full[: args.rows], questions)
    for mode in args.modes:
        vectors, seconds = embed(subset, mode)
        print(f"{mode}: {len(subset)} rows in {seconds:.1f} s ({len(subset) / seconds:.1f} rows/s); "
              + agreement(mode, vectors, reference, questions), flush=True)


if __name__ == "__main__":
    main()

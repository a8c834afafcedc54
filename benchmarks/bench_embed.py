"""Embedding throughput of the bundled 13,984 training rows, and whether cheaper vectors change decisions.

    HF_HUB_OFFLINE=1 python benchmarks/bench_embed.py [--rows 13984] [--modes fp32 fp32x2 bf16]

Modes, side by side in one run (a fresh cache each, so every text is embedded):
- ``fp32``: one process, float32 (the default; "before");
- ``fp32x2``: sentence-transformers' multi-process pool with two CPU processes (curate.embedding.processes=2);
- ``bf16``: the model cast to bfloat16 (fast only on CPUs with native bf16 matrix units).
For each mode and for float16 storage of the fp32 vectors: the share of rows whose semantic-dedup decision
(kept/dropped at 0.8) or contamination decision (against the shipped float16 embeddings of the bundled
benchmark questions, at 0.8) differs from fp32's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import MODEL, bundled_benchmarks, data_mixture, timed

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=None, help="the first N bundled rows (default: all)")
    parser.add_argument("--modes", nargs="*", default=["fp32", "fp32x2", "bf16"])
    args = parser.parse_args()
    rows, _ = load_mixture(data_mixture("open_platypus_rebuild"), "error", 0)
    texts = [r["instruction"] + " " + r["input"] for r in rows[: args.rows]]
    cfg = bundled_benchmarks()
    seeded = Embedder(MODEL, Path(tempfile.mkdtemp(prefix="platypus-embed-")))  # shipped question vectors
    questions = {name: seeded.encode(q) for name, q in load_benchmark_questions(cfg, list(cfg.sets)).items()}
    reference = None
    for mode in args.modes:
        vectors, seconds = embed(texts, mode)
        line = f"{mode}: {len(texts)} rows in {seconds:.1f} s ({len(texts) / seconds:.1f} rows/s)"
        variants = {mode: vectors}
        if mode == "fp32":
            reference = decisions(vectors, questions)
            variants = {"fp16 storage": vectors.astype(np.float16).astype(np.float32)}
        for label, v in variants.items():
            if reference is not None:
                keep, remove = decisions(v, questions)
                line += (f"; {label}: dedup decisions agree {np.mean(keep == reference[0]):.5f}, "
                         f"contamination {np.mean(remove == reference[1]):.5f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()

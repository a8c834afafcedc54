"""The curate stage: exact dedup -> semantic dedup -> contamination filter -> audit files.

Each step is a plain function in its own module (usable alone); ``run_curate`` validates the
config, runs the enabled steps in the paper's order, and embeds only what they need.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from platypus.curate.audit import (
    Removal,
    write_removed_csv,
    write_report,
    write_similarity_hist,
    write_train_jsonl,
)
from platypus.curate.decontaminate import POLICIES, decontaminate, ngram_contamination
from platypus.curate.embed import Embedder
from platypus.curate.exact import exact_dedup
from platypus.curate.semantic import KEEP_POLICIES, semantic_dedup
from platypus.errors import PlatypusError

__all__ = ["run_curate", "validate"]


def validate(cfg: Any) -> None:
    """Refuse out-of-range thresholds and unknown policies before any work starts."""
    for key, value in (("dedup.threshold", cfg.dedup.threshold), ("decontaminate.threshold", cfg.decontaminate.threshold)):
        if not 0 < value <= 1:
            raise PlatypusError(
                f"curate.{key}={value} is outside (0, 1]; it is a cosine similarity: set curate.{key} to a value "
                f"in (0, 1], e.g. curate.{key}=0.8 (the paper's)."
            )
    for key, value, known in (
        ("dedup.keep", cfg.dedup.keep, KEEP_POLICIES),
        ("decontaminate.policy", cfg.decontaminate.policy, POLICIES),
        ("on_bad_row", cfg.on_bad_row, ("error", "skip")),
    ):
        if value not in known:
            raise PlatypusError(f"curate.{key}={value!r} is not known; use one of {', '.join(known)} (curate.{key}=...).")
    for key, value in (("dedup.block_size", cfg.dedup.block_size), ("embedding.batch_size", cfg.embedding.batch_size)):
        if value < 1:
            raise PlatypusError(f"curate.{key}={value} must be a positive integer; set curate.{key}=<n >= 1>.")
    if cfg.decontaminate.ngram is not None and cfg.decontaminate.ngram < 1:
        raise PlatypusError(f"curate.decontaminate.ngram={cfg.decontaminate.ngram} must be a positive integer or null.")


def run_curate(
    cfg: Any, rows: list[dict], benchmark_questions: dict[str, list[str]], out_dir: Path, cache_dir: Path
) -> dict:
    """Curate ``rows``; write report.json, removed.csv, similarity_hist.png, train.jsonl; return metrics."""
    validate(cfg)
    decon = cfg.decontaminate
    if decon.enabled and not any(benchmark_questions.values()):
        raise PlatypusError(
            "curate.decontaminate.enabled is true but no benchmark test questions were given "
            "(curate.decontaminate.benchmarks is empty?); list benchmarks or set curate.decontaminate.enabled=false."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    removed: list[Removal] = []
    current = list(range(len(rows)))  # indices into `rows` still kept
    steps: list[dict] = [_step_record("load", rows, current, current, 0.0)]
    embedder = None
    if cfg.dedup.enabled or decon.enabled:
        emb_cfg = cfg.embedding
        embedder = Embedder(emb_cfg.model, Path(cache_dir), emb_cfg.batch_size, emb_cfg.device)
    embeddings = None
    neighbour = benchmark_nearest = None
    settings: dict[str, Any] = {}  # per-step thresholds, policies and counts, for report.json

    if cfg.exact_dedup.enabled:
        t0 = time.perf_counter()
        exact = exact_dedup([rows[i] for i in current])
        for local, winner in exact.removed.items():
            row, kept = rows[current[local]], rows[current[winner]]
            removed.append(Removal("exact_dedup", row["data_source"], row["instruction"], _row_text(kept), None))
        before, current = current, [current[i] for i in exact.kept]
        timings["exact_dedup"] = time.perf_counter() - t0
        steps.append(_step_record("exact_dedup", rows, before, current, timings["exact_dedup"]))

    if cfg.dedup.enabled:
        t0 = time.perf_counter()
        embeddings = embedder.encode(_texts(rows, current))
        timings["embed_train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dedup = semantic_dedup(
            embeddings,
            cfg.dedup.threshold,
            cfg.dedup.keep,
            [len(rows[i]["output"]) for i in current],
            cfg.dedup.block_size,
            cfg.dedup.screen,
        )
        for local in np.flatnonzero(~dedup.keep):
            row, kept = rows[current[local]], rows[current[dedup.match[local]]]
            removed.append(
                Removal("semantic_dedup", row["data_source"], row["instruction"], _row_text(kept), float(dedup.score[local]))
            )
        neighbour = dedup.score
        before, current = current, [current[i] for i in np.flatnonzero(dedup.keep)]
        embeddings = embeddings[dedup.keep]
        timings["semantic_dedup"] = time.perf_counter() - t0
        steps.append(_step_record("semantic_dedup", rows, before, current, timings["semantic_dedup"]))
        settings["semantic_dedup"] = {"threshold": cfg.dedup.threshold, "keep": cfg.dedup.keep}

    contamination_metrics: dict[str, int] = {}
    if decon.enabled:
        t0 = time.perf_counter()
        if embeddings is None:
            embeddings = embedder.encode(_texts(rows, current))
        bench_embeddings = {name: embedder.encode(qs) for name, qs in benchmark_questions.items() if qs}
        timings["embed_benchmarks"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = decontaminate(embeddings, bench_embeddings, decon.threshold, decon.policy)
        drop = found.remove.copy()
        for local in np.flatnonzero(found.remove):
            row, name = rows[current[local]], found.benchmark[local]
            question = benchmark_questions[name][found.question[local]]
            removed.append(
                Removal("decontaminate", row["data_source"], row["instruction"], f"{name}: {question}", float(found.score[local]))
            )
        ngram_report = None
        if decon.ngram:
            hits = ngram_contamination(_texts(rows, current), benchmark_questions, decon.ngram)
            only = {i: hit for i, hit in hits.items() if not drop[i]}
            for local, (name, q) in only.items():
                row = rows[current[local]]
                removed.append(
                    Removal("decontaminate_ngram", row["data_source"], row["instruction"], f"{name}: {benchmark_questions[name][q]}", None)
                )
                drop[local] = True
            ngram_report = {"n": decon.ngram, "flagged": len(hits), "removed_only_by_ngram": len(only)}
            contamination_metrics["contamination_ngram"] = len(hits)
            contamination_metrics["removed_ngram_only"] = len(only)
        benchmark_nearest = found.nearest
        before, current = current, [current[i] for i in np.flatnonzero(~drop)]
        timings["decontaminate"] = time.perf_counter() - t0
        steps.append(_step_record("decontaminate", rows, before, current, timings["decontaminate"]))
        settings["decontaminate"] = {
            "threshold": decon.threshold,
            "policy": decon.policy,
            "benchmark_questions": {name: len(qs) for name, qs in benchmark_questions.items()},
            "rows_flagged_per_policy": found.counts,
            "rows_flagged_total_per_policy": found.totals,
            "ngram": ngram_report,
        }
        contamination_metrics.update({f"contamination_{b}": c for b, c in found.counts[decon.policy].items()})
        contamination_metrics.update({f"contamination_total_{p}": c for p, c in found.totals.items()})

    kept_rows = [rows[i] for i in current]
    timings["total"] = time.perf_counter() - started
    report = {
        "rows_in": len(rows),
        "kept": len(kept_rows),
        "steps": steps,
        **settings,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    write_train_jsonl(out_dir / "train.jsonl", kept_rows)
    write_removed_csv(out_dir / "removed.csv", removed)
    write_report(out_dir / "report.json", report)
    write_similarity_hist(
        out_dir / "similarity_hist.png",
        neighbour,
        cfg.dedup.threshold if cfg.dedup.enabled else None,
        benchmark_nearest,
        decon.threshold if decon.enabled else None,
    )
    removed_by = Counter(r.step for r in removed)
    return {
        "rows_in": len(rows),
        "kept": len(kept_rows),
        "removed_exact": removed_by["exact_dedup"],
        "removed_semantic": removed_by["semantic_dedup"],
        "removed_contamination": removed_by["decontaminate"] + removed_by["decontaminate_ngram"],
        **contamination_metrics,
        **{f"seconds_{k}": round(v, 3) for k, v in timings.items()},
    }


def _texts(rows: list[dict], indices: list[int]) -> list[str]:
    """What is embedded: ``instruction + " " + input``, as the paper does."""
    return [rows[i]["instruction"] + " " + rows[i]["input"] for i in indices]


def _row_text(row: dict) -> str:
    return (row["instruction"] + " " + row["input"]).strip()


def _step_record(step: str, rows: list[dict], before: list[int], after: list[int], seconds: float) -> dict:
    """Rows in/out of one step, overall and per data_source."""
    rows_in = Counter(rows[i]["data_source"] for i in before)
    rows_out = Counter(rows[i]["data_source"] for i in after)
    return {
        "step": step,
        "rows_in": len(before),
        "rows_out": sum(rows_out.values()),
        "seconds": round(seconds, 3),
        "per_source": {s: {"in": rows_in[s], "out": rows_out[s]} for s in sorted(rows_in)},
    }

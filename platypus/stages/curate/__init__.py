"""The curate stage's work: the steps of ``curate.steps`` in order, then the audit files.

Each step is a :class:`~platypus.stages.curate.steps.Step` named by ``_target_`` in ``curate.steps`` (the
algorithms live in exact.py, semantic.py, decontaminate.py, usable alone); ``run_curate`` checks the config,
builds the listed steps and runs them in the configured order, embeds only when a step needs it, and writes train.jsonl, removed.csv, report.json and
similarity_hist.png.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from platypus.config import CurateConfig
from platypus.fields import validate
from platypus.runtime.errors import PlatypusError
from platypus.stages.curate import steps as curate_steps
from platypus.stages.curate.audit import write_removed_csv, write_report, write_similarity_hist, write_train_jsonl
from platypus.stages.curate.embed import Embedder

__all__ = ["check", "needs_questions", "run_curate"]


def check(cfg: Any) -> None:
    """The curate settings (choices and ranges of the schema, known step names), before any work starts."""
    validate(cfg, CurateConfig, "curate.")
    curate_steps.build_all(cfg)


def needs_questions(cfg: Any) -> bool:
    """Some listed step compares rows with the benchmarks' test questions."""
    return any(step.needs_questions for step in curate_steps.build_all(cfg))


def run_curate(
    cfg: Any, rows: list[dict], benchmark_questions: dict[str, list[str]], out_dir: Path, cache_dir: Path
) -> dict:
    """Curate ``rows``; write report.json, removed.csv, similarity_hist.png, train.jsonl; return metrics."""
    validate(cfg, CurateConfig, "curate.")
    steps = curate_steps.build_all(cfg)
    if any(step.needs_questions for step in steps) and not any(benchmark_questions.values()):
        named = [name for name, step in zip(cfg.steps, steps) if step.needs_questions]
        raise PlatypusError(
            f"curate.steps {named} compare the rows with benchmark test questions, but none were given "
            f"(curate.benchmarks is empty?); list benchmarks in curate.benchmarks or remove the step "
            f"(~curate.steps.{named[0]})."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    emb = cfg.embedding
    state = curate_steps.State(cfg, rows, benchmark_questions,
                               lambda: Embedder(emb.model, Path(cache_dir), emb.batch_size, emb.device, emb.processes))
    for step in steps:
        state.metrics.setdefault(step.metric, 0)
        step.run(state)
    kept_rows = [rows[i] for i in state.current]
    state.timings["total"] = time.perf_counter() - started
    report = {"rows_in": len(rows), "kept": len(kept_rows), "steps": state.steps, **state.settings,
              "timings_s": {k: round(v, 3) for k, v in state.timings.items()}}
    write_train_jsonl(out_dir / "train.jsonl", kept_rows)
    write_removed_csv(out_dir / "removed.csv", state.removed)
    write_report(out_dir / "report.json", report)
    write_similarity_hist(out_dir / "similarity_hist.png", state.neighbour, state.neighbour_threshold,
                          state.benchmark_nearest, state.benchmark_threshold)
    return {"rows_in": len(rows), "kept": len(kept_rows), **state.metrics,
            **{f"seconds_{k}": round(v, 3) for k, v in state.timings.items()}}

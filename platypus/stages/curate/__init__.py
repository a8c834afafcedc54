"""The curate stage's work: the steps of ``curate.steps`` in order, then the audit files.

Each step is a module of ``platypus/stages/curate/steps/`` (usable alone: the algorithms live in
exact.py, semantic.py, decontaminate.py); ``run_curate`` checks the config, runs the enabled steps in the
configured order, embeds only when a step needs it, and writes train.jsonl, removed.csv, report.json and
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
    for name in cfg.steps:
        curate_steps.get(name)


def needs_questions(cfg: Any) -> bool:
    """Some enabled step compares rows with the benchmarks' test questions."""
    return any(getattr(curate_steps.get(n), "NEEDS_QUESTIONS", False) and curate_steps.enabled(cfg, n) for n in cfg.steps)


def run_curate(
    cfg: Any, rows: list[dict], benchmark_questions: dict[str, list[str]], out_dir: Path, cache_dir: Path
) -> dict:
    """Curate ``rows``; write report.json, removed.csv, similarity_hist.png, train.jsonl; return metrics."""
    check(cfg)
    if needs_questions(cfg) and not any(benchmark_questions.values()):
        raise PlatypusError(
            "curate.decontaminate.enabled is true but no benchmark test questions were given "
            "(curate.decontaminate.benchmarks is empty?); list benchmarks or set curate.decontaminate.enabled=false."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    emb = cfg.embedding
    state = curate_steps.State(cfg, rows, benchmark_questions,
                               lambda: Embedder(emb.model, Path(cache_dir), emb.batch_size, emb.device, emb.processes))
    for name in cfg.steps:
        module = curate_steps.get(name)
        state.metrics.setdefault(module.METRIC, 0)
        if curate_steps.enabled(cfg, name):
            module.run(state)
    kept_rows = [rows[i] for i in state.current]
    state.timings["total"] = time.perf_counter() - started
    report = {"rows_in": len(rows), "kept": len(kept_rows), "steps": state.steps, **state.settings,
              "timings_s": {k: round(v, 3) for k, v in state.timings.items()}}
    write_train_jsonl(out_dir / "train.jsonl", kept_rows)
    write_removed_csv(out_dir / "removed.csv", state.removed)
    write_report(out_dir / "report.json", report)
    write_similarity_hist(out_dir / "similarity_hist.png", state.neighbour,
                          cfg.dedup.threshold if state.neighbour is not None else None, state.benchmark_nearest,
                          cfg.decontaminate.threshold if state.benchmark_nearest is not None else None)
    return {"rows_in": len(rows), "kept": len(kept_rows), **state.metrics,
            **{f"seconds_{k}": round(v, 3) for k, v in state.timings.items()}}

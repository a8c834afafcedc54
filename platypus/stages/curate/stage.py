"""The curate stage: a data mixture in, the curated ``train.jsonl`` (and its audit) out."""

from __future__ import annotations

from dataclasses import dataclass

import csv
import json
from pathlib import Path

from platypus.data.benchmarks import benchmark_identity, load_benchmark_questions
from platypus.data.sources import check_mixture, load_mixture, mixture_identity
from platypus.stages.base import Artifact, Stage
from platypus.stages.curate import check, needs_questions, run_curate


def question_sets(cfg) -> list[str]:
    """The benchmarks whose test questions the listed steps compare the rows with: curate.benchmarks, or when it is
    null the benchmarks.sets entries whose facts.decontaminate is true."""
    if not needs_questions(cfg.curate):
        return []
    if cfg.curate.benchmarks is not None:
        return list(cfg.curate.benchmarks)
    return [name for name, bench in cfg.benchmarks.sets.items() if bench.facts.decontaminate]


def curate_inputs(cfg) -> dict:
    """What curate reads, by content: every source file (hub sources: id + split), and the benchmark test
    files the contamination steps compare against."""
    return {"sources": mixture_identity(cfg.data), "benchmark_questions": benchmark_identity(cfg.benchmarks,
                                                                                            question_sets(cfg))}


@dataclass
class CurateStage(Stage):
    sections = ("data", "curate", "benchmarks", "seed")
    produces = {Artifact.dataset: "train.jsonl"}

    def check(self, cfg) -> None:
        check_mixture(cfg.data)
        check(cfg.curate)

    def identity(self, cfg, inputs) -> dict:
        return curate_inputs(cfg)

    def run(self, cfg, inputs, out: Path, run) -> dict:
        rows, load_report = load_mixture(cfg.data, cfg.curate.on_bad_row, cfg.seed)
        questions = load_benchmark_questions(cfg.benchmarks, question_sets(cfg))
        metrics = run_curate(cfg.curate, rows, questions, out, Path(cfg.cache_dir))
        (out / "load_report.json").write_text(json.dumps(load_report, indent=2))
        return metrics

    def log(self, run, folder: Path, manifest: dict) -> None:
        metrics = {f"curate/{k}": v for k, v in manifest["metrics"].items() if isinstance(v, (int, float))}
        metrics["curate/removed"] = manifest["metrics"].get("rows_in", 0) - manifest["metrics"].get("kept", 0)
        run.tracker.log(metrics)
        with open(folder / "removed.csv", encoding="utf-8", newline="") as handle:
            removed = list(csv.reader(handle))
        if removed:
            run.tracker.table("curate/removed", removed[0], removed[1:])
        run.tracker.image("curate/similarity_hist", folder / "similarity_hist.png")

    def summary_row(self, folder: Path, manifest: dict) -> dict:
        metrics = manifest.get("metrics", {})
        row = {"curate_kept": metrics.get("kept")}
        if "rows_in" in metrics and "kept" in metrics:
            row["curate_removed"] = metrics["rows_in"] - metrics["kept"]
        row.update({f"curate_{name}": value for name, value in metrics.items() if name.startswith("removed_")})
        return row

    def plan(self, cfg, model, made):
        from platypus.planning import CHARS_PER_TOKEN, StagePlan, hub_sources, training_tokens

        if not hub_sources(cfg):
            return StagePlan()
        rows, mean_tokens, _ = training_tokens(cfg)
        return StagePlan(downloads=[(f"data {cfg.data.name}", rows * mean_tokens * CHARS_PER_TOKEN / 1e9,
                                     f"{rows:,} rows x ~{mean_tokens:.0f} tokens")])

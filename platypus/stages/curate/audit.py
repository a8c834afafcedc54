"""What curate kept and why it removed the rest: files a human can review, as the paper did."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRUNCATE = 300
REMOVED_COLUMNS = ("step", "data_source", "instruction", "collided_with", "score")


@dataclass
class Removal:
    step: str  # exact_dedup | semantic_dedup | decontaminate | decontaminate_ngram
    data_source: str
    instruction: str
    collided_with: str  # the kept row's text, or "<benchmark>: <test question>"
    score: float | None  # cosine similarity; None for exact / n-gram matches


def truncate(text: str, limit: int = TRUNCATE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_train_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            record = {k: row[k] for k in ("instruction", "input", "output", "data_source")}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_removed_csv(path: Path, removed: list[Removal]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REMOVED_COLUMNS)
        for r in removed:
            score = "" if r.score is None else f"{r.score:.4f}"
            writer.writerow([r.step, r.data_source, truncate(r.instruction), truncate(r.collided_with), score])


def write_report(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def write_similarity_hist(
    path: Path,
    neighbour: np.ndarray | None,
    dedup_threshold: float | None,
    benchmark: np.ndarray | None,
    contamination_threshold: float | None,
) -> None:
    """Nearest-kept-neighbour and nearest-benchmark similarity distributions with thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (values, thr, title)
        for values, thr, title in (
            (neighbour, dedup_threshold, "nearest kept row (semantic dedup)"),
            (benchmark, contamination_threshold, "nearest benchmark test question"),
        )
        if values is not None
    ]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4), squeeze=False)
    for ax, (values, thr, title) in zip(axes[0], panels):
        finite = values[np.isfinite(values)]
        ax.hist(finite, bins=50, range=(min(-0.2, float(finite.min(initial=0))), 1.0), color="tab:blue")
        ax.axvline(thr, color="tab:red", linestyle="--", label=f"threshold {thr}")
        ax.set(title=title, xlabel="cosine similarity", ylabel="training rows", yscale="log")
        ax.legend()
    if not panels:
        axes[0][0].set_axis_off()
        axes[0][0].text(0.5, 0.5, "no similarity step enabled", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

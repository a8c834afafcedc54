"""The files of a finished evaluate folder, named once: the runner and the stage write them, the stage's summary
row, the sweep report and run comparisons read them."""

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluateFiles:
    results: str = "results.json"  # per model: lm-eval's results and per-document outcomes
    summary: str = "summary.json"  # per model: the v1 numbers, standard errors and paired deltas
    subjects: str = "subjects.json"  # MMLU per category and subject
    table: str = "table.md"
    chart: str = "chart.png"
    published: str = "published_vs_ours.md"  # a paper preset's published numbers beside ours


FILES = EvaluateFiles()

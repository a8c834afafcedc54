"""Runs against each other: each run's final model against the first run's, paired on the documents both were
scored on (a sweep summary's ``vs_ref`` columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from platypus.runtime.io import MANIFEST, read_json
from platypus.stages.evaluate import stats
from platypus.stages.evaluate.aggregate import AVERAGE, v1_average_tasks
from platypus.stages.evaluate.documents import task_items
from platypus.stages.evaluate.files import FILES
from platypus.stages.evaluate.report import delta_columns



def final_items(folder: Path) -> tuple[str, dict] | None:
    """(label, {task: {stratum: {doc id: value}}}) of the last model a finished evaluate folder scored (merged,
    else adapter, else base: what the run produced)."""
    results, manifest = read_json(folder / FILES.results), read_json(folder / MANIFEST)
    if not results or not manifest:
        return None
    label, result = list(results.items())[-1]
    if "items" not in result:
        return None  # evaluated before per-document outcomes were kept
    return label, task_items(result["items"], manifest["config"]["eval"]["tasks"])


def averaged_tasks(folder: Path) -> tuple[str, ...]:
    """The tasks a finished evaluate folder's v1 average is over (its manifest's eval.tasks and benchmarks.sets)."""
    config = read_json(folder / MANIFEST)["config"]
    return v1_average_tasks(config["eval"]["tasks"], config["benchmarks"]["sets"])


def compare_with_reference(folders: list[Path]) -> list[dict[str, Any]]:
    """Per evaluate folder, its ``vs_ref`` columns (the first: the reference itself)."""
    finals = [final_items(folder) for folder in folders]
    if not finals or finals[0] is None:
        return [{} for _ in folders]
    reference_label, reference = finals[0]
    reference_job = folders[0].parent.name
    columns: list[dict[str, Any]] = [{"vs_ref": f"reference ({reference_label})"}]
    for folder, final in zip(folders[1:], finals[1:]):
        if final is None:
            columns.append({})
            continue
        deltas = stats.compare(reference, final[1], average_of=averaged_tasks(folders[0]), average_key=AVERAGE)
        columns.append({"vs_ref": f"{folder.parent.name}/{final[0]} vs {reference_job}/{reference_label}",
                        **delta_columns("vs_ref", {task: d.as_dict() for task, d in deltas.items()})})
    return columns

"""Run folders: finding them (a sweep's jobs, or any run folders) and reading each into one summary row: its
overrides, what each curate step removed, the train loss, every benchmark metric per model with its paired delta,
the final model against the first job's, wall time and which stages were reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from platypus.config import STAGES
from platypus.fields import DELTA_KEYS

NUMBERS = ("value", "low", "high", "p")  # of a delta, in the csv beside its text

# --------------------------------------------------------------------------- finding run folders
def is_run(folder: Path) -> bool:
    """A run folder holds a stage manifest, a summary.json, or (a job that failed early) .hydra/overrides.yaml."""
    return (any((folder / stage / "manifest.json").is_file() for stage in STAGES)
            or (folder / "summary.json").is_file() or (folder / ".hydra" / "overrides.yaml").is_file())


def find_runs(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """``(given path, run folder)`` for every run folder at or below each path (sweep folders are walked)."""
    found: list[tuple[Path, Path]] = []

    def walk(top: Path, folder: Path) -> None:
        if is_run(folder):
            found.append((top, folder))
            return
        children = [c for c in folder.iterdir() if c.is_dir() and not c.is_symlink()
                    and not c.name.startswith(".") and c.name != "wandb"]
        for child in sorted(children, key=_natural):
            walk(top, child)

    for path in paths:
        path = Path(path)
        if path.is_dir():
            walk(path, path)
    return found


def _natural(path: Path) -> tuple:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


# --------------------------------------------------------------------------- one row per run
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _overrides(folder: Path) -> list[str]:
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml

    loaded = yaml.safe_load(path.read_text()) or []
    return [str(o) for o in loaded]


def read_run(folder: Path, job: str) -> dict[str, Any]:
    manifests = {s: m for s in STAGES if (m := _json(folder / s / "manifest.json")) is not None}
    overrides = _overrides(folder)
    row: dict[str, Any] = {"job": job, "path": str(folder), "overrides": " ".join(overrides), "_overrides": overrides}
    curate = manifests.get("curate", {}).get("metrics", {})
    if curate:
        row["curate_kept"] = curate.get("kept")
        if "rows_in" in curate and "kept" in curate:
            row["curate_removed"] = curate["rows_in"] - curate["kept"]
        row.update({f"curate_{name}": value for name, value in curate.items() if name.startswith("removed_")})
    train = manifests.get("train", {}).get("metrics", {})
    if train:
        row["train_loss"] = train.get("loss")
        row["train_steps"] = train.get("steps")
    summary = _json(folder / "summary.json") or manifests.get("evaluate", {}).get("metrics", {}).get("summary") or {}
    for model, tasks in summary.items():
        if not isinstance(tasks, dict):
            continue
        for task, metrics in tasks.items():
            if task in DELTA_KEYS:  # paired deltas vs the run's first model (and the merged model's vs the merge target)
                row.update(delta_columns(f"{model}/{task}", {t: d for t, d in metrics.items() if t != "reference"}))
            elif isinstance(metrics, dict):
                row.update({f"{model}/{task}/{metric}": value for metric, value in metrics.items()})
            else:
                row[f"{model}/{task}"] = metrics
    reused = [s for s, m in manifests.items() if m.get("reused")]
    row["reused"] = "+".join(reused)
    row["computed"] = "+".join(s for s in manifests if s not in reused)
    # wall time of this job (a reused stage costs its hardlinking), and what its results cost to compute
    row["wall_s"] = round(sum((m.get("reuse_seconds") or 0) if m.get("reused") else (m.get("seconds") or 0)
                              for m in manifests.values()), 2)
    row["compute_s"] = round(sum(m.get("seconds") or 0 for m in manifests.values()), 2)
    return row


def delta_columns(prefix: str, deltas: dict[str, dict]) -> dict[str, Any]:
    """``<prefix>/<task>``: "+0.0310 [-0.0040, +0.0660]*" (summary.md), and its numbers for the csv."""
    from platypus.stages.evaluate.report import delta_text

    out: dict[str, Any] = {}
    for task, delta in deltas.items():
        out[f"{prefix}/{task}"] = delta_text(delta)
        out.update({f"{prefix}/{task}/{k}": delta[k] for k in NUMBERS})
    return out


def final_items(folder: Path) -> tuple[str, dict] | None:
    """(label, {task: {stratum: {doc id: value}}}) of the last model a run evaluated (merged, else adapter,
    else base: what the run produced), from its evaluate/results.json."""
    from platypus.stages.evaluate.documents import task_items

    results = _json(folder / "evaluate" / "results.json")
    manifest = _json(folder / "evaluate" / "manifest.json")
    if not results or not manifest:
        return None
    label, result = list(results.items())[-1]
    if "items" not in result:
        return None  # evaluated before per-document outcomes were kept
    return label, task_items(result["items"], manifest["config"]["eval"]["tasks"])


def compare_with_reference(rows: list[dict[str, Any]], folders: list[Path]) -> None:
    """Each job's final model against the first job's, paired on the documents both were scored on."""
    from platypus.stages.evaluate import stats
    from platypus.stages.evaluate.aggregate import AVERAGE, LEADERBOARD_V1

    finals = [final_items(folder) for folder in folders]
    if not finals or finals[0] is None:
        return
    reference_label, reference = finals[0]
    rows[0]["vs_ref"] = f"reference ({reference_label})"
    for row, final in zip(rows[1:], finals[1:]):
        if final is None:
            continue
        row["vs_ref"] = f"{row['job']}/{final[0]} vs {rows[0]['job']}/{reference_label}"
        deltas = stats.compare(reference, final[1], average_of=LEADERBOARD_V1, average_key=AVERAGE)
        row.update(delta_columns("vs_ref", {task: d.as_dict() for task, d in deltas.items()}))


def collect(paths: Iterable[Path]) -> list[dict[str, Any]]:
    found = find_runs(paths)
    several = len({top for top, _ in found}) > 1
    rows = []
    for top, folder in found:
        job = folder.relative_to(top).as_posix() if folder != top else folder.name
        if several:
            job = f"{top.name}/{job}" if folder != top else job
        rows.append(read_run(folder, job))
    # the overrides that differ between jobs: what the sweep varied
    split = [dict(o.split("=", 1) if "=" in o else (o, "") for o in row["_overrides"]) for row in rows]
    keys = sorted({k for s in split for k in s})
    varying = [k for k in keys if len({s.get(k) for s in split}) > 1]
    for row, s in zip(rows, split):
        row["swept"] = " ".join(f"{k}={s[k]}" for k in varying if k in s) if len(rows) > 1 else row["overrides"]
    if len(rows) > 1:
        compare_with_reference(rows, [folder for _, folder in found])
    return rows

"""Run folders: finding them (a sweep's jobs, or any run folders) and reading each into one summary row: its
overrides, what each curate step removed, the train loss, every benchmark metric per model with its paired delta,
the final model against the first job's, wall time and which stages were reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig

from platypus import stages
from platypus.runtime.io import MANIFEST, read_json

# --------------------------------------------------------------------------- finding run folders
def is_run(folder: Path) -> bool:
    """A run folder holds a stage manifest, or (a job that failed early) .hydra/overrides.yaml."""
    return any(folder.glob(f"*/{MANIFEST}")) or (folder / ".hydra" / "overrides.yaml").is_file()


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
def _overrides(folder: Path) -> list[str]:
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml

    loaded = yaml.safe_load(path.read_text()) or []
    return [str(o) for o in loaded]


def read_run(cfg: DictConfig, folder: Path, job: str) -> dict[str, Any]:
    """One summary row: the job's overrides, each finished stage's own columns, what was reused and the times."""
    manifests = {s: m for s in stages.known(cfg) if (m := read_json(folder / s / MANIFEST)) is not None}
    overrides = _overrides(folder)
    row: dict[str, Any] = {"job": job, "path": str(folder), "overrides": " ".join(overrides), "_overrides": overrides}
    for name, manifest in manifests.items():
        row.update(stages.get(cfg, name).summary_row(folder / name, manifest))
    reused = [s for s, m in manifests.items() if m.get("reused")]
    row["reused"] = "+".join(reused)
    row["computed"] = "+".join(s for s in manifests if s not in reused)
    # wall time of this job (a reused stage costs its hardlinking), and what its results cost to compute
    row["wall_s"] = round(sum((m.get("reuse_seconds") or 0) if m.get("reused") else (m.get("seconds") or 0)
                              for m in manifests.values()), 2)
    row["compute_s"] = round(sum(m.get("seconds") or 0 for m in manifests.values()), 2)
    return row


def compare_runs(cfg: DictConfig, rows: list[dict[str, Any]], folders: list[Path]) -> None:
    """Each stage's comparison of the runs that finished it, against the first of them."""
    for name in stages.known(cfg):
        finished = [(row, folder / name) for row, folder in zip(rows, folders) if (folder / name / MANIFEST).is_file()]
        if len(finished) > 1:
            columns = stages.get(cfg, name).compare_runs([folder for _, folder in finished])
            for (row, _), extra in zip(finished, columns):
                row.update(extra)


def collect(paths: Iterable[Path], cfg: DictConfig | None = None) -> list[dict[str, Any]]:
    """A summary row per run folder under ``paths``; ``cfg`` names the stage classes (default: the app's config)."""
    if cfg is None:
        from platypus.config import compose

        cfg = compose()
    found = find_runs(paths)
    several = len({top for top, _ in found}) > 1
    rows = []
    for top, folder in found:
        job = folder.relative_to(top).as_posix() if folder != top else folder.name
        if several:
            job = f"{top.name}/{job}" if folder != top else job
        rows.append(read_run(cfg, folder, job))
    # the overrides that differ between jobs: what the sweep varied
    split = [dict(o.split("=", 1) if "=" in o else (o, "") for o in row["_overrides"]) for row in rows]
    keys = sorted({k for s in split for k in s})
    varying = [k for k in keys if len({s.get(k) for s in split}) > 1]
    for row, s in zip(rows, split):
        row["swept"] = " ".join(f"{k}={s[k]}" for k in varying if k in s) if len(rows) > 1 else row["overrides"]
    if len(rows) > 1:
        compare_runs(cfg, rows, [folder for _, folder in found])
    return rows

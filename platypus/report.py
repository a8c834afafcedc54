"""Sweep summary: one row per job (run folder) with its overrides, curate counts, train loss, every
benchmark metric per model, the leaderboard average, wall time and which stages were reused.

    python -m platypus.report multirun/2026-11-22/08-00-00            # -> summary.csv/.md/.png there
    python -m platypus.report outputs/2026-11-2*/* --out comparison/   # any run folders, anywhere

``SweepSummaryCallback`` (registered under ``hydra.callbacks`` in ``conf/config.yaml``) writes the
same files into the sweep folder at the end of every ``--multirun``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterable

from hydra.experimental.callback import Callback

STAGES = ("curate", "train", "merge", "evaluate")
FIXED = ["job", "swept", "vs_ref", "overrides", "curate_kept", "curate_removed", "curate_removed_exact",
         "curate_removed_semantic", "curate_removed_contamination", "train_loss", "train_steps",
         "wall_s", "compute_s", "computed", "reused", "path"]
MODEL_ORDER = ("base", "adapter", "merged", "vs_ref")
NUMBERS = ("value", "low", "high", "p")  # of a delta, in the csv beside its text
HIDDEN = ("stderr",) + NUMBERS  # column endings the csv has and summary.md leaves out


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
        for step in ("exact", "semantic", "contamination"):
            row[f"curate_removed_{step}"] = curate.get(f"removed_{step}")
    train = manifests.get("train", {}).get("metrics", {})
    if train:
        row["train_loss"] = train.get("loss")
        row["train_steps"] = train.get("steps")
    summary = _json(folder / "summary.json") or manifests.get("evaluate", {}).get("metrics", {}).get("summary") or {}
    for model, tasks in summary.items():
        if not isinstance(tasks, dict):
            continue
        for task, metrics in tasks.items():
            if task == "delta":  # paired deltas vs the run's first model
                row.update(delta_columns(f"{model}/delta", {t: d for t, d in metrics.items() if t != "reference"}))
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
    from platypus.evaluate.report import delta_text

    out: dict[str, Any] = {}
    for task, delta in deltas.items():
        out[f"{prefix}/{task}"] = delta_text(delta)
        out.update({f"{prefix}/{task}/{k}": delta[k] for k in NUMBERS})
    return out


def final_items(folder: Path) -> tuple[str, dict] | None:
    """(label, {task: {stratum: {doc id: value}}}) of the last model a run evaluated (merged, else adapter,
    else base: what the run produced), from its evaluate/results.json."""
    from platypus.evaluate.documents import task_items

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
    from platypus.evaluate import stats
    from platypus.evaluate.aggregate import AVERAGE, LEADERBOARD_V1

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


def _model_key(column: str) -> tuple:
    model, _, rest = column.partition("/")
    rank = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    return (rank, model, rest == "leaderboard_avg", rest)


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


# --------------------------------------------------------------------------- writing
def columns(rows: list[dict[str, Any]]) -> list[str]:
    metrics = sorted({k for row in rows for k in row if "/" in k and k not in FIXED}, key=_model_key)
    return FIXED[:FIXED.index("wall_s")] + metrics + FIXED[FIXED.index("wall_s"):]


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if column.endswith("_s") and isinstance(value, (int, float)):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown(rows: list[dict[str, Any]]) -> str:
    shown = [c for c in columns(rows) if c not in ("overrides", "path") and c.rsplit("/", 1)[-1] not in HIDDEN
             and any(row.get(c) not in (None, "") for row in rows)]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(row.get(c), c) for c in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: the leaderboard average of every model, per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({k.split("/")[0] for row in rows for k in row if k.endswith("/leaderboard_avg")},
                    key=lambda m: _model_key(m + "/leaderboard_avg"))
    labels = [row.get("swept") or row["job"] for row in rows]
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.7 * len(rows) * max(1, len(models)) + 3)), 4.5))
    if models:
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            values = [row.get(f"{model}/leaderboard_avg") for row in rows]
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(rows))]
            bars = ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=model)
            for bar, value in zip(bars, values):
                if value is not None:
                    ax.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
        ax.legend(title="model")
    else:
        ax.text(0.5, 0.5, "no leaderboard averages\n(evaluate not run, or not all four v1 tasks)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("leaderboard average")
    ax.set_title("leaderboard average per job and model")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_summary(paths: Iterable[Path], out: Path) -> list[dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` into ``out``; return the rows."""
    rows = collect(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = columns(rows)
    with open(out / "summary.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.md").write_text(markdown(rows), encoding="utf-8")
    chart(rows, out / "summary.png")
    return rows


# --------------------------------------------------------------------------- entry points
def swept_keys(config: Any) -> list[str]:
    """The keys a multirun varies: sweeps on the command line (``lora=a,b``) and ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    try:
        parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        keys += [o.key_or_group for o in parsed if o.is_sweep_override()]
    except Exception:  # noqa: BLE001 - naming only
        pass
    params = config.hydra.sweeper.get("params") or {}
    keys += [str(k) for k in params]
    return list(dict.fromkeys(keys))


class SweepSummaryCallback(Callback):
    """Hydra callback: the summary of a ``--multirun`` written into its sweep folder when it ends. At the
    start it records the swept keys in the environment, so that every job (in this process, a joblib worker
    or a SLURM job) names its W&B run after its own values of them."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        import os

        from platypus.tracking import SWEPT_ENV

        self._previous = os.environ.get(SWEPT_ENV)
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        import os

        from platypus.tracking import SWEPT_ENV

        if getattr(self, "_previous", None) is None:
            os.environ.pop(SWEPT_ENV, None)
        else:
            os.environ[SWEPT_ENV] = self._previous
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            rows = write_summary([sweep_dir], sweep_dir)
        except Exception as error:  # noqa: BLE001 - a summary problem must not fail a finished sweep
            print(f"[platypus] sweep summary failed: {type(error).__name__}: {error} "
                  f"(rerun: python -m platypus.report {sweep_dir})", file=sys.stderr, flush=True)
            return
        print(f"[platypus] sweep summary of {len(rows)} job(s): {sweep_dir / 'summary.md'} (.csv, .png)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platypus.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep folders (multirun/<date>/<time>) or run folders")
    parser.add_argument("--out", type=Path, help="where summary.csv/.md/.png go (default: the only path given)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out or (args.paths[0] if len(args.paths) == 1 else None)
    if out is None:
        print("error: several paths given: say where the summary goes with --out DIR", file=sys.stderr)
        return 2
    if not find_runs(args.paths):
        print(f"error: no run folders (stage manifests, summary.json or .hydra/) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    rows = write_summary(args.paths, out)
    print((out / "summary.md").read_text(), end="")
    print(f"{len(rows)} run(s) -> {out / 'summary.csv'}, {out / 'summary.md'}, {out / 'summary.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
import logging
import sys
from pathlib import Path
from typing import Any, Iterable

from hydra.experimental.callback import Callback

from platypus.fields import Role
from platypus.runtime.errors import EXIT_USER_ERROR
from platypus.runtime.failures import reported
from platypus.runs import collect, find_runs
from platypus.stages.evaluate.report import NUMBERS

log = logging.getLogger("platypus")
# The columns around the per-model metrics; each curate step's removals (``removed_<step>`` in the curate
# manifest's metrics) follow "curate_removed".
HEAD = ["job", "swept", "vs_ref", "overrides", "curate_kept", "curate_removed"]
TRAIN = ["train_loss", "train_steps"]
TAIL = ["wall_s", "compute_s", "computed", "reused", "path"]
MODEL_ORDER = (*Role.names(), "vs_ref")
HIDDEN = ("stderr",) + NUMBERS  # column endings the csv has and summary.md leaves out


def _model_key(column: str) -> tuple:
    model, _, rest = column.partition("/")
    rank = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    return (rank, model, rest == "leaderboard_avg", rest)


# --------------------------------------------------------------------------- writing
def columns(rows: list[dict[str, Any]]) -> list[str]:
    steps = list(dict.fromkeys(k for row in rows for k in row if k.startswith("curate_removed_")))
    metrics = sorted({k for row in rows for k in row if "/" in k}, key=_model_key)
    return HEAD + steps + TRAIN + metrics + TAIL


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


def write_summary(paths: Iterable[Path], out: Path, cfg: Any = None) -> list[dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` into ``out``; return the rows. ``cfg``: the
    config naming the stage classes (default: the app's)."""
    rows = collect(paths, cfg)
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

        from platypus.runtime.tracking import SWEPT_ENV

        self._previous = os.environ.get(SWEPT_ENV)
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        import os

        from platypus.runtime.tracking import SWEPT_ENV

        if getattr(self, "_previous", None) is None:
            os.environ.pop(SWEPT_ENV, None)
        else:
            os.environ[SWEPT_ENV] = self._previous
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            rows = write_summary([sweep_dir], sweep_dir, config)
        except Exception as error:  # noqa: BLE001 - a summary problem must not fail a finished sweep
            log.warning(f"[platypus] sweep summary failed: {type(error).__name__}: {error} "
                        f"(rerun: python -m platypus.report {sweep_dir})")
            return
        log.info(f"[platypus] sweep summary of {len(rows)} job(s): {sweep_dir / 'summary.md'} (.csv, .png)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platypus.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep folders (multirun/<date>/<time>) or run folders")
    parser.add_argument("--out", type=Path, help="where summary.csv/.md/.png go (default: the only path given)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USER_ERROR
    out = args.out or (args.paths[0] if len(args.paths) == 1 else None)
    if out is None:
        print("error: several paths given: say where the summary goes with --out DIR", file=sys.stderr)
        return EXIT_USER_ERROR
    if not find_runs(args.paths):
        print(f"error: no run folders (stage manifests, summary.json or .hydra/) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return EXIT_USER_ERROR
    with reported(out):
        rows = write_summary(args.paths, out)
    print((out / "summary.md").read_text(), end="")
    print(f"{len(rows)} run(s) -> {out / 'summary.csv'}, {out / 'summary.md'}, {out / 'summary.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

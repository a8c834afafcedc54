"""Experiment tracking: one W&B run per pipeline run / sweep job (offline by default), or nothing.

Summary keys are stable across runs so a W&B run table compares them: ``curate/<count>``,
``train/<metric>``, ``eval/<model>/<task>/<metric>``, ``eval/<model>/leaderboard_avg``. Under
``--multirun`` every job's run is grouped by its sweep folder, its name is made of the job's
overrides and its ``job_type`` is the stages it runs (``curate+train+merge+evaluate``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, List, Optional

from omegaconf import DictConfig, OmegaConf

SECRET_WORDS = ("key", "token", "secret", "password")


def redact(value: Any) -> Any:
    """Drop values under secret-looking keys before a config is logged or written."""
    if isinstance(value, dict):
        return {k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "=" in value:  # a command-line override: key=value
        key, _, _ = value.partition("=")
        if any(w in key.lower() for w in SECRET_WORDS):
            return f"{key}=***"
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a/b/c": leaf}``: the key scheme of W&B summaries and sweep-summary columns
    (``eval/<model>/<task>/<metric>``, ``.../delta/<task>/high``)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}/{key}" if prefix else str(key)))
    return out


@dataclass
class Tracker:
    """No-op tracker (``logger=none``). A tracker is a subclass, a dataclass of its settings, named by ``_target_``
    in a ``conf/logger/`` YAML (:mod:`platypus.plugins`); :meth:`start` opens its run."""

    report_to: ClassVar[list[str]] = []

    def start(self, name: str, run_dir: Path, run_config: dict, group: str | None, job_type: str | None) -> None:
        pass

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def image(self, key: str, path: Path) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        """Set run-level values (no history step)."""

    def finish(self) -> None:
        pass


class WandbMode(str, Enum):
    offline = "offline"  # sync later with `wandb sync`
    online = "online"
    disabled = "disabled"


@dataclass
class WandbTracker(Tracker):
    project: str = "platypus"
    mode: WandbMode = WandbMode.offline
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep folder under --multirun
    tags: List[str] = field(default_factory=list)

    report_to: ClassVar[list[str]] = ["wandb"]

    def start(self, name: str, run_dir: Path, run_config: dict, group: str | None, job_type: str | None) -> None:
        import wandb

        os.environ.setdefault("WANDB_MODE", self.mode.value)
        self._wandb = wandb
        self.run = wandb.init(project=self.project, entity=self.entity, group=self.group or group, job_type=job_type,
                              tags=list(self.tags), name=name, mode=self.mode.value, dir=str(run_dir),
                              config=redact(run_config), reinit="finish_previous")

    def log(self, metrics: dict[str, Any]) -> None:
        self.run.log(metrics)
        for key, value in metrics.items():
            self.run.summary[key] = value

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({key: self._wandb.Table(columns=columns, data=rows)})

    def image(self, key: str, path: Path) -> None:
        if path.is_file():
            self.run.log({key: self._wandb.Image(str(path))})

    def summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def finish(self) -> None:
        self.run.finish()


def hydra_job() -> dict[str, Any]:
    """This job's Hydra context: ``{"overrides", "override_dirname", "multirun", "sweep_dir", "job_num"}``
    (empty outside Hydra, e.g. when the pipeline is called from Python)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    swept = os.environ.get(SWEPT_ENV, "")
    return {
        "overrides": list(hydra.overrides.task),
        "override_dirname": hydra.job.override_dirname,
        "multirun": multirun,
        "sweep_dir": str(hydra.sweep.dir) if multirun else None,
        "job_num": hydra.job.num if multirun else None,
        "swept": [k for k in swept.split(",") if k] if multirun else [],
    }


# Set by platypus.report.SweepSummaryCallback at the start of a --multirun: the keys the sweep varies.
SWEPT_ENV = "PLATYPUS_SWEPT_KEYS"


def run_name(overrides: list[str], fallback: str, swept: list[str] | None = None, limit: int = 96) -> str:
    """A short run name from a job's overrides (``lora=attention,threshold=0.7``): only the swept keys when
    known, keys shortened to their last part, path-like values left out; ``fallback`` when nothing is left."""
    pairs = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and "/" not in value and not key.startswith("hydra"):
            pairs.append((key, value))
    if swept and any(key in swept for key, _ in pairs):
        pairs = [(key, value) for key, value in pairs if key in swept]
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in pairs]
    name = ",".join(parts)
    if not name:
        return fallback
    return name if len(name) <= limit else name[: limit - 1] + "…"


def build_tracker(cfg: DictConfig) -> Tracker:
    """The ``logger`` node's tracker, not started (a bad setting is one paragraph naming ``logger.<key>``)."""
    from platypus.plugins import build

    return build(cfg, Tracker, "logger")


def start(cfg: DictConfig, root: DictConfig, run_dir: Path, name: str, job: dict[str, Any] | None = None,
          job_type: str | None = None) -> Tracker:
    """The logger preset's tracker, started. ``job``: :func:`hydra_job`. Group: the tracker's own if set, else the
    sweep folder under --multirun; the run is named after the job's swept overrides."""
    job = job or {}
    group = job.get("sweep_dir")
    if group and len(group) > 128:  # W&B's limit: keep the distinctive end (<date>/<time>)
        group = group[-128:]
    if job.get("overrides"):
        name = run_name(job["overrides"], name, job.get("swept"))
    resolved = OmegaConf.to_container(root, resolve=True, enum_to_str=True)
    if job:
        resolved["hydra_job"] = {k: job[k] for k in ("overrides", "sweep_dir", "job_num", "swept")}
    tracker = build_tracker(cfg)
    tracker.start(name, run_dir, resolved, group, job_type)
    return tracker

"""Experiment tracking: one W&B run per pipeline run (offline by default), or nothing.

Summary keys are stable across runs so a W&B run table compares them: ``curate/<count>``,
``train/<metric>``, ``eval/<model>/<task>/<metric>``, ``eval/<model>/leaderboard_avg``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from platypus.errors import PlatypusError

SECRET_WORDS = ("key", "token", "secret", "password")


def redact(value: Any) -> Any:
    """Drop values under secret-looking keys before a config is logged or written."""
    if isinstance(value, dict):
        return {k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class Tracker:
    """No-op tracker (``logger=none``); the W&B one overrides every method."""

    report_to: list[str] = []

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def image(self, key: str, path: Path) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker(Tracker):
    report_to = ["wandb"]

    def __init__(self, cfg: DictConfig, resolved: dict, run_dir: Path, name: str):
        import wandb

        if cfg.mode not in ("offline", "online", "disabled"):
            raise PlatypusError(f"logger.mode={cfg.mode!r}: use offline, online or disabled.")
        os.environ.setdefault("WANDB_MODE", cfg.mode)
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            tags=list(cfg.tags),
            name=name,
            mode=cfg.mode,
            dir=str(run_dir),
            config=redact(resolved),
            reinit="finish_previous",
        )

    def log(self, metrics: dict[str, Any]) -> None:
        self.run.log(metrics)
        for key, value in metrics.items():
            self.run.summary[key] = value

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({key: self._wandb.Table(columns=columns, data=rows)})

    def image(self, key: str, path: Path) -> None:
        if path.is_file():
            self.run.log({key: self._wandb.Image(str(path))})

    def finish(self) -> None:
        self.run.finish()


def start(cfg: DictConfig, root: DictConfig, run_dir: Path, name: str) -> Tracker:
    if cfg.name == "none":
        return Tracker()
    if cfg.name == "wandb":
        return WandbTracker(cfg, OmegaConf.to_container(root, resolve=True), run_dir, name)
    raise PlatypusError(f"logger.name={cfg.name!r}: use wandb or none (config group logger=wandb|none).")

"""The stages a run can execute: ``cfg.stage_classes`` names each one's class with ``_target_``, in the order they
run; :func:`get` builds one (importing its module, and what it needs, on first use)."""

from __future__ import annotations

from omegaconf import DictConfig

from platypus.stages.base import Artifact, Artifacts, Stage

__all__ = ["Artifact", "Artifacts", "Stage", "get", "known", "made_in_run"]


def known(cfg: DictConfig) -> list[str]:
    """Every stage the config defines, in run order."""
    return list(cfg.stage_classes)


def made_in_run(cfg: DictConfig, artifact: Artifact) -> bool:
    """Whether a stage this run executes produces ``artifact`` (else it must come from the config)."""
    return any(artifact in get(cfg, name).produces for name in cfg.stages)


def get(cfg: DictConfig, name: str) -> Stage:
    """The stage ``name`` (``stage_classes.<name>``), built from its node."""
    from platypus.plugins import build

    return build(cfg.stage_classes[name], Stage, f"stage_classes.{name}")

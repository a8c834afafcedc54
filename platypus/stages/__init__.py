"""The stages, in the order a run executes them: ``get(name)`` imports one (and what it needs) on first use."""

from __future__ import annotations

import importlib

from platypus.config import STAGES
from platypus.stages.base import Artifact, Artifacts, Stage

__all__ = ["Artifact", "Artifacts", "Stage", "STAGES", "get"]
_LOADED: dict[str, Stage] = {}


def get(name: str) -> Stage:
    """The registered stage ``name`` (its module: ``platypus.stages.<name>.stage``, class attribute ``STAGE``)."""
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(f"platypus.stages.{name}.stage").STAGE
    return _LOADED[name]

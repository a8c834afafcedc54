"""Merge recipes: a ``Recipe`` dataclass named by ``merge.recipe._target_`` (conf/merge/*.yaml), its fields its
parameters (``merge.recipe.<field>``), built by platypus.plugins.build. A recipe may live in the user's own package.

A recipe says which target the adapters fold into, what it checks before any weights load, and how it turns the
loaded adapters into the one that is folded (``combine``: PEFT's add_weighted_adapter, or nothing when a single
adapter folds as it is). The folding, the checks, the saving and the card are the same for all
(platypus/stages/merge/fold.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from platypus.plugins import build as build_plugin
from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.compat import adapter_config


def build(merge_cfg: Any) -> "Recipe":
    """The recipe ``merge.recipe`` names, its parameters checked."""
    return build_plugin(merge_cfg.recipe, Recipe, "merge.recipe")


@dataclass
class Recipe:
    name: ClassVar[str]
    folds: ClassVar[bool] = True  # False: nothing is merged (merge=none)
    several: ClassVar[bool] = False  # combines several adapters (else exactly one)
    target_required: ClassVar[bool] = False  # needs merge.target
    into_base_only: ClassVar[bool] = False  # merge.target must be the base

    def check(self, adapters: Sequence[Path]) -> list[float]:
        """The recipe against the adapters (configs only): the weight of each adapter."""
        if not adapters:
            raise PlatypusError(
                "stages: 'merge' needs an adapter. Add train to stages, or give merge.adapters=[path/to/adapter]."
            )
        if not self.several and len(adapters) != 1:
            raise PlatypusError(
                f"merge recipe {self.name} folds exactly one adapter (got {len(adapters)}: "
                f"{[str(a) for a in adapters]}). To combine several use merge=weighted_cat (or another weighted "
                f"preset), or give one adapter in merge.adapters=[...]."
            )
        for adapter in adapters:
            adapter_config(adapter)  # a PEFT folder
        return [1.0] * len(adapters)

    def combine(self, peft_model, names: list[str], weights: list[float], seed: int) -> tuple[str, list[str]]:
        """Make the adapter that is folded; return its name and warnings for the card."""
        return names[0], []

    def describe(self, weights: list[float], seed: int) -> dict | None:
        """The recipe's settings for the card (None: nothing beyond the adapters)."""
        return None

"""Merge recipes: one module each here, exposing ``RECIPE`` (``merge.recipe`` names the module).

A recipe says which target the adapters fold into, which ``merge.*`` settings it reads, what it checks
before any weights load, and how it turns the loaded adapters into the one that is folded
(``combine``: PEFT's add_weighted_adapter, or nothing when a single adapter folds as it is). The folding,
the logit check, the saving and the card are the same for all (platypus/stages/merge/fold.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Sequence

from platypus.config import MergeConfig
from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.compat import adapter_config

# merge.* settings that only combining recipes read; any other recipe refuses them when set.
COMBINING = ("weights", "density")


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def get(name: str) -> "Recipe":
    if name not in available():
        raise PlatypusError(
            f"merge.recipe={name!r}: use one of {available()} (or pick a preset: merge=into_base|into_model|"
            f"weighted_cat|none ...)."
        )
    return importlib.import_module(f"{__name__}.{name}").RECIPE


@dataclass
class Params:
    """A recipe's own parameters (``merge.params.<name>``), none by default."""


class Recipe:
    name: ClassVar[str]
    folds: ClassVar[bool] = True  # False: nothing is merged (merge=none)
    several: ClassVar[bool] = False  # combines several adapters (else exactly one)
    target_required: ClassVar[bool] = False  # needs merge.target
    into_base_only: ClassVar[bool] = False  # merge.target must be the base
    reads: ClassVar[tuple[str, ...]] = ()  # the COMBINING settings it reads
    params: ClassVar[type] = Params

    def parameters(self, cfg: Any) -> Any:
        """``merge.params`` checked against the recipe's dataclass."""
        given = dict(cfg.get("params") or {})
        known = {f.name for f in fields(self.params)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise PlatypusError(f"merge.params has {unknown}, which merge.recipe={self.name} does not take; it takes "
                                f"{sorted(known) or 'none'}.")
        try:
            return self.params(**given)
        except (TypeError, ValueError) as error:
            raise PlatypusError(f"merge.params for merge.recipe={self.name}: {error}") from None

    def check_settings(self, cfg: Any) -> None:
        """The ``merge.*`` values that need no adapter (at the start of the run, and before merging)."""
        defaults = MergeConfig()
        stray = [k for k in COMBINING if k not in self.reads and cfg[k] not in (getattr(defaults, k), None, [])]
        if stray:
            raise PlatypusError(
                f"merge.weights / merge.density apply to merge.recipe=weighted only (recipe is {self.name}); remove "
                f"them (merge.weights=[] merge.density=null) or use merge.recipe=weighted."
            )
        self.parameters(cfg)

    def check(self, cfg: Any, adapters: Sequence[Path]) -> list[float]:
        """The recipe against the adapters (configs only): the weight of each adapter."""
        self.check_settings(cfg)
        if not adapters:
            raise PlatypusError(
                "stages: 'merge' needs an adapter. Add train to stages, or give merge.adapters=[path/to/adapter]."
            )
        if not self.several and len(adapters) != 1:
            raise PlatypusError(
                f"merge.recipe={self.name} folds exactly one adapter (got {len(adapters)}: "
                f"{[str(a) for a in adapters]}). To combine several use merge.recipe=weighted "
                f"(e.g. merge=weighted_cat), or give one adapter in merge.adapters=[...]."
            )
        for adapter in adapters:
            adapter_config(adapter)  # a PEFT folder
        return [1.0] * len(adapters)

    def combine(self, peft_model, names: list[str], weights: list[float], cfg: Any, seed: int) -> tuple[str, list[str]]:
        """Make the adapter that is folded; return its name and warnings for the card."""
        return names[0], []

    def describe(self, cfg: Any, weights: list[float], seed: int) -> dict | None:
        """The recipe's settings for the card (None: nothing beyond the adapters)."""
        return None

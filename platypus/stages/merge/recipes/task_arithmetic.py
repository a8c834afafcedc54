"""merge=task_arithmetic: task vectors added and subtracted (Ilharco et al. 2023, "Editing models with task
arithmetic"): ``W = W_target + scale * Σ s_i ΔW_i`` with each adapter's delta ``ΔW_i = alpha_i/r_i B_i A_i`` and
signed coefficients ``s_i`` (a negative one removes what that adapter taught: negation).

Computed exactly through PEFT's ``add_weighted_adapter(..., combination_type="cat")``, whose stacked factors
take the signed products ``scale * s_i`` as weights. Parameters: ``merge.recipe.scales`` (one per adapter, in
the order of ``merge.adapters``; default 1.0 each) and ``merge.recipe.scale`` (default 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.compat import adapter_config
from platypus.stages.merge.recipes import Recipe
from platypus.stages.merge.recipes.weighted import add_weighted


@dataclass
class TaskArithmetic(Recipe):
    name = "task_arithmetic"
    several = True
    scales: List[float] = field(default_factory=list)  # signed, one per adapter; empty: 1.0 each
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in [*self.scales, self.scale]):
            raise ValueError(f"scales {self.scales} and scale {self.scale} must be finite numbers")

    def check(self, adapters) -> list[float]:
        super().check(adapters)
        scales = list(self.scales) or [1.0] * len(adapters)
        if len(scales) != len(adapters):
            raise PlatypusError(f"merge.recipe.scales has {len(scales)} value(s) for {len(adapters)} adapter(s); give "
                                f"one per adapter, in the order of merge.adapters (negative subtracts it).")
        for adapter in adapters:
            if adapter_config(adapter).get("use_dora"):
                raise PlatypusError(f"merge recipe {self.name}: {adapter} is a DoRA adapter; task vectors here are "
                                    f"LoRA deltas B A. Fold it alone (merge=into_base).")
        weights = [self.scale * s for s in scales]
        if not any(weights):
            raise PlatypusError("merge.recipe: every scale is 0, so the merge would leave the target unchanged.")
        return weights

    def combine(self, peft_model, names, weights, seed) -> tuple[str, list[str]]:
        return add_weighted(peft_model, names, weights, seed, combination_type="cat")

    def describe(self, weights, seed) -> dict:
        return {"how": "task arithmetic, exact (PEFT add_weighted_adapter, cat)", "scales": list(self.scales),
                "scale": self.scale, "coefficients": weights}

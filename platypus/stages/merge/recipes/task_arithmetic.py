"""merge=task_arithmetic: task vectors added and subtracted (Ilharco et al. 2023, "Editing models with task
arithmetic"): ``W = W_target + scale * Σ s_i ΔW_i`` with each adapter's delta ``ΔW_i = alpha_i/r_i B_i A_i`` and
signed coefficients ``s_i`` (a negative one removes what that adapter taught: negation).

Computed exactly through PEFT's ``add_weighted_adapter(..., combination_type="cat")``, whose stacked factors
take the signed products ``scale * s_i`` as weights. Settings: ``merge.params.scales`` (one per adapter, in
the order of ``merge.adapters``; default 1.0 each) and ``merge.params.scale`` (default 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.compat import adapter_config
from platypus.stages.merge.recipes import Recipe
from platypus.stages.merge.recipes.weighted import add_weighted


@dataclass
class TaskArithmeticParams:
    scales: list = field(default_factory=list)  # signed, one per adapter; empty: 1.0 each
    scale: float = 1.0

    def __post_init__(self) -> None:
        values = [float(s) for s in self.scales] + [float(self.scale)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"scales {self.scales} and scale {self.scale} must be finite numbers")


class TaskArithmetic(Recipe):
    name = "task_arithmetic"
    several = True
    params = TaskArithmeticParams

    def check(self, cfg, adapters) -> list[float]:
        super().check(cfg, adapters)
        params = self.parameters(cfg)
        scales = [float(s) for s in params.scales] or [1.0] * len(adapters)
        if len(scales) != len(adapters):
            raise PlatypusError(f"merge.params.scales has {len(scales)} value(s) for {len(adapters)} adapter(s); give one "
                                f"per adapter, in the order of merge.adapters (negative subtracts it).")
        for adapter in adapters:
            if adapter_config(adapter).get("use_dora"):
                raise PlatypusError(f"merge.recipe={self.name}: {adapter} is a DoRA adapter; task vectors here are LoRA "
                                    f"deltas B A. Fold it alone (merge=into_base).")
        weights = [params.scale * s for s in scales]
        if not any(weights):
            raise PlatypusError("merge.params: every scale is 0, so the merge would leave the target unchanged.")
        return weights

    def combine(self, peft_model, names, weights, cfg, seed) -> tuple[str, list[str]]:
        return add_weighted(peft_model, names, weights, seed, combination_type="cat")

    def describe(self, cfg, weights, seed) -> dict:
        params = self.parameters(cfg)
        return {"how": "task arithmetic, exact (PEFT add_weighted_adapter, cat)", "scales": list(params.scales),
                "scale": params.scale, "coefficients": weights}


RECIPE = TaskArithmetic()

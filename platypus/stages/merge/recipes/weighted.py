"""merge=weighted: several adapters combined with PEFT's ``add_weighted_adapter``, then folded.

What each ``merge.recipe.combination`` computes, per targeted layer (``s_i`` = adapter i's scaling ``alpha/r``):

- ``cat``: exact, ``ΔW = Σ w_i s_i B_i A_i`` (the factors are stacked: rank = Σ r_i; ranks may differ).
- ``svd`` and the ``*_svd`` variants: ``Σ w_i s_i B_i A_i`` (after TIES/DARE/pruning for the variants),
  re-factorised by a truncated SVD to ``merge.recipe.svd_rank`` (default: the largest input rank); ranks may differ.
- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: PEFT combines the A and the B
  factors separately, each scaled by ``sqrt(w_i s_i)``: ``ΔW = (Σ √(w_i s_i) B_i)(Σ √(w_i s_i) A_i)``
  (TIES/DARE/pruning applied to the A's and the B's), so with several adapters this is *not* the weighted
  sum of the deltas (cross terms ``B_i A_j``), and every adapter must have the same rank (refused otherwise).
  With a single adapter PEFT always uses ``linear``, which is then exact (``w s B A``).

DARE prunes at random: the stage seeds torch with the run's ``seed`` first, so reruns are identical.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from platypus.fields import choices
from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.compat import adapter_config, adapter_rank
from platypus.stages.merge.recipes import Recipe

# PEFT's LoraModel.add_weighted_adapter combination types (peft 0.21).
Combination = choices("Combination", "linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties",
                      "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd", module=__name__)
EQUAL_RANK = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
USES_DENSITY = ("ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
                "magnitude_prune", "magnitude_prune_svd")
USES_SIGN = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
SignMethod = choices("SignMethod", "total", "frequency", module=__name__)  # PEFT's majority_sign_method
COMBINED = "weighted"  # the name of the combined adapter


@dataclass
class Weighted(Recipe):
    name = "weighted"
    several = True
    weights: List[float] = field(default_factory=list)  # one per adapter, in the order of merge.adapters (>= 0); empty: 1.0 each
    combination: Combination = Combination.cat  # a PEFT add_weighted_adapter combination_type
    density: Optional[float] = None  # (0, 1]: the fraction kept by ties/dare/magnitude_prune (required there)
    majority_sign_method: SignMethod = SignMethod.total  # ties, dare_ties and their svd variants
    svd_rank: Optional[int] = None  # *svd combinations: rank of the result (default: the largest input rank)
    svd_clamp: Optional[float] = None  # *svd combinations: quantile clamp of the factors (default: none)

    def __post_init__(self) -> None:
        for i, w in enumerate(self.weights):
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights[{i}]={w}: weights must be finite and >= 0 (negative weights, i.e. "
                                 f"subtracting an adapter, are not supported here; merge=task_arithmetic subtracts).")
        if self.weights and sum(self.weights) == 0:
            raise ValueError("weights are all 0: the merge would leave the target unchanged.")
        if self.combination in USES_DENSITY and (self.density is None or not (0 < self.density <= 1)):
            raise ValueError(f"combination={self.combination} needs density in (0, 1] (the fraction of values kept), "
                             f"got {self.density}; set e.g. merge.recipe.density=0.5.")
        if self.combination not in USES_DENSITY and self.density is not None:
            raise ValueError(f"density={self.density} does not apply to combination={self.combination}; it is used "
                             f"by {list(USES_DENSITY)}. Remove it (merge.recipe.density=null).")
        if self.svd_rank is not None and (not self.combination.endswith("svd") or self.svd_rank < 1):
            raise ValueError(f"svd_rank={self.svd_rank}: a positive rank, used by the *svd combinations only "
                             f"(combination is {self.combination}).")

    def check(self, adapters) -> list[float]:
        super().check(adapters)
        if self.weights and len(self.weights) != len(adapters):
            raise PlatypusError(
                f"merge.recipe.weights has {len(self.weights)} weight(s) for {len(adapters)} adapter(s); give one "
                f"weight per adapter, in the order of merge.adapters, or leave it empty for 1.0 each."
            )
        configs = [adapter_config(a) for a in adapters]
        for adapter, config in zip(adapters, configs):
            if config.get("peft_type", "LORA") != "LORA":
                raise PlatypusError(f"merge recipe {self.name} combines LoRA adapters (add_weighted_adapter); "
                                    f"{adapter} is {config.get('peft_type')}.")
            if config.get("use_dora"):
                raise PlatypusError(
                    f"merge recipe {self.name}: {adapter} is a DoRA adapter (use_dora=true); add_weighted_adapter "
                    f"combines only the A/B factors, not DoRA's magnitude vectors. Fold it alone (merge=into_base)."
                )
        if len(adapters) > 1 and self.combination in EQUAL_RANK:
            ranks = [adapter_rank(c) for c in configs]
            if len(set(json.dumps(r, sort_keys=True) for r in ranks)) > 1:
                listed = ", ".join(f"r={r}{' ' + str(p) if p else ''} ({a})" for (r, p), a in zip(ranks, adapters))
                raise PlatypusError(
                    f"merge.recipe.combination={self.combination} needs adapters of equal rank: PEFT combines their A "
                    f"and B factors separately (each scaled by sqrt(weight)), which only lines up for equal ranks; got "
                    f"{listed}. Use combination=cat (exact weighted sum, rank = sum of ranks) or an *_svd variant "
                    f"(re-factorised to merge.recipe.svd_rank)."
                )
        return list(self.weights) or [1.0] * len(adapters)

    def combine(self, peft_model, names, weights, seed) -> tuple[str, list[str]]:
        return add_weighted(peft_model, names, weights, seed, combination_type=str(self.combination),
                            svd_rank=self.svd_rank, svd_clamp=self.svd_clamp, density=self.density,
                            majority_sign_method=str(self.majority_sign_method))

    def describe(self, weights, seed) -> dict:
        return {"how": "PEFT add_weighted_adapter", "combination": str(self.combination), "weights": weights,
                "density": self.density,
                "majority_sign_method": str(self.majority_sign_method) if self.combination in USES_SIGN else None,
                "svd_rank": self.svd_rank, "svd_clamp": self.svd_clamp, "seed": seed}


def add_weighted(peft_model, names, weights, seed, **options) -> tuple[str, list[str]]:
    """PEFT's add_weighted_adapter over the loaded adapters, made active; warnings for the card."""
    torch.manual_seed(seed)  # DARE prunes at random
    try:
        peft_model.add_weighted_adapter(names, weights, COMBINED, **options)
    except (ValueError, TypeError) as error:
        raise PlatypusError(f"merge: PEFT's add_weighted_adapter refused the combination: {error}") from error
    peft_model.set_adapter(COMBINED)
    combination, warnings = options["combination_type"], []
    if len(names) == 1 and combination != "linear":
        warnings.append(f"a single adapter: PEFT combines it with 'linear' (exact), not {combination!r}")
    if len(names) > 1 and combination in EQUAL_RANK:
        warnings.append(f"combination {combination!r} scales A and B each by sqrt(weight*scaling): not the "
                        f"exact weighted sum of the adapters' deltas (use 'cat' for that)")
    return COMBINED, warnings


"""The in-memory engine (``merge.engine=peft``), the reference for the streaming one: the target loaded whole,
the adapters loaded onto it with PEFT and combined by the recipe, the unfolded logits compared with the folded
model's, ``merge_and_unload``, ``save_pretrained``. RAM: the whole target in ``merge.fold_dtype`` and its copy."""

from __future__ import annotations

from pathlib import Path

import torch

from platypus.fields import Dtype
from platypus.runtime import models
from platypus.stages.merge.check import logits


def with_adapters(model: torch.nn.Module, adapters: list[Path], recipe, weights: list[float], cfg, seed: int):
    """``model`` with the adapters loaded by PEFT and combined by the recipe: (peft model, active adapter, warnings)."""
    from peft import PeftModel

    names = [f"adapter_{i}" for i in range(len(adapters))]
    peft_model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        peft_model.load_adapter(adapter, adapter_name=name)
    active, warnings = recipe.combine(peft_model, names, weights, seed)
    return peft_model.eval(), active, warnings


def unfolded(target_path: str, adapters, recipe, weights, cfg, seed: int, trust_remote_code: bool):
    target = models.load_model(target_path, cfg.fold_dtype, "none", trust_remote_code)
    return with_adapters(target, adapters, recipe, weights, cfg, seed)


def fold_in_memory(target_path: str, adapters, recipe, weights, cfg, seed: int, trust_remote_code: bool,
                   folder: Path) -> dict:
    """Fold and save into ``folder``; the card's engine facts (the logit check's largest difference)."""
    tokenizer = models.load_tokenizer(target_path, trust_remote_code)
    peft_model, active, warnings = unfolded(target_path, adapters, recipe, weights, cfg, seed, trust_remote_code)
    reference = logits(peft_model, tokenizer)
    merged = peft_model.merge_and_unload(adapter_names=[active])
    gap = float((reference - logits(merged, tokenizer)).abs().max())
    merged.to(Dtype(cfg.dtype).torch()).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return {"check": "logits", "check_max_abs_error": gap, "recipe_warnings": warnings}

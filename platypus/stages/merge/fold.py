"""Folding: the adapter(s) loaded onto the target with PEFT, combined by the recipe, checked against the
unfolded model's logits, folded (``merge_and_unload``) and saved as a standard model folder with its card.

Everything is validated before any weights are loaded or written (recipe, weights, combination options,
adapter folders and ranks, architecture/sizes, tokenizer, quantization, target modules and factor shapes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from omegaconf import DictConfig

from platypus.runtime import models
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256, identity
from platypus.stages.merge import recipes
from platypus.stages.merge.card import write_card
from platypus.stages.merge.compat import (
    ADAPTER_WEIGHTS,
    adapter_config,
    check_compatible,
    check_factor_shapes,
    target_modules,
)

PROBE_PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is 7 times 8?\n\n### Response:\n",
    "The derivative of x^2 is",
    "Photosynthesis converts light energy into",
]


def model_preset(name: str):
    """The ``model`` config group's option ``name`` (conf/model/<name>.yaml), composed by Hydra, or None."""
    from hydra.errors import HydraException

    from platypus.config import compose

    try:
        return compose(f"model={name}").model
    except HydraException:
        return None


def resolve_target(cfg: DictConfig, base_path: str, cache_dir: str) -> str:
    """The model the adapter(s) are folded into: the base, or ``merge.target`` (hub id, folder, model preset)."""
    recipe, target = recipes.get(cfg.recipe), cfg.target
    if recipe.target_required and not target:
        raise PlatypusError(
            f"merge.recipe={cfg.recipe} needs merge.target=<hub id, model folder or conf/model preset name>."
        )
    if not target:
        return base_path
    preset = model_preset(target) if "/" not in target and not Path(target).exists() else None
    if preset is not None:
        resolved = models.resolve(preset.path, preset.get("gguf_file"), cache_dir, key=f"merge.target={target} (model preset)")
    else:
        resolved = models.resolve(target, None, cache_dir, key="merge.target")
    if recipe.into_base_only and Path(resolved).resolve() != Path(base_path).resolve() and resolved != base_path:
        raise PlatypusError(
            f"merge.recipe={cfg.recipe} folds into the base model ({base_path}); merge.target={target!r} is for "
            f"merge.recipe=into_model or weighted."
        )
    return resolved


def merge(cfg: DictConfig, model_cfg: DictConfig, base_path: str, adapters: Path | str | Iterable[Path | str],
          out_dir: Path, cache_dir: str, seed: int = 0) -> dict:
    """Fold the adapters of ``merge.adapters`` into the recipe's target; writes ``model/`` and ``merge_card.md``
    into ``out_dir`` and returns the card."""
    from peft import PeftModel

    adapters = [Path(adapters)] if isinstance(adapters, (str, Path)) else [Path(a) for a in adapters]
    recipe = recipes.get(cfg.recipe)
    weights = recipe.check(cfg, adapters)
    target_path = resolve_target(cfg, base_path, cache_dir)
    warnings: list[str] = []
    compared: list[str] = []
    for adapter in adapters:
        found, checked = check_compatible(target_path, adapter, model_cfg.trust_remote_code)
        warnings += found
        compared += [f"{adapter}: {line}" for line in checked]
    configs = [adapter_config(a) for a in adapters]

    tokenizer = models.load_tokenizer(target_path, model_cfg.trust_remote_code)
    target = models.load_model(target_path, cfg.fold_dtype, "none", model_cfg.trust_remote_code)
    for adapter, config in zip(adapters, configs):
        if target_modules(config) is not None:
            models.check_target_modules(target, target_modules(config), key=f"adapter {adapter} targets")
        check_factor_shapes(target, adapter)

    names = [f"adapter_{i}" for i in range(len(adapters))]
    peft_model = PeftModel.from_pretrained(target, adapters[0], adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        peft_model.load_adapter(adapter, adapter_name=name)
    active, combined = recipe.combine(peft_model, names, weights, cfg, seed)
    warnings += combined
    peft_model.eval()
    reference = _logits(peft_model, tokenizer)  # the unfolded model, compared after folding
    merged = peft_model.merge_and_unload(adapter_names=[active])
    gap = float((reference - _logits(merged, tokenizer)).abs().max())

    folder = out_dir / "model"
    merged.to(models.torch_dtype(cfg.dtype, "merge.dtype")).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    inputs = [
        {
            "path": str(adapter),
            "weights_sha256": {f: file_sha256(adapter / f) for f in ADAPTER_WEIGHTS if (adapter / f).is_file()},
            "config_sha256": file_sha256(adapter / "adapter_config.json"),
            "recorded_base": config.get("base_model_name_or_path"),
            "r": config.get("r"),
            "lora_alpha": config.get("lora_alpha"),
            "target_modules": target_modules(config) or config.get("target_modules"),
            "weight": weight,
        }
        for adapter, config, weight in zip(adapters, configs, weights)
    ]
    card = {
        "recipe": cfg.recipe,
        "target": identity(target_path),
        "adapters": inputs,
        "adapter_recorded_base": configs[0].get("base_model_name_or_path"),
        "dtype": cfg.dtype,
        "fold_dtype": cfg.fold_dtype,
        "max_abs_logit_diff_fp32": gap,
        "folder_bytes": size,
        "compared": compared,
        "warnings": warnings,
    }
    described = recipe.describe(cfg, weights, seed)
    if described:
        card[cfg.recipe] = described
    write_card(card, out_dir, folder)
    return card


@torch.no_grad()
def _logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE_PROMPTS, return_tensors="pt", padding=True)
    logits = model(**batch).logits.float()
    return logits[batch["attention_mask"].bool()]

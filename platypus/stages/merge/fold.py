"""Folding: the recipe's adapter(s) into its target, by ``merge.engine`` (stream: tensor by tensor, the default;
peft: the whole model in memory, the reference), saved as a standard model folder with its card.

Everything is validated before any weights are loaded or written (recipe, weights, combination options,
adapter folders and ranks, architecture/sizes, tokenizer, quantization, target modules and factor shapes).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig

from platypus.fields import MergeEngine
from platypus.runtime import models
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256, identity
from platypus.stages.merge import recipes
from platypus.stages.merge.card import TARGET, write_card
from platypus.stages.merge.compat import (
    ADAPTER_WEIGHTS,
    adapter_config,
    check_compatible,
    check_factor_shapes,
    target_modules,
)
from platypus.stages.merge.peft_engine import fold_in_memory
from platypus.stages.merge.skeleton import skeleton
from platypus.stages.merge.stream import fold_streaming


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
    recipe, target = recipes.build(cfg), cfg.target
    if recipe.target_required and not target:
        raise PlatypusError(
            f"merge recipe {recipe.name} needs merge.target=<hub id, model folder or conf/model preset name>."
        )
    if not target:
        return base_path
    preset = model_preset(target) if "/" not in target and not Path(target).exists() else None
    if preset is not None:
        resolved = models.resolve(preset.path, preset.get("gguf_file"), cache_dir, key=f"merge.target={target} (model preset)",
                                  revision=preset.get("revision"))
    else:
        resolved = models.resolve(target, None, cache_dir, key="merge.target")
    if recipe.into_base_only and Path(resolved).resolve() != Path(base_path).resolve() and resolved != base_path:
        raise PlatypusError(
            f"merge recipe {recipe.name} folds into the base model ({base_path}); merge.target={target!r} is for "
            f"merge=into_model or a weighted preset."
        )
    return resolved


def check_adapters_fit(cfg: DictConfig, target_path: str, adapters: list[Path], trust: bool
                       ) -> tuple[list[dict], list[str], list[str]]:
    """Each adapter against the target, before any weights load: architecture/sizes/tokenizer (warnings and the
    lines compared), DoRA only under merge.engine=peft, target modules and factor shapes on the target's skeleton.
    Returns the adapters' configs, the warnings and the compared lines."""
    warnings: list[str] = []
    compared: list[str] = []
    for adapter in adapters:
        found, checked = check_compatible(target_path, adapter, trust)
        warnings += found
        compared += [f"{adapter}: {line}" for line in checked]
    configs = [adapter_config(a) for a in adapters]
    dora = [str(a) for a, c in zip(adapters, configs) if c.get("use_dora")]
    if dora and cfg.engine == MergeEngine.stream:
        raise PlatypusError(f"merge.engine=stream folds LoRA deltas s·B·A; {dora} are DoRA adapters, whose fold needs each "
                            f"whole weight's norm. Use merge.engine=peft for them.")
    layers = skeleton(target_path, cfg.fold_dtype, trust)
    for adapter, config in zip(adapters, configs):
        if target_modules(config) is not None:
            models.check_target_modules(layers, target_modules(config), key=f"adapter {adapter} targets")
        check_factor_shapes(layers, adapter)
    return configs, warnings, compared


def merge(cfg: DictConfig, model_cfg: DictConfig, base_path: str, adapters: Path | str | Iterable[Path | str],
          out_dir: Path, cache_dir: str, seed: int = 0) -> dict:
    """Fold the adapters of ``merge.adapters`` into the recipe's target with ``merge.engine``; writes ``model/`` and
    ``merge_card.md`` into ``out_dir`` and returns the card."""
    started = time.perf_counter()
    adapters = [Path(adapters)] if isinstance(adapters, (str, Path)) else [Path(a) for a in adapters]
    recipe = recipes.build(cfg)
    weights = recipe.check(adapters)
    target_path = resolve_target(cfg, base_path, cache_dir)
    trust = model_cfg.trust_remote_code
    configs, warnings, compared = check_adapters_fit(cfg, target_path, adapters, trust)

    folder = out_dir / "model"
    folder.mkdir(parents=True, exist_ok=True)
    engine = fold_streaming if cfg.engine == MergeEngine.stream else fold_in_memory
    facts = engine(target_path, adapters, recipe, weights, cfg, seed, trust, folder)
    warnings += facts.pop("recipe_warnings")
    card = {
        "recipe": recipe.name,
        "engine": cfg.engine,
        TARGET: identity(target_path),
        "adapters": [_adapter_facts(a, c, w) for a, c, w in zip(adapters, configs, weights)],
        "adapter_recorded_base": configs[0].get("base_model_name_or_path"),
        "dtype": cfg.dtype,
        "fold_dtype": cfg.fold_dtype,
        **facts,
        "folder_bytes": sum(f.stat().st_size for f in folder.iterdir()),
        "wall_s": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "compared": compared,
        "warnings": warnings,
    }
    described = recipe.describe(weights, seed)
    if described:
        card[recipe.name] = described
    write_card(card, out_dir, folder)
    return card


def _adapter_facts(adapter: Path, config: dict, weight: float) -> dict:
    return {
        "path": str(adapter),
        "weights_sha256": {f: file_sha256(adapter / f) for f in ADAPTER_WEIGHTS if (adapter / f).is_file()},
        "config_sha256": file_sha256(adapter / "adapter_config.json"),
        "recorded_base": config.get("base_model_name_or_path"),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "target_modules": target_modules(config) or config.get("target_modules"),
        "weight": weight,
    }

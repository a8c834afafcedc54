"""Merge stage: fold LoRA adapters into their base, into another fine-tune of the same
architecture (how Stable-/Camel-/OpenOrca-Platypus2 were made), or combine several adapters
first (``weighted``), all with PEFT's public API.

Recipes (``merge.recipe``):

- ``none``: keep the adapter unmerged.
- ``into_base``: ``PeftModel.from_pretrained(base, adapter).merge_and_unload()``.
- ``into_model``: the same onto ``merge.target`` (hub id, local folder, or a ``conf/model/`` preset name).
- ``weighted``: load every adapter of ``merge.adapters`` onto the base (or ``merge.target`` when given),
  combine them with ``add_weighted_adapter(adapters, merge.weights, combination_type=merge.combination,
  density=..., majority_sign_method=..., svd_rank=...)`` and fold the combination.

What each combination computes, per targeted layer (``s_i`` = adapter i's scaling ``alpha/r``):

- ``cat``: exact, ``ΔW = Σ w_i s_i B_i A_i`` (the factors are stacked: rank = Σ r_i; ranks may differ).
- ``svd`` and the ``*_svd`` variants: ``Σ w_i s_i B_i A_i`` (after TIES/DARE/pruning for the variants),
  re-factorised by a truncated SVD to ``merge.svd_rank`` (default: the largest input rank); ranks may differ.
- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: PEFT combines the A and the B
  factors separately, each scaled by ``sqrt(w_i s_i)``: ``ΔW = (Σ √(w_i s_i) B_i)(Σ √(w_i s_i) A_i)``
  (TIES/DARE/pruning applied to the A's and the B's), so with several adapters this is *not* the weighted
  sum of the deltas (cross terms ``B_i A_j``), and every adapter must have the same rank (refused otherwise).
  With a single adapter PEFT always uses ``linear``, which is then exact (``w s B A``).

DARE prunes at random: the stage seeds torch with the run's ``seed`` first, so reruns are identical.

Everything is validated before any weights are loaded or written (recipe, weights, combination
options, adapter folders and ranks, architecture/sizes, tokenizer, quantization, target modules and
factor shapes); the result is a standard HF folder plus ``merge_card.md`` and the logit agreement
between the folded and the unfolded model.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from platypus import models
from platypus.errors import PlatypusError
from platypus.train import check_target_modules

RECIPES = ("none", "into_base", "into_model", "weighted")
# PEFT's LoraModel.add_weighted_adapter combination types (peft 0.21).
COMBINATIONS = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")
EQUAL_RANK = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
USES_DENSITY = ("ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
                "magnitude_prune", "magnitude_prune_svd")
USES_SIGN = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
SIGN_METHODS = ("total", "frequency")
WEIGHTED_NAME = "weighted"
SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_PRESETS = Path(__file__).resolve().parents[1] / "conf" / "model"
PROBE_PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is 7 times 8?\n\n### Response:\n",
    "The derivative of x^2 is",
    "Photosynthesis converts light energy into",
]


# --------------------------------------------------------------------------- validation (no model loaded)
def adapter_config(adapter: Path) -> dict:
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise PlatypusError(f"merge.adapters: {adapter} is not a PEFT adapter folder (no adapter_config.json).")
    return json.loads(path.read_text())


def _rank(config: dict) -> tuple[int, dict]:
    return int(config.get("r", 0)), dict(config.get("rank_pattern") or {})


def check_settings(cfg: DictConfig) -> None:
    """The ``merge.*`` values that need no adapter: recipe, dtype, weights and combination options
    (checked at the start of the run, and again by :func:`check_recipe`)."""
    if cfg.recipe not in RECIPES:
        raise PlatypusError(
            f"merge.recipe={cfg.recipe!r}: use one of {list(RECIPES)} (or pick a preset: merge=into_base|into_model|"
            f"weighted_cat|none ...)."
        )
    models.torch_dtype(cfg.dtype, "merge.dtype")
    weights = [float(w) for w in cfg.weights]
    if cfg.recipe != "weighted":
        if weights or cfg.density is not None:
            raise PlatypusError(
                f"merge.weights / merge.density apply to merge.recipe=weighted only (recipe is {cfg.recipe}); "
                f"remove them (merge.weights=[] merge.density=null) or use merge.recipe=weighted."
            )
        return
    if cfg.combination not in COMBINATIONS:
        raise PlatypusError(
            f"merge.combination={cfg.combination!r} is not one of PEFT's add_weighted_adapter combination types: "
            f"{list(COMBINATIONS)}."
        )
    for i, w in enumerate(weights):
        if not math.isfinite(w) or w < 0:
            raise PlatypusError(
                f"merge.weights[{i}]={w}: weights must be finite and >= 0 (negative weights, i.e. subtracting an "
                f"adapter, are not supported by this stage)."
            )
    if weights and sum(weights) == 0:
        raise PlatypusError("merge.weights are all 0: the merge would leave the target unchanged.")
    density = cfg.density
    if cfg.combination in USES_DENSITY:
        if density is None or not (0 < density <= 1):
            raise PlatypusError(
                f"merge.combination={cfg.combination} needs merge.density in (0, 1] (the fraction of values kept), "
                f"got {density}; set e.g. merge.density=0.5."
            )
    elif density is not None:
        raise PlatypusError(
            f"merge.density={density} does not apply to merge.combination={cfg.combination}; it is used by "
            f"{list(USES_DENSITY)}. Remove it (merge.density=null)."
        )
    if cfg.majority_sign_method not in SIGN_METHODS:
        raise PlatypusError(
            f"merge.majority_sign_method={cfg.majority_sign_method!r}: use one of {list(SIGN_METHODS)} "
            f"(used by {list(USES_SIGN)})."
        )
    if cfg.svd_rank is not None and (not cfg.combination.endswith("svd") or cfg.svd_rank < 1):
        raise PlatypusError(
            f"merge.svd_rank={cfg.svd_rank}: a positive rank, used by the *svd combinations only "
            f"(combination is {cfg.combination})."
        )


def check_recipe(cfg: DictConfig, adapters: Sequence[Path]) -> list[float]:
    """Check the recipe against the adapters (configs only); return the weights to use."""
    check_settings(cfg)
    if not adapters:
        raise PlatypusError(
            "stages: 'merge' needs an adapter. Add train to stages, or give merge.adapters=[path/to/adapter]."
        )
    weights = [float(w) for w in cfg.weights]
    if cfg.recipe != "weighted":
        if len(adapters) != 1:
            raise PlatypusError(
                f"merge.recipe={cfg.recipe} folds exactly one adapter (got {len(adapters)}: "
                f"{[str(a) for a in adapters]}). To combine several use merge.recipe=weighted "
                f"(e.g. merge=weighted_cat), or give one adapter in merge.adapters=[...]."
            )
        adapter_config(adapters[0])  # a PEFT folder
        return [1.0]
    if weights and len(weights) != len(adapters):
        raise PlatypusError(
            f"merge.weights has {len(weights)} weight(s) for {len(adapters)} adapter(s); give one weight per "
            f"adapter, in the order of merge.adapters, or leave merge.weights empty for 1.0 each."
        )
    weights = weights or [1.0] * len(adapters)

    configs = [adapter_config(a) for a in adapters]
    for adapter, config in zip(adapters, configs):
        if config.get("peft_type", "LORA") != "LORA":
            raise PlatypusError(
                f"merge.recipe=weighted combines LoRA adapters (add_weighted_adapter); {adapter} is "
                f"{config.get('peft_type')}."
            )
        if config.get("use_dora"):
            raise PlatypusError(
                f"merge.recipe=weighted: {adapter} is a DoRA adapter (use_dora=true); add_weighted_adapter combines "
                f"only the A/B factors, not DoRA's magnitude vectors. Fold it alone (merge=into_base)."
            )
    if len(adapters) > 1 and cfg.combination in EQUAL_RANK:
        ranks = [_rank(c) for c in configs]
        if len(set(json.dumps(r, sort_keys=True) for r in ranks)) > 1:
            listed = ", ".join(f"r={r}{' ' + str(p) if p else ''} ({a})" for (r, p), a in zip(ranks, adapters))
            raise PlatypusError(
                f"merge.combination={cfg.combination} needs adapters of equal rank: PEFT combines their A and B "
                f"factors separately (each scaled by sqrt(weight)), which only lines up for equal ranks; got "
                f"{listed}. Use merge.combination=cat (exact weighted sum, rank = sum of ranks) or an *_svd "
                f"variant (re-factorised to merge.svd_rank)."
            )
    return weights


# --------------------------------------------------------------------------- identities
def resolve_target(cfg: DictConfig, base_path: str, cache_dir: str) -> str:
    """The model the adapter(s) are folded into: the base, or ``merge.target``."""
    target = cfg.target
    if cfg.recipe == "into_model" and not target:
        raise PlatypusError(
            "merge.recipe=into_model needs merge.target=<hub id, model folder or conf/model preset name>."
        )
    if not target:
        return base_path
    preset = MODEL_PRESETS / f"{target}.yaml"
    if "/" not in target and not Path(target).exists() and preset.is_file():
        node = OmegaConf.load(preset)
        resolved = models.resolve(node.path, node.get("gguf_file"), cache_dir, key=f"merge.target={target} (model preset)")
    else:
        resolved = models.resolve(target, None, cache_dir, key="merge.target")
    if cfg.recipe == "into_base" and Path(resolved).resolve() != Path(base_path).resolve() and resolved != base_path:
        raise PlatypusError(
            f"merge.recipe=into_base folds into the base model ({base_path}); merge.target={target!r} is for "
            f"merge.recipe=into_model or weighted."
        )
    return resolved


# --------------------------------------------------------------------------- compatibility
def _load_config(path: str, trust_remote_code: bool) -> dict | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).to_dict()
    except (OSError, ValueError):
        return None


def check_compatible(target_path: str, adapter: Path, trust_remote_code: bool) -> list[str]:
    """Refuse pairs that would merge silently into garbage; return warnings for the card."""
    from transformers import AutoConfig

    recorded = adapter_config(adapter).get("base_model_name_or_path")
    target_cfg = AutoConfig.from_pretrained(target_path, trust_remote_code=trust_remote_code).to_dict()
    if target_cfg.get("quantization_config"):
        raise PlatypusError(
            f"merge.target={target_path!r} is quantized ({target_cfg['quantization_config'].get('quant_method')}); "
            f"folding a LoRA delta into quantized weights loses it. Load an unquantized copy (or dequantize it first)."
        )
    warnings = []
    base_cfg = _load_config(recorded, trust_remote_code) if recorded else None
    if base_cfg is not None:
        diff = {k: (base_cfg.get(k), target_cfg.get(k)) for k in SHAPE_KEYS if base_cfg.get(k) != target_cfg.get(k)}
        if diff:
            details = "; ".join(f"{k}: adapter base {a} vs target {b}" for k, (a, b) in diff.items())
            raise PlatypusError(
                f"merge: the adapter {adapter} was trained on {recorded}, whose architecture/shape differs from the "
                f"target {target_path}: {details}. A LoRA merges only into a model of the same architecture and sizes: "
                f"choose such a merge.target (or merge=into_base to fold it into its own base)."
            )
    elif recorded:
        warnings.append(f"adapter {adapter}: its recorded base {recorded!r} is not available locally; architecture "
                        f"not compared, factor shapes checked against the target")
    if (adapter / "tokenizer_config.json").is_file():
        if _same_tokenizer_files(adapter, target_path):
            pass  # byte-identical tokenizer files: nothing to compare
        elif not _same_tokenizer(str(adapter), target_path, trust_remote_code):
            raise PlatypusError(
                f"merge: the tokenizer of {target_path} differs from the one the adapter {adapter} was trained with "
                f"(vocabulary or special tokens), so the merged model would read token ids wrongly. Merge into a "
                f"model that shares the adapter's tokenizer."
            )
    else:
        warnings.append(f"adapter {adapter} has no saved tokenizer; tokenizer identity not checked (vocab size only)")
    if recorded and str(recorded) != str(target_path):
        warnings.append(f"adapter {adapter} trained on {recorded}, folded into {target_path} (a different model)")
    return warnings


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def _same_tokenizer_files(adapter: Path, target_path: str) -> bool:
    target = Path(target_path)
    if not target.is_dir() or not (adapter / "tokenizer.json").is_file():
        return False
    for name in TOKENIZER_FILES:
        mine, theirs = adapter / name, target / name
        if mine.is_file() != theirs.is_file() or (mine.is_file() and models.file_sha256(mine) != models.file_sha256(theirs)):
            return False
    return True


def _stamp(path: str) -> tuple:
    folder = Path(path)
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                 for n in TOKENIZER_FILES if (folder / n).is_file())


@lru_cache(maxsize=8)
def _tokenizer_signature(path: str, trust_remote_code: bool, stamp: tuple) -> tuple:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return tuple(sorted(tokenizer.get_vocab().items())), tuple(tokenizer.all_special_tokens)


def _same_tokenizer(adapter: str, target_path: str, trust_remote_code: bool) -> bool:
    """Same vocabulary (token -> id) and special tokens."""
    return (_tokenizer_signature(adapter, False, _stamp(adapter))
            == _tokenizer_signature(target_path, trust_remote_code, _stamp(target_path)))


def check_factor_shapes(model: torch.nn.Module, adapter: Path) -> None:
    """Every LoRA factor must fit the target's layer (PEFT would fail with a bare size mismatch)."""
    weights = Path(adapter) / "adapter_model.safetensors"
    if not weights.is_file():
        return
    from safetensors import safe_open

    layers = dict(model.named_modules())
    problems = []
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            for side in (".lora_A.", ".lora_B."):
                if side not in key:
                    continue
                name = key.split(side)[0].removeprefix("base_model.model.")
                layer = layers.get(name)
                shape = handle.get_slice(key).get_shape()
                if layer is None:
                    problems.append(f"{name} (absent from the target)")
                elif isinstance(layer, torch.nn.Linear) and len(shape) == 2:
                    expected = layer.in_features if side == ".lora_A." else layer.out_features
                    got = shape[1] if side == ".lora_A." else shape[0]
                    if got != expected:
                        problems.append(f"{key}: {got} vs the target's {expected}")
    if problems:
        raise PlatypusError(
            f"merge: the adapter {adapter} does not fit the target model's layers: {problems[:5]}"
            f"{' ...' if len(problems) > 5 else ''}. It was trained on a model of another architecture or size."
        )


def _target_modules(config: dict) -> list[str] | None:
    modules = config.get("target_modules")
    return list(modules) if isinstance(modules, (list, tuple)) else None  # a regex string is checked by shape


# --------------------------------------------------------------------------- the stage
def merge(cfg: DictConfig, model_cfg: DictConfig, base_path: str, adapters: Path | str | Iterable[Path | str],
          out_dir: Path, cache_dir: str, seed: int = 0) -> dict:
    """Fold one adapter (``into_base``/``into_model``) or a weighted combination (``weighted``)."""
    from peft import PeftModel

    adapters = [Path(adapters)] if isinstance(adapters, (str, Path)) else [Path(a) for a in adapters]
    weights = check_recipe(cfg, adapters)
    dtype = models.torch_dtype(cfg.dtype, "merge.dtype")
    target_path = resolve_target(cfg, base_path, cache_dir)
    warnings: list[str] = []
    for adapter in adapters:
        warnings += check_compatible(target_path, adapter, model_cfg.trust_remote_code)
    configs = [adapter_config(a) for a in adapters]

    tokenizer = models.load_tokenizer(target_path, model_cfg.trust_remote_code)
    target = models.load_model(target_path, "float32", "none", model_cfg.trust_remote_code)
    for adapter, config in zip(adapters, configs):
        if _target_modules(config) is not None:
            check_target_modules(target, _target_modules(config), key=f"adapter {adapter} targets")
        check_factor_shapes(target, adapter)

    names = [f"adapter_{i}" for i in range(len(adapters))]
    peft_model = PeftModel.from_pretrained(target, adapters[0], adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        peft_model.load_adapter(adapter, adapter_name=name)
    active = names[0]
    if cfg.recipe == "weighted":
        torch.manual_seed(seed)  # DARE prunes at random
        try:
            peft_model.add_weighted_adapter(
                names, weights, WEIGHTED_NAME, combination_type=cfg.combination, svd_rank=cfg.svd_rank,
                svd_clamp=cfg.svd_clamp, density=cfg.density, majority_sign_method=cfg.majority_sign_method,
            )
        except (ValueError, TypeError) as error:
            raise PlatypusError(f"merge: PEFT's add_weighted_adapter refused the combination: {error}") from error
        active = WEIGHTED_NAME
        peft_model.set_adapter(active)
        if len(adapters) == 1 and cfg.combination != "linear":
            warnings.append(f"a single adapter: PEFT combines it with 'linear' (exact), not {cfg.combination!r}")
        if len(adapters) > 1 and cfg.combination in EQUAL_RANK:
            warnings.append(f"combination {cfg.combination!r} scales A and B each by sqrt(weight*scaling): not the "
                            f"exact weighted sum of the adapters' deltas (use 'cat' for that)")
    peft_model.eval()
    reference = _logits(peft_model, tokenizer)  # the unfolded model, compared after folding
    merged = peft_model.merge_and_unload(adapter_names=[active])
    gap = float((reference - _logits(merged, tokenizer)).abs().max())

    folder = out_dir / "model"
    merged.to(dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    inputs = [
        {
            "path": str(adapter),
            "weights_sha256": {f: models.file_sha256(adapter / f) for f in ADAPTER_WEIGHTS if (adapter / f).is_file()},
            "config_sha256": models.file_sha256(adapter / "adapter_config.json"),
            "recorded_base": config.get("base_model_name_or_path"),
            "r": config.get("r"),
            "lora_alpha": config.get("lora_alpha"),
            "target_modules": config.get("target_modules"),
            "weight": weight,
        }
        for adapter, config, weight in zip(adapters, configs, weights)
    ]
    card = {
        "recipe": cfg.recipe,
        "target": models.identity(target_path),
        "adapters": inputs,
        "adapter_recorded_base": configs[0].get("base_model_name_or_path"),
        "dtype": cfg.dtype,
        "max_abs_logit_diff_fp32": gap,
        "folder_bytes": size,
        "warnings": warnings,
    }
    if cfg.recipe == "weighted":
        card["weighted"] = {"combination": cfg.combination, "weights": weights, "density": cfg.density,
                            "majority_sign_method": cfg.majority_sign_method if cfg.combination in USES_SIGN else None,
                            "svd_rank": cfg.svd_rank, "svd_clamp": cfg.svd_clamp, "seed": seed}
    write_card(card, out_dir / "merge_card.md")
    return card


@torch.no_grad()
def _logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE_PROMPTS, return_tensors="pt", padding=True)
    logits = model(**batch).logits.float()
    return logits[batch["attention_mask"].bool()]


def write_card(card: dict, path: Path) -> None:
    lines = ["# Merge card", ""]
    for key, value in card.items():
        if key in ("warnings", "adapters", "target", "weighted"):
            continue
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## Target", ""] + [f"- **{k}**: {v}" for k, v in card["target"].items() if k != "files"]
    lines += [f"- `{name}` sha256 {sha}" for name, sha in card["target"].get("files", {}).items()]
    if "weighted" in card:
        lines += ["", "## Combination (PEFT add_weighted_adapter)", ""]
        lines += [f"- **{k}**: {v}" for k, v in card["weighted"].items()]
    lines += ["", "## Adapters", ""]
    for i, adapter in enumerate(card["adapters"]):
        lines.append(f"{i + 1}. `{adapter['path']}` (weight {adapter['weight']}, r {adapter['r']}, alpha "
                     f"{adapter['lora_alpha']}, targets {adapter['target_modules']})")
        lines.append(f"   - recorded base model: {adapter['recorded_base']}")
        lines += [f"   - `{name}` sha256 {sha}" for name, sha in adapter["weights_sha256"].items()]
        lines.append(f"   - `adapter_config.json` sha256 {adapter['config_sha256']}")
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in card["warnings"]] or ["- none"])
    path.write_text("\n".join(lines) + "\n")

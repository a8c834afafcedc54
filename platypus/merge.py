"""Merge stage: fold a LoRA adapter into its base, or into another fine-tune of the same
architecture (how Stable-/Camel-/OpenOrca-Platypus2 were made), with PEFT's public API.

Everything is validated before any weights are written; the result is a standard HF folder
plus ``merge_card.md`` and the logit agreement between the folded and the unfolded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from platypus import models
from platypus.errors import PlatypusError
from platypus.train import check_target_modules

RECIPES = ("none", "into_base", "into_model")
SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")
PROBE_PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is 7 times 8?\n\n### Response:\n",
    "The derivative of x^2 is",
    "Photosynthesis converts light energy into",
]


def adapter_config(adapter: Path) -> dict:
    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise PlatypusError(f"merge.adapters: {adapter} is not a PEFT adapter folder (no adapter_config.json).")
    return json.loads(path.read_text())


def check_compatible(target_path: str, adapter: Path, trust_remote_code: bool) -> list[str]:
    """Refuse pairs that would merge silently into garbage; return warnings for the card."""
    from transformers import AutoConfig, AutoTokenizer

    recorded = adapter_config(adapter).get("base_model_name_or_path")
    target_cfg = AutoConfig.from_pretrained(target_path, trust_remote_code=trust_remote_code).to_dict()
    if target_cfg.get("quantization_config"):
        raise PlatypusError(
            f"merge.target={target_path!r} is quantized ({target_cfg['quantization_config'].get('quant_method')}); "
            f"folding a LoRA delta into quantized weights loses it. Load an unquantized copy (or dequantize it first)."
        )
    warnings = []
    if recorded and Path(recorded).exists():
        base_cfg = AutoConfig.from_pretrained(recorded, trust_remote_code=trust_remote_code).to_dict()
        diff = {k: (base_cfg.get(k), target_cfg.get(k)) for k in SHAPE_KEYS if base_cfg.get(k) != target_cfg.get(k)}
        if diff:
            details = "; ".join(f"{k}: adapter base {a} vs target {b}" for k, (a, b) in diff.items())
            raise PlatypusError(
                f"merge: the adapter {adapter} was trained on {recorded}, whose shape differs from the target "
                f"{target_path}: {details}. A LoRA merges only into a model of the same architecture and sizes."
            )
    elif recorded:
        warnings.append(f"adapter's recorded base {recorded!r} is not available locally; shapes checked by PEFT only")
    if (adapter / "tokenizer_config.json").is_file():
        trained = AutoTokenizer.from_pretrained(adapter)
        target = AutoTokenizer.from_pretrained(target_path, trust_remote_code=trust_remote_code)
        if trained.get_vocab() != target.get_vocab() or trained.all_special_tokens != target.all_special_tokens:
            raise PlatypusError(
                f"merge: the tokenizer of {target_path} differs from the one the adapter {adapter} was trained with "
                f"(vocabulary or special tokens), so the merged model would read token ids wrongly. Merge into a "
                f"model that shares the adapter's tokenizer."
            )
    if recorded and str(recorded) != str(target_path):
        warnings.append(f"adapter trained on {recorded}, folded into {target_path} (a different model)")
    return warnings


def merge(cfg: DictConfig, model_cfg: DictConfig, base_path: str, adapter: Path, out_dir: Path, cache_dir: str) -> dict:
    """Fold ``adapter`` into the base (``into_base``) or ``merge.target`` (``into_model``)."""
    from peft import PeftModel

    if cfg.recipe not in RECIPES:
        raise PlatypusError(f"merge.recipe={cfg.recipe!r}: use one of {list(RECIPES)}.")
    dtype = models.torch_dtype(cfg.dtype, "merge.dtype")
    if cfg.recipe == "into_model":
        if not cfg.target:
            raise PlatypusError("merge.recipe=into_model needs merge.target=<hub id or model folder>.")
        target_path = models.resolve(cfg.target, None, cache_dir, key="merge.target")
    else:
        target_path = base_path
    warnings = check_compatible(target_path, adapter, model_cfg.trust_remote_code)

    tokenizer = models.load_tokenizer(target_path, model_cfg.trust_remote_code)
    target = models.load_model(target_path, "float32", "none", model_cfg.trust_remote_code)
    check_target_modules(target, list(adapter_config(adapter)["target_modules"]), key=f"adapter {adapter} targets")
    peft_model = PeftModel.from_pretrained(target, adapter)
    peft_model.eval()
    reference = _logits(peft_model, tokenizer)  # the unfolded model, compared after folding
    merged = peft_model.merge_and_unload()
    gap = float((reference - _logits(merged, tokenizer)).abs().max())

    folder = out_dir / "model"
    merged.to(dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    card = {
        "recipe": cfg.recipe,
        "target": target_path,
        "adapter": str(adapter),
        "adapter_recorded_base": adapter_config(adapter).get("base_model_name_or_path"),
        "dtype": cfg.dtype,
        "max_abs_logit_diff_fp32": gap,
        "folder_bytes": size,
        "warnings": warnings,
    }
    write_card(card, out_dir / "merge_card.md")
    return card


@torch.no_grad()
def _logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE_PROMPTS, return_tensors="pt", padding=True)
    logits = model(**batch).logits.float()
    return logits[batch["attention_mask"].bool()]


def write_card(card: dict, path: Path) -> None:
    lines = ["# Merge card", ""]
    lines += [f"- **{k}**: {v}" for k, v in card.items() if k != "warnings"]
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in card["warnings"]] or ["- none"])
    path.write_text("\n".join(lines) + "\n")

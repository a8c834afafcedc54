"""Will an adapter fold correctly into a target? Checked from configs and file headers before weights load.

Refused, each with a message naming what differs: another architecture or size, another vocabulary (ids that
name other tokens; an *extended* one is accepted for an adapter that trains no embedding rows), target modules
the model lacks, LoRA factors that do not fit its layers, a quantized target, an adapter folder PEFT cannot read.
"""

from __future__ import annotations

import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256
from platypus.runtime.weights import load_pickled_tensors

# Settings that change what the weights mean without changing their shapes: recorded on the card when they differ.
POSITION_KEYS = ("rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings", "rms_norm_eps")
OUTPUT_HEADS = ("lm_head", "embed_out")
SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_config(adapter: Path) -> dict:
    """The adapter's PEFT config, as a dict. Its peft_type and the types of its fields are checked against PEFT's
    config class first: PEFT checks neither (an unknown type is a bare KeyError, a wrong type fails as the weights
    load)."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PeftConfig

    file = Path(adapter) / "adapter_config.json"
    if not file.is_file():
        raise PlatypusError(f"merge.adapters: {adapter} is not a PEFT adapter folder (no adapter_config.json).")
    todo = "point merge.adapters at a folder saved by PEFT's save_pretrained (e.g. <run>/train/adapter)"
    try:
        saved = PeftConfig.from_json_file(str(file))
    except ValueError as error:
        raise PlatypusError(f"merge.adapters: {file} is not valid JSON ({error}); {todo}.") from None
    peft_type = saved.get("peft_type") if isinstance(saved, dict) else None
    config_class = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type) if isinstance(peft_type, str) else None
    if config_class is None:
        raise PlatypusError(
            f"merge.adapters: {file} has peft_type={peft_type!r}, which is not an adapter type PEFT knows; a LoRA "
            f"adapter saved by PEFT has peft_type LORA. Fix that field, or {todo}."
        )
    hints = typing.get_type_hints(config_class)
    wrong = [f"{key}={value!r} ({config_class.__name__} expects {_type_name(hints[key])})"
             for key, value in saved.items() if key in hints and not _fits(value, hints[key])]
    if wrong:
        raise PlatypusError(
            f"merge.adapters: {file} has field(s) of the wrong type: {'; '.join(wrong)}. Fix them (PEFT's "
            f'save_pretrained writes e.g. "r": 8, "target_modules": ["q_proj"]), or {todo}.'
        )
    try:
        return PeftConfig.from_pretrained(str(adapter)).to_dict()
    except (ValueError, TypeError) as error:
        raise PlatypusError(
            f"merge.adapters: {file} is not a config PEFT can read ({type(error).__name__}: {error}); {todo}."
        ) from None


def _fits(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a PEFT config field's annotation? (Other classes, e.g. sub-configs: left to PEFT.)"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint in (bool, str, type(None)):
        return type(value) is hint
    if hint in (int, float):  # any number: PEFT itself takes e.g. lora_alpha=16.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if (origin or hint) in (list, tuple, set):
        return isinstance(value, list) and (not args or all(_fits(item, args[0]) for item in value))
    if (origin or hint) is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def adapter_rank(config: dict) -> tuple[int, dict]:
    return int(config.get("r", 0)), dict(config.get("rank_pattern") or {})


def target_modules(config: dict) -> list[str] | None:
    modules = config.get("target_modules")
    return sorted(modules) if isinstance(modules, (list, tuple, set)) else None  # a regex string is checked by shape


def _load_config(path: str, trust_remote_code: bool) -> dict | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).to_dict()
    except (OSError, ValueError):
        return None


def check_compatible(target_path: str, adapter: Path, trust_remote_code: bool) -> tuple[list[str], list[str]]:
    """Refuse pairs that would merge silently into garbage; return (warnings, what was compared) for the card.

    A target whose vocabulary *extends* the adapter base's (tokens added after its ids, every shared id the same
    string: OpenOrcaxOpenChat's 32,002 over Llama-2's 32,000) takes an adapter that trains no embedding or output
    rows: its factors act on hidden states only, so they mean the same in both models."""
    from transformers import AutoConfig

    config = adapter_config(adapter)
    recorded = config.get("base_model_name_or_path")
    target_cfg = AutoConfig.from_pretrained(target_path, trust_remote_code=trust_remote_code).to_dict()
    if target_cfg.get("quantization_config"):
        raise PlatypusError(
            f"merge.target={target_path!r} is quantized ({target_cfg['quantization_config'].get('quant_method')}); "
            f"folding a LoRA delta into quantized weights loses it. Load an unquantized copy (or dequantize it first)."
        )
    _refuse_head_on_tied(target_path, target_cfg, adapter, config)
    warnings, compared = [], []
    base_cfg = _load_config(recorded, trust_remote_code) if recorded else None
    if base_cfg is not None:
        warnings += [f"adapter {adapter}: {k} is {base_cfg.get(k)!r} in its base {recorded} but {target_cfg.get(k)!r} in "
                     f"the target (positions/normalisation the adapter was not trained with)"
                     for k in POSITION_KEYS if base_cfg.get(k) != target_cfg.get(k)]
        diff = {k: (base_cfg.get(k), target_cfg.get(k)) for k in SHAPE_KEYS if base_cfg.get(k) != target_cfg.get(k)}
        grown = set(diff) == {"vocab_size"} and (target_cfg["vocab_size"] or 0) > (base_cfg["vocab_size"] or 0)
        if diff and not grown:
            details = "; ".join(f"{k}: adapter base {a} vs target {b}" for k, (a, b) in diff.items())
            raise PlatypusError(
                f"merge: the adapter {adapter} was trained on {recorded}, whose architecture/shape differs from the "
                f"target {target_path}: {details}. A LoRA merges only into a model of the same architecture and sizes: "
                f"choose such a merge.target (or merge=into_base to fold it into its own base)."
            )
        compared.append(f"architecture and sizes ({', '.join(SHAPE_KEYS)}): "
                        + ("the same" if not diff else f"the same but vocab_size {diff['vocab_size'][0]} -> "
                           f"{diff['vocab_size'][1]} (checked below)"))
    elif recorded:
        warnings.append(f"adapter {adapter}: its recorded base {recorded!r} is not available locally; architecture "
                        f"not compared, factor shapes checked against the target")
    if (adapter / "tokenizer_config.json").is_file():
        compared.append(f"vocabulary: {_check_vocabulary(adapter, target_path, trust_remote_code, config)}")
    else:
        warnings.append(f"adapter {adapter} has no saved tokenizer; tokenizer identity not checked (vocab size only)")
    if recorded and str(recorded) != str(target_path):
        warnings.append(f"adapter {adapter} trained on {recorded}, folded into {target_path} (a different model)")
    return warnings, compared


def _refuse_head_on_tied(target_path: str, target_cfg: dict, adapter: Path, config: dict) -> None:
    """Folding an output-head adapter into tied embeddings would change the input embeddings too."""
    if not target_cfg.get("tie_word_embeddings"):
        return
    heads = [found for found in trained_embeddings(adapter, config) if any(h in found for h in OUTPUT_HEADS)]
    if heads:
        raise PlatypusError(
            f"merge: the adapter {adapter} trains the output head ({'; '.join(heads)}), and {target_path} ties its "
            f"output head to its input embeddings (tie_word_embeddings=true): folding it would silently change the "
            f"input embeddings as well. Merge into a target with untied embeddings, keep the adapter unmerged "
            f"(merge=none), or train without lm_head in lora.target_modules."
        )


def adapter_shapes(adapter: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the adapter's weights (safetensors header, or a pickle read as tensors only)."""
    weights = [Path(adapter) / name for name in ADAPTER_WEIGHTS if (Path(adapter) / name).is_file()]
    if not weights:
        return {}
    if weights[0].suffix == ".bin":
        return {k: tuple(t.shape) for k, t in load_pickled_tensors(weights[0], "merge.adapters").items()}
    from safetensors import safe_open

    with safe_open(str(weights[0]), framework="pt") as handle:
        return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}


EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_out", "word_embeddings")


def trained_embeddings(adapter: Path, config: dict) -> list[str]:
    """What of the adapter is indexed by token id: trained embedding/output rows or LoRA on them."""
    found = [f"{key}={config[key]}" for key in ("modules_to_save", "trainable_token_indices") if config.get(key)]
    modules = config.get("target_modules")
    names = [modules] if isinstance(modules, str) else list(modules or [])
    found += [f"target_modules has {n!r}" for n in names if any(e in n for e in EMBEDDING_NAMES)]
    found += [f"weights hold {k}" for k in adapter_shapes(adapter) if any(e in k for e in EMBEDDING_NAMES)][:3]
    return found


def _check_vocabulary(adapter: Path, target_path: str, trust_remote_code: bool, config: dict) -> str:
    """The same tokenizer, or one that extends the adapter's (for an adapter trained on hidden states only)."""
    if _same_tokenizer_files(adapter, target_path):
        return "the same tokenizer files (byte-identical)"
    (mine, mine_special), (theirs, their_special) = (
        _tokenizer_signature(path, trust, _stamp(path)) for path, trust in ((str(adapter), False),
                                                                            (target_path, trust_remote_code)))
    if mine == theirs and mine_special == their_special:
        return f"the same ({len(mine):,} tokens, the same special tokens)"
    by_id, their_by_id = {i: t for t, i in mine}, {i: t for t, i in theirs}
    moved = [(i, t, their_by_id.get(i)) for i, t in sorted(by_id.items()) if their_by_id.get(i) != t]
    todo = "Merge into a model that shares the adapter's tokenizer"
    if moved:
        raise PlatypusError(
            f"merge: the tokenizer of {target_path} differs from the one the adapter {adapter} was trained with: "
            f"{len(moved):,} of its {len(by_id):,} ids name other tokens there (e.g. id {moved[0][0]}: "
            f"{moved[0][1]!r} vs {moved[0][2]!r}), so the merged model would read token ids wrongly. {todo} "
            f"(or whose vocabulary only adds tokens after it)."
        )
    added = [their_by_id[i] for i in sorted(their_by_id) if i not in by_id]
    special = "" if mine_special == their_special else (
        f"; special tokens differ ({sorted(set(mine_special) ^ set(their_special))}), which LoRA factors do not read")
    if not added:
        return f"the same {len(by_id):,} tokens{special}"
    embeddings = trained_embeddings(adapter, config)
    if embeddings:
        raise PlatypusError(
            f"merge: {target_path} adds {len(added)} token(s) to the vocabulary the adapter {adapter} was trained "
            f"with ({added[:4]}), and the adapter trains rows indexed by token id ({'; '.join(embeddings)}), which "
            f"do not line up with the target's. {todo}, or train the adapter on hidden-state modules only "
            f"(e.g. lora=platypus)."
        )
    return (f"the target's extends the adapter's: its {len(by_id):,} ids name the same tokens, {len(added)} added "
            f"after them ({added[:8]}); the adapter trains no embedding or output rows{special}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def _same_tokenizer_files(adapter: Path, target_path: str) -> bool:
    target = Path(target_path)
    if not target.is_dir() or not (adapter / "tokenizer.json").is_file():
        return False
    for name in TOKENIZER_FILES:
        mine, theirs = adapter / name, target / name
        if mine.is_file() != theirs.is_file() or (mine.is_file() and file_sha256(mine) != file_sha256(theirs)):
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


def check_factor_shapes(model: torch.nn.Module, adapter: Path) -> None:
    """Every LoRA factor must fit the target's layer (PEFT would fail with a bare size mismatch)."""
    layers = dict(model.named_modules())
    problems = []
    for key, shape in adapter_shapes(adapter).items():
        for side in (".lora_A.", ".lora_B."):
            if side not in key:
                continue
            name = key.split(side)[0].removeprefix("base_model.model.")
            layer = layers.get(name)
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

"""The streaming engine (``merge.engine=stream``, the default): the target's tensors read one at a time, each
targeted one folded as ``W + s·B·A`` in ``merge.fold_dtype`` and cast to ``merge.dtype``, the others cast the
same way (byte for byte unchanged when the dtypes agree), written in shards of at most ``merge.shard_mb``.

The adapters are loaded and combined by PEFT on the target's weightless skeleton (platypus/stages/merge/
skeleton.py): weighted recipes combine the small factors first, and each delta is PEFT's own
``get_delta_weight``, added as ``merge_and_unload`` adds it, so the result equals the in-memory engine's.
Memory: one output shard, one tensor and its delta, whatever the size of the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from platypus.fields import Dtype
from platypus.runtime import models
from platypus.stages.merge import check, peft_engine
from platypus.stages.merge.shards import ShardWriter, TargetWeights, plan_shards
from platypus.stages.merge.skeleton import skeleton, write_model_files

GIB = 1024**3


def lora_layers(peft_model, active: str) -> dict[str, torch.nn.Module]:
    """The target's weight name -> the PEFT LoRA layer that folds the active adapter into it."""
    from peft.tuners.lora import LoraLayer

    found = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and active in (set(module.lora_A) | set(module.lora_embedding_A)):
            found[name.removeprefix("base_model.model.") + ".weight"] = module
    return found


def folded(tensor: torch.Tensor, layer, active: str, fold: torch.dtype, out: torch.dtype) -> torch.Tensor:
    """As PEFT's merge_and_unload computes it on a model loaded in ``fold``, then saved in ``out``."""
    if not tensor.is_floating_point():
        return tensor
    if layer is None:
        return tensor.to(fold).to(out)
    weight = tensor.to(fold, copy=True)
    weight += layer.get_delta_weight(active)
    return weight.to(out)


def fold_streaming(target_path: str, adapters, recipe, weights, cfg, seed: int, trust_remote_code: bool,
                   folder: Path) -> dict:
    """Fold and save into ``folder``; the card's engine facts (which check ran, its largest error)."""
    model = skeleton(target_path, cfg.fold_dtype, trust_remote_code)
    peft_model, active, warnings = peft_engine.with_adapters(model, adapters, recipe, weights, cfg, seed)
    layers = lora_layers(peft_model, active)
    fold, out = Dtype(cfg.fold_dtype).torch(), Dtype(cfg.dtype).torch()
    target = TargetWeights(target_path)
    headers = target.headers()
    sizes = {n: math.prod(headers[n][1]) * (out.itemsize if headers[n][0].is_floating_point else headers[n][0].itemsize)
             for n in target.files}
    check_logits = 2 * sum(math.prod(s) for _, s in headers.values()) * fold.itemsize <= cfg.check_memory_gb * GIB
    writer = ShardWriter(folder, plan_shards(sizes, int(cfg.shard_mb * 1024**2)))
    generator, largest = torch.Generator().manual_seed(seed), 0.0
    for file, tensors in target.by_file():
        names = [n for n, f in target.files.items() if f == file]
        for name, tensor in tqdm(tensors, total=len(names), desc=f"merge {file.name}", unit="tensor", leave=False):
            layer = layers.get(name)
            result = folded(tensor, layer, active, fold, out)
            if layer is not None and not check_logits:
                largest = max(largest, check.sampled_rows_error(layer, active, tensor, result, generator))
            writer.add(name, result)
    bytes_written = writer.finish()
    write_model_files(target_path, folder, cfg.dtype, trust_remote_code)
    if check_logits:
        largest = _logit_check(target_path, adapters, recipe, weights, cfg, seed, trust_remote_code, folder)
    return {"check": "logits" if check_logits else "per_tensor", "check_max_abs_error": largest,
            "tensors_folded": len(layers), "recipe_warnings": warnings, "weights_bytes_written": bytes_written}


def _logit_check(target_path, adapters, recipe, weights, cfg, seed, trust_remote_code, folder: Path) -> float:
    unfolded_model, _, _ = peft_engine.unfolded(target_path, adapters, recipe, weights, cfg, seed, trust_remote_code)
    merged = models.load_model(str(folder), cfg.fold_dtype, "none", trust_remote_code)
    return check.logit_gap(unfolded_model, merged, models.load_tokenizer(target_path, trust_remote_code))

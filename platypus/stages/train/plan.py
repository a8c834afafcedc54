"""The train stage's plan: peak memory (weights, LoRA state, activations, logits), FLOPs and the basis of both."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from platypus.fields import Dtype, Quantization, Role
from platypus.planning import (A100, CALIBRATED, GIB, OVERHEAD_GIB, PLANNED_GPUS, ModelFacts, StagePlan,
                               lora_parameters, training_tokens)

# Model FLOPs utilisation by whether the base is quantized: on a bitsandbytes 8-bit/4-bit base, calibrated to the
# paper; on a 16-bit base, twice that (bitsandbytes' int8 matmuls, dequantising and decomposing outlier columns, run
# at about half speed: stated, not measured).
MFU = {True: (CALIBRATED, "the paper's 13B epoch in ~5 h on one A100"),
       False: (2 * CALIBRATED, "2x the paper-calibrated 8-bit utilisation")}


ROW = "train"  # the stage's row in the plan's table


def plan_training(cfg: DictConfig, model: ModelFacts) -> StagePlan:
    t, arch, n = cfg.train, model.arch, model.parameters
    rows, mean_tokens, source = training_tokens(cfg)
    trainable = lora_parameters(arch, list(cfg.lora.target_modules), cfg.lora.r)
    tokens = (t.max_steps * t.global_batch_size * (t.cutoff_len if t.packing else mean_tokens) if t.max_steps > 0
              else rows * mean_tokens * t.num_epochs)
    longest = t.micro_batch_size * t.cutoff_len  # peak: a micro-batch at the cutoff
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    per_layer = longest * (18 * h + 8 * i)  # 16-bit activations a layer keeps for backward (SDPA: no T x T)
    activations = layers * longest * 2 * h + per_layer if t.gradient_checkpointing else layers * per_layer
    gib = (n * model.weight_bytes + 16 * trainable + activations + longest * arch["vocab_size"] * 4) / GIB + OVERHEAD_GIB
    factor = 6 if t.gradient_checkpointing else 4  # forward + input gradients (+ recomputed forward); no weight gradients
    mfu, mfu_basis = MFU[cfg.model.quantization != Quantization.none]
    details = {"rows": rows, "mean_tokens": mean_tokens, "tokens": tokens, "source": source, "trainable": trainable}
    made = (f"{t.max_steps} steps x {t.global_batch_size} x {t.cutoff_len if t.packing else round(mean_tokens)}"
            if t.max_steps > 0 else f"{t.num_epochs:g} epoch x {rows:,} rows x {mean_tokens:.0f}")
    part = StagePlan(memory_gib={ROW: gib}, flops=factor * n * tokens, mfu=mfu, mfu_basis=mfu_basis, gpus=1,
                     details=details, roles=[Role.adapter.value], tight="the peak is at train.cutoff_len",
                     too_big="each process holds the whole model; lower train.cutoff_len or use 4bit")
    part.basis = (f"{tokens / 1e6:.3g} M tokens ({made}; rows and tokens from {source}), {part.flops / 1e18:.3g} EFLOP, "
                  f"MFU {part.mfu:.3f} ({part.mfu_basis}); LoRA {trainable / 1e6:.1f} M trainable")
    if t.model_parallel:  # one process: the peak that must fit is the fullest GPU's
        spread = per_gpu(arch, cfg, gib - n * model.weight_bytes / GIB)
        details["model_parallel"], part.gpus = spread, spread["gpus"]
        part.memory_gib[ROW] = max(spread["gib"].values())
        part.lines.append(f"train.model_parallel: one process, the model over {spread['gpus']} GPUs; GiB per GPU "
                          f"(weights + share of activations): "
                          + ", ".join(f"{gpu}: {g:.1f}" for gpu, g in spread["gib"].items()))
    return part


def per_gpu(arch: dict[str, Any], cfg: DictConfig, rest_gib: float) -> dict[str, Any]:
    """train.model_parallel: accelerate's device_map=auto placement over PLANNED_GPUS 80 GB GPUs (meta device), each
    GPU's weights plus its share (by weights) of the activations, LoRA state and logits (``rest_gib``)."""
    import torch

    from platypus.runtime.models import spread_over_gpus

    dtype = torch.int8 if cfg.model.quantization != Quantization.none else Dtype(cfg.model.dtype).torch()  # 4bit: an upper bound
    placed = spread_over_gpus(arch, PLANNED_GPUS, A100["memory_gib"], dtype)["gib_per_gpu"]
    total = sum(placed.values())
    return {"gpus": PLANNED_GPUS, "weights_gib": placed,
            "gib": {gpu: weights + rest_gib * weights / total for gpu, weights in placed.items()}}

"""The model LoRA trains: the base loaded (quantized, placed on the devices), prepared for k-bit training, and
the PEFT LoRA settings."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from platypus.runtime import models


def load_base_for_training(base_path: str, model_cfg: DictConfig, precision: str, model_parallel: bool):
    model = models.load_model(base_path, model_cfg.dtype, model_cfg.quantization, model_cfg.trust_remote_code,
                              compute_dtype=precision, model_parallel=model_parallel)
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        # The authors' prepare_model_for_int8_training: every non-quantized weight (norms, embeddings, lm_head) in
        # fp32. Checkpointing stays TRL's (SFTConfig's activation_checkpointing).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def peft_lora_config(lora: DictConfig):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def keep_trainable_fp32(model: torch.nn.Module) -> None:
    """TRL casts a quantized base's LoRA weights to bf16 (QLoRA's advice); under fp16 autocast they must stay fp32,
    as in the authors' 8-bit + fp16 run: the gradient scaler refuses fp16 weights, bf16 ones drop small updates."""
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

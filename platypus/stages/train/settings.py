"""The checks on ``train.*`` / ``lora.*`` that the schema's ranges cannot say, and what they resolve to
(precision, gradient accumulation): all done before any stage works."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from platypus.config import LoraConfig, TrainConfig
from platypus.fields import Dtype, Precision, choice_message, validate
from platypus.runtime import hardware
from platypus.runtime.errors import PlatypusError
from platypus.runtime.run import world_size
from platypus.stages.train.prompts import load_template


def gradient_accumulation(global_batch: int, micro_batch: int, world_size: int) -> int:
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise PlatypusError(
            f"train.global_batch_size={global_batch} is not a multiple of train.micro_batch_size={micro_batch} "
            f"x {world_size} process(es); pick sizes that divide."
        )
    return global_batch // per_step


def check_scheduler(name: str) -> None:
    """train.lr_scheduler is one of transformers' schedulers (its SchedulerType: importing it imports torch, so it
    is checked here rather than typed in the schema)."""
    from transformers.trainer_utils import SchedulerType

    if name not in [member.value for member in SchedulerType]:
        raise PlatypusError(choice_message("train.lr_scheduler", name, SchedulerType, "cosine"))


def check_settings(cfg: DictConfig, lora: DictConfig) -> None:
    """What the schema's ranges cannot say about ``train.*`` / ``lora.*``: at the start of the run and before
    training (the schema's own checks included, so a trainer built from Python is checked too)."""
    validate(cfg, TrainConfig, "train.")
    validate(lora, LoraConfig, "lora.")
    resolve_precision(cfg.precision, torch.cuda.is_available())
    check_processes(cfg)
    check_scheduler(cfg.lr_scheduler)
    if cfg.template != "chat":
        load_template(cfg.template)
    if cfg.max_steps == -1 and not cfg.num_epochs > 0:
        raise PlatypusError(
            f"train.num_epochs={cfg.num_epochs} with train.max_steps=-1 trains nothing; set train.num_epochs > 0 "
            f"(e.g. 1) or train.max_steps=<steps>."
        )
    gradient_accumulation(cfg.global_batch_size, cfg.micro_batch_size, world_size())


def check_processes(cfg: DictConfig) -> None:
    """One process per GPU (accelerate launch/torchrun), or one process with the model spread over every GPU
    (``train.model_parallel``). Several GPUs visible to one plain process would make the Trainer use DataParallel,
    which TRL refuses after the model has loaded: said here, before any stage works."""
    cuda, processes = torch.cuda.is_available(), world_size()
    if cfg.model_parallel and not cuda:
        raise PlatypusError("train.model_parallel=true needs CUDA GPUs (the model is spread over them); this machine "
                            "has none. Set train.model_parallel=false here.")
    if cfg.model_parallel and processes > 1:
        raise PlatypusError(
            f"train.model_parallel=true runs one process that spreads the model over every GPU, but {processes} "
            f"processes were launched (accelerate launch/torchrun). Run plain `python run.py ...`, or set "
            f"train.model_parallel=false to train one copy per process."
        )
    gpus = torch.cuda.device_count() if cuda else 0
    if gpus > 1 and processes == 1 and not cfg.model_parallel:
        raise PlatypusError(
            f"{gpus} GPUs are visible to this one process, and TRL trains on one GPU per process. Use one: "
            f"`CUDA_VISIBLE_DEVICES=0 python run.py ...`; or all of them: `accelerate launch --config_file "
            f"accelerate/ddp.yaml run.py stages=[train] hydra.run.dir=<run> ...` (then the other stages with plain "
            f"python in that folder), or train.model_parallel=true (one process, the model spread over the GPUs)."
        )


def resolve_precision(asked: str, cuda: bool) -> Dtype:
    """``auto``: bfloat16 on CUDA GPUs that have it (float16 on older ones); on CPU bfloat16 autocast where the CPU
    computes bf16 natively, else float32. Autocast: the LoRA weights stay float32, except under QLoRA with bfloat16
    and DeepSpeed ZeRO-3 (then bfloat16: docs/gpu.md)."""
    if asked == Dtype.float16 and not cuda:
        raise PlatypusError("train.precision=float16 needs a CUDA GPU; on CPU use bfloat16 (autocast) or float32.")
    return Dtype(asked) if asked != Precision.auto else hardware.fast_precision(cuda)

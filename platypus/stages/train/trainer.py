"""Train stage: LoRA supervised fine-tuning with TRL's SFTTrainer on the curated set.

The paper's recipe: Alpaca prompt, loss on the response only, LoRA on the MLP projections,
global batch kept whatever the number of processes (gradient accumulation is derived).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from platypus.fields import Dtype, Quantization, Resume
from platypus.runtime import models
from platypus.runtime.run import world_size
from platypus.stages.base import Artifact
from platypus.stages.train.arguments import sft_arguments
from platypus.stages.train.callbacks import TokensPerSecond
from platypus.stages.train.lora_model import count_trainable, keep_trainable_fp32, load_base_for_training, peft_lora_config
from platypus.stages.train.outputs import last_checkpoint, plot_loss, save_adapter
from platypus.stages.train.prompts import read_jsonl, to_prompt_completion
from platypus.stages.train.settings import check_settings, gradient_accumulation, resolve_precision

log = logging.getLogger("platypus")


def build_trainer(
    cfg: DictConfig,
    lora: DictConfig,
    model_cfg: DictConfig,
    base_path: str,
    rows: list[dict],
    out_dir: Path,
    seed: int,
    report_to: list[str],
    callbacks: list | None = None,
):
    """An SFTTrainer for LoRA on ``rows``, with every check done before any training."""
    from datasets import Dataset

    from platypus.stages.train.loss import TRAINERS

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_settings(cfg, lora)
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    accumulation = gradient_accumulation(cfg.global_batch_size, cfg.micro_batch_size, world_size())
    dataset = Dataset.from_list(to_prompt_completion(rows, cfg.template))

    tokenizer = models.load_tokenizer(base_path, model_cfg.trust_remote_code)
    args = sft_arguments(cfg, precision, accumulation, cuda, out_dir, seed, report_to)  # before the model: see there
    model = load_base_for_training(base_path, model_cfg, precision, cfg.model_parallel)
    trainer = TRAINERS[cfg.loss_average](
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_lora_config(lora),
        callbacks=callbacks,
    )
    trainer.callback_handler.callbacks.insert(0, TokensPerSecond())
    if model_cfg.quantization != Quantization.none and precision == Dtype.float16:
        keep_trainable_fp32(trainer.model)
    return trainer


def train(
    cfg: DictConfig,
    lora: DictConfig,
    model_cfg: DictConfig,
    base_path: str,
    dataset_path: Path,
    out_dir: Path,
    seed: int,
    report_to: list[str],
    callbacks: list | None = None,
) -> dict:
    """Fine-tune a LoRA adapter; writes ``adapter/``, ``log_history.json``, ``loss.png`` into out_dir.

    Checkpoints go to ``out_dir/checkpoints`` (kept across a crash: ``train.resume=auto`` continues
    from the newest complete one) and are removed once the adapter is saved.
    """
    rows = read_jsonl(dataset_path)
    trainer = build_trainer(cfg, lora, model_cfg, base_path, rows, out_dir, seed, report_to, callbacks)
    main = trainer.is_world_process_zero()
    trainable, total = count_trainable(trainer.model)
    if main:
        log.info(f"[platypus] trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")

    checkpoints = Path(trainer.args.output_dir)
    resume = last_checkpoint(checkpoints) if cfg.resume == Resume.auto else None
    if resume and main:
        log.info(f"[platypus] resuming from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)

    adapter = out_dir / Artifact.adapter.value
    save_adapter(trainer, adapter)
    history = trainer.state.log_history
    trainer.accelerator.wait_for_everyone()
    if main:
        (out_dir / "log_history.json").write_text(json.dumps(history, indent=1))
        plot_loss(history, out_dir / "loss.png")
        shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()

    losses = [h["loss"] for h in history if "loss" in h]
    runtime = result.metrics.get("train_runtime") or float("nan")
    return {
        "rows": len(rows),
        "steps": trainer.state.global_step,
        "gradient_accumulation": trainer.args.gradient_accumulation_steps,
        "world_size": trainer.args.world_size,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100 * trainable / total,
        "lora_dtype": str(next(p.dtype for p in trainer.model.parameters() if p.requires_grad)).removeprefix("torch."),
        "first_loss": losses[0] if losses else None,
        "loss": losses[-1] if losses else None,
        "train_loss": result.training_loss,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train_runtime_s": runtime,
        "tokens_per_s": trainer.state.num_input_tokens_seen / runtime,
        "resumed_from": Path(resume).name if resume else None,
    }

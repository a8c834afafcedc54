"""``train.*`` -> TRL's SFTConfig (the Trainer's arguments)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from platypus.fields import Dtype


def sft_arguments(cfg: DictConfig, precision: str, accumulation: int, cuda: bool, out_dir: Path, seed: int,
                  report_to: list[str]):
    """Created before the model loads: creating them starts the process group and accelerate's FSDP/DeepSpeed
    state, which from_pretrained reads to load a sharded model without a whole copy per rank
    (fsdp_cpu_ram_efficient_loading, zero3_init_flag) and to place a quantized model on this rank's GPU."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.cutoff_len,
        packing=cfg.packing,
        pad_to_multiple_of=cfg.pad_to_multiple_of,
        completion_only_loss=not cfg.train_on_inputs,
        activation_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing=False,  # deprecated name (TRL defaults it to True); set through the new one
        bf16=precision == Dtype.bfloat16,
        fp16=precision == Dtype.float16,
        use_cpu=not cuda,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )

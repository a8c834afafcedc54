"""Train stage: LoRA supervised fine-tuning with TRL's SFTTrainer on the curated set.

The paper's recipe: Alpaca prompt, loss on the response only, LoRA on the MLP projections,
global batch kept whatever the number of processes (gradient accumulation is derived).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import TrainerCallback

from platypus.config import LoraConfig, TrainConfig
from platypus.fields import validate
from platypus.stages.base import Artifact
from platypus.runtime import hardware, models
from platypus.runtime.errors import PlatypusError
from platypus.runtime.run import world_size

log = logging.getLogger("platypus")
TEMPLATES = Path(__file__).resolve().parent / "templates"
COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # train precision -> 4-bit compute dtype


# --------------------------------------------------------------------------- prompts
def load_template(name: str) -> dict[str, str]:
    path = TEMPLATES / f"{name}.json"
    if not path.is_file():
        names = sorted(p.stem for p in TEMPLATES.glob("*.json")) + ["chat"]
        raise PlatypusError(f"train.template={name!r} is not a known template; use one of {names}.")
    return json.loads(path.read_text())


def to_prompt_completion(rows: list[dict], template: str) -> list[dict]:
    """Rows -> TRL's prompt/completion format (TRL masks the prompt from the loss)."""
    if template == "chat":
        return [
            {
                "prompt": [{"role": "user", "content": "\n\n".join(x for x in (r["instruction"], r["input"]) if x)}],
                "completion": [{"role": "assistant", "content": r["output"]}],
            }
            for r in rows
        ]
    spec = load_template(template)
    out = []
    for r in rows:
        prompt = spec["prompt_input" if r["input"] else "prompt_no_input"].format(**r)
        out.append({"prompt": prompt, "completion": r["output"]})
    return out


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise PlatypusError(f"{path}:{number}: not valid JSON ({error.msg}).") from error
            missing = [k for k in ("instruction", "output") if not isinstance(row.get(k), str)]
            if missing:
                raise PlatypusError(f"{path}:{number}: row lacks string field(s) {missing}.")
            row.setdefault("input", "")
            rows.append(row)
    if not rows:
        raise PlatypusError(f"{path} holds no training rows.")
    return rows


# --------------------------------------------------------------------------- checks
def gradient_accumulation(global_batch: int, micro_batch: int, world_size: int) -> int:
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise PlatypusError(
            f"train.global_batch_size={global_batch} is not a multiple of train.micro_batch_size={micro_batch} "
            f"x {world_size} process(es); pick sizes that divide."
        )
    return global_batch // per_step


def check_settings(cfg: DictConfig, lora: DictConfig) -> None:
    """What the schema's ranges cannot say about ``train.*`` / ``lora.*``: at the start of the run and before
    training (the schema's own checks included, so a trainer built from Python is checked too)."""
    validate(cfg, TrainConfig, "train.")
    validate(lora, LoraConfig, "lora.")
    resolve_precision(cfg.precision, torch.cuda.is_available())
    check_processes(cfg)
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


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def resolve_precision(asked: str, cuda: bool) -> str:
    """``auto``: bf16 on CUDA GPUs that have it (fp16 on older ones); on CPU bf16 autocast where the CPU
    computes bf16 natively, else fp32. Autocast: the LoRA weights stay fp32, except under QLoRA with bf16 and
    DeepSpeed ZeRO-3 (then bf16: docs/gpu.md)."""
    if asked == "fp16" and not cuda:
        raise PlatypusError("train.precision=fp16 needs a CUDA GPU; on CPU use bf16 (autocast) or fp32.")
    return asked if asked != "auto" else hardware.fast_precision(cuda)


def _complete_state(path: Path) -> bool:
    """trainer_state.json exists and parses: a process killed while writing it leaves a truncated file."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing (its trainer_state.json is written last)."""
    done = [p for p in folder.glob("checkpoint-*") if _complete_state(p / "trainer_state.json")]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


class TokensPerSecond(TrainerCallback):
    """Adds ``tokens_per_second`` (non-padding input tokens since the previous log) to every training log,
    so W&B and the console show throughput per step. Registered first, so the reporting callbacks see it."""

    def __init__(self):
        self.last: tuple[float, int] | None = None  # (time, tokens) at the previous log

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self.last is None:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        if now > self.last[0]:
            logs["tokens_per_second"] = round((tokens - self.last[1]) / (now - self.last[0]), 2)
        self.last = (now, tokens)


# --------------------------------------------------------------------------- stage
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
    from peft import LoraConfig as PeftLoraConfig
    from trl import SFTConfig

    from platypus.stages.train.loss import TRAINERS

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_settings(cfg, lora)
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    accumulation = gradient_accumulation(cfg.global_batch_size, cfg.micro_batch_size, world_size())
    dataset = Dataset.from_list(to_prompt_completion(rows, cfg.template))

    tokenizer = models.load_tokenizer(base_path, model_cfg.trust_remote_code)
    # The arguments first: creating them starts the process group and accelerate's FSDP/DeepSpeed state, which
    # from_pretrained reads to load a sharded model without a whole copy per rank (fsdp_cpu_ram_efficient_loading,
    # zero3_init_flag) and to place a quantized model on this rank's GPU.
    args = SFTConfig(
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
        bf16=precision == "bf16",
        fp16=precision == "fp16",
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
    model = models.load_model(base_path, model_cfg.dtype, model_cfg.quantization, model_cfg.trust_remote_code,
                              compute_dtype=COMPUTE_DTYPES[precision], model_parallel=cfg.model_parallel)
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        # The authors' prepare_model_for_int8_training: every non-quantized weight (norms, embeddings, lm_head) in
        # fp32. Checkpointing stays TRL's (activation_checkpointing above).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    trainer = TRAINERS[cfg.loss_average](
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias=lora.bias,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        ),
        callbacks=callbacks,
    )
    trainer.callback_handler.callbacks.insert(0, TokensPerSecond())
    if model_cfg.quantization != "none" and precision == "fp16":
        keep_trainable_fp32(trainer.model)
    return trainer


def keep_trainable_fp32(model: torch.nn.Module) -> None:
    """TRL casts a quantized base's LoRA weights to bf16 (QLoRA's advice); under fp16 autocast they must stay fp32,
    as in the authors' 8-bit + fp16 run: the gradient scaler refuses fp16 weights, bf16 ones drop small updates."""
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


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
    resume = last_checkpoint(checkpoints) if cfg.resume == "auto" else None
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


def save_adapter(trainer, folder: Path) -> None:
    """The adapter and tokenizer into ``folder``, called on every process. Sharded (FSDP, DeepSpeed ZeRO-3): only
    the trainable LoRA tensors are gathered (FSDP2's DTensor.full_tensor, ZeRO-3's GatheredParameters), never
    the whole model on one rank; otherwise the Trainer's own save."""
    zero3 = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    if not (trainer.is_fsdp_enabled or zero3):
        trainer.save_model(str(folder))
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if zero3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(trainable.values())):
            state = {name: p.detach().cpu().clone() for name, p in trainable.items()}
    else:
        state = {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().cpu() for name, p in trainable.items()}
    if trainer.accelerator.is_main_process:
        model.save_pretrained(str(folder), state_dict=state)
        trainer.processing_class.save_pretrained(str(folder))
    trainer.accelerator.wait_for_everyone()


def plot_loss(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        ax.plot(*zip(*points), marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("LoRA training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

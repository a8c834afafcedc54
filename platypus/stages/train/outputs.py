"""What training leaves on disk: the checkpoint to resume from, the saved adapter, the loss plot."""

from __future__ import annotations

import json
from pathlib import Path


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
        model.save_pretrained(str(folder), state_dict=state, safe_serialization=True)
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

"""Resume after a crash: kill training right after a checkpoint, resume with train.resume=auto,
and get the very adapter an uninterrupted run gives."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback

from platypus.stages.train.trainer import train
from tests.helpers import ROWS, train_configs


class Crash(RuntimeError):
    pass


class CrashAfterFirstCheckpoint(TrainerCallback):
    """Raises from on_save, i.e. once the Trainer has finished writing the checkpoint folder."""

    def on_save(self, args, state, control, **kwargs):
        raise Crash(f"simulated crash after checkpoint-{state.global_step}")


def run(tiny_model_dir, tmp_path, out, callbacks=None):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS * 2))
    # 16 rows, global batch 2 of micro-batches of 1 (accumulation 2), 6 steps, a checkpoint every 2 steps;
    # LoRA dropout is on, so the resumed run must also restore the RNG state to match.
    train_cfg, lora, model = train_configs(
        tiny_model_dir, max_steps=6, global_batch_size=2, micro_batch_size=1, learning_rate=1e-2, save_steps=2,
        warmup_steps=1,
    )
    return train(train_cfg, lora, model, str(tiny_model_dir), data, out, 0, [], callbacks)


@pytest.mark.slow
def test_resume_after_crash_gives_the_uninterrupted_result(tiny_model_dir, tmp_path):
    reference = run(tiny_model_dir, tmp_path, tmp_path / "reference")
    assert reference["resumed_from"] is None and reference["steps"] == 6

    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        run(tiny_model_dir, tmp_path, out, [CrashAfterFirstCheckpoint()])
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (out / "adapter").exists(), "a crashed run leaves no adapter"

    resumed = run(tiny_model_dir, tmp_path, out)
    assert resumed["resumed_from"] == "checkpoint-2"
    assert resumed["steps"] == 6
    assert not (out / "checkpoints").exists(), "checkpoints are removed once the adapter is saved"

    want = load_file(tmp_path / "reference" / "adapter" / "adapter_model.safetensors")
    got = load_file(out / "adapter" / "adapter_model.safetensors")
    assert want.keys() == got.keys() and want
    worst = max((want[k] - got[k]).abs().max().item() for k in want)
    assert worst < 1e-6, f"resumed adapter differs from the uninterrupted one by {worst}"
    last = [h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h][-1]
    assert last == pytest.approx(reference["loss"], abs=1e-6)

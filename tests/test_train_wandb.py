"""Per-step training metrics reach W&B through the Trainer's own reporting (offline run file read back)."""

from __future__ import annotations

import json

import pytest

from platypus.stages.train.trainer import train
from tests.helpers import ROWS, train_configs
from tests.wandb_offline import history


@pytest.mark.slow
def test_loss_lr_grad_norm_and_tokens_per_second_logged_every_step(tiny_model_dir, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    train_cfg, lora, model = train_configs(tiny_model_dir, max_steps=3, global_batch_size=2, micro_batch_size=1, save_steps=100)
    run = wandb.init(project="platypus-test", mode="offline", dir=str(tmp_path), reinit="finish_previous")
    try:
        metrics = train(train_cfg, lora, model, str(tiny_model_dir), tmp_path / "d.jsonl", tmp_path / "out", 0, ["wandb"])
    finally:
        run.finish()
        wandb.teardown()  # wandb-core writes the run file asynchronously; this waits until it is flushed
    rows = [r for r in history(next((tmp_path / "wandb").glob("offline-run-*"))) if "train/loss" in r]
    assert len(rows) == metrics["steps"] == 3
    for row in rows:
        assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_second"} <= set(row), sorted(row)
        assert row["train/tokens_per_second"] > 0
    assert [r["train/global_step"] for r in rows] == [1, 2, 3]

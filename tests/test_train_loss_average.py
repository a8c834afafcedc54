"""train.loss_average: ``sequence`` is the mean of each example's own token-mean loss, computed here by hand one
example at a time, with packing on and off, across gradient accumulation (the Trainer's own step) and across two
gloo processes (tests/test_train_ddp.py); ``token`` is TRL's pooled token mean."""

from __future__ import annotations

import json

import pytest
import torch

from platypus.stages.train.loss import SequenceAveragedSFTTrainer
from platypus.stages.train.trainer import build_trainer, train
from tests.helpers import UNEQUAL_ROWS, train_configs

def perturbed(trainer) -> torch.nn.Module:
    """The trainer's model in float32, eval mode, with LoRA B away from zero so the adapter path counts too."""
    net = trainer.model.float().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    return net


def by_hand(net, batches: list[dict]) -> tuple[float, float]:
    """(mean of per-example token means, pooled token mean): every example run alone through the model's own
    loss, examples found by position_ids restarts in packed rows and as rows otherwise."""
    means, sums, tokens = [], 0.0, 0
    with torch.no_grad():
        for batch in batches:
            for row in range(batch["input_ids"].shape[0]):
                ids, labels = batch["input_ids"][row], batch["labels"][row]
                if "position_ids" in batch:
                    starts = (batch["position_ids"][row] == 0).nonzero().flatten().tolist() + [ids.numel()]
                else:
                    starts = [0, int(batch["attention_mask"][row].sum())]
                for start, end in zip(starts, starts[1:]):
                    n = int((labels[start + 1:end] != -100).sum())
                    if n:
                        loss = net(input_ids=ids[None, start:end], labels=labels[None, start:end], use_cache=False).loss.item()
                        means.append(loss)
                        sums, tokens = sums + loss * n, tokens + n
    return sum(means) / len(means), sums / tokens


def step_loss(trainer, net, batches: list[dict]) -> float:
    """The loss of one optimizer step over ``batches`` (its micro-batches), as the Trainer computes it."""
    count = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
    with torch.no_grad():
        return sum(trainer.compute_loss(net, dict(b), num_items_in_batch=count).item() for b in batches)


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True])
def test_sequence_average_is_the_mean_of_example_means(tiny_model_dir, tmp_path, packing):
    rows = UNEQUAL_ROWS * 2
    results = {}
    for average in ("sequence", "token"):
        train_cfg, lora, model = train_configs(tiny_model_dir, loss_average=average, packing=packing, micro_batch_size=2,
                                         global_batch_size=2, cutoff_len=96)
        trainer = build_trainer(train_cfg, lora, model, str(tiny_model_dir), rows, tmp_path / average, 0, [])
        assert isinstance(trainer, SequenceAveragedSFTTrainer) == (average == "sequence")
        data = trainer.train_dataset
        batches = [trainer.data_collator([data[i] for i in range(j, min(j + 2, len(data)))]) for j in range(0, len(data), 2)]
        if packing:
            assert all("position_ids" in b and b["input_ids"].shape[0] == 1 for b in batches), "padding-free rows"
            assert len(batches) < len(rows), "several examples share a packed row"
        assert len(batches) > 1, "one step accumulates several micro-batches"
        net = perturbed(trainer)
        results[average] = (step_loss(trainer, net, batches), *by_hand(net, batches))
    sequence, sequence_mean, token_mean = results["sequence"]
    assert abs(sequence - sequence_mean) < 1e-4, results
    token, _, token_by_hand = results["token"]
    assert abs(token - token_by_hand) < 1e-4, results
    assert abs(token_mean - sequence_mean) > 5e-3, "the rows must tell the two averages apart (50x the tolerance)"


@pytest.mark.slow
def test_trainer_step_logs_the_sequence_average_under_gradient_accumulation(tiny_model_dir, tmp_path):
    """The Trainer's own step (4 micro-batches accumulated): its first logged loss is the mean of example means."""
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in UNEQUAL_ROWS))
    train_cfg, lora, model = train_configs(tiny_model_dir, loss_average="sequence", global_batch_size=4, micro_batch_size=1,
                                     precision="float32", save_steps=100)
    lora.dropout = 0.0
    metrics = train(train_cfg, lora, model, str(tiny_model_dir), tmp_path / "d.jsonl", tmp_path / "run", 0, [])
    assert metrics["gradient_accumulation"] == 4 and metrics["steps"] == 1
    # LoRA B starts at zero: the first step's loss is the base model's, computed here one row at a time.
    probe = build_trainer(train_cfg, lora, model, str(tiny_model_dir), UNEQUAL_ROWS, tmp_path / "probe", 0, [])
    batches = [probe.data_collator([example]) for example in probe.train_dataset]
    sequence_mean, token_mean = by_hand(probe.model.float().eval(), batches)
    assert abs(metrics["first_loss"] - sequence_mean) < 2e-4, (metrics["first_loss"], sequence_mean)  # logged to 4 places
    assert abs(token_mean - sequence_mean) > 2e-3, "10x the tolerance"

"""Packing keeps documents apart: a packed batch's loss is the token-weighted mean of the losses of its
documents run one by one (position_ids restart per document; CPU sdpa builds a block-diagonal mask)."""

from __future__ import annotations

import torch

from platypus.stages.train.trainer import build_trainer
from tests.helpers import ROWS, train_configs


def test_packed_loss_equals_per_document_losses(tiny_model_dir, tmp_path):
    rows = [dict(r, output=r["output"] + " Indeed." * i) for i, r in enumerate(ROWS)]  # documents of unequal length
    train_cfg, lora, model = train_configs(tiny_model_dir, packing=True, micro_batch_size=2, global_batch_size=2, cutoff_len=160)
    trainer = build_trainer(train_cfg, lora, model, str(tiny_model_dir), rows, tmp_path, 0, [])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    ids, labels, positions = batch["input_ids"], batch["labels"], batch["position_ids"]
    assert ids.shape[0] == 1 and "attention_mask" not in batch, "padding-free: one flat row, no attention mask"
    starts = (positions[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    assert len(starts) - 1 >= 4, "several documents share the packed row"

    net = trainer.model.float().eval()
    with torch.no_grad():
        # LoRA B starts at zero; perturb it so the adapter path is exercised too.
        torch.manual_seed(0)
        for name, param in net.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
        packed = net(**batch, use_cache=False).loss.item()

        total, count = 0.0, 0
        for start, end in zip(starts, starts[1:]):
            doc_labels = labels[:, start:end]
            n = int((doc_labels[:, 1:] != -100).sum())  # tokens that carry loss after the causal shift
            if not n:
                continue
            loss = net(input_ids=ids[:, start:end], labels=doc_labels, use_cache=False).loss.item()
            total, count = total + loss * n, count + n
    assert count == int((labels[:, 1:] != -100).sum()), "no loss crosses a document boundary"
    assert abs(packed - total / count) < 1e-4, (packed, total / count)

    # Without position_ids the same row is one long document: the losses differ, so the check above has teeth.
    with torch.no_grad():
        leaky = net(input_ids=ids, labels=labels, use_cache=False).loss.item()
    assert abs(leaky - packed) > 1e-3


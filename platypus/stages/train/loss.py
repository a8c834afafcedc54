"""How a global batch's loss weighs its examples: ``train.loss_average``.

``token`` (TRL/transformers today): every completion token of the global batch counts the same, so a long answer
weighs as much as many short ones. ``sequence`` (the paper's): each example's loss is the mean over its own
completion tokens and the global batch averages its examples — what transformers 4.31 computed with micro-batch 1
and gradient accumulation, where a one-letter ReClor answer counts as much as a page of proof. It holds with
packing (the examples of a packed row are told apart by their ``position_ids``), gradient accumulation and
several processes (the examples are counted over the whole global batch, as the tokens are for ``token``).
"""

from __future__ import annotations

import torch
from trl import SFTTrainer

IGNORE = -100


def example_index(labels: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    """For each predicted position (``labels[:, 1:]``), a number naming its example, unique in the micro-batch:
    one example per row, or per ``position_ids`` restart in a packed row."""
    rows, length = labels.shape
    within = torch.zeros_like(labels) if position_ids is None else (position_ids == 0).cumsum(-1)
    index = torch.arange(rows, device=labels.device)[:, None] * (length + 1) + within.to(labels.device)
    return index[:, 1:]


def example_means(per_token: torch.Tensor, mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The mean of ``per_token`` over each example's positions in ``mask`` (examples without any are left out)."""
    _, example = torch.unique(index[mask], return_inverse=True)
    count = torch.bincount(example).to(per_token.dtype)
    total = torch.zeros_like(count).index_add(0, example, per_token[mask])
    return total / count


def count_examples(batch: dict) -> int:
    """Examples of a collated micro-batch that carry loss."""
    labels = batch["labels"]
    mask = labels[:, 1:] != IGNORE
    return int(torch.unique(example_index(labels, batch.get("position_ids"))[mask]).numel())


class SequenceAveragedSFTTrainer(SFTTrainer):
    """SFTTrainer whose global-batch loss is the mean over examples of each example's token-mean loss."""

    loss_is_scaled_for_ga = True  # normalised by the global batch's example count already

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        count = torch.tensor(sum(count_examples(batch) for batch in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        means = example_means(-outputs.log_probs, outputs.label_mask, example_index(labels, inputs.get("position_ids")))
        examples = means.numel() if num_items_in_batch is None else num_items_in_batch
        loss = means.sum() / torch.as_tensor(examples, device=means.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages the gradients of the processes
        self._record(outputs, inputs)
        return (loss, outputs) if return_outputs else loss

    def _record(self, outputs, inputs) -> None:
        """The per-token metrics SFTTrainer logs (entropy, token accuracy, tokens seen), kept under this loss."""
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.label_mask.sum()).sum()
        for name, values in (("entropy", outputs.entropy), ("mean_token_accuracy", outputs.is_top1)):
            if values is not None:
                self._metrics[mode][name].append((gather(values.detach().sum()).sum() / valid.clamp(min=1)).item())
        if mode == "train":
            tokens = inputs["attention_mask"].sum() if "attention_mask" in inputs else \
                torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            self._total_train_tokens += gather(tokens).sum().item()
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


TRAINERS = {"token": SFTTrainer, "sequence": SequenceAveragedSFTTrainer}

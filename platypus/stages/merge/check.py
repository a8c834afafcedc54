"""Is the folded model the unfolded one? Two checks, the card names the one that ran and its largest error.

- ``logits``: the unfolded model (target + adapters through PEFT) and the folded one score the probe prompts; the
  largest logit difference. Needs the model in memory twice: used where that fits ``merge.check_memory_gb``.
- ``per_tensor``: for each folded tensor, a seeded sample of rows recomputed in float64 from the LoRA factors
  (``W + s·B·A``, the rows only) and compared with the rows written; memory: a few rows.
"""

from __future__ import annotations

import torch

PROBE_PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is 7 times 8?\n\n### Response:\n",
    "The derivative of x^2 is",
    "Photosynthesis converts light energy into",
]
SAMPLED_ROWS = 8


@torch.no_grad()
def logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE_PROMPTS, return_tensors="pt", padding=True)
    found = model(**batch).logits.float()
    return found[batch["attention_mask"].bool()]


def logit_gap(unfolded_model: torch.nn.Module, folded_model: torch.nn.Module, tokenizer) -> float:
    return float((logits(unfolded_model, tokenizer) - logits(folded_model, tokenizer)).abs().max())


def factors(layer, active: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(A, B, transposed) of a PEFT LoRA layer's adapter, as float64; ``transposed``: the delta is (B A)^T."""
    if active in getattr(layer, "lora_embedding_A", {}):
        return layer.lora_embedding_A[active].double(), layer.lora_embedding_B[active].double(), True
    a, b = layer.lora_A[active].weight.double(), layer.lora_B[active].weight.double()
    return a, b, bool(getattr(layer, "fan_in_fan_out", False))


def sampled_rows_error(layer, active: str, source: torch.Tensor, written: torch.Tensor,
                       generator: torch.Generator) -> float:
    """The largest |written - (W + s·B·A)| over a seeded sample of rows, the expected rows in float64."""
    rows = torch.randperm(source.shape[0], generator=generator)[:SAMPLED_ROWS]
    a, b, transposed = factors(layer, active)
    delta = (a.T[rows] @ b.T) if transposed else (b[rows] @ a)
    expected = source[rows].double() + layer.scaling[active] * delta
    return float((written[rows].double() - expected).abs().max())

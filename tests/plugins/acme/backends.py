"""An evaluation backend: lm-eval's HFLM (registry name ``hf``) always scoring in batches of a fixed size."""

from dataclasses import dataclass

from platypus.stages.evaluate.backends import Backend


@dataclass
class FixedBatch(Backend):
    model: str = "hf"
    batch_size: int = 2

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")

    def load(self, model, dtype, eval_cfg):
        return super().load(model, dtype, {**eval_cfg, "batch_size": self.batch_size})

"""The target without its weights: its module tree on the meta device (for the compatibility checks and for
PEFT to load and combine the adapters onto), and the small files of the merged folder (config, generation
config, tokenizer).

PEFT reads a base layer's shape, device and dtype, never its values, to load LoRA factors and to compute a delta
(``get_delta_weight``); so each linear and embedding layer gets a weight of the right shape and dtype that is
one zero broadcast over it (stride 0: no memory). The deltas PEFT computes there are bit for bit the ones it
computes on the loaded model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from platypus.fields import Dtype
from platypus.runtime import models
from platypus.runtime.errors import PlatypusError


def target_config(target_path: str, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(target_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise PlatypusError(f"merge.target: could not read a model config from {target_path!r} ({error}). Give a "
                            f"model folder with config.json, or a hub id in the local HF cache.") from None


def skeleton(target_path: str, fold_dtype: str, trust_remote_code: bool) -> torch.nn.Module:
    """The target's modules, no weights; linear and embedding layers hold a zero-memory weight in ``fold_dtype``."""
    from transformers import AutoModelForCausalLM

    config = target_config(target_path, trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    dtype = Dtype(fold_dtype).torch()
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            shape = tuple(module.weight.shape)
            module.weight = torch.nn.Parameter(torch.zeros((), dtype=dtype).expand(shape), requires_grad=False)
    return model


def write_model_files(target_path: str, folder: Path, dtype: str, trust_remote_code: bool) -> None:
    """config.json (in the merged dtype), generation_config.json when the target has one, and the tokenizer."""
    from transformers import GenerationConfig

    config = target_config(target_path, trust_remote_code)
    config.dtype = Dtype(dtype).torch()
    config.save_pretrained(folder)
    try:
        GenerationConfig.from_pretrained(target_path).save_pretrained(folder)
    except OSError:
        pass  # the target has none
    models.load_tokenizer(target_path, trust_remote_code).save_pretrained(folder)

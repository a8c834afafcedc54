"""Weights saved as pickles (``*.bin``), read without ever running the pickle's code.

``torch.load(weights_only=True)`` unpickles only tensors and plain containers; anything else (a class, a function
call such as ``os.system``) raises before it executes. Every pickle of weights platypus reads goes through here.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from platypus.runtime.errors import PlatypusError


def load_pickled_tensors(path: Path, key: str) -> dict[str, torch.Tensor]:
    """The ``name -> tensor`` dict of a pickled weights file, refusing one that holds anything but tensors."""
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise PlatypusError(
            f"{key}: {path} is a pickle that does not hold plain tensors only ({type(error).__name__}: {reason}). "
            f"It was not run: loading such a file could execute arbitrary code. Use a safetensors copy of it (PEFT "
            f"and transformers save one with safe_serialization=True) from a source you trust."
        ) from None
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise PlatypusError(
            f"{key}: {path} is not a dict of tensors (it holds a {type(loaded).__name__}). Use a safetensors copy of "
            f"the weights (save_pretrained(..., safe_serialization=True))."
        )
    return loaded

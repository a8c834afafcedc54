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
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:  # the legacy (non-zip) format cannot be memory-mapped: read it whole
            if "mmap" not in str(error):
                raise
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as error:
        reason = _reason(error)
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


def _reason(error: BaseException) -> str:
    """What the unpickler refused (torch's message wraps it in advice to turn weights_only off: left out)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = [line for line in lines if "nsupported" in line and not line.startswith(("Weights only", "Please file"))]
    return " ".join((refused or lines or [""])[0].split())[:300]

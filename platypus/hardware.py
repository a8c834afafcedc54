"""What the machine computes fast: decides the ``auto`` precision choices of train and curate."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matrix products run ~2-3x faster than fp32 on such CPUs
    (benchmarks/bench_train.py, benchmarks/bench_dedup.py)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so probed defensively
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)

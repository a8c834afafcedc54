"""What the machine computes fast: decides the ``auto`` precision choices of train, curate and evaluate."""

from __future__ import annotations

from functools import lru_cache

from platypus.fields import Dtype


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AMX tiles: there bf16 matrix products run ~2-3x faster than fp32 (benchmarks/bench_train.py,
    benchmarks/bench_dedup.py). AVX512-BF16 alone is not enough: on such a Xeon (2 threads, SmolLM2-135M)
    a bf16-autocast LoRA step ran at 170 vs 278 tokens/s in fp32, and bf16 inference at 498 vs 838 tokens/s."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so probed defensively
    return bool(probe and probe())


def fast_precision(cuda: bool) -> Dtype:
    """The fastest precision that keeps bf16's range: ``bfloat16`` on CUDA GPUs that have it natively (compute
    capability 8.0, Ampere, or newer; ``float16`` on V100/T4, where ``torch.cuda.is_bf16_supported()`` is True
    through slow emulation) and on AMX CPUs, else ``float32`` (on an AVX512-BF16-only Xeon bf16 evaluation took 1.38-1.47x fp32's
    time, benchmarks/bench_eval_throughput.py). Decides ``train.precision=auto`` and ``eval.dtype=auto``."""
    import torch

    if cuda:
        return Dtype.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else Dtype.float16
    return Dtype.bfloat16 if cpu_has_native_bf16() else Dtype.float32

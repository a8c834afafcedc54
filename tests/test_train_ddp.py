"""DDP on CPU: two gloo processes under torchrun train one adapter with the global batch kept.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 tests/test_train_ddp.py ...``),
it is what each process executes; under pytest it launches that and checks the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STEPS = 2


def worker(model_dir: str, data: str, out: str, micro_batch: int, loss_average: str = "token") -> None:
    """One process: train() exactly as the pipeline calls it, then report what this rank saw."""
    import torch
    import torch.distributed as dist

    from platypus.stages.train.trainer import train
    from tests.helpers import train_configs

    train_cfg, lora, model = train_configs(
        Path(model_dir), max_steps=STEPS, global_batch_size=4, micro_batch_size=micro_batch, learning_rate=1e-2,
        save_steps=100, threads=1, loss_average=loss_average, precision="float32",
    )
    lora.dropout = 0.0  # no per-rank RNG in the forward pass: DDP must then match one process exactly
    threads = torch.get_num_threads()
    try:
        metrics = train(train_cfg, lora, model, model_dir, Path(data), Path(out), 0, [])
    finally:
        torch.set_num_threads(threads)
    rank = int(os.environ.get("RANK", "0"))
    backend = dist.get_backend() if dist.is_initialized() else None
    Path(out, f"rank{rank}.json").write_text(json.dumps({**metrics, "backend": backend}))


if __name__ == "__main__":
    worker(*sys.argv[1:4], int(sys.argv[4]), sys.argv[5])
    raise SystemExit(0)


from safetensors.torch import load_file  # noqa: E402

from tests.helpers import ROWS, UNEQUAL_ROWS  # noqa: E402


def launch(nproc: int, model_dir: Path, data: Path, out: Path, micro_batch: int, loss_average: str = "token") -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(Path(__file__)), str(model_dir), str(data), str(out), str(micro_batch), loss_average]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def test_ddp_two_cpu_processes_keep_the_global_batch_and_save_one_adapter(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS * 2))

    launch(2, tiny_model_dir, data, tmp_path / "ddp", micro_batch=1)
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for metrics in ranks:
        assert metrics["backend"] == "gloo"
        assert metrics["world_size"] == 2
        assert metrics["gradient_accumulation"] == 2, "4 = 1 micro-batch x 2 processes x 2 accumulation steps"
        assert metrics["steps"] == STEPS
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "ddp" / "log_history.json").is_file() and not (tmp_path / "ddp" / "checkpoints").exists()

    # The same global batch on one process (accumulation 4) gives the same adapter: DDP only splits the work.
    worker(str(tiny_model_dir), str(data), str(tmp_path / "single"), micro_batch=1)  # in this process, no launcher
    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    assert single["world_size"] == 1 and single["gradient_accumulation"] == 4
    assert single["tokens_seen"] == ranks[0]["tokens_seen"], "both saw the same 8 rows"
    want = load_file(tmp_path / "single" / "adapter" / "adapter_model.safetensors")
    got = load_file(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors")
    worst = max((want[k] - got[k]).abs().max().item() for k in want)
    assert worst < 1e-5, f"DDP adapter differs from the single-process one by {worst}"


def adapter_gap(a: Path, b: Path) -> float:
    want, got = (load_file(p / "adapter" / "adapter_model.safetensors") for p in (a, b))
    return max((want[k] - got[k]).abs().max().item() for k in want)


def test_ddp_sequence_average_equals_one_process(tiny_model_dir, tmp_path):
    """train.loss_average=sequence across 2 gloo processes: examples are counted over the global batch (both ranks),
    so the adapter equals one process accumulating the same 4 examples per step, and differs from token averaging."""
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in UNEQUAL_ROWS * 2))
    launch(2, tiny_model_dir, data, tmp_path / "ddp", micro_batch=1, loss_average="sequence")
    worker(str(tiny_model_dir), str(data), str(tmp_path / "single"), 1, "sequence")
    worker(str(tiny_model_dir), str(data), str(tmp_path / "token"), 1, "token")
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    assert ranks[0]["world_size"] == 2 and single["gradient_accumulation"] == 4
    assert abs(ranks[0]["first_loss"] - single["first_loss"]) < 2e-4, (ranks[0]["first_loss"], single["first_loss"])
    worst = adapter_gap(tmp_path / "single", tmp_path / "ddp")
    assert worst < 1e-5, f"DDP adapter differs from the single-process one by {worst}"
    assert adapter_gap(tmp_path / "single", tmp_path / "token") > 100 * max(worst, 1e-6), "the averages differ"

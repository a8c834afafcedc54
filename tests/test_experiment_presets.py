"""Every shipped experiment preset (platypus/conf/experiment/*.yaml) runs end to end in fast-dev mode: ``debug=fast`` with
its hub parts swapped for offline ones (the tiny model as base and merge target, the bundled data and benchmarks,
float32 on this CPU). What is left is the preset's own wiring: its stages, groups, recipe and eval settings."""

from __future__ import annotations

import json

import pytest

from platypus.config import CONF_DIR
from platypus.pipeline import run_pipeline
from tests import compose_config

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_preset_runs_in_fast_dev_mode(experiment, tiny_model_dir, tmp_path):
    cfg = compose_config(
        f"experiment={experiment}", "debug=fast", "data=open_platypus_sample", "benchmarks=bundled",
        f"model.path={tiny_model_dir}", "model.gguf_file=null", "model.dtype=float32", "model.quantization=none",
        "train.precision=fp32", "train.gradient_checkpointing=false", "merge.dtype=float32")
    if cfg.merge.get("target"):
        cfg.merge.target = str(tiny_model_dir)
    run_pipeline(cfg, tmp_path)
    for stage in cfg.stages:
        assert json.loads((tmp_path / stage / "manifest.json").read_text())["stage"] == stage
    if "evaluate" in cfg.stages:
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert all(set(cfg.eval.tasks) <= set(scores) for scores in summary.values())

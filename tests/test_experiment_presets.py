"""Every shipped experiment preset (conf/experiment/*.yaml) runs end to end in fast-dev mode: ``debug=fast`` with
its hub parts swapped for offline ones (the tiny model as base, another tiny model of its shape as merge target,
the bundled data and benchmarks, float32 on this CPU; MMLU's 57 subjects left out to keep eight runs cheap). What
is left is the preset's own wiring: its stages, groups, recipe, loss, eval settings and published numbers, which
reach the table beside ours. The runs share a stage cache, so presets that train alike train once."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from platypus.config import conf_dir
from platypus.pipeline import run_pipeline
from tests.helpers import compose_config, tiny_llama

EXPERIMENTS = sorted(path.stem for path in (conf_dir() / "experiment").glob("*.yaml"))
PAPER = {"platypus2_13b", "platypus2_70b", "platypus2_70b_instruct", "stable_platypus2_13b", "camel_platypus2_13b",
         "camel_platypus2_70b", "openorca_platypus2_13b", "dolphin_platypus2_70b"}


@pytest.fixture(scope="module")
def offline(tmp_path_factory, tiny_model_dir):
    """(a merge target of the tiny model's shape, a stage cache shared by the presets' runs)."""
    target = tiny_llama(tmp_path_factory.mktemp("target"), AutoTokenizer.from_pretrained(tiny_model_dir), seed=5)
    return target, tmp_path_factory.mktemp("stages")


def test_every_paper_model_has_a_preset():
    assert PAPER <= set(EXPERIMENTS)
    for name in PAPER:
        cfg = compose_config(f"experiment={name}")
        assert cfg.eval.name == "leaderboard_v1" and cfg.eval.add_bos_token is False and str(cfg.eval.batch_size) == "1"
        assert cfg.train.loss_average == "sequence" and cfg.train.precision == "float16"
        assert cfg.model.quantization == "8bit" and cfg.merge.dtype == "float16" and cfg.eval.dtype == "float16"
        assert cfg.curate.name == "off" and cfg.data.name == "open_platypus"
        assert cfg.published.model and cfg.published.source


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_preset_runs_in_fast_dev_mode(experiment, tiny_model_dir, offline, tmp_path):
    target, stages = offline
    cfg = compose_config(
        f"experiment={experiment}", "debug=fast", "data=open_platypus_sample", "benchmarks=bundled",
        f"model.path={tiny_model_dir}", "model.gguf_file=null", "model.dtype=float32", "model.quantization=none",
        "train.precision=float32", "train.gradient_checkpointing=false", "merge.dtype=float32",
        "merge.fold_dtype=float32", "eval.parallelize=false", "train.model_parallel=false", "~eval.tasks.mmlu",
        f"stage_cache={stages}")
    if cfg.merge.recipe._target_.endswith(".IntoModel"):
        cfg.merge.target = str(target)
    run_pipeline(cfg, tmp_path)
    for stage in cfg.stages:
        assert json.loads((tmp_path / stage / "manifest.json").read_text())["stage"] == stage
    summary = json.loads((tmp_path / "evaluate" / "summary.json").read_text())
    assert all(set(cfg.eval.tasks) <= set(scores) for scores in summary.values())
    folds_elsewhere = cfg.merge.recipe._target_.endswith(".IntoModel")
    assert list(summary) == ["base"] + ["target"] * folds_elsewhere + ["adapter", "merged"]
    assert ("delta_target" in summary["merged"]) == folds_elsewhere
    if folds_elsewhere:
        assert summary["merged"]["delta_target"]["reference"] == "target"
        assert "| merged vs target |" in (tmp_path / "evaluate" / "table.md").read_text()
    if cfg.get("published"):
        table = (tmp_path / "evaluate" / "published_vs_ours.md").read_text()
        assert cfg.published.model in table and "| ours (merged) |" in table
        for key, value in cfg.published.scores.items():
            assert value is None or f"{value:.2f}" in table, key  # null: not published (a "-" cell)

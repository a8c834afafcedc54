"""Pipeline wiring on small inputs: stages alone, reuse, refusal to overwrite, clear errors."""

from __future__ import annotations

import json

import pytest

from platypus.runtime.errors import PlatypusError
from platypus.pipeline import run_pipeline
from platypus.stages.evaluate.stage import evaluated_models
from tests.helpers import compose_config

# stage_cache=null: these tests are about one run folder (the cross-run cache: tests/test_sweep.py)
SMALL_CURATE = ["logger=none", "stage_cache=null", "data.sample=20", "curate.benchmarks=[truthfulqa_mc2]"]


config = compose_config


def test_train_alone_needs_a_dataset(tmp_path):
    with pytest.raises(PlatypusError, match="'train' needs a curated dataset"):
        run_pipeline(config("stages=[train]", "logger=none"), tmp_path)


def test_merge_alone_needs_an_adapter(tmp_path):
    with pytest.raises(PlatypusError, match="'merge' needs an adapter"):
        run_pipeline(config("stages=[merge]", "logger=none"), tmp_path)


def test_finished_stage_is_reused_and_never_overwritten(tmp_path):
    run_pipeline(config("stages=[curate]", *SMALL_CURATE), tmp_path)
    first = json.loads((tmp_path / "curate" / "manifest.json").read_text())
    kept = (tmp_path / "curate" / "train.jsonl").read_bytes()

    run_pipeline(config("stages=[curate]", *SMALL_CURATE), tmp_path)  # same config: reused
    assert json.loads((tmp_path / "curate" / "manifest.json").read_text()) == first

    changed = config("stages=[curate]", *SMALL_CURATE, "curate.steps.dedup.threshold=0.7")
    with pytest.raises(PlatypusError, match="different config"):
        run_pipeline(changed, tmp_path)
    assert (tmp_path / "curate" / "train.jsonl").read_bytes() == kept

    changed.overwrite = True
    run_pipeline(changed, tmp_path)
    aside = list(tmp_path.glob("curate.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "train.jsonl").read_bytes() == kept
    assert json.loads((tmp_path / "curate" / "manifest.json").read_text())["key"] != first["key"]


def test_same_config_and_seed_give_a_byte_identical_curated_set(tmp_path):
    run_pipeline(config("stages=[curate]", *SMALL_CURATE), tmp_path / "a")
    run_pipeline(config("stages=[curate]", *SMALL_CURATE), tmp_path / "b")
    assert (tmp_path / "a/curate/train.jsonl").read_bytes() == (tmp_path / "b/curate/train.jsonl").read_bytes()


def test_evaluate_alone_on_an_explicit_model(tmp_path, tiny_model_dir):
    cfg = config(
        "stages=[evaluate]", "debug=fast", "logger=none", "stage_cache=null", f"evaluate.models=[{tiny_model_dir}]", "eval.dtype=float32",
        "~eval.tasks.arc_challenge", "~eval.tasks.hellaswag", "~eval.tasks.mmlu", "eval.limit=2",
    )
    run_pipeline(cfg, tmp_path)
    summary = json.loads((tmp_path / "evaluate" / "summary.json").read_text())
    assert 0.0 <= summary[tiny_model_dir.name]["truthfulqa_mc2"]["mc2"] <= 1.0


def test_merged_stands_for_the_adapter_when_the_run_merges_nothing():
    base, adapter, merged = {"pretrained": "b"}, {"pretrained": "b", "peft": "a"}, {"pretrained": "m"}
    both = {"base": base, "adapter": adapter, "merged": merged}
    assert evaluated_models(["base", "merged"], both) == ["base", "merged"]
    assert evaluated_models(["base", "merged"], {"base": base, "adapter": adapter}) == ["base", "adapter"]
    assert evaluated_models(["base", "adapter", "merged"], {"base": base, "adapter": adapter}) == ["base", "adapter"]
    assert evaluated_models(["base"], {"base": base, "adapter": adapter}) == ["base"]
    assert evaluated_models(["merged"], {"base": base}) == []

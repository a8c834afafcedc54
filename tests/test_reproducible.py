"""Same config + seed => the same curated set (byte-identical train.jsonl) and the same evaluation
numbers for the same model. Each run computes from scratch: no stage cache, its own embedding cache."""

from __future__ import annotations

import json

import pytest

from platypus.pipeline import run_pipeline
from tests.helpers import compose_config


config = compose_config


@pytest.mark.slow
def test_same_config_and_seed_curate_byte_identical_sets(tmp_path):
    outputs = {}
    for name in ("a", "b"):
        cfg = config(
            "stages=[curate]", "logger=none", "stage_cache=null", f"cache_dir={tmp_path / name / 'cache'}",
            "data.sample=50", "curate.benchmarks=[truthfulqa_mc2]", "seed=7",
        )
        run_pipeline(cfg, tmp_path / name / "run")
        manifest = json.loads((tmp_path / name / "run" / "curate" / "manifest.json").read_text())
        assert manifest.get("reused") is not True
        outputs[name] = {f: (tmp_path / name / "run" / "curate" / f).read_bytes() for f in ("train.jsonl", "removed.csv")}
    assert outputs["a"]["train.jsonl"] == outputs["b"]["train.jsonl"]
    assert outputs["a"]["removed.csv"] == outputs["b"]["removed.csv"]
    kept = outputs["a"]["train.jsonl"].decode().splitlines()
    assert 0 < len(kept) <= 50

    other = config("stages=[curate]", "logger=none", "stage_cache=null", f"cache_dir={tmp_path / 'c' / 'cache'}",
                   "data.sample=50", "curate.benchmarks=[truthfulqa_mc2]", "seed=8")
    run_pipeline(other, tmp_path / "c" / "run")
    assert (tmp_path / "c" / "run" / "curate" / "train.jsonl").read_bytes() != outputs["a"]["train.jsonl"], \
        "another seed samples other rows: the comparison above is not vacuous"


@pytest.mark.slow
def test_same_model_gives_the_same_evaluation_numbers(tiny_model_dir, tmp_path):
    from platypus.stages.evaluate.backends import EvalModel
    from platypus.stages.evaluate.runner import evaluate_models

    cfg = config("eval=quick", "debug=fast", "~eval.tasks.mmlu", "eval.limit=3", "eval.dtype=float32",
                 "eval.tasks.arc_challenge.num_fewshot=2", "eval.tasks.hellaswag.num_fewshot=2")
    runs = [
        evaluate_models(cfg.eval, cfg.benchmarks, [EvalModel("tiny", str(tiny_model_dir))], tmp_path / name,
                        tmp_path / f"cache-{name}")  # its own cache: cross-run evaluation results are kept there
        for name in ("a", "b")
    ]
    assert runs[0]["summary"] == runs[1]["summary"]
    for task in ("arc_challenge", "hellaswag", "truthfulqa_mc2"):
        first, second = (r["results"]["tiny"]["tasks"][task]["results"] for r in runs)
        assert first == second, task
    mc2 = runs[0]["summary"]["tiny"]["truthfulqa_mc2"]["mc2"]
    assert 0.0 < mc2 < 1.0  # a continuous number: equality is not a coincidence of rounding
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()

"""The whole loop as a user runs it: run.py in a subprocess on the real SmolLM2-135M model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import wandb_offline

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = {"arc_challenge": "acc_norm", "hellaswag": "acc_norm", "mmlu": "acc", "truthfulqa_mc2": "mc2"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, smollm2_dir) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "run"
    command = [
        sys.executable, "run.py", f"hydra.run.dir={folder}", "debug=fast", "logger=wandb", "stage_cache=null",  # compute every stage
        "data.sample=48", "train.max_steps=2", "train.save_steps=1",
        "curate.benchmarks=[arc_challenge,truthfulqa_mc2]",
        "eval.limit=2", "eval.tasks.mmlu.limit=1", "eval.tasks.arc_challenge.num_fewshot=5",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (folder / "stdout.txt").write_text(done.stdout)
    return folder


def test_every_stage_wrote_its_artifacts_and_manifest(run_dir):
    for stage in ("curate", "train", "merge", "evaluate"):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["seconds"] > 0 and manifest["versions"]["transformers"]
    assert not list(run_dir.glob(".*.partial"))
    rows = [json.loads(line) for line in (run_dir / "curate" / "train.jsonl").read_text().splitlines()]
    assert 0 < len(rows) <= 48 and set(rows[0]) == {"instruction", "input", "output", "data_source"}
    report = json.loads((run_dir / "curate" / "report.json").read_text())
    assert report


def test_artifacts_load_with_the_standard_libraries(run_dir, smollm2_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    PeftModel.from_pretrained(base, run_dir / "train" / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merge" / "model")
    AutoTokenizer.from_pretrained(run_dir / "merge" / "model")
    assert merged.config.architectures == ["LlamaForCausalLM"]
    card = json.loads((run_dir / "merge" / "manifest.json").read_text())["metrics"]
    assert card["check_max_abs_error"] <= 1e-3


def test_summary_has_four_benchmarks_for_both_models(run_dir):
    summary = json.loads((run_dir / "evaluate" / "summary.json").read_text())
    assert set(summary) == {"base", "merged"}
    for model in summary.values():
        for task, metric in BENCHMARKS.items():
            assert 0.0 <= model[task][metric] <= 1.0
        assert 0.0 <= model["leaderboard_avg"] <= 1.0
    assert json.loads((run_dir / "evaluate" / "results.json").read_text())
    stdout = (run_dir / "stdout.txt").read_text()
    assert "| model | arc_challenge acc_norm" in stdout and "| average |" in stdout
    assert "| merged |" in stdout and ("(+" in stdout or "(-" in stdout)  # deltas vs base
    assert "**merged vs base**: significant:" in stdout  # in words, with paired intervals
    assert "delta" in json.loads((run_dir / "evaluate" / "summary.json").read_text())["merged"]


def test_wandb_offline_run_holds_the_eval_metrics(run_dir):
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    summary = wandb_offline.summary(runs[0])
    for model in ("base", "merged"):
        assert 0.0 <= summary[f"eval/{model}/arc_challenge/acc_norm"] <= 1.0
        assert f"eval/{model}/leaderboard_avg" in summary
    delta = summary["eval/merged/delta/leaderboard_avg/value"]
    assert summary["eval/merged/delta/leaderboard_avg/low"] <= delta <= summary["eval/merged/delta/leaderboard_avg/high"]
    assert summary["curate/kept"] > 0 and "train/loss" in summary

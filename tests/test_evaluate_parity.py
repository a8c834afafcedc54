"""Our evaluate_models gives lm-eval's own CLI numbers, and a rerun reuses finished tasks.

Twice: ``eval/backend=hf`` against ``lm_eval --model hf`` (lm-eval's HFLM on both sides), and
``eval/backend=prefix`` (the shared-prefix scorer, the default) against ``python -m platypus.lm_eval --model
hf-prefix`` (lm-eval's CLI with our model class registered): the same numbers as our stage, exactly.

The CLI also indexes lm-eval's built-in tasks; lm-eval lets ``--include_path`` tasks override
built-ins of the same name (it logs a warning), so the official names work for the parity run.
The CLI's ``--num_fewshot`` is global, hence one CLI run per few-shot count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import compose_config
from platypus.stages.evaluate import runner
from platypus.stages.evaluate.runner import EvalModel, evaluate_models
from platypus.stages.evaluate.tasks import build_suite

pytestmark = pytest.mark.slow

LIMIT, BATCH = 4, 4
CLI_RUNS = {2: ["arc_challenge", "hellaswag", "mmlu_anatomy"], 0: ["truthfulqa_mc2"]}


CLI = {"hf": [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf"],
       "prefix": [sys.executable, "-m", "platypus.lm_eval", "--model", "hf-prefix"]}
# Our stage turns an explicit eval.batch_size into the scorer's answers per pass; the CLI is told the same.
# and the v1 sum in the model's dtype that eval=leaderboard_v1 sets (the scorer's own default is float64).
MODEL_ARGS = {"hf": "", "prefix": f",answers_per_pass={BATCH},logprob_sum=model_dtype"}


def compose_cfg(*overrides: str, backend: str = "hf"):
    return compose_config(
        "eval=leaderboard_v1",
        "benchmarks=bundled",
        f"eval.limit={LIMIT}",
        "eval.subset=first",  # the CLI's --limit: the first documents
        f"eval.batch_size={BATCH}",
        "eval.dtype=float32",
        "eval.tasks.arc_challenge.num_fewshot=2",
        "eval.tasks.hellaswag.num_fewshot=2",
        "eval.tasks.mmlu.num_fewshot=2",
        f"eval/backend={backend}",
        *overrides,
    )


def _start_cli(backend: str, model_dir: Path, include: Path, shots: int, tasks: list[str], out: Path) -> subprocess.Popen:
    command = [
        *CLI[backend],
        "--model_args", f"pretrained={model_dir},dtype=float32{MODEL_ARGS[backend]}",
        "--tasks", ",".join(tasks),
        "--include_path", str(include),
        "--num_fewshot", str(shots),
        "--limit", str(LIMIT),
        "--batch_size", str(BATCH),
        "--device", "cpu",
        "--output_path", str(out),
    ]
    # One thread each: the CLI runs share the CPU with our run, and the tiny model gains nothing from more.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module", params=["hf", "prefix"])
def runs(request, tmp_path_factory, tiny_model_dir, cache_dir):
    """Our run and the CLI runs (started first, in the background) on the tiny model, for one backend."""
    cfg = compose_cfg(backend=request.param)
    root = tmp_path_factory.mktemp(f"parity_{request.param}")
    include = root / "cli_tasks"
    build_suite(cfg.eval, cfg.benchmarks, include, cache_dir)
    procs = {shots: _start_cli(request.param, tiny_model_dir, include, shots, tasks, root / f"cli{shots}")
             for shots, tasks in CLI_RUNS.items()}
    ours = evaluate_models(cfg.eval, cfg.benchmarks, [EvalModel("tiny", str(tiny_model_dir))], root / "ours", cache_dir)
    cli: dict[str, dict] = {}
    for shots, proc in procs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        (result_file,) = (root / f"cli{shots}").rglob("results_*.json")
        cli.update(json.loads(result_file.read_text())["results"])
    return {"cfg": cfg, "root": root, "ours": ours, "cli": cli, "model": tiny_model_dir, "backend": request.param}


def test_numbers_equal_lm_eval_cli(runs):
    ours = runs["ours"]["results"]["tiny"]["tasks"]
    ours_by_name = {name: res for task in ours.values() for name, res in task["results"].items()}
    for name, cli_res in runs["cli"].items():
        for metric in ("acc,none", "acc_norm,none"):
            if metric in cli_res:
                assert ours_by_name[name][metric] == cli_res[metric], (name, metric)
    summary = runs["ours"]["summary"]["tiny"]
    assert summary["truthfulqa_mc2"]["mc2"] == runs["cli"]["truthfulqa_mc2"]["acc,none"]
    assert summary["arc_challenge"]["acc_norm"] == runs["cli"]["arc_challenge"]["acc_norm,none"]
    assert set(summary) == {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "leaderboard_avg"}


def test_outputs_written(runs):
    out = runs["root"] / "ours"
    for name in ("results.json", "summary.json", "subjects.json", "table.md", "chart.png", "tiny/mmlu.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())["tiny"]
    assert results["settings"]["batch_size"] == BATCH and results["settings"]["dtype"] == "float32"
    assert results["settings"]["backend"] == {"model": {"hf": "hf", "prefix": "hf-prefix"}[runs["backend"]]}
    assert "validation split" in results["settings"]["tasks"]["hellaswag"]["note"]
    assert results["tasks"]["mmlu"]["n-samples"]["mmlu_anatomy"]["effective"] == LIMIT
    assert "### mmlu per category" in runs["ours"]["table"]


def test_rerun_skips_finished_tasks(runs, monkeypatch, cache_dir):
    out = runs["root"] / "ours"
    model = EvalModel("tiny", str(runs["model"]))

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun with the same settings must not load the model")

    monkeypatch.setattr(runner, "load_lm", refuse)
    again = evaluate_models(runs["cfg"].eval, runs["cfg"].benchmarks, [model], out, cache_dir)
    assert again["summary"] == runs["ours"]["summary"]

    # A changed setting reruns that task only.
    loads = []
    monkeypatch.setattr(runner, "load_lm", lambda *a: loads.append(a) or runs_lm(*a))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tiny").glob("*.json")}
    cfg = compose_cfg("eval.tasks.truthfulqa_mc2.limit=2", backend=runs["backend"])
    evaluate_models(cfg.eval, cfg.benchmarks, [model], out, cache_dir)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "tiny").glob("*.json")}
    assert len(loads) == 1
    assert [name for name in before if before[name] != after[name]] == ["truthfulqa_mc2.json"]


def test_another_run_reuses_the_cached_task_results(runs, monkeypatch, cache_dir, tmp_path):
    """A different output folder (another run) with the same model files and settings loads nothing."""
    monkeypatch.setattr(runner, "load_lm", lambda *a: pytest.fail("the cached results should have been reused"))
    again = evaluate_models(runs["cfg"].eval, runs["cfg"].benchmarks, [EvalModel("tiny", str(runs["model"]))],
                            tmp_path / "other_run", cache_dir)
    assert again["summary"] == runs["ours"]["summary"]
    assert (tmp_path / "other_run" / "tiny" / "arc_challenge.json").is_file()


runs_lm = runner.load_lm

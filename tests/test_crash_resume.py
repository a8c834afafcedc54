"""Crash safety as a user meets it: ``python run.py`` killed with SIGKILL during train and during
evaluate, then the same command again in the same run folder. The rerun reuses the finished stages,
continues training from its last checkpoint, skips the evaluation tasks already done, and ends with
the very ``summary.json`` of an uninterrupted run (tiny random Llama, a few items per task). A kill at a
random moment of each stage (PLATYPUS_KILL_SEED=<n> repeats one) leaves the same guarantees. A failed write
at each place the loop writes: tests/test_write_faults.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ENV, REPO, assert_same_numbers

pytestmark = pytest.mark.slow

TASKS = ("arc_challenge", "hellaswag", "truthfulqa_mc2")


def command(run_dir: Path, model: Path) -> list[str]:
    # Nothing shared across runs: no stage cache, and a cache_dir per run folder (cross-run evaluation
    # results live there), so every run computes what it does not find in its own run folder.
    return [
        sys.executable, "run.py", f"hydra.run.dir={run_dir}", "debug=fast", f"cache_dir={run_dir.parent / 'cache'}",
        f"model.path={model}", "model.gguf_file=null", "logger=none", "stage_cache=null", "curate=off", "data.sample=16",
        # 12 optimizer steps of one row, a checkpoint every 2 (LoRA dropout on: resume must restore the RNG too)
        "train.max_steps=12", "train.save_steps=2", "train.global_batch_size=1", "train.micro_batch_size=1",
        "train.packing=false", "train.cutoff_len=128", "train.threads=1", "train.warmup_steps=0",
        # three tasks x two models (base, merged): six per-task result files
        "~eval.tasks.mmlu", "eval.limit=2", "eval.dtype=float32",
        "eval.tasks.arc_challenge.num_fewshot=0", "eval.tasks.hellaswag.num_fewshot=0",
    ]


def run(run_dir: Path, model: Path, log: Path) -> str:
    with open(log, "w") as out:
        done = subprocess.run(command(run_dir, model), cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                              timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text[-4000:]
    return text


def run_and_kill(run_dir: Path, model: Path, log: Path, ready, timeout: float = 300) -> str:
    """Start the command, SIGKILL its whole process group as soon as ``ready()`` is true."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command(run_dir, model), cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if ready():
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return log.read_text()
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    pytest.fail(f"the run ended (rc {proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}")


def complete_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> Path:
    """The run folder of the same command, never interrupted."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run(folder / "run", tiny_model_dir, folder / "log.txt")
    summary = json.loads((folder / "run" / "evaluate" / "summary.json").read_text())
    assert set(summary) == {"base", "merged"} and all(set(TASKS) <= set(s) for s in summary.values())
    assert summary["base"] != summary["merged"], "the trained adapter must move the numbers for this test to mean much"
    return folder / "run"


def assert_same_summary(run_dir: Path, reference: Path) -> None:
    got = json.loads((run_dir / "evaluate" / "summary.json").read_text())
    assert_same_numbers(got, json.loads((reference / "evaluate" / "summary.json").read_text()))
    print(f"summary.json equals the uninterrupted run's: {json.dumps(got)}")


def test_kill_during_train_then_rerun_resumes_from_the_last_checkpoint(reference, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / ".train.partial" / "checkpoints"

    def after_a_checkpoint() -> bool:
        return any(complete_json(p / "trainer_state.json") for p in checkpoints.glob("checkpoint-*"))

    killed = run_and_kill(run_dir, tiny_model_dir, tmp_path / "killed.txt", after_a_checkpoint)
    assert "[platypus] train: running" in killed
    assert (run_dir / "curate" / "manifest.json").is_file() and not (run_dir / "train").exists()
    curate_manifest = (run_dir / "curate" / "manifest.json").read_bytes()
    at_kill = sorted(p.name for p in checkpoints.glob("checkpoint-*"))

    rerun = run(run_dir, tiny_model_dir, tmp_path / "rerun.txt")
    assert "[platypus] curate: reusing the finished result" in rerun
    assert (run_dir / "curate" / "manifest.json").read_bytes() == curate_manifest, "a finished stage was rewritten"
    resumed = json.loads((run_dir / "train" / "manifest.json").read_text())["metrics"]
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-"), resumed
    assert f"resuming from {run_dir / '.train.partial' / 'checkpoints' / resumed['resumed_from']}" in rerun
    assert resumed["steps"] == 12
    assert not list(run_dir.glob(".*.partial"))
    print(f"killed with {at_kill} on disk; resumed from "
          f"{resumed['resumed_from']}")

    from safetensors.torch import load_file

    want = load_file(reference / "train" / "adapter" / "adapter_model.safetensors")
    got = load_file(run_dir / "train" / "adapter" / "adapter_model.safetensors")
    worst = max((want[k] - got[k]).abs().max().item() for k in want)
    print(f"resumed adapter vs uninterrupted: max |diff| = {worst}")
    assert want.keys() == got.keys() and worst < 1e-6
    assert_same_summary(run_dir, reference)


def test_kill_during_evaluate_then_rerun_skips_finished_tasks(reference, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    partial = run_dir / ".evaluate.partial"

    def after_a_task() -> bool:
        return any(complete_json(p) for p in partial.glob("*/*.json"))

    run_and_kill(run_dir, tiny_model_dir, tmp_path / "killed.txt", after_a_task)
    for stage in ("curate", "train", "merge"):
        assert (run_dir / stage / "manifest.json").is_file()
    assert not (run_dir / "evaluate").exists()
    done = {p.relative_to(partial): p.read_bytes() for p in partial.glob("*/*.json") if complete_json(p)}
    assert 1 <= len(done) < 2 * len(TASKS)
    manifests = {s: (run_dir / s / "manifest.json").read_bytes() for s in ("curate", "train", "merge")}

    rerun = run(run_dir, tiny_model_dir, tmp_path / "rerun.txt")
    for stage in ("curate", "train", "merge"):
        assert f"[platypus] {stage}: reusing the finished result" in rerun
        assert (run_dir / stage / "manifest.json").read_bytes() == manifests[stage]
    for relative, content in done.items():
        label, task = relative.parent.name, relative.stem
        assert f"[evaluate] {label}/{task}: reusing" in rerun
        assert (run_dir / "evaluate" / relative).read_bytes() == content, f"{relative} was recomputed"
    computed = [line for line in rerun.splitlines() if line.startswith("[evaluate]") and "lm-eval task(s)" in line]
    assert len(computed) == 2 * len(TASKS) - len(done)
    print(f"killed with {len(done)} of {2 * len(TASKS)} task results written: {sorted(map(str, done))}")
    assert_same_summary(run_dir, reference)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["curate", "train", "merge", "evaluate"])
def test_kill_at_a_random_moment_of_each_stage_then_rerun_completes(stage, reference, tiny_model_dir, tmp_path):
    """SIGKILL at a random moment of ``stage`` (uniform over its time in the uninterrupted run): the finished stages
    stay intact (sha256 of every file) and the rerun ends with the uninterrupted run's summary."""
    from platypus.runtime import integrity
    from platypus.runtime.cache import MANIFEST

    seed = int(os.environ.get("PLATYPUS_KILL_SEED", time.time_ns() % 2**32))
    seconds = json.loads((reference / stage / MANIFEST).read_text())["seconds"]
    delay = random.Random(f"{seed}-{stage}").uniform(0, 0.8 * seconds)
    print(f"PLATYPUS_KILL_SEED={seed}: killing {delay:.2f} s into {stage} (took {seconds} s uninterrupted)")
    run_dir, started = tmp_path / "run", []

    def at_the_moment() -> bool:  # ``delay`` into the stage, or as it finishes when it is faster this time
        if not started and ((run_dir / f".{stage}.partial").is_dir() or (run_dir / stage).is_dir()):
            started.append(time.monotonic())
        return bool(started) and (time.monotonic() - started[0] >= delay or (run_dir / stage / MANIFEST).is_file())

    run_and_kill(run_dir, tiny_model_dir, tmp_path / "killed.txt", at_the_moment)
    finished = [p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in finished:  # a stage folder is complete with its manifest, or absent
        manifest = json.loads((folder / MANIFEST).read_text())
        assert integrity.damage(folder, manifest["files"], MANIFEST, full=True) is None, folder
    rerun = run(run_dir, tiny_model_dir, tmp_path / "rerun.txt")
    for folder in finished:
        assert f"[platypus] {folder.name}: reusing the finished result" in rerun
    print(f"finished when killed: {sorted(p.name for p in finished)}")
    assert_same_summary(run_dir, reference)

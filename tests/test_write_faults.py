"""A failed write at each place the whole loop writes, as SQLite tests its I/O errors: ``python run.py`` on the
tiny Llama with the N-th file write failing (tests/fault_injection/sitecustomize.py: a full disk, or the real
file-size-limit error of the libraries that write on their own: safetensors, torch.save, tokenizers). After each
failure: one paragraph and exit code 2 (no traceback); the finished stages of the run folder and the stage
cache verify (sha256 of every file); the same command without the fault completes and its summary.json equals
an uninterrupted run's.

By default (CI) the first write point of each library writer and Hydra's own config file run (4 points, whose
errors used to escape). PLATYPUS_FAULT_LOOP=spread adds the first point of every kind (mkdir, open, rename,
replace, link into the stage cache); PLATYPUS_FAULT_LOOP=full runs every write point N = 1, 2, ... (the spread
first) and then one past the last, where the run completes with none failing; PLATYPUS_FAULT_WORKERS=k runs k at
a time; PLATYPUS_FAULT_POINTS=a-b keeps the points a..b of that order (a long sweep split over sittings or machines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from platypus.runtime import integrity
from platypus.runtime.cache import MANIFEST, StageCache
from tests.helpers import ENV, REPO, assert_same_numbers

INJECTION = REPO / "tests" / "fault_injection"
# Only a log line or the stage cache (a copy of what the run folder holds) may fail without stopping the run, and
# a hardlink into the cache, which falls back to a copy.
BEST_EFFORT = ("[platypus] cannot write the log file", "could not add the result to the stage cache")
FALLS_BACK = {"link"}


def command(root: Path, model: Path) -> list[str]:
    return [
        sys.executable, "run.py", f"hydra.run.dir={root / 'run'}", "debug=fast", f"cache_dir={root / 'cache'}",
        f"stage_cache={root / 'cache' / 'stages'}", f"model.path={model}", "model.gguf_file=null", "logger=none",
        "curate=off", "data.sample=8", "train.max_steps=2", "train.save_steps=2", "train.packing=false",
        "~eval.tasks.mmlu", "~eval.tasks.hellaswag", "~eval.tasks.arc_challenge",
    ]


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    points: list[str]  # "<n> <kind> <path>" per write point reached
    failed: str | None  # "FAILED <n> <kind> <errno>" when the fault fired


def run(root: Path, model: Path, at: int | None, tag: str) -> Outcome:
    """The command in ``root``; ``at``: the write point that fails (0: none, counted; None: no injection)."""
    root.mkdir(parents=True, exist_ok=True)
    trace = root / f"writes-{tag}.txt"
    env = dict(ENV)
    if at is not None:
        env.update(PYTHONPATH=os.pathsep.join([str(INJECTION), str(REPO), env.get("PYTHONPATH", "")]),
                   PLATYPUS_FAULT_AT=str(at), PLATYPUS_FAULT_LOG=str(trace))
    env.pop("PLATYPUS_FAULT_PID", None)
    # pipes, not files: the injected file-size limit must not hit the captured output
    done = subprocess.run(command(root, model), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    lines = trace.read_text().splitlines() if trace.is_file() else []
    (root / f"{tag}.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    return Outcome(done.returncode, done.stdout, done.stderr, [line for line in lines if not line.startswith("FAILED")],
                   next((line for line in lines if line.startswith("FAILED")), None))


def kind(point: str) -> str:
    return point.split()[1]


def assert_finished_results_verify(root: Path) -> None:
    """Every finished stage in the run folder and every stage cache entry matches its manifest (sha256)."""
    run_dir = root / "run"
    stages = [p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")] if run_dir.is_dir() else []
    for folder in stages:
        manifest = json.loads((folder / MANIFEST).read_text())  # a stage folder is finished, or absent
        assert integrity.damage(folder, manifest["files"], MANIFEST, full=True) is None, folder
    cache = StageCache(root / "cache" / "stages")
    for entry in cache.entries():
        assert integrity.damage(entry.path, entry.manifest["files"], MANIFEST, full=True) is None, entry.path
    assert not cache.set_aside()


def assert_one_paragraph(outcome: Outcome) -> None:
    text = outcome.out + outcome.err
    assert "Traceback" not in text and "Logging error" not in text, text[-3000:]
    if outcome.code == 0:
        fell_back = outcome.failed.split()[2] in FALLS_BACK
        assert fell_back or any(said in text for said in BEST_EFFORT), f"{outcome.failed}: the run went on silently"
        return
    assert outcome.code == 2, f"{outcome.failed}: exit code {outcome.code}\n{outcome.err[-3000:]}"
    said = [line for line in outcome.err.splitlines() if line.startswith("error:")]
    assert len(said) == 1, outcome.err[-3000:]


def fault_at(n: int, base: Path, model: Path, reference: dict, points: list[str]) -> str:
    """Fail write point ``n``, check what is left, rerun without the fault; one line for the report."""
    root, started = base / f"at-{n:03d}", time.monotonic()
    faulted = run(root, model, n, "faulted")
    assert faulted.failed, f"write point {n} was not reached: {len(faulted.points)} of {len(points)}"
    assert kind(faulted.failed.replace("FAILED ", "")) == kind(points[n - 1]), (faulted.failed, points[n - 1])
    assert_one_paragraph(faulted)
    assert_finished_results_verify(root)
    rerun = run(root, model, None, "rerun")
    assert rerun.code == 0, rerun.err[-3000:]
    assert_same_numbers(json.loads((root / "run" / "evaluate" / "summary.json").read_text()), reference)
    assert_finished_results_verify(root)
    said = next((line for line in faulted.err.splitlines() if line.startswith("error:")), "(completed: best effort)")
    line = f"{points[n - 1]}: exit {faulted.code} ({time.monotonic() - started:.0f} s with the rerun): {said[:160]}"
    print(line, flush=True)
    return line


LIBRARY_WRITERS = ("safetensors", "torch.save", "tokenizer", "hydra")  # the writers whose errors escaped before


def spread(points: list[str], kinds: tuple[str, ...] | None = None) -> list[int]:
    """The first write point of each kind (of ``kinds`` only, if given), Hydra's own config file counted as one."""
    chosen: dict[str, int] = {}
    for n, point in enumerate(points, 1):
        chosen.setdefault(kind(point), n)
        if point.endswith(".hydra/config.yaml"):
            chosen.setdefault("hydra", n)
    return sorted({n for k, n in chosen.items() if kinds is None or k in kinds})


@pytest.mark.slow
def test_every_write_point_fails_cleanly_and_a_rerun_completes(tiny_model_dir, tmp_path):
    uninterrupted = run(tmp_path / "reference", tiny_model_dir, 0, "reference")
    assert uninterrupted.code == 0 and uninterrupted.failed is None, uninterrupted.err[-3000:]
    reference = json.loads((tmp_path / "reference" / "run" / "evaluate" / "summary.json").read_text())
    points = uninterrupted.points
    loop = os.environ.get("PLATYPUS_FAULT_LOOP", "libraries")  # libraries (CI) | spread | full
    full = loop == "full"
    chosen = spread(points, LIBRARY_WRITERS if loop == "libraries" else None)
    if full:  # the spread first, then every other point in turn
        chosen += [n for n in range(1, len(points) + 1) if n not in chosen]
    if os.environ.get("PLATYPUS_FAULT_POINTS"):
        first, last = (int(x) for x in os.environ["PLATYPUS_FAULT_POINTS"].split("-"))
        chosen = [n for n in chosen if first <= n <= last]
        full = full and last >= len(points)
    def attempt(n: int) -> str | None:
        try:
            fault_at(n, tmp_path, tiny_model_dir, reference, points)
        except AssertionError as error:
            print(f"write point {n} ({points[n - 1]}) did not survive: {error}", flush=True)
            return f"{n}: {str(error)[:2000]}"
        return None

    with ThreadPoolExecutor(int(os.environ.get("PLATYPUS_FAULT_WORKERS", "1"))) as pool:
        broken = [problem for problem in pool.map(attempt, chosen) if problem]
    assert not broken, "\n".join(broken)
    print(f"{len(points)} write points in an uninterrupted run; {len(chosen)} failed in turn, each survived.")
    if full:  # one past the last: the run completes with no write failing
        beyond = run(tmp_path / "beyond", tiny_model_dir, len(points) + 1, "beyond")
        assert beyond.code == 0 and beyond.failed is None and len(beyond.points) == len(points)


class _RunsCode:
    """A pickle that would run a shell command when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_a_pickled_adapter_that_would_run_code_is_one_paragraph(tiny_model_dir, tmp_path):
    """platypus/runtime/weights.py refuses it without running it: the paragraph names the file, exit code 2."""
    import pickle

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter, marker = tmp_path / "adapter", tmp_path / "the-payload-ran"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(adapter, safe_serialization=False)
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps({"base_model.model.x": _RunsCode(marker)}))
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={tmp_path / 'run'}", "stages=[merge]",
                           f"merge.adapters=[{adapter}]", f"model.path={tiny_model_dir}", "model.gguf_file=null",
                           "logger=none", "stage_cache=null"], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    said = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    print("\n".join(said))
    assert done.returncode == 2 and len(said) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{adapter / 'adapter_model.bin'} is a pickle" in said[0] and not marker.exists()

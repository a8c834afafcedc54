"""The shared-prefix scorer on the real SmolLM2-135M (float32) gives HFLM's numbers on the four leaderboard tasks.

HFLM's answers for 32 documents per task at the v1 shot counts (ARC-Challenge 25-shot, HellaSwag 10-shot,
MMLU 5-shot on two subjects of 16, TruthfulQA-mc2 0-shot; CI scores the first 16 of ARC and HellaSwag) are recorded in tests/reference/smollm2_hflm_<isa>.json
by ``python -m tests.reference.make_smollm2_hflm`` (7-20 minutes of HFLM on a 2-core CPU, too long for every
CI run), one file per vector instruction set: float32 kernels for AVX2 and AVX-512 sum in different orders, and
HFLM's own scores move between them by more than 1e-4 (up to 3.5e-4 on 32 HellaSwag documents, 2.0e-4 on
ARC). Here the scorer runs the same documents and must give every request's logprob within 1e-4 of HFLM's, every
is_greedy, every per-document decision and every accuracy exactly, mc2 within 1e-5. That the recording is
still what HFLM computes here is checked live on the first two documents of each task, and an adapter through
``peft=`` is compared live on the first document of each task.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest

from platypus.stages.evaluate.prefix import PrefixLM
from platypus.stages.evaluate.runner import SEEDS

pytestmark = pytest.mark.slow


def vector_isa() -> str:
    """avx512 or avx2: which float32 kernels torch runs here (the recording must come from the same kind);
    PLATYPUS_ISA names it where the kernels were capped (tests/reference/make_smollm2_hflm.py)."""
    if os.environ.get("PLATYPUS_ISA"):
        return os.environ["PLATYPUS_ISA"]
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "avx512" if " avx512f" in flags else "avx2" if " avx2" in flags else "unknown"


REFERENCE = Path(__file__).resolve().parent / "reference" / f"smollm2_hflm_{vector_isa()}.json"
# lm-eval task -> (shots, documents): the first documents of each test split.
TASKS = {"arc_challenge": (25, 32), "hellaswag": (10, 32), "mmlu_abstract_algebra": (5, 16), "mmlu_anatomy": (5, 16),
         "truthfulqa_mc2": (0, 32)}
# What the scorer runs in CI: the first 16 of the recorded 32 ARC and HellaSwag documents (their 25- and 10-shot
# contexts are most of the cost: 204 s for all 128 documents here), every recorded MMLU and TruthfulQA one.
SCORED = {"arc_challenge": 16, "hellaswag": 16}
LIVE_DOCS = 2  # HFLM recomputed live: the recording is still what it computes
ADAPTER_DOCS = 1


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def run_tasks(lm, suite_dir: Path, cache_dir: Path, docs: int | dict | None = None, only: list | None = None) -> dict:
    """{lm-eval task: {"metrics", "docs": [{doc_id, requests digest, resps, per-document metrics}]}} for every
    task of TASKS, or those named in ``only``."""
    import lm_eval
    from platypus.stages.evaluate.tasks import build_suite
    from tests.helpers import compose_config

    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled")
    manager = build_suite(cfg.eval, cfg.benchmarks, suite_dir, cache_dir).task_manager()
    out = {}
    for name, (shots, limit) in TASKS.items():
        if only and name not in only:
            continue
        limit = docs.get(name, limit) if isinstance(docs, dict) else docs or limit
        result = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=shots, limit=limit,
                                         task_manager=manager, log_samples=True, **SEEDS)
        samples = sorted(result["samples"][name], key=lambda s: s["doc_id"])
        metrics = [m for m in samples[0]["metrics"]]
        out[name] = {
            "metrics": {k: v for k, v in result["results"][name].items() if k.endswith(",none") and "stderr" not in k},
            "docs": [{"doc_id": s["doc_id"], "requests": digest([list(a) for a in s["arguments"]]),
                      "resps": [[float(r[0][0]), bool(r[0][1])] for r in s["resps"]],
                      **{m: s[m] for m in metrics}} for s in samples],
        }
    return out


@pytest.fixture(scope="module")
def reference(smollm2_dir, tmp_path_factory, cache_dir) -> dict:
    """The recording for this CPU's instruction set; on a CPU without one, HFLM's answers for the scored documents
    recorded live in this run (to the pytest run's temporary folder, named in a warning with the scores), so the
    scorer is still checked against HFLM, only more slowly."""
    if REFERENCE.is_file():
        return json.loads(REFERENCE.read_text())
    from lm_eval.models.huggingface import HFLM

    hf = HFLM(pretrained=str(smollm2_dir), dtype="float32", device="cpu", batch_size=1)
    recorded = {"live": True, "tasks": run_tasks(hf, tmp_path_factory.mktemp("hflm_suite"), cache_dir, docs=SCORED)}
    path = tmp_path_factory.getbasetemp() / REFERENCE.name
    path.write_text(json.dumps(recorded, indent=1))
    scores = {name: task["metrics"] for name, task in recorded["tasks"].items()}
    warnings.warn(f"no HFLM recording for this CPU ({REFERENCE.name}); HFLM's answers were recorded live to {path} "
                  f"(scores: {scores}). Keep one with python -m tests.reference.make_smollm2_hflm.", stacklevel=1)
    return recorded


@pytest.fixture(scope="module")
def prefix_run(smollm2_dir, tmp_path_factory, cache_dir):
    lm = PrefixLM(pretrained=str(smollm2_dir), dtype="float32", device="cpu", batch_size=8)
    return run_tasks(lm, tmp_path_factory.mktemp("suite"), cache_dir, docs=SCORED), lm


def assert_matches(ours: dict, theirs: dict, docs: int | dict | None = None) -> None:
    """Every document's requests, logprobs, greedy flags and metrics; the task's metrics when all its recorded
    documents were run (``docs``: how many were, for every task or per task)."""
    for name, task in theirs.items():
        mine = ours[name]
        first = docs.get(name) if isinstance(docs, dict) else docs
        expected = task["docs"][:first] if first else task["docs"]
        tol = 1e-5 if name.startswith("truthfulqa") else 0  # mc2 is continuous in the logprobs; decisions are exact
        assert len(mine["docs"]) == len(expected), name
        for got, want in zip(mine["docs"], expected):
            assert got["doc_id"] == want["doc_id"] and got["requests"] == want["requests"], (name, want["doc_id"])
            for (a, ga), (b, gb) in zip(got["resps"], want["resps"]):
                assert a == pytest.approx(b, abs=1e-4), (name, want["doc_id"], a, b)
                assert ga == gb, (name, want["doc_id"])
            for metric in ("acc", "acc_norm"):
                if metric in want:
                    assert got[metric] == pytest.approx(want[metric], abs=tol), (name, want["doc_id"], metric)
        if first is None:
            for metric, value in task["metrics"].items():
                assert mine["metrics"][metric] == pytest.approx(value, abs=tol), (name, metric)


def test_prefix_scorer_equals_recorded_hflm(prefix_run, reference):
    ours, lm = prefix_run
    assert_matches(ours, reference["tasks"], docs=SCORED)
    assert sum(len(t["docs"]) for t in ours.values()) == 16 + 16 + 32 + 32
    assert lm.counts.computed * 3 < lm.counts.requested  # the point of it: far fewer tokens computed


def test_recording_is_what_hflm_computes_here(smollm2_dir, tmp_path, cache_dir, reference):
    if reference.get("live"):
        pytest.skip("the recording was made live by HFLM in this run: there is no stored one to check")
    from lm_eval.models.huggingface import HFLM

    hf = HFLM(pretrained=str(smollm2_dir), dtype="float32", device="cpu", batch_size=1)
    assert_matches(run_tasks(hf, tmp_path, cache_dir, docs=LIVE_DOCS), reference["tasks"], docs=LIVE_DOCS)


def test_adapter_through_peft_scores_as_hflm(smollm2_dir, tmp_path, cache_dir):
    """A random (seeded, non-zero) LoRA on gate/up/down_proj, loaded by both classes through peft=."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    net = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(net, lora).save_pretrained(tmp_path / "adapter")
    kwargs = dict(pretrained=str(smollm2_dir), peft=str(tmp_path / "adapter"), dtype="float32", device="cpu")
    theirs = run_tasks(HFLM(batch_size=1, **kwargs), tmp_path / "a", cache_dir, docs=ADAPTER_DOCS)
    ours = run_tasks(PrefixLM(batch_size=8, **kwargs), tmp_path / "b", cache_dir, docs=ADAPTER_DOCS)
    assert_matches(ours, theirs, docs=ADAPTER_DOCS)

"""Random document subsets (the same for every model and run), per-document outcomes, and paired deltas with
intervals in summary.json and table.md, end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from platypus.stages.evaluate.documents import choose, random_documents
from platypus.stages.evaluate.runner import EvalModel, evaluate_models
from platypus.stages.evaluate.tasks import build_suite
from tests.helpers import compose_config as config

TQA_AND_MMLU = ["debug=fast", "logger=none", "~eval.tasks.arc_challenge", "~eval.tasks.hellaswag", "eval.dtype=float32",
                "eval.tasks.mmlu.num_fewshot=1"]


@pytest.fixture(scope="module")
def suite_tasks(tmp_path_factory, cache_dir):
    cfg = config("eval=leaderboard_v1")
    suite = build_suite(cfg.eval, cfg.benchmarks, tmp_path_factory.mktemp("suite"), cache_dir)
    manager = suite.task_manager()
    return {key: manager.load(task.lm_eval_names)["tasks"] for key, task in suite.tasks.items()}


def test_random_subsets_are_seeded_stratified_per_subject_and_in_range(suite_tasks):
    mmlu = suite_tasks["mmlu"]
    chosen = choose(mmlu, 3, "random", 1234)["samples"]
    assert set(chosen) == set(mmlu) and len(chosen) == 57
    for name, ids in chosen.items():  # the same count for every subject: the v1 mean weights them equally
        assert len(ids) == 3 == len(set(ids)) and ids == sorted(ids) and max(ids) < len(mmlu[name].eval_docs)
    assert choose(mmlu, 3, "random", 1234)["samples"] == chosen  # reproducible
    assert choose(mmlu, 3, "random", 99)["samples"] != chosen
    hellaswag = suite_tasks["hellaswag"]
    ids = choose(hellaswag, 0.01, "random", 1234)["samples"]["hellaswag"]
    assert len(ids) == 101 and ids != list(range(101))  # ceil(1% of 10,042): lm-eval's rounding, not the head
    assert choose(hellaswag, 5, "first", 1234) == {"limit": 5}  # today's behaviour: lm-eval's limit
    assert choose(hellaswag, None, "random", 1234) == {"limit": None}  # no limit: every document


def test_random_documents_do_not_depend_on_other_tasks():
    assert random_documents("a", 100, 5, 7) == random_documents("a", 100, 5, 7) != random_documents("b", 100, 5, 7)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir, cache_dir):
    """The tiny model and the tiny model + a random adapter, on 6 random TruthfulQA documents and 2 per MMLU
    subject."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("compared")
    torch.manual_seed(3)
    net = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    get_peft_model(net, LoraConfig(r=4, lora_alpha=32, target_modules=["gate_proj", "up_proj", "down_proj"],
                                   init_lora_weights=False, task_type="CAUSAL_LM")).save_pretrained(root / "adapter")
    cfg = config(*TQA_AND_MMLU, "eval.limit=6", "eval.tasks.mmlu.limit=2")
    models = [EvalModel("base", str(tiny_model_dir)), EvalModel("adapter", str(tiny_model_dir), peft=str(root / "adapter"))]
    out = evaluate_models(cfg.eval, cfg.benchmarks, models, root / "run", cache_dir, log=lambda _: None)
    return {"cfg": cfg, "out": out, "root": root, "models": models}


@pytest.mark.slow
def test_both_models_are_scored_on_the_same_recorded_random_documents(compared):
    results = json.loads((compared["root"] / "run" / "results.json").read_text())
    for task in ("truthfulqa_mc2", "mmlu"):
        base, adapter = results["base"]["items"][task], results["adapter"]["items"][task]
        assert {n: c["doc_id"] for n, c in base.items()} == {n: c["doc_id"] for n, c in adapter.items()}
    assert results["base"]["items"]["truthfulqa_mc2"]["truthfulqa_mc2"]["doc_id"] == random_documents(
        "truthfulqa_mc2", 817, 6, 1234)
    assert all(len(c["doc_id"]) == 2 for c in results["base"]["items"]["mmlu"].values())
    assert results["base"]["settings"]["subset"] == {"mode": "random", "seed": 1234}
    task_file = json.loads((compared["root"] / "run" / "base" / "truthfulqa_mc2.json").read_text())
    assert task_file["settings"]["documents"]["samples"]["truthfulqa_mc2"] == task_file["items"]["truthfulqa_mc2"]["doc_id"]


@pytest.mark.slow
def test_summary_and_table_carry_deltas_with_intervals(compared):
    summary = compared["out"]["summary"]
    delta = summary["adapter"]["delta"]
    assert delta["reference"] == "base" and "delta" not in summary["base"]
    tqa = delta["truthfulqa_mc2"]
    assert tqa["low"] <= tqa["value"] <= tqa["high"] and 0 <= tqa["p"] <= 1 and tqa["n"] == 6
    mc2 = summary["adapter"]["truthfulqa_mc2"]["mc2"] - summary["base"]["truthfulqa_mc2"]["mc2"]
    assert tqa["value"] == pytest.approx(mc2, abs=1e-12)  # paired on the same documents: the plain difference
    assert delta["mmlu"]["n"] == 114
    assert summary["adapter"]["mmlu"]["acc"] - summary["base"]["mmlu"]["acc"] == pytest.approx(delta["mmlu"]["value"])
    assert summary["base"]["truthfulqa_mc2"]["stderr"] > 0
    table = compared["out"]["table"]
    assert f"{tqa['value']:+.4f} [{tqa['low']:+.4f}, {tqa['high']:+.4f}]" in table
    assert "**adapter vs base**: significant:" in table and "not significant:" in table
    assert "### mmlu per category" in table and " [" in table.split("### mmlu per category")[1].split("###")[0]


@pytest.mark.slow
def test_a_rerun_reuses_the_same_documents(compared, cache_dir, tmp_path, monkeypatch):
    from platypus.stages.evaluate import runner

    monkeypatch.setattr(runner, "load_lm", lambda *a: pytest.fail("same documents and settings: nothing to compute"))
    again = evaluate_models(compared["cfg"].eval, compared["cfg"].benchmarks, compared["models"], tmp_path, cache_dir,
                            log=lambda _: None)
    assert again["summary"] == compared["out"]["summary"]

"""An unmerged adapter evaluated through lm-eval's ``peft=`` equals its folded model; vLLM passes
through (refused clearly here: no CUDA); ``evaluate.plan=true`` plans without evaluating."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from platypus.runtime.errors import PlatypusError
from platypus.stages.evaluate import backends
from platypus.stages.evaluate.runner import EvalModel, evaluate_models
from platypus.pipeline import run_pipeline
from tests.helpers import compose_config as config

TQA_ONLY = ["debug=fast", "~eval.tasks.arc_challenge", "~eval.tasks.hellaswag", "~eval.tasks.mmlu", "eval.limit=6", "eval.subset=first",
            "eval.dtype=float32"]


@pytest.fixture(scope="module")
def adapter_and_folded(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """A non-trivial LoRA adapter (random B) on the tiny model, and that adapter folded in."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("adapter_eval")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(root / "adapter")
    peft_model.merge_and_unload().save_pretrained(root / "folded", safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(root / "folded")
    return root / "adapter", root / "folded"


@pytest.mark.slow
def test_adapter_through_peft_equals_its_folded_model(tmp_path, tiny_model_dir, adapter_and_folded, cache_dir):
    adapter, folded = adapter_and_folded
    cfg = config("logger=none", *TQA_ONLY)
    models = [EvalModel("base", str(tiny_model_dir)), EvalModel("adapter", str(tiny_model_dir), peft=str(adapter)),
              EvalModel("merged", str(folded))]
    summary = evaluate_models(cfg.eval, cfg.benchmarks, models, tmp_path, cache_dir, log=lambda _: None)["summary"]
    mc2 = {label: summary[label]["truthfulqa_mc2"]["mc2"] for label in summary}
    assert mc2["adapter"] == pytest.approx(mc2["merged"], abs=1e-4)
    assert mc2["adapter"] != pytest.approx(mc2["base"], abs=1e-4)  # the adapter was really applied
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["adapter"]["model"]["peft"] == str(adapter)


def test_vllm_backend_is_refused_clearly_without_it(tiny_model_dir):
    cfg = config("logger=none", "eval/backend=vllm")
    with pytest.raises(PlatypusError, match="eval/backend=vllm needs"):
        backends.load_lm(EvalModel("x", str(tiny_model_dir)), "float32", cfg.eval)
    cfg = config("logger=none", "eval/backend=hf", "eval.backend.model=tgi")
    with pytest.raises(PlatypusError, match=r"eval.backend.model='tgi': lm-eval has no model class by that name\. "
                                            r"Registered: .*hf-prefix"):
        backends.load_lm(EvalModel("x", str(tiny_model_dir)), "float32", cfg.eval)
    cfg = config("logger=none", "+eval.backend.kv_cache=2")
    with pytest.raises(PlatypusError, match="eval.backend.kv_cache: PrefixBackend has no such parameter"):
        backends.load_lm(EvalModel("x", str(tiny_model_dir)), "float32", cfg.eval)


def test_eval_backend_group_names_lm_eval_classes():
    """Each shipped option is a Backend naming an lm-eval registry name; any registered class is reachable."""
    from lm_eval.models.huggingface import HFLM

    from platypus.stages.evaluate.prefix import PrefixLM

    expected = {"prefix": (backends.PrefixBackend, PrefixLM), "hf": (backends.Backend, HFLM)}
    for option, (cls, lm_cls) in expected.items():
        backend = backends.eval_backend(config("logger=none", f"eval/backend={option}").eval)
        assert type(backend) is cls and backend.lm_class() is lm_cls
    vllm = backends.eval_backend(config("logger=none", "eval/backend=vllm").eval)
    assert type(vllm) is backends.VllmBackend and vllm.model == "vllm"
    assert backends.eval_backend(config("logger=none").eval).key() == {"model": "hf-prefix"}  # the presets' default
    dummy = backends.eval_backend(config("logger=none", "eval/backend=hf", "eval.backend.model=dummy").eval)
    assert dummy.lm_class().__name__ == "DummyLM"


def test_vllm_backend_passes_model_and_adapter_through(monkeypatch, tiny_model_dir, adapter_and_folded):
    """With vLLM present (stubbed here), lm-eval's VLLM class gets the model, dtype, batch and LoRA adapter."""
    import importlib.util
    import types

    seen = {}
    module = types.ModuleType("lm_eval.models.vllm_causallms")
    module.VLLM = lambda **kwargs: seen.update(kwargs) or "lm"
    monkeypatch.setattr(backends.VllmBackend, "lm_class", lambda self: module.VLLM)  # lm-eval's "vllm"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    adapter, _ = adapter_and_folded
    cfg = config("logger=none", "eval/backend=vllm", "eval.batch_size=auto")
    assert backends.load_lm(EvalModel("a", str(tiny_model_dir), peft=str(adapter)), "bfloat16", cfg.eval) == "lm"
    assert seen == {"pretrained": str(tiny_model_dir), "dtype": "bfloat16", "batch_size": "auto",
                    "lora_local_path": str(adapter), "max_lora_rank": 16, "add_bos_token": False,
                    "tensor_parallel_size": 1}  # v1: no BOS


@pytest.mark.slow
def test_plan_mode_estimates_and_evaluates_nothing(tmp_path, tiny_model_dir):
    cfg = config("stages=[evaluate]", "logger=none", f"evaluate.models=[{tiny_model_dir}]", "evaluate.plan=true",
                 "eval=leaderboard_v1", "eval.dtype=float32", "eval.tasks.mmlu.limit=1", "evaluate.plan_warmup_docs=1")
    assert run_pipeline(cfg, tmp_path) is None
    plan = json.loads((tmp_path / "evaluate_plan.json").read_text())
    rows = {row["task"]: row for row in plan["rows"]}
    assert rows["arc_challenge"]["docs"] == 1172 and rows["mmlu"]["docs"] == 57
    assert rows["arc_challenge"]["requests"] == 4687 and rows["mmlu"]["requests"] == 4 * 57
    # 25-shot ARC requests carry ~4.6k characters each (sampled), 5-shot MMLU far fewer on average
    assert 3000 < rows["arc_challenge"]["chars"] / 4687 < 6000
    assert rows["mmlu"]["chars"] / 228 < rows["arc_challenge"]["chars"] / 4687
    assert all(row["s_per_request"] > 0 for row in rows.values()) and plan["total_seconds"] > 0
    assert "| arc_challenge |" in (tmp_path / "evaluate_plan.md").read_text()
    # the smallest significant delta: 1.96 * sqrt(0.2 / n) for 0/1 metrics; MMLU's is a mean of 57 subject means
    assert rows["arc_challenge"]["detectable"] == pytest.approx(1.959964 * (0.2 / 1172) ** 0.5, rel=1e-5)
    assert rows["mmlu"]["detectable"] == pytest.approx(1.959964 * (0.2 / 1) ** 0.5 / 57 ** 0.5, rel=1e-5)
    assert 0 < plan["detectable_average"] < max(row["detectable"] for row in rows.values())
    # the prefix scorer's cost model: tokens it computes, far fewer than HFLM's inputs
    assert all(row["unit"] == "tokens" and row["tokens"] < row["tokens_requested"] for row in rows.values())
    assert not (tmp_path / "evaluate").exists()


def test_auto_dtype_is_bf16_only_where_it_is_fast(monkeypatch):
    """eval.dtype=auto: bfloat16 on AMX CPUs and bf16 GPUs, float16 on older GPUs, float32 on other CPUs."""
    from platypus.runtime import hardware

    for amx, expected in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda amx=amx: amx)
        assert backends.resolve_dtype("auto", "cpu") == expected
    for capability, expected in (((8, 0), "bfloat16"), ((7, 0), "float16")):  # native bf16 from Ampere on
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert backends.resolve_dtype("auto", "cuda:0") == expected
    assert backends.resolve_dtype("float16", "cpu") == "float16"  # explicit choices are kept
    with pytest.raises(PlatypusError, match="eval.dtype='half'"):
        backends.resolve_dtype("half", "cpu")


def test_auto_batch_size_is_one_on_cpu_and_lm_evals_search_on_cuda():
    """lm-eval's 'auto' search relies on CUDA out-of-memory errors; on a CPU it was OOM-killed, so auto -> 1."""
    assert backends.resolve_batch_size({"batch_size": "auto", "device": "cpu"}) == 1
    assert backends.resolve_batch_size({"batch_size": "auto", "device": "cuda:0"}) == "auto"
    assert backends.resolve_batch_size({"batch_size": "auto:4", "device": "cuda"}) == "auto:4"
    assert backends.resolve_batch_size({"batch_size": "auto", "device": "cpu", "backend": backends.VllmBackend()}) == "auto"
    assert backends.resolve_batch_size({"batch_size": "8", "device": "cpu"}) == 8
    with pytest.raises(PlatypusError, match="eval.batch_size='-2'"):
        backends.resolve_batch_size({"batch_size": "-2", "device": "cpu"})


@pytest.mark.slow
def test_in_memory_model_scores_like_its_folder_and_is_keyed_on_its_weights(tmp_path, tiny_model_dir, cache_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = config("logger=none", *TQA_ONLY)
    net = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    models = [EvalModel("folder", str(tiny_model_dir)), EvalModel("memory", "tiny (in memory)", loaded=(net, tokenizer))]
    out = evaluate_models(cfg.eval, cfg.benchmarks, models, tmp_path / "a", cache_dir, log=lambda _: None)
    delta = out["summary"]["memory"].pop("delta")  # paired vs the first model: the same numbers, a zero delta
    assert out["summary"]["memory"] == out["summary"]["folder"]
    assert delta["truthfulqa_mc2"]["value"] == 0.0 and not delta["truthfulqa_mc2"]["significant"]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["memory"]["model"] == {"label": "memory", "pretrained": "tiny (in memory)", "peft": None,
                                          "dtype": "float32", "in_memory": True}
    digest = backends.in_memory_digest(net, tokenizer)
    task = json.loads((tmp_path / "a" / "memory" / "truthfulqa_mc2.json").read_text())
    assert task["settings"]["model"] == {"in_memory": digest}
    with torch.no_grad():  # other weights, other key: nothing stale is reused
        net.lm_head.weight.mul_(3.0)
    assert backends.in_memory_digest(net, tokenizer) != digest
    logs = []
    again = evaluate_models(cfg.eval, cfg.benchmarks, [EvalModel("memory", "tiny", loaded=(net, tokenizer))],
                            tmp_path / "b", cache_dir, log=logs.append)
    assert not any("reusing" in line for line in logs)
    assert again["summary"]["memory"] != out["summary"]["memory"]


def test_models_with_the_same_folder_name_keep_distinct_labels(tmp_path):
    """evaluate.models=[a/merge/model, b/merge/model] once evaluated only one of them (both labelled 'model')."""
    from platypus.stages.evaluate.stage import distinct_labels

    a, b = tmp_path / "token" / "merge" / "model", tmp_path / "sequence" / "merge" / "model"
    a.mkdir(parents=True), b.mkdir(parents=True)
    assert distinct_labels([str(a), str(b)]) == ["token-merge-model", "sequence-merge-model"]
    assert distinct_labels([str(a), "org/name"]) == ["model", "name"]
    with pytest.raises(PlatypusError, match="lists the same model twice"):
        distinct_labels([str(a), str(a)])

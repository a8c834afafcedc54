"""The GPU paths of issue 30 (and issue 26's single-process 70B mode and v1 sums), pinned on this CPU: CUDA facts
are monkeypatched, big models live on the meta device. Each test failed before its fix (see notes/issue-30.md);
what only a GPU can settle runs in benchmarks/gpu_acceptance.py."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from platypus.runtime import hardware, models
from platypus.runtime.errors import PlatypusError
from platypus.stages.evaluate import backends, report
from platypus.stages.evaluate.runner import EvalModel
from tests.helpers import ROWS, compose_config, train_configs as configs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cuda(monkeypatch):
    """A machine with `n` CUDA GPUs of compute capability `capability` (as far as the code under test asks)."""
    def make(n: int = 1, capability: tuple[int, int] = (9, 0)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true through emulation on V100
    return make


# --------------------------------------------------------------------------- 1: evaluation device
def test_gpu_preset_evaluates_on_cuda_when_cuda_is_there(cuda, monkeypatch, tiny_model_dir):
    cuda()
    seen = {}
    monkeypatch.setattr(backends.Backend, "lm_class", lambda self: lambda **kwargs: seen.update(kwargs) or "lm")
    cfg = compose_config("experiment=platypus2_13b", "logger=none")
    backends.load_lm(EvalModel("m", str(tiny_model_dir)), "float16", cfg.eval)
    assert seen["device"] == "cuda"


def test_auto_dtype_follows_the_auto_device(cuda):
    cuda(capability=(9, 0))
    assert backends.resolve_dtype("auto", "auto") == "bfloat16"  # the evaluate stage's check and plan pass eval.device


def test_device_defaults_to_the_cpu_without_cuda():
    assert backends.resolve_device({"device": "auto"}) == "cpu"
    assert backends.resolve_device({"device": "cuda:1"}) == "cuda:1"


def test_table_header_names_the_device():
    table = report.markdown_table({"m": {}}, {}, {"tasks": {}, "device": "cuda"})
    assert "cuda" in table.splitlines()[0]


# --------------------------------------------------------------------------- 2 (+ 9: 4-bit dtype): quantized loads
@pytest.fixture
def captured_load(monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    monkeypatch.setattr(models, "check_quantization", lambda q: None)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda path, **kwargs: seen.update(kwargs) or "model")
    return seen


def test_quantized_load_goes_to_this_ranks_gpu(captured_load, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    models.load_model("x", "float16", "8bit")
    assert captured_load["device_map"] == {"": 1}


def test_four_bit_compute_dtype_follows_precision(captured_load):
    models.load_model("x", "float16", "4bit", compute_dtype="float16")
    assert captured_load["quantization_config"].bnb_4bit_compute_dtype == torch.float16


def test_model_parallel_spreads_the_model_over_the_gpus(captured_load):
    models.load_model("x", "float16", "8bit", model_parallel=True)
    assert captured_load["device_map"] == "auto"


# --------------------------------------------------------------------------- 3: prefix scorer under a hooked forward
def test_scorer_hands_no_tensor_as_logits_to_keep(tiny_model_dir, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    from platypus.stages.evaluate.prefix import PrefixLM
    from tests.test_prefix_scorer import MAX_LENGTH, assert_same, single_token_requests

    kwargs = dict(pretrained=str(tiny_model_dir), dtype="float32", device="cpu", max_length=MAX_LENGTH)
    hf, prefix = HFLM(batch_size=4, **kwargs), PrefixLM(batch_size=3, answers_per_pass=3, **kwargs)
    forward, kept = prefix.model.forward, []

    @functools.wraps(forward)  # keeps the signature: the scorer asks it whether logits_to_keep is taken
    def hooked(*args, **kw):  # accelerate's hook would move a tensor argument to the first GPU
        kept.append(kw.get("logits_to_keep"))
        return forward(*args, **kw)

    monkeypatch.setattr(prefix.model, "forward", hooked)
    requests = single_token_requests(hf.model)
    assert_same(prefix._loglikelihood_tokens(requests, disable_tqdm=True),
                hf._loglikelihood_tokens(requests, disable_tqdm=True), tol=1e-5)
    assert kept and not any(torch.is_tensor(k) for k in kept)


# --------------------------------------------------------------------------- 4: vLLM
@pytest.fixture
def fake_vllm(monkeypatch):
    import importlib.util

    seen = {}
    module = types.ModuleType("lm_eval.models.vllm_causallms")
    module.VLLM = type("VLLM", (), {"__init__": lambda self, **kwargs: seen.update(kwargs)})
    monkeypatch.setattr(backends.VllmBackend, "lm_class", lambda self: module.VLLM)  # lm-eval's "vllm"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    return seen


def test_parallelize_reaches_vllm_as_tensor_parallelism(cuda, fake_vllm, tiny_model_dir):
    cuda(n=4)
    cfg = compose_config("logger=none", "eval/backend=vllm", "eval.parallelize=true")
    backends.load_lm(EvalModel("a", str(tiny_model_dir)), "float16", cfg.eval)
    assert fake_vllm["tensor_parallel_size"] == 4
    cfg = compose_config("logger=none", "eval/backend=vllm")
    backends.load_lm(EvalModel("a", str(tiny_model_dir)), "float16", cfg.eval)
    assert fake_vllm["tensor_parallel_size"] == 1


def test_vllm_engine_is_shut_down_with_vllms_api(monkeypatch):
    calls = []
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.cleanup_dist_env_and_memory = lambda: calls.append("cleanup")
    for name, module in (("vllm", types.ModuleType("vllm")), ("vllm.distributed", types.ModuleType("vllm.distributed")),
                         ("vllm.distributed.parallel_state", parallel_state)):
        monkeypatch.setitem(sys.modules, name, module)
    engine = types.SimpleNamespace(shutdown=lambda: calls.append("shutdown"))
    lm = type("VLLM", (), {"__module__": "lm_eval.models.vllm_causallms"})()
    lm.model = engine
    backends.release(lm)
    assert calls == ["shutdown", "cleanup"] and not hasattr(lm, "model")


def test_runner_releases_a_model_before_loading_the_next(monkeypatch, tmp_path):
    from platypus.stages.evaluate import runner

    events = []

    def load(model, dtype, eval_cfg):
        events.append(f"load {model.label}")
        if model.label == "b":
            raise KeyboardInterrupt  # stop here: the order so far is what is tested
        return types.SimpleNamespace()

    monkeypatch.setattr(runner, "load_lm", load)
    monkeypatch.setattr(runner, "release", lambda lm: events.append("release"))
    monkeypatch.setattr(runner, "_run_task", lambda *a: events.append("run") or {k: {} for k in runner.LM_EVAL_KEYS} | {"items": {}})
    cfg = compose_config("logger=none", "debug=fast", "~eval.tasks.arc_challenge", "~eval.tasks.hellaswag",
                         "~eval.tasks.mmlu", "eval.limit=2", "eval.subset=first", "eval.dtype=float32")
    with pytest.raises(KeyboardInterrupt):
        runner.evaluate_models(cfg.eval, cfg.benchmarks, [EvalModel("a", "x"), EvalModel("b", "y")], tmp_path,
                               tmp_path / "cache", log=lambda *_: None)
    assert events == ["load a", "run", "release", "load b"]


# --------------------------------------------------------------------------- 5: presets are one command
def test_several_gpus_in_one_process_are_refused_before_any_work(cuda, tiny_model_dir):
    from platypus.stages.train.settings import check_settings

    cuda(n=2)
    train_cfg, lora, _ = configs(tiny_model_dir, precision="float16")
    with pytest.raises(PlatypusError, match="CUDA_VISIBLE_DEVICES"):
        check_settings(train_cfg, lora)
    check_settings(*configs(tiny_model_dir, precision="float16", model_parallel=True)[:2])  # one process, spread: fine


def test_70b_presets_train_as_one_process_and_13b_headers_say_how_on_many_gpus():
    for name in ("platypus2_70b", "platypus2_70b_instruct", "camel_platypus2_70b", "dolphin_platypus2_70b"):
        assert compose_config(f"experiment={name}", "logger=none").train.model_parallel, name
    text = (REPO / "conf/experiment/platypus2_13b.yaml").read_text()
    assert "CUDA_VISIBLE_DEVICES=0 python run.py experiment=platypus2_13b" in text


# --------------------------------------------------------------------------- 6: precision=auto on V100/T4
def test_auto_precision_is_float16_below_compute_capability_8(cuda):
    cuda(capability=(7, 0))
    assert hardware.fast_precision(True) == "float16"
    cuda(capability=(8, 0))
    assert hardware.fast_precision(True) == "bfloat16"


# --------------------------------------------------------------------------- 7: FSDP / ZeRO-3
def test_training_arguments_exist_before_the_model_is_loaded(tiny_model_dir, tmp_path, monkeypatch):
    import trl

    events, real_config, real_load = [], trl.SFTConfig, models.load_model

    class Recorded(real_config):
        def __post_init__(self):
            events.append("args")  # TrainingArguments' __post_init__ sets up the process group and FSDP/ZeRO-3 state
            super().__post_init__()

    monkeypatch.setattr(trl, "SFTConfig", Recorded)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: events.append("load") or real_load(*a, **k))
    from platypus.stages.train.trainer import build_trainer

    build_trainer(*configs(tiny_model_dir, precision="float32"), str(tiny_model_dir), ROWS[:2], tmp_path, 0, [])
    assert events.index("args") < events.index("load")


def test_sharded_training_saves_only_the_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from platypus.stages.train.outputs import save_adapter

    net = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                         LoraConfig(r=4, target_modules=["gate_proj"], task_type="CAUSAL_LM"))

    def whole_model(*a, **k):
        raise AssertionError("the whole model was gathered")

    fake = types.SimpleNamespace(
        model=net, is_fsdp_enabled=True, is_deepspeed_enabled=False, save_model=whole_model,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        accelerator=types.SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None,
                                          unwrap_model=lambda m: m, get_state_dict=whole_model))
    save_adapter(fake, tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert saved and all("lora_" in key for key in saved)
    assert "SHARDED_STATE_DICT" in (REPO / "accelerate/fsdp.yaml").read_text()


# --------------------------------------------------------------------------- 8 (+ 9: fp32 upcast): LoRA weights
def test_quantized_base_gets_the_authors_fp32_upcast(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    def load(*a, **k):  # an 8-bit base as bitsandbytes leaves it: fp16 norms and embeddings (stand-in on CPU)
        net = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float16)
        net.is_loaded_in_8bit = True
        return net

    monkeypatch.setattr(models, "load_model", load)
    from platypus.stages.train.trainer import build_trainer

    trainer = build_trainer(*configs(tiny_model_dir, precision="float32"), str(tiny_model_dir), ROWS[:2], tmp_path, 0, [])
    frozen = {p.dtype for n, p in trainer.model.named_parameters() if "lora_" not in n}
    assert frozen == {torch.float32}


def test_docs_say_when_lora_weights_are_fp32():
    from platypus.stages.train.settings import resolve_precision

    for text in (resolve_precision.__doc__, (REPO / "platypus/config/model.py").read_text(), (REPO / "docs/training.md").read_text()):
        assert "LoRA weights and optimizer state stay fp32 either way" not in text
        assert "LoRA weights and optimizer state stay fp32." not in text
        assert "Trainable LoRA weights stay fp32." not in text
    assert "QLoRA with bf16" in (REPO / "docs/gpu.md").read_text()


# --------------------------------------------------------------------------- 9: smaller items
def test_prefix_rows_are_sized_by_the_actual_context():
    from platypus.stages.evaluate.prefix import PrefixLM

    config = types.SimpleNamespace(num_key_value_heads=40, num_attention_heads=40, head_dim=128, hidden_size=5120,
                                   num_hidden_layers=40)  # Llama-2-13B
    fake = types.SimpleNamespace(model=types.SimpleNamespace(config=config, parameters=lambda: iter([torch.ones(1, dtype=torch.float16)])),
                                 answers_per_pass=1 << 30, kv_cache_bytes=4 * 2**30, max_length=4096)
    assert PrefixLM._context_rows(fake, 4096) == 1
    assert PrefixLM._context_rows(fake, 600) == 8  # a 5-shot MMLU prompt: batched at the default 4 GiB


def test_distributed_runs_need_an_explicit_run_folder(monkeypatch):
    from platypus.pipeline import check_run_dir

    check_run_dir(False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PlatypusError, match="hydra.run.dir"):
        check_run_dir(False)
    check_run_dir(True)


# --------------------------------------------------------------------------- issue 26: v1 sums
def test_v1_sums_in_the_models_dtype_as_hflm_does():
    from platypus.stages.evaluate.prefix import sum_logprobs

    values = torch.tensor([-1000.0, -0.3], dtype=torch.float16)  # fp16 spacing at 1000 is 0.5
    hflm = float(values.sum())  # lm-eval's HFLM: the fp16 log-probs summed into an fp16 scalar
    assert sum_logprobs(values, "model_dtype") == hflm == -1000.5
    assert sum_logprobs(values, "float64") == -1000.300048828125  # exact: fp16's 0.3 is 0.300048828125
    assert compose_config("eval=leaderboard_v1", "logger=none").eval.logprob_sum == "model_dtype"


def test_logprob_sum_reaches_the_prefix_scorer(monkeypatch, tiny_model_dir):
    seen = {}
    monkeypatch.setattr(backends.Backend, "lm_class", lambda self: lambda **kwargs: seen.update(kwargs) or "lm")
    cfg = compose_config("eval=leaderboard_v1", "logger=none")
    backends.load_lm(EvalModel("m", str(tiny_model_dir)), "float16", cfg.eval)
    assert seen["logprob_sum"] == "model_dtype"


# --------------------------------------------------------------------------- issue 26: 70B as one process
def test_model_parallel_is_refused_clearly_without_cuda_and_under_a_launcher(tiny_model_dir, monkeypatch, cuda):
    from platypus.stages.train.settings import check_settings

    with pytest.raises(PlatypusError, match="train.model_parallel=true needs CUDA"):
        check_settings(*configs(tiny_model_dir, model_parallel=True)[:2])
    cuda(n=8)
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(PlatypusError, match="one process"):
        check_settings(*configs(tiny_model_dir, model_parallel=True, global_batch_size=8)[:2])


@pytest.mark.slow  # ~20 s: a 70B model built on the meta device
def test_70b_device_map_over_eight_80gb_gpus_fits():
    from platypus.runtime.models import spread_over_gpus

    cfg = compose_config("experiment=platypus2_70b", "logger=none")
    placed = spread_over_gpus(dict(cfg.model.architecture), gpus=8, gib_per_gpu=80, dtype=torch.int8)
    assert set(placed["device_map"].values()) <= set(range(8))  # nothing on the CPU or disk
    assert max(placed["gib_per_gpu"].values()) < 12  # ~8.8 GiB of 8-bit weights each


@pytest.mark.slow
def test_plan_shows_memory_per_gpu_for_model_parallel():
    from platypus import plan

    cfg = compose_config("experiment=platypus2_70b", "logger=none")
    found = plan.plan(cfg)
    assert found["train"]["model_parallel"]["gpus"] == 8
    assert "per GPU" in plan.text(cfg, found)


# --------------------------------------------------------------------------- issue 26: the acceptance run
@pytest.mark.slow
def test_acceptance_script_refuses_in_one_line_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_acceptance.py"), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "GPU" in done.stderr
    assert not (tmp_path / "r.json").exists()

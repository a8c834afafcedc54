"""plan=true: a paper preset's plan on a machine without CUDA or the hub (nothing downloaded, loaded or run)."""

from __future__ import annotations

import json

import pytest
import torch

from platypus.pipeline import run_checked
from platypus.planning import lora_parameters, parameters
from platypus.stages.train.lora_model import keep_trainable_fp32
from tests.helpers import compose_config

LLAMA2_13B = dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40, vocab_size=32000)


def test_parameter_counts_match_the_published_models():
    assert parameters(LLAMA2_13B) == 13_015_864_320
    llama2_70b = dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8, vocab_size=32000)
    assert parameters(llama2_70b) == 68_976_648_192
    # The paper's LoRA (r 16 on gate/up/down_proj of the 13B): 40 layers x 16 x (3 x (5120 + 13824)).
    assert lora_parameters(LLAMA2_13B, ["gate_proj", "up_proj", "down_proj"], 16) == 36_372_480
    smollm2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
    assert lora_parameters(smollm2, ["gate_proj", "up_proj", "down_proj"], 16) == 3_041_280  # what PEFT reports


@pytest.mark.parametrize("experiment,gpus", [("stable_platypus2_13b", "yes"),
                                             ("camel_platypus2_70b", "yes")])  # 70B: one process, the fullest of 8 GPUs
def test_plan_of_a_gpu_preset_runs_here_and_runs_nothing(experiment, gpus, tmp_path):
    cfg = compose_config(f"experiment={experiment}", "plan=true", "logger=none")
    assert run_checked(cfg, tmp_path) is None  # 8-bit + fp16 would be refused here without plan=true
    found = json.loads((tmp_path / "plan.json").read_text())
    text = (tmp_path / "plan.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "plan.md"], "no stage ran"
    assert found["stages"] == ["curate", "train", "merge", "evaluate"]
    downloads = {what: gb for what, gb, _ in found["downloads"]}
    assert downloads[f"model {cfg.model.path}"] == pytest.approx(found["parameters"] * 2 / 1e9)
    assert downloads[f"merge target {cfg.merge.target}"] == downloads[f"model {cfg.model.path}"]
    assert found["evaluate"]["models"] == ["base", "target", "adapter", "merged"]
    assert found["train"]["tokens"] == 24926 * 414, "one epoch of the release, all 10 sources"
    for stage in ("train", "evaluate"):
        a100, (h100_fast, h100_slow) = found["hours"][stage]["A100-80GB"], found["hours"][stage]["H100-80GB"]
        assert (h100_fast, h100_slow) == (pytest.approx(a100 / 2), pytest.approx(a100 / 1.5)), "H100: 1.5-2x an A100"
    assert f"| train | {found['memory_gib']['train']:.1f} | {gpus} |" in text
    assert "calibrated to the paper's one epoch of 13B in ~5 h on one A100" in text


def test_plan_reproduces_the_papers_13b_epoch_and_counts_split_evaluation_per_gpu(tmp_path):
    """The utilisation is calibrated to the paper's 13B epoch (~5 h on one A100), so its preset plans 5 h; the 70B
    evaluation spread over 2 GPUs costs twice its hours in GPU-hours."""
    cfg = compose_config("experiment=platypus2_13b", "plan=true", "logger=none")
    run_checked(cfg, tmp_path / "13b")
    train = json.loads((tmp_path / "13b" / "plan.json").read_text())["hours"]["train"]
    assert train["A100-80GB"] == pytest.approx(5.0, rel=0.01) and train["gpus"] == 1
    cfg = compose_config("experiment=platypus2_70b_instruct", "plan=true", "logger=none")
    run_checked(cfg, tmp_path / "70b")
    found = json.loads((tmp_path / "70b" / "plan.json").read_text())
    evaluate = found["hours"]["evaluate"]
    one_gpu = found["flops"]["evaluate"] / (312e12 * found["evaluate"]["mfu"]) / 3600
    assert evaluate["gpus"] == 2 and evaluate["A100-80GB"] == pytest.approx(2 * one_gpu)


def test_plan_of_the_default_run_counts_its_local_rows(tmp_path):
    cfg = compose_config("plan=true", "logger=none")
    run_checked(cfg, tmp_path)
    found = json.loads((tmp_path / "plan.json").read_text())
    assert found["downloads"] == [] and found["parameters"] == 134_515_008
    assert found["train"]["rows"] == cfg.data.sample
    assert found["train"]["tokens"] == cfg.train.max_steps * cfg.train.global_batch_size * cfg.train.cutoff_len


def test_lora_weights_stay_fp32_under_fp16_autocast():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)).to(torch.bfloat16)
    net[0].requires_grad_(False)
    keep_trainable_fp32(net)
    assert net[1].weight.dtype == torch.float32 and net[0].weight.dtype == torch.bfloat16


def test_plan_of_a_hub_model_without_its_architecture_says_what_to_give(tmp_path, capsys):
    cfg = compose_config("plan=true", "logger=none", "model=smollm2_135m_hub")
    with pytest.raises(SystemExit) as stop:
        run_checked(cfg, tmp_path)
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "model.path='HuggingFaceTB/SmolLM2-135M-Instruct' is a hub id and model.architecture is not set" in message
    assert not (tmp_path / "plan.md").exists()


@pytest.mark.parametrize("experiment", ["stable_platypus2_13b", "platypus2_70b_instruct"])
def test_streaming_merge_memory_does_not_grow_with_the_model(experiment):
    """The in-memory engine holds the whole model; the streaming one a shard and a tensor (a few GiB at 70B)."""
    from platypus.plan import plan

    memory = {engine: plan(compose_config(f"experiment={experiment}", f"merge.engine={engine}"))["memory_gib"]
              [f"merge (CPU RAM, engine {engine})"] for engine in ("peft", "stream")}
    assert memory["peft"] > 25 and memory["stream"] < 4, memory

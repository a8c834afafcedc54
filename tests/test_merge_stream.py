"""The streaming merge engine against the in-memory PEFT one (the reference), on tiny random Llamas saved in
several shards: every recipe tensor for tensor, untouched tensors byte for byte; and the inputs it refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.fold import merge
from platypus.stages.merge.shards import TargetWeights
from tests.helpers import ENV, MODEL, REPO, extended_target, merge_cfg, random_adapter

# (recipe, merge.* settings) for every recipe and every PEFT combination; two adapters of rank 4 each
WEIGHTED = {"cat": {}, "linear": {}, "svd": {}, "ties": {"density": 0.5}, "ties_svd": {"density": 0.5},
            "dare_linear": {"density": 0.5}, "dare_ties": {"density": 0.5}, "dare_linear_svd": {"density": 0.5},
            "dare_ties_svd": {"density": 0.5}, "magnitude_prune": {"density": 0.5},
            "magnitude_prune_svd": {"density": 0.5}}
RECIPES = [("into_base", {}, 1), ("into_model", {}, 1), ("task_arithmetic", {"scales": [1.0, -0.5]}, 2)] + [
    ("weighted", {"combination": c, "weights": [0.7, 0.3], **extra}, 2) for c, extra in WEIGHTED.items()]
# On the real SmolLM2 (its shapes, tied embeddings, 135M weights), one recipe of each kind: one adapter, a signed
# sum, concatenated factors, an SVD of a trimmed sum (each one ~100 s on 2 cores); every recipe and combination
# runs on the tiny sharded Llama above.
ON_SMOLLM2 = [r for r in RECIPES if r[0] in ("into_base", "task_arithmetic") or r[1].get("combination") in ("cat", "ties_svd")]


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    weights = TargetWeights(str(folder))
    return {name: tensor for _, found in weights.by_file() for name, tensor in found}


def raw_bytes(folder: Path) -> dict[str, bytes]:
    """name -> the tensor's stored bytes (what 'unchanged' means)."""
    return {n: t.contiguous().view(torch.uint8).numpy().tobytes() for n, t in tensors(folder).items()}


def sharded_llama(folder: Path, tokenizer, seed: int) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="1MB")
    tokenizer.save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = sharded_llama(root / "base", tokenizer, seed=0)
    adapters = [random_adapter(base, root / f"a{i}", r=4, alpha=8, seed=i + 1) for i in range(2)]
    return {"base": base, "target": sharded_llama(root / "target", tokenizer, seed=5), "adapters": adapters,
            "tokenizer": tokenizer}


def both_engines(setup, tmp_path, recipe, settings, count, target=None, **stream_settings):
    cards = {}
    for engine in ("peft", "stream"):
        extra = {"shard_mb": 0.5, **stream_settings} if engine == "stream" else {}
        cfg = merge_cfg(recipe=recipe, engine=engine, target=str(target or setup["target"]), **settings, **extra)
        if recipe == "into_base":
            cfg.target = None
        cards[engine] = merge(cfg, MODEL, str(setup["base"]), setup["adapters"][:count], tmp_path / engine,
                              str(tmp_path), seed=3)
    return cards


def assert_equal_outputs(tmp_path, source: Path) -> dict:
    peft, stream, original = tensors(tmp_path / "peft" / "model"), tensors(tmp_path / "stream" / "model"), raw_bytes(source)
    assert set(peft) <= set(stream) <= set(original), (sorted(peft), sorted(stream))
    worst = max(float((peft[n] - stream[n]).abs().max()) for n in peft)
    untouched = [n for n in peft if torch.equal(tensors(source)[n], peft[n])]
    streamed = raw_bytes(tmp_path / "stream" / "model")
    assert all(streamed[n] == original[n] for n in untouched), "untouched tensors must be copied byte for byte"
    assert len(untouched) < len(peft), "the adapters must change some tensors"
    return {"max_abs_diff": worst, "bit_identical": all(torch.equal(peft[n], stream[n]) for n in peft)}


@pytest.mark.parametrize("recipe,settings,count", RECIPES, ids=[s.get("combination", r) for r, s, _ in RECIPES])
def test_streamed_merge_equals_peft(setup, tmp_path, recipe, settings, count):
    cards = both_engines(setup, tmp_path, recipe, settings, count, check_memory_gb=0.0)
    source = setup["base"] if recipe == "into_base" else setup["target"]
    found = assert_equal_outputs(tmp_path, source)
    print(f"{recipe} {settings.get('combination', '')}: {found}")
    assert found["bit_identical"] or found["max_abs_diff"] <= 1e-6
    card = cards["stream"]
    assert card["engine"] == "stream" and card["check"] == "per_tensor" and card["check_max_abs_error"] <= 1e-5
    assert len(list((tmp_path / "stream" / "model").glob("model-*-of-*.safetensors"))) > 1
    assert card["weights_bytes_written"] > 0 and card["peak_rss_mib"] > 0 and card["wall_s"] > 0


def test_logit_check_runs_where_the_model_fits(setup, tmp_path):
    cards = both_engines(setup, tmp_path, "into_model", {}, 1)
    assert cards["stream"]["check"] == "logits" and cards["stream"]["check_max_abs_error"] <= 1e-4
    text = (tmp_path / "stream" / "merge_card.md").read_text()
    assert "**check**: logits" in text and "**weights_bytes_written**" in text


def test_vocabulary_extending_target(setup, tmp_path):
    """OpenOrca-Platypus2's case: the target adds two tokens after the adapter base's ids."""
    target = extended_target(tmp_path / "openorca", setup["tokenizer"])
    both_engines(setup, tmp_path, "into_model", {}, 1, target=target, check_memory_gb=0.0)
    found = assert_equal_outputs(tmp_path, target)
    assert found["bit_identical"] or found["max_abs_diff"] <= 1e-6
    assert json.loads((tmp_path / "stream" / "model" / "config.json").read_text())["vocab_size"] == len(
        setup["tokenizer"]) + 2


def test_output_head_adapter_into_tied_embeddings_is_refused(setup, tmp_path):
    adapter = random_adapter(setup["base"], tmp_path / "head", targets=("q_proj", "lm_head"))
    cfg = merge_cfg(recipe="into_model", target=str(setup["target"]))
    with pytest.raises(PlatypusError, match=r"trains the output head .*tie_word_embeddings=true"):
        merge(cfg, MODEL, str(setup["base"]), adapter, tmp_path / "out", str(tmp_path))
    assert not (tmp_path / "out" / "model").exists()


def test_position_settings_that_differ_are_warned_on_the_card(setup, tmp_path):
    target = tmp_path / "long"
    model = LlamaForCausalLM.from_pretrained(setup["target"])
    model.config.max_position_embeddings, model.config.rms_norm_eps = 4096, 1e-5
    model.save_pretrained(target)
    setup["tokenizer"].save_pretrained(target)
    card = merge(merge_cfg(recipe="into_model", target=str(target)), MODEL, str(setup["base"]),
                 setup["adapters"][0], tmp_path / "out", str(tmp_path))
    found = [w for w in card["warnings"] if "max_position_embeddings" in w or "rms_norm_eps" in w]
    assert len(found) == 2 and "4096" in found[0] + found[1]


def test_missing_index_and_missing_shard_are_one_paragraph(setup, tmp_path):
    import shutil

    broken = tmp_path / "no_index"
    shutil.copytree(setup["target"], broken)
    (broken / "model.safetensors.index.json").unlink()
    with pytest.raises(PlatypusError, match=r"no index JSON naming which tensor is in which") as error:
        TargetWeights(str(broken))
    assert "\n" not in str(error.value)
    shard = sorted(broken.glob("model-*.safetensors"))[0]
    shutil.copy(setup["target"] / "model.safetensors.index.json", broken)
    shard.unlink()
    with pytest.raises(PlatypusError, match=rf"names shard\(s\) that are not in .*{shard.name}.*incomplete"):
        merge(merge_cfg(recipe="into_model", target=str(broken)), MODEL, str(setup["base"]), setup["adapters"][0],
              tmp_path / "out", str(tmp_path))


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickled_adapter(setup, folder: Path, content) -> Path:
    import shutil

    shutil.copytree(setup["adapters"][0], folder)
    (folder / "adapter_model.safetensors").unlink()
    torch.save(content, folder / "adapter_model.bin")
    return folder


def test_malicious_pickle_adapter_never_runs(setup, tmp_path):
    marker = tmp_path / "pwned"
    adapter = pickled_adapter(setup, tmp_path / "evil", {"base_model.model.x.lora_A.weight": Payload(marker)})
    with pytest.raises(PlatypusError, match=r"adapter_model.bin is a pickle that does not hold plain tensors.*safetensors"):
        merge(merge_cfg(recipe="into_base"), MODEL, str(setup["base"]), adapter, tmp_path / "out", str(tmp_path))
    assert not marker.exists(), "the pickle's payload ran"


def test_bin_adapter_factor_shapes_are_checked(setup, tmp_path):
    with safe_open(str(setup["adapters"][0] / "adapter_model.safetensors"), framework="pt") as handle:
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    key = next(k for k in weights if ".lora_A." in k)
    weights[key] = torch.zeros(4, 7)
    adapter = pickled_adapter(setup, tmp_path / "wrong", weights)
    with pytest.raises(PlatypusError, match=r"does not fit the target model's layers.*7 vs the target's \d+"):
        merge(merge_cfg(recipe="into_base"), MODEL, str(setup["base"]), adapter, tmp_path / "out", str(tmp_path))


def start_merge(run_dir: Path, target: Path, adapter: Path, stages: Path) -> subprocess.Popen:
    argv = [sys.executable, "run.py", "stages=[merge]", f"hydra.run.dir={run_dir}", f"cache_dir={run_dir.parent}",
            f"stage_cache={stages}", "logger=none", f"model.path={target}", "model.gguf_file=null", "merge=into_base",
            f"merge.adapters=[{adapter}]", "merge.shard_mb=0.25", "merge.check_memory_gb=0"]
    return subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_merge_killed_midway_leaves_nothing_cached_and_a_rerun_completes(setup, tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(setup["tokenizer"]), hidden_size=256, intermediate_size=1024,
                         num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    target = tmp_path / "target"
    LlamaForCausalLM(config).save_pretrained(target, max_shard_size="20MB")
    setup["tokenizer"].save_pretrained(target)
    adapter = random_adapter(target, tmp_path / "adapter")
    run_dir, stages = tmp_path / "run", tmp_path / "stages"
    proc = start_merge(run_dir, target, adapter, stages)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if list((run_dir / ".merge.partial" / "model").glob("model-00002-of-*.safetensors")):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, proc.stdout.read().decode()[-3000:]
    assert not (run_dir / "merge").exists() and not list(stages.glob("merge/*/manifest.json"))
    proc = start_merge(run_dir, target, adapter, stages)
    assert proc.wait(timeout=600) == 0, proc.stdout.read().decode()[-3000:]
    assert len(list(stages.glob("merge/*/manifest.json"))) == 1
    assert len(tensors(run_dir / "merge" / "model")) == len(tensors(target))


@pytest.mark.slow
@pytest.mark.parametrize("recipe,settings,count", ON_SMOLLM2, ids=[s.get("combination", r) for r, s, _ in ON_SMOLLM2])
def test_streamed_merge_equals_peft_on_smollm2(smollm2_dir, tmp_path_factory, tmp_path, recipe, settings, count):
    root = tmp_path_factory.getbasetemp() / "smollm2_adapters"
    adapters = [root / f"a{i}" for i in range(2)]
    for i, folder in enumerate(adapters):
        if not (folder / "adapter_config.json").is_file():
            random_adapter(smollm2_dir, folder, r=4, alpha=8, seed=i + 1)
    smollm2 = {"base": smollm2_dir, "target": smollm2_dir, "adapters": adapters}
    both_engines(smollm2, tmp_path, recipe, settings, count, shard_mb=64.0, check_memory_gb=0.0)
    found = assert_equal_outputs(tmp_path, smollm2_dir)
    print(f"SmolLM2 {recipe} {settings.get('combination', '')}: {found}")
    assert found["bit_identical"] or found["max_abs_diff"] <= 1e-6


def test_dora_adapter_is_refused_by_the_stream_engine(setup, tmp_path):
    """A DoRA fold rescales each column by the magnitude over the merged weight's norm: not a per-tensor s·B·A."""
    import shutil

    dora = tmp_path / "dora"
    shutil.copytree(setup["adapters"][0], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    cfg = merge_cfg(recipe="into_base", engine="stream")
    with pytest.raises(PlatypusError) as refused:
        merge(cfg, MODEL, str(setup["base"]), [dora], tmp_path / "out", str(tmp_path), seed=3)
    assert str(dora) in str(refused.value) and "merge.engine=peft" in str(refused.value)
    assert not (tmp_path / "out").exists()

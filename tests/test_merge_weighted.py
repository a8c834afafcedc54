"""The ``weighted`` merge recipe on tiny random Llamas: exactness of ``cat`` (and ``svd`` at full
rank), PEFT's documented sqrt-scaled ``linear``, parity with PEFT's own ``add_weighted_adapter`` for
TIES/DARE/magnitude pruning, the card, the pipeline wiring, and every validation message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.fold import merge
from platypus.runtime.identity import file_sha256
from tests.helpers import compose_config
from tests.helpers import (MODEL, assert_weights, factors, logits, merge_cfg, random_adapter, reordered, saved,
                           tiny_llama)



@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """a, b: rank 4 (alpha 8) on the MLP; c: rank 8 (alpha 4) on the MLP and q_proj; d: rank 4, other seed."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": random_adapter(tiny_model_dir, root / "a", r=4, alpha=8, seed=1),
        "b": random_adapter(tiny_model_dir, root / "b", r=4, alpha=8, seed=2),
        "c": random_adapter(tiny_model_dir, root / "c", r=8, alpha=4, seed=3,
                            targets=("gate_proj", "up_proj", "down_proj", "q_proj")),
    }


def run_merge(base, adapter_list, out, seed=0, **values):
    return merge(merge_cfg(recipe="weighted", **values), MODEL, str(base), adapter_list, out, str(out), seed=seed)


def peft_reference(base, adapter_list, weights, seed=0, **kwargs):
    """PEFT's own weighted adapter on the unmerged model (what the folded model must reproduce)."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter_list[0], adapter_name="x0")
    for i, adapter in enumerate(adapter_list[1:], 1):
        model.load_adapter(adapter, adapter_name=f"x{i}")
    torch.manual_seed(seed)
    model.add_weighted_adapter([f"x{i}" for i in range(len(adapter_list))], weights, "mix", **kwargs)
    model.set_adapter("mix")
    return model.eval()


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("pair", [("a", "b"), ("a", "c")], ids=["equal-ranks", "ranks-4-and-8"])
def test_cat_is_the_exact_weighted_sum(tiny_model_dir, tmp_path, tokenizer, adapters, pair):
    chosen, weights = [adapters[p] for p in pair], [0.7, 1.6]
    card = run_merge(tiny_model_dir, chosen, tmp_path, combination="cat", weights=weights)

    expected = {k: v.clone() for k, v in saved(tiny_model_dir).items()}
    targeted = set()
    for adapter, w in zip(chosen, weights):
        for key, (a, b, scaling) in factors(adapter).items():
            expected[key] += w * scaling * (b @ a)
            targeted.add(key)
    assert len(targeted) == (8 if pair[1] == "c" else 6)  # q_proj only in c: the union of targets is folded
    assert_weights(saved(tmp_path / "model"), expected)
    assert card["check_max_abs_error"] <= 1e-4
    assert card["weighted"]["combination"] == "cat" and card["weighted"]["weights"] == weights


def test_one_adapter_at_weight_one_equals_folding_it_alone(tiny_model_dir, tmp_path, adapters):
    alone = merge(merge_cfg(recipe="into_base"), MODEL, str(tiny_model_dir), adapters["c"], tmp_path / "alone", "")
    weighted = run_merge(tiny_model_dir, [adapters["c"]], tmp_path / "weighted", combination="cat", weights=[1.0])
    assert_weights(saved(tmp_path / "weighted" / "model"),
                   {k: v.float() for k, v in saved(tmp_path / "alone" / "model").items()}, atol=1e-6)
    assert alone["check_max_abs_error"] <= 1e-4 and weighted["check_max_abs_error"] <= 1e-4


def test_svd_at_full_rank_equals_cat(tiny_model_dir, tmp_path, adapters):
    chosen = [adapters["a"], adapters["c"]]
    run_merge(tiny_model_dir, chosen, tmp_path / "cat", combination="cat", weights=[0.5, 1.5])
    run_merge(tiny_model_dir, chosen, tmp_path / "svd", combination="svd", weights=[0.5, 1.5], svd_rank=12)
    assert_weights(saved(tmp_path / "svd" / "model"),
                   {k: v.float() for k, v in saved(tmp_path / "cat" / "model").items()}, atol=1e-4)


def test_linear_scales_a_and_b_each_by_sqrt_weight(tiny_model_dir, tmp_path, adapters):
    """PEFT's documented behaviour: ΔW = (Σ √(w s) B_i)(Σ √(w s) A_i), cross terms included."""
    chosen, weights = [adapters["a"], adapters["b"]], [0.25, 1.0]
    card = run_merge(tiny_model_dir, chosen, tmp_path, combination="linear", weights=weights)

    base = saved(tiny_model_dir)
    linear, exact = dict(base), dict(base)
    fa, fb = factors(chosen[0]), factors(chosen[1])
    for key in fa:
        (a1, b1, s1), (a2, b2, s2) = fa[key], fb[key]
        r1, r2 = math.sqrt(weights[0] * s1), math.sqrt(weights[1] * s2)
        linear[key] = base[key] + (r1 * b1 + r2 * b2) @ (r1 * a1 + r2 * a2)
        exact[key] = base[key] + weights[0] * s1 * b1 @ a1 + weights[1] * s2 * b2 @ a2
    folded = saved(tmp_path / "model")
    assert_weights(folded, linear, atol=1e-5)
    assert max((folded[k] - exact[k]).abs().max().item() for k in fa) > 1e-3, "linear is not the exact sum"
    assert any("not the exact weighted sum" in w for w in card["warnings"])


@pytest.mark.parametrize("combination,density", [("ties", 0.5), ("dare_linear", 0.5), ("dare_ties", 0.7),
                                                 ("magnitude_prune", 0.5), ("ties_svd", 0.5)])
def test_pruned_combinations_equal_peft_own_weighted_adapter(tiny_model_dir, tmp_path, tokenizer, adapters,
                                                             combination, density):
    chosen, weights = [adapters["a"], adapters["b"]], [1.0, 0.5]
    card = run_merge(tiny_model_dir, chosen, tmp_path, seed=11, combination=combination, weights=weights,
                     density=density, majority_sign_method="frequency")
    reference = peft_reference(tiny_model_dir, chosen, weights, seed=11, combination_type=combination,
                               density=density, majority_sign_method="frequency")
    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    gap = (logits(folded, tokenizer) - logits(reference, tokenizer)).abs().max().item()
    assert gap <= 1e-4 and card["check_max_abs_error"] <= 1e-4
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert (logits(folded, tokenizer) - logits(plain, tokenizer)).abs().max() > 1e-3
    assert card["weighted"]["density"] == density and card["weighted"]["seed"] == 11


def test_dare_is_reproducible_from_the_seed(tiny_model_dir, tmp_path, adapters):
    chosen = [adapters["a"], adapters["b"]]
    for name, seed in (("one", 5), ("two", 5), ("other", 6)):
        run_merge(tiny_model_dir, chosen, tmp_path / name, seed=seed, combination="dare_linear", density=0.5)
    one, two, other = (saved(tmp_path / n / "model") for n in ("one", "two", "other"))
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert any(not torch.equal(one[k], other[k]) for k in one)


# --------------------------------------------------------------------------- output and card
def test_output_folder_dtype_and_card(tiny_model_dir, tmp_path, adapters):
    other = tiny_llama(tmp_path / "other", AutoTokenizer.from_pretrained(tiny_model_dir), seed=7)
    chosen = [adapters["a"], adapters["c"]]
    card = run_merge(tiny_model_dir, chosen, tmp_path, combination="cat", weights=[1.0, 0.5],
                     target=str(other), dtype="bfloat16")
    folder = tmp_path / "model"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert all(t.dtype == torch.bfloat16 for t in saved(folder).values())
    assert AutoConfig.from_pretrained(folder).dtype == torch.bfloat16

    assert card["target"]["path"] == str(other)
    assert card["target"]["files"]["model.safetensors"] == file_sha256(other / "model.safetensors")
    for entry, adapter in zip(card["adapters"], chosen):
        assert entry["path"] == str(adapter) and entry["recorded_base"] == str(tiny_model_dir)
        assert entry["weights_sha256"]["adapter_model.safetensors"] == file_sha256(adapter / "adapter_model.safetensors")
    text = (tmp_path / "merge_card.md").read_text()
    assert "combination**: cat" in text and file_sha256(chosen[1] / "adapter_model.safetensors") in text
    assert f"recorded base model: {tiny_model_dir}" in text
    assert text.count("a different model") == 2  # both adapters were trained on the base, folded into `other`


def test_pipeline_combines_explicit_adapters(tiny_model_dir, tmp_path, adapters):
    from platypus.pipeline import run_pipeline

    cfg = compose_config(
        "stages=[merge]", "merge=weighted_cat", f"merge.adapters=[{adapters['a']},{adapters['c']}]",
        "merge.recipe.weights=[0.5,1.0]", f"model.path={tiny_model_dir}", "model.gguf_file=null", "logger=none",
        f"cache_dir={tmp_path / 'cache'}")
    run_pipeline(cfg, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "merge" / "manifest.json").read_text())
    assert [a["path"] for a in manifest["inputs"]["adapters"]] == [str(adapters["a"]), str(adapters["c"])]
    assert manifest["metrics"]["weighted"]["weights"] == [0.5, 1.0]
    assert (tmp_path / "run" / "merge" / "model" / "model.safetensors").is_file()

    cfg = compose_config(
        "stages=[merge]", "merge=weighted_cat", "merge.adapters=[train]", f"model.path={tiny_model_dir}",
        "model.gguf_file=null", "logger=none", f"cache_dir={tmp_path / 'cache'}")
    with pytest.raises(PlatypusError, match="'train' means this run's train adapter"):
        run_pipeline(cfg, tmp_path / "run2")


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("values,message", [
    ({"weights": [1.0]}, r"merge.recipe.weights has 1 weight\(s\) for 2 adapter\(s\)"),
    ({"weights": [1.0, -0.5]}, r"merge.recipe \(Weighted\): weights\[1\]=-0.5: weights must be finite and >= 0"),
    ({"weights": [float("nan"), 1.0]}, r"weights\[0\]=nan: weights must be finite"),
    ({"weights": [0.0, 0.0]}, "are all 0"),
    ({"combination": "average"}, r"merge.recipe.combination='average' is not one of linear, cat, .* \(Weighted\)"),
    ({"combination": "ties"}, r"combination=ties needs density in \(0, 1\]"),
    ({"combination": "dare_ties", "density": 1.5}, r"dare_ties needs density in \(0, 1\] .*got 1.5"),
    ({"combination": "cat", "density": 0.5}, "density=0.5 does not apply to combination=cat"),
    ({"combination": "ties", "density": 0.5, "majority_sign_method": "mean"}, "majority_sign_method='mean'"),
    ({"combination": "cat", "svd_rank": 4}, "svd_rank=4: a positive rank, used by the \\*svd combinations only"),
], ids=["count", "negative", "nan", "all-zero", "unknown-combination", "density-missing", "density-range",
        "density-unused", "sign-method", "svd-rank-unused"])
def test_invalid_recipes_are_refused_before_any_work(tiny_model_dir, tmp_path, adapters, values, message):
    with pytest.raises(PlatypusError, match=message):
        run_merge(tiny_model_dir, [adapters["a"], adapters["b"]], tmp_path, **values)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("combination", ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_unequal_ranks_are_refused(tiny_model_dir, tmp_path, adapters, combination):
    density = None if combination == "linear" else 0.5
    with pytest.raises(PlatypusError, match=rf"combination={combination} needs adapters of equal rank.*r=4 .*r=8 "):
        run_merge(tiny_model_dir, [adapters["a"], adapters["c"]], tmp_path, combination=combination, density=density)
    assert not (tmp_path / "model").exists()


def test_single_adapter_recipes_refuse_several(tiny_model_dir, tmp_path, adapters):
    with pytest.raises(PlatypusError, match="merge recipe into_base folds exactly one adapter \\(got 2"):
        merge(merge_cfg(recipe="into_base"), MODEL, str(tiny_model_dir), [adapters["a"], adapters["b"]], tmp_path, "")
    with pytest.raises(PlatypusError, match="merge.recipe.weights: IntoBase has no such parameter"):
        merge(merge_cfg(recipe="into_base", weights=[1.0]), MODEL, str(tiny_model_dir), adapters["a"], tmp_path, "")
    with pytest.raises(PlatypusError, match="needs an adapter"):
        merge(merge_cfg(recipe="weighted"), MODEL, str(tiny_model_dir), [], tmp_path, "")
    with pytest.raises(PlatypusError, match="is not a PEFT adapter folder"):
        run_merge(tiny_model_dir, [adapters["a"], tmp_path], tmp_path)


def test_architecture_mismatch_is_refused(tiny_model_dir, tmp_path, tokenizer, adapters):
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    with pytest.raises(PlatypusError, match="model_type: adapter base llama vs target qwen2"):
        run_merge(tiny_model_dir, [adapters["a"], adapters["b"]], tmp_path, target=str(tmp_path / "qwen"))
    assert not (tmp_path / "model").exists()


def _record_base(adapter: Path, folder: Path, base: str, targets: list[str] | None = None) -> Path:
    """A copy of ``adapter`` whose recorded base is a hub model that is not available here."""
    folder.mkdir()
    for f in adapter.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    if targets:
        config["target_modules"] = targets
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_size_mismatch_is_refused_without_the_recorded_base(tiny_model_dir, tmp_path, tokenizer, adapters):
    wide = tiny_llama(tmp_path / "wide", tokenizer, seed=3, hidden=64)
    foreign = _record_base(random_adapter(wide, tmp_path / "w"), tmp_path / "foreign", "someorg/not-cached-model")
    with pytest.raises(PlatypusError, match="does not fit the target model's layers.*vs the target's 32"):
        run_merge(tiny_model_dir, [adapters["a"], foreign], tmp_path)
    assert not (tmp_path / "model").exists()


def test_missing_target_modules_are_refused(tiny_model_dir, tmp_path, adapters):
    moe = _record_base(adapters["b"], tmp_path / "moe", "someorg/not-cached-moe", targets=["w1", "w2", "up_proj"])
    with pytest.raises(PlatypusError, match=r"targets: \['w1', 'w2'\] not found in LlamaForCausalLM"):
        run_merge(tiny_model_dir, [adapters["a"], moe], tmp_path)
    assert not (tmp_path / "model").exists()


def test_tokenizer_mismatch_is_refused(tiny_model_dir, tmp_path, tokenizer, adapters):

    other = tiny_llama(tmp_path / "other", tokenizer, seed=3)
    reordered(other)
    with pytest.raises(PlatypusError, match="tokenizer of .* differs from the one the adapter"):
        run_merge(tiny_model_dir, [adapters["a"], adapters["b"]], tmp_path, target=str(other))


def test_quantized_target_is_refused(tiny_model_dir, tmp_path, tokenizer, adapters):
    quantized = tiny_llama(tmp_path / "q", tokenizer, seed=3)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(PlatypusError, match="is quantized \\(bitsandbytes\\); folding a LoRA delta"):
        run_merge(tiny_model_dir, [adapters["a"], adapters["b"]], tmp_path, target=str(quantized))
    assert not (tmp_path / "model").exists()


def test_into_base_with_another_target_is_refused(tiny_model_dir, tmp_path, tokenizer, adapters):
    other = tiny_llama(tmp_path / "other", tokenizer, seed=3)
    with pytest.raises(PlatypusError, match="into_base folds into the base model"):
        merge(merge_cfg(recipe="into_base", target=str(other)), MODEL, str(tiny_model_dir), adapters["a"], tmp_path, "")


def test_target_may_be_a_model_preset(smollm2_dir, tiny_model_dir, cache_dir):
    from platypus.stages.merge.fold import resolve_target

    resolved = resolve_target(merge_cfg(recipe="into_model", target="smollm2_135m"), str(tiny_model_dir), str(cache_dir))
    assert Path(resolved) == Path(smollm2_dir)
    assert resolve_target(merge_cfg(recipe="weighted"), str(tiny_model_dir), str(cache_dir)) == str(tiny_model_dir)

"""Merge stage on tiny random Llamas: exact folding, and refusal of incompatible pairs."""

from __future__ import annotations

import json

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.fold import merge
from tests.helpers import MODEL, extended_target, logits, merge_cfg, random_adapter, reordered, tiny_llama

@pytest.fixture()
def pair(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tokenizer, random_adapter(tiny_model_dir, tmp_path / "adapter")

@pytest.mark.parametrize("recipe", ["into_base", "into_model"])
def test_folded_model_equals_the_unfolded_one(tiny_model_dir, tmp_path, pair, recipe):
    tokenizer, adapter = pair
    target = tiny_model_dir if recipe == "into_base" else tiny_llama(tmp_path / "other", tokenizer, seed=7)
    card = merge(merge_cfg(recipe=recipe, target=str(target)), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))

    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    unfolded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(target), adapter)
    gap = (logits(folded, tokenizer) - logits(unfolded, tokenizer)).abs().max().item()
    assert gap <= 1e-4 and card["check_max_abs_error"] <= 1e-4
    base_gap = (logits(folded, tokenizer) - logits(AutoModelForCausalLM.from_pretrained(target), tokenizer)).abs().max()
    assert base_gap > 1e-3, "the adapter must actually change the model"
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "model" / "tokenizer.json").is_file()
    text = (tmp_path / "merge_card.md").read_text()
    assert recipe in text
    assert ("a different model" in text) == (recipe == "into_model")

def test_size_mismatch_is_refused(tiny_model_dir, tmp_path, pair):
    tokenizer, adapter = pair
    wide = tiny_llama(tmp_path / "wide", tokenizer, seed=3, hidden=64)
    with pytest.raises(PlatypusError, match="hidden_size: adapter base 32 vs target 64"):
        merge(merge_cfg(recipe="into_model", target=str(wide)), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))
    assert not (tmp_path / "model").exists()

def test_reordered_vocabulary_is_refused(tiny_model_dir, tmp_path, pair):
    tokenizer, adapter = pair
    other = tiny_llama(tmp_path / "other", tokenizer, seed=3)
    reordered(other)
    with pytest.raises(PlatypusError, match=r"tokenizer of .* differs.*2 of its 49,152 ids name other tokens"):
        merge(merge_cfg(recipe="into_model", target=str(other)), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))
    assert not (tmp_path / "model").exists()

def test_target_that_extends_the_vocabulary_takes_an_mlp_only_adapter(tiny_model_dir, tmp_path, pair):
    """The OpenOrca-Platypus2 case: the merged model equals the unfolded adapter on the target, and on the shared
    vocabulary's logits; the card says what was compared."""
    tokenizer, adapter = pair
    target = extended_target(tmp_path / "openorca", tokenizer)
    card = merge(merge_cfg(recipe="into_model", target=str(target)), MODEL, str(tiny_model_dir), adapter, tmp_path,
                 str(tmp_path))
    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    unfolded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(target), adapter)
    assert folded.config.vocab_size == len(tokenizer) + 2
    shared = len(tokenizer)
    gap = (logits(folded, tokenizer)[:, :shared] - logits(unfolded, tokenizer)[:, :shared]).abs().max().item()
    assert gap <= 1e-4 and card["check_max_abs_error"] <= 1e-4
    moved = (logits(folded, tokenizer) - logits(AutoModelForCausalLM.from_pretrained(target), tokenizer)).abs().max()
    assert moved > 1e-3, "the adapter must actually change the model"
    text = (tmp_path / "merge_card.md").read_text()
    assert "## Compared with the target" in text
    assert "its 49,152 ids name the same tokens, 2 added after them (['<|end_of_turn|>', '<|pad_0|>'])" in text
    assert "vocab_size 49152 -> 49154" in text

def test_special_tokens_alone_differing_is_recorded_not_refused(tiny_model_dir, tmp_path, pair):
    """The same ids naming the same tokens: a target that marks another existing token special still reads every
    id as the adapter was trained; the card says what differs."""
    tokenizer, adapter = pair
    other = tiny_llama(tmp_path / "other", tokenizer, seed=3)
    changed = AutoTokenizer.from_pretrained(other)
    existing = changed.convert_ids_to_tokens(100)
    changed.add_special_tokens({"additional_special_tokens": [existing]})
    changed.save_pretrained(other)
    assert len(changed) == len(tokenizer)
    merge(merge_cfg(recipe="into_model", target=str(other)), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))
    text = (tmp_path / "merge_card.md").read_text()
    assert f"vocabulary: the same 49,152 tokens; special tokens differ ([{existing!r}])" in text

def test_extended_vocabulary_refuses_an_adapter_that_trains_embeddings(tiny_model_dir, tmp_path, pair):
    tokenizer, _ = pair
    adapter = random_adapter(tiny_model_dir, tmp_path / "embedding_adapter", targets=("gate_proj", "embed_tokens"))
    target = extended_target(tmp_path / "openorca", tokenizer)
    with pytest.raises(PlatypusError, match=r"adds 2 token\(s\).*trains rows indexed by token id.*embed_tokens"):
        merge(merge_cfg(recipe="into_model", target=str(target)), MODEL, str(tiny_model_dir), adapter, tmp_path,
              str(tmp_path))
    assert not (tmp_path / "model").exists()

def test_quantized_target_is_refused(tiny_model_dir, tmp_path, pair):
    tokenizer, adapter = pair
    quantized = tiny_llama(tmp_path / "q", tokenizer, seed=3)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(PlatypusError, match="is quantized"):
        merge(merge_cfg(recipe="into_model", target=str(quantized)), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))

def test_into_model_needs_a_target(tiny_model_dir, tmp_path, pair):
    _, adapter = pair
    with pytest.raises(PlatypusError, match="needs merge.target"):
        merge(merge_cfg(recipe="into_model"), MODEL, str(tiny_model_dir), adapter, tmp_path, str(tmp_path))

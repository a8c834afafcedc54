"""Helpers the test modules share (fixtures that use them: tests/conftest.py). Import from here, never from
another test module."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The environment of a run.py a test starts (the hermetic caches of tests/conftest.py are already in os.environ).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Eight short rows for the train stage; odd ones carry an input.
ROWS = [
    {"instruction": f"What is {i} plus {i}?", "input": "Show the sum." if i % 2 else "", "output": f"It is {2 * i}."}
    for i in range(8)
]
# Answers of very different lengths: token and sequence loss averages then differ by well over the tests' tolerances.
UNEQUAL_ROWS = [
    {"instruction": "Which option is right?", "input": "A, B, C or D.", "output": "B"},
    {"instruction": "Prove that the sum of two even numbers is even.", "input": "",
     "output": "Let a = 2m and b = 2n. Then a + b = 2m + 2n = 2(m + n), which is two times an integer, so it is "
               "even. This holds for every choice of m and n, which completes the proof of the statement."},
    {"instruction": "Answer yes or no: is 7 prime?", "input": "", "output": "Yes"},
    {"instruction": "Explain photosynthesis.", "input": "One paragraph.",
     "output": "Plants turn light, water and carbon dioxide into sugar and oxygen inside their chloroplasts."},
]


def compose_config(*overrides: str, hydra: bool = False):
    """The config run.py would compose from conf/ with ``overrides`` (``hydra``: with its ``hydra`` node).
    ``debug=fast`` (conf/debug/fast.yaml) gives the tiny sizes most tests want."""
    from platypus.config import compose

    return compose(*overrides, hydra_node=hydra)


def tiny_llama(folder: Path, tokenizer, seed: int, hidden: int = 32) -> Path:
    """A 2-layer random Llama with ``tokenizer``'s vocabulary and SmolLM2's module names, saved to ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def random_adapter(base: Path, folder: Path, r: int = 4, alpha: int = 8, seed: int = 1,
                   targets: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")) -> Path:
    """A LoRA whose B factors are random (not zero), so folding it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def reordered(folder: Path, a: str = "the", b: str = "and") -> None:
    """Swap the ids of two tokens in a saved tokenizer: the same strings, other ids."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(spec))


RECIPES = {"into_base": "into_base.IntoBase", "into_model": "into_model.IntoModel", "none": "none.KeepAdapter",
           "task_arithmetic": "task_arithmetic.TaskArithmetic", "weighted": "weighted.Weighted"}
RECIPE_FIELDS = ("weights", "combination", "density", "majority_sign_method", "svd_rank", "svd_clamp", "scales", "scale")


def merge_cfg(recipe: str = "into_base", **values):
    """A merge section for the recipe module ``recipe``; its parameters among ``values`` go into ``merge.recipe``."""
    from omegaconf import OmegaConf

    from platypus.config import MergeConfig

    node = {"_target_": f"platypus.stages.merge.recipes.{RECIPES[recipe]}",
            **{k: values.pop(k) for k in RECIPE_FIELDS if k in values}}
    return OmegaConf.merge(OmegaConf.structured(MergeConfig), {"name": "test", "recipe": node, **values})


def model_cfg(path: str = "unused"):
    """A model section of the schema for a tiny model at ``path``."""
    from omegaconf import OmegaConf

    from platypus.config import ModelConfig

    return OmegaConf.merge(OmegaConf.structured(ModelConfig), {"name": "tiny", "path": path})


MODEL = model_cfg()  # the model section merge() takes in the merge tests (the weights come from its own argument)


def logits(model, tokenizer):
    """The model's logits on the merge stage's probe prompts, at the real (unpadded) positions."""
    import torch

    from platypus.stages.merge.check import PROBE_PROMPTS

    batch = tokenizer(PROBE_PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits[batch["attention_mask"].bool()]


def factors(adapter: Path) -> dict:
    """weight key of the target layer -> (A, B, scaling alpha/r) from the saved adapter."""
    from safetensors.torch import load_file

    config = json.loads((adapter / "adapter_config.json").read_text())
    tensors = load_file(adapter / "adapter_model.safetensors")
    found = {}
    for key, a in tensors.items():
        if ".lora_A." in key:
            module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            found[f"{module}.weight"] = (a, b, config["lora_alpha"] / config["r"])
    return found


def saved(folder: Path) -> dict:
    """The tensors of a merged model folder."""
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_weights(folded: dict, expected: dict, atol: float = 1e-5) -> None:
    import torch

    assert folded.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(folded[key].float(), expected[key], atol=atol), key


def train_configs(tiny_model_dir, **train_overrides):
    """(train, lora, model) sections for one quick step on the tiny model; ``train_overrides`` change train."""
    from omegaconf import OmegaConf

    from platypus.config import LoraConfig, TrainConfig

    train_cfg = OmegaConf.merge(
        OmegaConf.structured(TrainConfig),
        {"name": "test", "global_batch_size": 1, "micro_batch_size": 1, "warmup_steps": 0, "cutoff_len": 256,
         "max_steps": 1, "threads": 2, **train_overrides},
    )
    lora = OmegaConf.merge(OmegaConf.structured(LoraConfig), {"name": "p", "target_modules": ["gate_proj", "up_proj", "down_proj"]})
    return train_cfg, lora, model_cfg(str(tiny_model_dir))


ADDED = ["<|end_of_turn|>", "<|pad_0|>"]  # OpenOrcaxOpenChat-Preview2-13B adds two tokens to Llama-2's 32,000


def extended_target(folder: Path, tokenizer) -> Path:
    """A fine-tune of another seed whose tokenizer adds two tokens after the base's ids (and embedding rows)."""
    from transformers import AutoTokenizer

    grown = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    grown.add_tokens(ADDED, special_tokens=True)
    assert len(grown) == len(tokenizer) + 2
    return tiny_llama(folder, grown, seed=11)


def assert_same_numbers(got, want, where="summary"):
    """Equal structures whose floats agree to 1e-9 (relative)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: {got} vs {want}"
        for key in want:
            assert_same_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def hand_made_run(folder: Path, overrides: list[str], kept: int, loss: float, avg: dict, reused: tuple = ()) -> None:
    """A run folder as the report reads it (overrides, curate/train/evaluate manifests, evaluate/summary.json),
    written by hand with the given numbers."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra/overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    stages = {"curate": {"rows_in": 100, "kept": kept, "removed_exact": 1, "removed_semantic": 100 - kept - 1,
                         "removed_contamination": 0},
              "train": {"loss": loss, "steps": 12}, "evaluate": {}}
    for stage, metrics in stages.items():
        (folder / stage).mkdir()
        manifest = {"stage": stage, "key": stage, "metrics": metrics, "seconds": 10.0}
        if stage in reused:
            manifest.update(reused=True, reused_from="/cache", reuse_seconds=0.5)
        (folder / stage / "manifest.json").write_text(json.dumps(manifest))
    summary = {m: {"arc_challenge": {"acc_norm": a}, "truthfulqa_mc2": {"mc2": a / 2}, "leaderboard_avg": a}
               for m, a in avg.items()}
    (folder / "evaluate" / "summary.json").write_text(json.dumps(summary))

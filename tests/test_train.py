"""Train stage on the tiny random Llama: masking, learning, validation, adapter format."""

from __future__ import annotations

import json

import pytest
import torch

from platypus.runtime.errors import PlatypusError
from platypus.stages.train.prompts import to_prompt_completion
from platypus.stages.train.settings import gradient_accumulation
from platypus.stages.train.trainer import build_trainer, train
from tests.helpers import ROWS, train_configs

@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_labels_mask_exactly_the_prompt(tiny_model_dir, tmp_path, template):
    train_cfg, lora, model = train_configs(tiny_model_dir, template=template)
    trainer = build_trainer(train_cfg, lora, model, str(tiny_model_dir), ROWS[:2], tmp_path, 0, [])
    tokenizer = trainer.processing_class
    for row, example in zip(to_prompt_completion(ROWS[:2], template), trainer.train_dataset):
        if template == "chat":
            prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=False)
        else:
            prompt_ids = tokenizer(row["prompt"])["input_ids"]
        batch = trainer.data_collator([example])
        labels, ids = batch["labels"][0], batch["input_ids"][0]
        n = len(prompt_ids)
        assert ids[:n].tolist() == list(prompt_ids)
        assert (labels[:n] == -100).all(), "prompt tokens must carry no loss"
        assert (labels[n:] == ids[n:]).all(), "every response token (and the end token) carries loss"
        assert ids[-1].item() == tokenizer.eos_token_id or template == "chat"


def test_train_on_inputs_puts_loss_on_the_prompt(tiny_model_dir, tmp_path):
    train_cfg, lora, model = train_configs(tiny_model_dir, train_on_inputs=True)
    trainer = build_trainer(train_cfg, lora, model, str(tiny_model_dir), ROWS[:1], tmp_path, 0, [])
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert (batch["labels"][0][1:] != -100).all()


@pytest.mark.slow
def test_loss_decreases_and_adapter_loads(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rows = ROWS[:2] * 8  # the same two rows again and again
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train_cfg, lora, model = train_configs(
        tiny_model_dir, max_steps=12, global_batch_size=4, micro_batch_size=4, learning_rate=2e-2, save_steps=100
    )
    metrics = train(train_cfg, lora, model, str(tiny_model_dir), tmp_path / "d.jsonl", tmp_path, 0, [])
    assert metrics["loss"] < metrics["first_loss"] - 0.2
    assert (tmp_path / "loss.png").is_file() and not (tmp_path / "checkpoints").exists()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter")
    assert set(peft_model.peft_config["default"].target_modules) == {"gate_proj", "up_proj", "down_proj"}
    assert 0 < metrics["trainable_pct"] < 100


def test_missing_target_modules_are_named_before_any_stage_works(tiny_model_dir):
    from platypus.stages import get
    from tests.helpers import compose_config

    cfg = compose_config(f"model.path={tiny_model_dir}", "model.gguf_file=null",
                         "lora.target_modules=[gate_proj,query_key_value]")
    with pytest.raises(PlatypusError) as error:
        get(cfg, "train").check(cfg)
    message = str(error.value)
    assert "['query_key_value'] not found" in message and "['gate_proj']" in message and "down_proj" in message


def test_global_batch_is_kept_across_process_counts():
    assert gradient_accumulation(16, 1, 1) == 16
    assert gradient_accumulation(16, 1, 4) == 4
    assert gradient_accumulation(16, 2, 4) == 2
    with pytest.raises(PlatypusError, match="not a multiple"):
        gradient_accumulation(16, 3, 1)


def test_qlora_without_cuda_is_a_clear_error(tiny_model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    train_cfg, lora, model = train_configs(tiny_model_dir)
    model.quantization = "4bit"
    with pytest.raises(PlatypusError, match="needs a CUDA GPU"):
        build_trainer(train_cfg, lora, model, str(tiny_model_dir), ROWS, tmp_path, 0, [])

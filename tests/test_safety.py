"""Loading never runs code from model files: safetensors / ``weights_only=True`` pickles, remote code off
unless a model preset turns it on, and config values are paths and names, never executed."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "platypus").rglob("*.py"))


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def name_of(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{name_of(func.value)}.{func.attr}"
    if isinstance(func, ast.Call):
        return f"{name_of(func.func)}()"
    return ""


def test_trust_remote_code_is_off_unless_a_preset_sets_it():
    from platypus.config import ModelConfig

    assert ModelConfig.trust_remote_code is False
    for preset in (REPO / "platypus" / "conf" / "model").glob("*.yaml"):
        assert OmegaConf.load(preset).get("trust_remote_code", False) is False, preset
    for path in SOURCES:
        for call in calls(path):
            for keyword in call.keywords:
                if keyword.arg == "trust_remote_code":
                    assert not (isinstance(keyword.value, ast.Constant) and keyword.value.value is True), \
                        f"{path}:{call.lineno} hard-codes trust_remote_code=True"


def test_no_pickle_loading_or_code_execution_in_the_package():
    forbidden = {"eval", "exec", "os.system", "subprocess.run", "subprocess.Popen", "subprocess.call",
                 "subprocess.check_output", "pickle.load", "pickle.loads"}
    for path in SOURCES:
        for call in calls(path):
            name = name_of(call.func)
            assert name not in forbidden, f"{path}:{call.lineno} calls {name}"
            if name == "torch.load":
                flags = {k.arg: k.value for k in call.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{path}:{call.lineno}: torch.load without weights_only=True"


def test_libraries_load_pickled_weights_with_weights_only():
    """What from_pretrained / PeftModel.from_pretrained / Trainer resume use for .bin / .pt files."""
    from peft.utils.save_and_load import torch_load
    from transformers.modeling_utils import load_state_dict

    assert inspect.signature(load_state_dict).parameters["weights_only"].default is True
    assert inspect.signature(torch_load).parameters["weights_only"].default is True


def test_written_weights_are_safetensors():
    """Every save_pretrained of a model (merge, GGUF conversion) asks for safetensors explicitly; the Trainer
    saves adapters as adapter_model.safetensors by default (tests/test_crash_resume.py loads it)."""
    checked = 0
    for path in SOURCES:
        for call in calls(path):
            name = name_of(call.func)
            receiver = name.rsplit(".", 1)[0].lower()
            if name.endswith("save_pretrained") and not any(
                    kind in receiver for kind in ("tokenizer", "config", "processing_class")):
                flags = {k.arg: k.value for k in call.keywords}
                assert isinstance(flags.get("safe_serialization"), ast.Constant) and flags["safe_serialization"].value, \
                    f"{path}:{call.lineno}"
                checked += 1
    assert checked >= 2

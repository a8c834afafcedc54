"""The catalogue of bad input: each case gives one clear message that names the offending key, file or
line and says what to do; on the command line, exit code 2 and no traceback (unless traceback=true), and
nothing is written. README "Errors and crash safety" quotes these messages."""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from platypus.config import conf_dir, DataConfig, SourceConfig
from platypus.runtime.errors import PlatypusError
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


config = compose_config


def message(call, *args, **kwargs) -> str:
    with pytest.raises(PlatypusError) as info:
        call(*args, **kwargs)
    text = str(info.value)
    print(text)  # pytest -s shows the exact catalogue
    return text


# --------------------------------------------------------------------------- command line (real process)
def cli(tmp_path: Path, *overrides: str) -> str:
    """run.py with ``overrides`` into tmp_path/run: must fail with exit code 2, one paragraph, no traceback,
    and no run folder. Returns stderr."""
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={run_dir}", *overrides], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, done.stderr
    assert not run_dir.exists(), "a refused command must not create the run folder"
    print(error[0])
    return error[0]


@pytest.mark.slow
def test_cli_unknown_key_suggests_the_closest(tmp_path):
    text = cli(tmp_path, "train.lerning_rate=1e-4")
    assert "Unknown config key 'train.lerning_rate'" in text and "Did you mean train.learning_rate?" in text


@pytest.mark.slow
def test_cli_unknown_group_option_suggests_the_closest(tmp_path):
    text = cli(tmp_path, "model=smolm2")
    assert "model=smolm2: no such option in config group 'model' (conf/model/)" in text
    assert "Did you mean smollm2_135m?" in text and "smollm2_135m_hub" in text


@pytest.mark.slow
def test_cli_wrong_type_names_key_and_expected_type(tmp_path):
    text = cli(tmp_path, "train.max_steps=abc")
    assert "Wrong type for config key 'train.max_steps'" in text and "expects an integer" in text
    assert "train.max_steps=12" in text  # an example: the value it has without the override


@pytest.mark.slow
def test_cli_former_precision_spelling_names_the_new_one(tmp_path):
    text = cli(tmp_path, "train.precision=fp16")
    assert "train.precision=fp16 is now spelled train.precision=float16" in text
    assert "train.precision takes auto, bfloat16, float16, float32" in text


@pytest.mark.slow
def test_cli_threshold_out_of_range_fails_before_the_run_folder_exists(tmp_path):
    text = cli(tmp_path, "curate.steps.dedup.threshold=1.5")
    assert "curate.steps.dedup.threshold=1.5 is outside (0, 1]" in text and "curate.steps.dedup.threshold=0.8" in text


@pytest.mark.slow
def test_cli_output_folder_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={blocker}/run"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Output folder {blocker}/run (hydra.run.dir) cannot be created: {blocker} is a file" in done.stderr
    assert "hydra.run.dir=<folder>" in done.stderr
    print(done.stderr.strip())


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["/proc/x", "/dev/null/x"])
def test_cli_output_folder_that_cannot_be_made(folder):
    if not Path(folder).parent.exists():
        pytest.skip(f"no {Path(folder).parent} here")
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={folder}"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and f"Output folder {folder} (hydra.run.dir) cannot be created" in error[0], done.stderr
    assert "hydra.run.dir=<folder>" in error[0]
    print(error[0])


@pytest.mark.slow
@pytest.mark.parametrize("saved,expected", [
    ({"peft_type": "NOPE", "r": 8}, ["has peft_type='NOPE', which is not an adapter type PEFT knows",
                                     "a LoRA adapter saved by PEFT has peft_type LORA"]),
    ({"peft_type": "LORA", "r": "eight", "target_modules": 3},
     ["has field(s) of the wrong type: r='eight' (LoraConfig expects int); target_modules=3"]),
], ids=["unknown-peft_type", "wrong-field-types"])
def test_cli_adapter_config_peft_cannot_read(tmp_path, saved, expected):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(saved))
    text = cli(tmp_path, "stages=[merge]", f"merge.adapters=[{adapter}]")
    assert f"merge.adapters: {adapter / 'adapter_config.json'} has" in text and "save_pretrained" in text
    for part in expected:
        assert part in text, text


@pytest.mark.slow
def test_cli_lora_target_modules_the_model_lacks_fail_before_curate(tmp_path):
    """Checked on the model's config (its modules on the meta device): cli() also asserts that no run folder,
    so no curate folder, was made."""
    text = cli(tmp_path, "lora.target_modules=[gate_proj,query_key_value]")
    assert "lora.target_modules: ['query_key_value'] not found in LlamaForCausalLM" in text
    assert "Present: ['gate_proj']" in text and "'up_proj'" in text


@pytest.mark.slow
def test_cli_debug_true_shows_the_traceback(tmp_path):
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={tmp_path}/run", "train.max_steps=abc",
                           "traceback=true"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" in done.stderr and "ValidationError" in done.stderr
    assert "Wrong type for config key 'train.max_steps'" in done.stderr


# --------------------------------------------------------------------------- command line (in process)
def precheck_error(capsys, *argv: str) -> str:
    from platypus.cli import precheck

    with pytest.raises(SystemExit) as info:
        precheck(list(argv))
    assert info.value.code == 2
    text = capsys.readouterr().err.strip()
    assert text.startswith("error: ") and "\n" not in text
    print(text)
    return text


@pytest.mark.parametrize("argv,expected", [
    (["lerning_rate=1e-4"], ["Unknown config key 'lerning_rate'", "Did you mean train.learning_rate?"]),
    (["curate.dedupe.threshold=0.7"], ["Did you mean curate.steps.dedup.threshold"]),
    (["lora.rr=8"], ["Unknown config key 'lora.rr'", "Did you mean lora.r?", "Valid keys under lora:"]),
    (["eval.tasks.arc.num_fewshot=5"], ["Unknown entry 'arc' in eval.tasks", "arc_challenge, hellaswag"]),
    (["+data.sources.extra.path=x.jsonl"], ["Unknown entry 'extra' in data.sources", "add it in a config file"]),
    (["lora=atention"], ["lora=atention: no such option in config group 'lora'", "Did you mean attention?"]),
    (["-m", "lora=platypus,atention"], ["lora=atention: no such option", "Did you mean attention?"]),
    (["lora=platypus,attention"], ["gives several values (a sweep)", "--multirun"]),
    (["stages=curate"], ["Wrong type for config key 'stages'", "a list of strings", "stages=[curate,train,merge,evaluate]"]),
    (["model.path=null"], ["Wrong type for config key 'model.path'", "is not Optional", "expects a string"]),
    (["train.max_steps=[1"], ["Could not parse the command-line argument 'train.max_steps=[1'"]),
    # a closed choice set is an Enum: a value outside it fails when Hydra composes, named with its choices
    (["train.precision=fp16"], ["train.precision=fp16 is now spelled train.precision=float16",
                                "train.precision takes auto, bfloat16, float16, float32"]),
    (["train.precision=fp64"], ["train.precision='fp64' is not one of auto, bfloat16, float16, float32",
                                "e.g. train.precision=auto"]),
    (["-m", "train.precision=float32,bogus"], ["train.precision='bogus' is not one of auto, bfloat16"]),
    (["curate.on_bad_row=ignore"], ["curate.on_bad_row='ignore' is not one of error, skip", "curate.on_bad_row=error"]),
    (["train.resume=maybe"], ["train.resume='maybe' is not one of auto, never"]),
    (["model.dtype=float8"], ["model.dtype='float8' is not one of bfloat16, float16, float32", "model.dtype=float32"]),
    (["model.quantization=3bit"], ["model.quantization='3bit' is not one of none, 4bit, 8bit"]),
    (["eval.dtype=fp8"], ["eval.dtype='fp8' is not one of auto, bfloat16, float16, float32"]),
    (["benchmarks.source=web"], ["benchmarks.source='web' is not one of bundled, hub"]),
    (["evaluate.include=[base,mergd]"], ["evaluate.include='mergd' is not one of base, target, adapter, merged",
                                         "e.g. evaluate.include=[base,merged]"]),
], ids=["top-level-typo", "nested-typo", "lora.rr", "unknown-eval-task", "new-dict-entry", "group-option", "sweep-option",
        "sweep-without-multirun", "list-type", "not-optional", "parse-error", "former-precision", "unknown-precision",
        "swept-choice", "on_bad_row", "resume", "dtype", "quantization", "eval.dtype", "benchmarks.source", "include"])
def test_precheck_messages(capsys, argv, expected):
    text = precheck_error(capsys, *argv, "--cfg", "job")
    for part in expected:
        assert part in text, text


def test_precheck_accepts_valid_command_lines(capsys):
    from platypus.cli import precheck

    for argv in (["--cfg", "job", "lora=attention", "~eval.tasks.mmlu", "data.sources.open_platypus_rebuild.max_rows=9"],
                 ["--cfg", "job", "-m", "lora=platypus,attention", "curate.steps.dedup.threshold=0.7,0.8"],
                 ["--cfg", "job", "hydra.job.chdir=false", "stages=[curate]", "+sweep=dedup_threshold", "-m"]):
        precheck(argv)  # returns: Hydra takes over
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- ranges and enums (check_config)
RANGE_AND_ENUM_CASES = [
    (["curate.steps.dedup.threshold=1.5"], ["curate.steps.dedup.threshold=1.5 is outside (0, 1]", "e.g. curate.steps.dedup.threshold=0.8"]),
    (["curate.steps.decontaminate.threshold=0"], ["curate.steps.decontaminate.threshold=0.0 is outside (0, 1]"]),
    (["merge=weighted_ties", "merge.recipe.density=1.5"], ["needs density in (0, 1]", "got 1.5", "merge.recipe.density=0.5"]),
    (["data.sources.open_platypus_rebuild.fraction=1.5"],
     ["data.sources.open_platypus_rebuild.fraction=1.5 is outside (0, 1]", "or null to keep every row"]),
    (["curate.steps.dedup.keep=last"], ["curate.steps.dedup.keep='last' is not one of first, longest"]),
    (["curate.steps.decontaminate.policy=some"], ["curate.steps.decontaminate.policy='some' is not one of all, nearest_only"]),
    (["curate.steps.dedup.screen=bf16"], ["curate.steps.dedup.screen=bf16 is now spelled curate.steps.dedup.screen=bfloat16"]),
    (["train.template=vicuna"], ["train.template='vicuna' is not a known template; use one of", "alpaca", "chat"]),
    (["merge.recipe._target_=platypus.stages.merge.recipes.blend.Blend"], ["merge.recipe._target_='platypus.stages.merge.recipes.blend.Blend' cannot be imported"]),
    (["merge=weighted_cat", "merge.recipe.combination=avg"], ["merge.recipe.combination='avg' is not one of linear, cat,",
                                                            "dare_ties", "(Weighted)"]),
    (["merge=weighted_cat", "+merge.recipe.wieghts=[1.0]"], ["merge.recipe.wieghts: Weighted has no such parameter. Did you mean merge.recipe.weights?"]),
    (["eval.batch_size=abc"], ["eval.batch_size='abc': use a positive integer, or 'auto'"]),
    (["eval.backend.model=tgi"], ["eval.backend.model='tgi': lm-eval has no model class by that name", "hf-prefix"]),
    (["+eval.backend.kv_cache=2"], ["eval.backend.kv_cache: PrefixBackend has no such parameter", "model, model_args"]),
    (["eval.batch_size=0"], ["eval.batch_size='0': use a positive integer, or 'auto'"]),
    (["merge.recipe=blend"], ["merge.recipe='blend': a plug-in is a node naming its class", "merge=<option>"]),
    (["+logger.api_key=abc"], ["logger.api_key: WandbTracker has no such parameter. It takes: project, mode"]),
    (["logger._target_=acme.Tracker"], ["logger._target_='acme.Tracker' cannot be imported", "No module named 'acme'"]),
    (["logger=wandb", "logger.mode=live"], ["logger.mode='live' is not one of offline, online, disabled", "(WandbTracker)"]),
    (["train.lr_scheduler=cosin"], ["train.lr_scheduler='cosin' is not one of linear, cosine,", "e.g. train.lr_scheduler=cosine"]),
    (["train.micro_batch_size=0"], ["train.micro_batch_size=0 must be a positive integer; set train.micro_batch_size=<n >= 1>"]),
    (["train.cutoff_len=0"], ["train.cutoff_len=0 must be a positive integer"]),
    (["train.global_batch_size=6", "train.micro_batch_size=4"], ["train.global_batch_size=6 is not a multiple of train.micro_batch_size=4"]),
    (["lora.r=0"], ["lora.r=0 must be a positive integer"]),
    (["lora.alpha=0"], ["lora.alpha=0 must be a positive integer"]),
    (["lora.target_modules=[]"], ["lora.target_modules is empty"]),
    (["curate.embedding.batch_size=0"], ["curate.embedding.batch_size=0 must be a positive integer"]),
    (["data.sample=0"], ["data.sample=0 must be a positive number of rows"]),
    (["eval.tasks.arc_challenge.benchmark=arc_typo"],
     ["eval.tasks.arc_challenge.benchmark='arc_typo' is not a benchmark of this config", "benchmarks.sets has:"]),
    (["stages=[train,curate]"], ["stages=['train', 'curate']: stages run in the order ['curate', 'train', 'merge', 'evaluate']"]),
    (["stages=[finetune]"], ["unknown stage(s) ['finetune']"]),
    (["stages=[train]", "train.dataset=/nonexistent/train.jsonl"],
     ["train.dataset='/nonexistent/train.jsonl': no such file", "<run>/curate/train.jsonl"]),
    (["model.path=/nonexistent/model", "model.gguf_file=null"], ["model.path='/nonexistent/model': no such folder"]),
    (["model.gguf_file=SmolLM2.gguf"], ["model.gguf_file='SmolLM2.gguf' is not in", "SmolLM2-135M-Instruct.Q4_1.gguf"]),
    (["lora.target_modules=[gate_proj,query_key_value]"],
     ["lora.target_modules: ['query_key_value'] not found in LlamaForCausalLM", "Present: ['gate_proj']"]),
    (["stages=[merge]", "merge.adapters=[/nonexistent/adapter]"],
     ["merge.adapters: /nonexistent/adapter is not a PEFT adapter folder"]),
    (["stages=[evaluate]", "evaluate.models=[./no/such/model]"], ["evaluate.models='./no/such/model': no such folder"]),
]


@pytest.mark.parametrize("overrides,expected", RANGE_AND_ENUM_CASES, ids=[" ".join(o) for o, _ in RANGE_AND_ENUM_CASES])
def test_check_config_names_key_value_and_valid_values(overrides, expected):
    from platypus.pipeline import check_config

    text = message(check_config, config(*overrides))
    for part in expected:
        assert part in text, text


def test_qlora_without_cuda_fails_at_the_start(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from platypus.pipeline import check_config

    text = message(check_config, config("model.quantization=4bit"))
    assert "model.quantization=4bit (QLoRA) needs a CUDA GPU" in text and "model.quantization=none" in text
    check_config(config("model.quantization=4bit", "stages=[curate]"))  # no train: not needed


def test_every_shipped_option_passes_the_checks(monkeypatch):
    from platypus.pipeline import check_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # hub presets (llama2_13b, ...): not cached here, nothing downloaded

    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir() and p.name not in ("hydra", "sweep")):
        for option in sorted(group.glob("*.yaml")):
            cfg = config(f"{group.name}={option.stem}", "stages=[curate,merge,evaluate]")  # no train: QLoRA presets
            check_config(cfg)


# --------------------------------------------------------------------------- data files
def mixture(**source) -> OmegaConf:
    return OmegaConf.structured(DataConfig(name="test", sources={"mine": SourceConfig(**source)}))


def rows(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def test_missing_data_file(tmp_path):
    from platypus.data.sources import load_mixture

    text = message(load_mixture, mixture(path=str(tmp_path / "nope.jsonl")), "error", 0)
    assert f"Data file '{tmp_path / 'nope.jsonl'}' (config key data.sources.mine.path) does not exist" in text


def test_malformed_jsonl_row_names_file_and_line(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.jsonl"
    path.write_text(rows({"instruction": "a", "output": "b"}, "{not json", {"instruction": "c", "output": "d"}))
    text = message(load_mixture, mixture(path=str(path)), "error", 0)
    assert f"{path}:2: unreadable record" in text and "curate.on_bad_row=skip" in text


def test_non_utf8_line_names_file_and_line(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.jsonl"
    path.write_bytes(rows({"instruction": "a", "output": "b"}).encode() + b'{"instruction": "\xff\xfe"}\n')
    text = message(load_mixture, mixture(path=str(path)), "error", 0)
    assert f"{path}:2: unreadable record (not UTF-8 text" in text


def test_broken_gzip_is_named(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(rows({"instruction": "a", "output": "b"}).encode() * 50)[:40])
    text = message(load_mixture, mixture(path=str(path)), "error", 0)
    assert f"Data file '{path}' (config key data.sources.mine.path) could not be read" in text


def test_malformed_json_file_names_the_line(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": oops}\n]\n')
    text = message(load_mixture, mixture(path=str(path)), "error", 0)
    assert f"Data file '{path}' is not valid JSON (line 3" in text


def test_rows_lacking_mapped_fields(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.jsonl"
    path.write_text(rows({"question": "a", "answer": "b"}, {"question": "c"}))
    cfg = mixture(path=str(path), fields={"instruction": "question", "output": "answer"})
    text = message(load_mixture, cfg, "error", 0)
    assert f"{path}:2: missing field 'answer' (mapped to 'output')" in text and "data.sources.mine.fields" in text
    text = message(load_mixture, mixture(path=str(path), fields={"instruction": "question"}), "error", 0)
    assert "data.sources.mine.fields has no mapping for 'output'" in text


def test_empty_dataset_after_filtering(tmp_path):
    from platypus.data.sources import load_mixture

    path = tmp_path / "d.jsonl"
    path.write_text(rows({"instruction": "integrate x", "output": "b"}))
    text = message(load_mixture, mixture(path=str(path), keywords=["chemistry"]), "error", 0)
    assert "Data mixture 'test' is empty after filtering" in text and "relax data.sources.*.keywords" in text


def test_train_dataset_row_names_file_and_line(tmp_path):
    from platypus.stages.train.prompts import read_jsonl

    path = tmp_path / "train.jsonl"
    path.write_text(rows({"instruction": "a", "output": "b"}, {"instruction": "a"}))
    assert f"{path}:2: row lacks string field(s) ['output']" in message(read_jsonl, path)


# --------------------------------------------------------------------------- models
def test_hub_id_not_cached_while_offline(monkeypatch, tmp_path):
    from platypus.runtime.models import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = message(resolve, "no-such-org/no-such-model", None, tmp_path)
    assert "model.path='no-such-org/no-such-model' is a hub id, but HF_HUB_OFFLINE=1" in text
    assert "not in the local Hugging Face cache" in text


def test_missing_local_model_folder(tmp_path):
    from platypus.runtime.models import resolve

    text = message(resolve, str(tmp_path / "no" / "model"), None, tmp_path)
    assert f"model.path='{tmp_path / 'no' / 'model'}': no such folder" in text
    text = message(resolve, str(tmp_path), None, tmp_path)
    assert "has no config.json: it is not a Hugging Face model folder" in text


def test_unknown_model_id_online_is_a_clear_error(monkeypatch, tmp_path):
    from platypus.runtime.models import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here; the same path a bad id takes online
    text = message(load_tokenizer, "no-such-org/no-such-model")
    assert "Could not load a tokenizer from 'no-such-org/no-such-model'" in text and "model.path" in text


def test_gguf_package_not_installed(tmp_path, monkeypatch):
    import importlib.util

    from platypus.runtime import models

    text = message(models.resolve, "package:no_such_model_package", "m.gguf", tmp_path)
    assert "the Python package 'no_such_model_package' is not installed" in text and "pip install" in text

    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    assert "needs the 'gguf' package: `pip install gguf`" in message(models.resolve, str(folder), "m.gguf", tmp_path)


def test_lora_target_modules_missing_from_the_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from platypus.runtime.models import check_target_modules

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    text = message(check_target_modules, model, ["q_proj", "query_key_value"])
    assert "lora.target_modules: ['query_key_value'] not found in LlamaForCausalLM" in text
    assert "'gate_proj'" in text and "lora=platypus|attention|all_linear" in text


def test_merge_of_incompatible_models(tiny_model_dir, tmp_path):
    from transformers import AutoConfig

    from platypus.stages.merge.compat import check_compatible

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "base_model_name_or_path": str(tiny_model_dir)}))
    bigger = AutoConfig.from_pretrained(tiny_model_dir)
    bigger.hidden_size = 64
    bigger.save_pretrained(tmp_path / "bigger")
    text = message(check_compatible, str(tmp_path / "bigger"), adapter, False)
    assert f"the adapter {adapter} was trained on {tiny_model_dir}" in text
    assert "hidden_size: adapter base 32 vs target 64" in text and "same architecture and sizes" in text


def test_missing_benchmark_data(tmp_path, cache_dir):
    from platypus.stages.evaluate.tasks import build_suite

    cfg = config("eval=leaderboard_v1", "benchmarks=bundled")
    OmegaConf.update(cfg, "benchmarks.sets.hellaswag.files.validation", "hellaswag/nope.jsonl.gz")
    text = message(build_suite, cfg.eval, cfg.benchmarks, tmp_path, cache_dir)
    assert "benchmarks.sets.hellaswag.files.validation='hellaswag/nope.jsonl.gz'" in text and "benchmarks=hub" in text


def test_unknown_curate_benchmark_name():
    from platypus.data.benchmarks import load_benchmark_questions

    cfg = config()
    text = message(load_benchmark_questions, cfg.benchmarks, ["arc_challange"])
    assert "arc_challange" in text and "valid names: arc_challenge, hellaswag, mmlu, truthfulqa_mc2" in text


# --------------------------------------------------------------------------- stages and run folder
def test_stages_with_a_missing_input(tmp_path):
    from platypus.pipeline import run_pipeline

    text = message(run_pipeline, config("stages=[merge]", "logger=none", "stage_cache=null"), tmp_path / "a")
    assert "stages: 'merge' needs an adapter. Add train to stages, or give merge.adapters=[path/to/adapter]" in text
    text = message(run_pipeline, config("stages=[train]", "logger=none", "stage_cache=null"), tmp_path / "b")
    assert "stages: 'train' needs a curated dataset. Add curate to stages, or give train.dataset=<file.jsonl>" in text
    cfg = config("stages=[train]", "logger=none", "stage_cache=null", f"train.dataset={tmp_path / 'nope.jsonl'}")
    assert f"train.dataset='{tmp_path / 'nope.jsonl'}': no such file" in message(run_pipeline, cfg, tmp_path / "c")


SMALL = ["logger=none", "stage_cache=null", "curate=off", "data.sample=8", "model.gguf_file=null"]


def test_output_folder_not_writable_inside_the_run(tmp_path, capsys):
    from platypus.pipeline import run_checked

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        run_checked(config("stages=[curate]", *SMALL), blocker / "run")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"Cannot write: Not a directory (ENOTDIR) writing {blocker / 'run'}" in err
    assert "choose folders you can write to: hydra.run.dir=<folder>" in err and "Traceback" not in err
    print(err.strip())


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permission bits cannot be tested")
def test_output_folder_without_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        text = cli(locked, "stages=[curate]")
        assert f"cannot be created: {locked} is not writable" in text
    finally:
        locked.chmod(0o700)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_disk_full_during_a_stage_write(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import platypus.stages.train.trainer
    from platypus.pipeline import run_checked

    own = [*SMALL, f"model.path={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}"]
    cfg = config("stages=[curate,train]", *own)
    run_checked(config("stages=[curate]", *own), tmp_path)
    curated = snapshot(tmp_path / "curate")
    target = None

    def disk_fills_up(train_cfg, lora, model_cfg, base, dataset, out, *args, **kwargs):
        nonlocal target
        (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
        (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
        target = out / "adapter" / "adapter_model.safetensors"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(platypus.stages.train.trainer, "train", disk_fills_up)
    with pytest.raises(SystemExit) as info:
        run_checked(cfg, tmp_path)
    assert info.value.code == 2
    err = capsys.readouterr().err
    print(err.strip())
    assert f"The disk is full: No space left on device (ENOSPC) writing {target}" in err
    assert f"The unfinished stage stays in {tmp_path / '.train.partial'}" in err
    assert "Finished stages (curate) were not touched" in err and "Free space on that disk" in err
    assert "Traceback" not in err
    # nothing that looks finished, the checkpoint kept for the rerun, the finished stage untouched
    assert not (tmp_path / "train").exists() and not (tmp_path / ".train.partial" / "manifest.json").exists()
    assert (tmp_path / ".train.partial" / "checkpoints" / "checkpoint-2").is_dir()
    assert snapshot(tmp_path / "curate") == curated

    def room_again(train_cfg, lora, model_cfg, base, dataset, out, *args, **kwargs):
        assert (out / "checkpoints" / "checkpoint-2").is_dir(), "the rerun sees the checkpoint"
        (out / "adapter").mkdir()
        (out / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
        return {"resumed_from": "checkpoint-2"}

    monkeypatch.setattr(platypus.stages.train.trainer, "train", room_again)
    run_checked(cfg, tmp_path)
    assert (tmp_path / "train" / "manifest.json").is_file() and not (tmp_path / ".train.partial").exists()
    assert snapshot(tmp_path / "curate") == curated


def test_other_os_errors_are_not_disguised(tmp_path, monkeypatch):
    """Only disk/permission errors become a paragraph; anything else keeps its traceback (a bug to report)."""
    import platypus.pipeline as pipeline

    def broken(cfg, root):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pipeline, "run_pipeline", broken)
    with pytest.raises(OSError, match="Input/output error"):
        pipeline.run_checked(config("stages=[curate]", *SMALL), tmp_path)


# --------------------------------------------------------------------------- secrets
def test_redact_masks_secret_looking_keys():
    from platypus.runtime.tracking import redact

    masked = redact({"logger": {"api_key": "k", "project": "p"}, "hf_token": "t", "list": [{"password": "x"}]})
    assert masked == {"logger": {"api_key": "***", "project": "p"}, "hf_token": "***", "list": [{"password": "***"}]}
    overrides = redact({"hydra_job": {"overrides": ["lora=attention", "+model.hub_token=hf_abc", "data.sample=5"]}})
    assert overrides["hydra_job"]["overrides"] == ["lora=attention", "+model.hub_token=***", "data.sample=5"]


def test_secrets_from_the_environment_never_reach_manifests_or_wandb(tmp_path, monkeypatch, tiny_model_dir):
    import wandb

    from platypus.pipeline import run_checked

    secrets = {"WANDB_API_KEY": "wandbsecret" + "0" * 29, "HF_TOKEN": "hf_secretsecretsecret"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = config("stages=[curate]", "logger=wandb", "stage_cache=null", "curate=off", "data.sample=8",
                 f"cache_dir={tmp_path / 'cache'}")
    run_checked(cfg, tmp_path / "run")
    wandb.teardown()  # flush wandb-core's writes before reading every file
    assert (tmp_path / "run" / "curate" / "manifest.json").is_file()
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for value in secrets.values():
            assert value.encode() not in data, f"{value[:6]}... leaked into {path}"

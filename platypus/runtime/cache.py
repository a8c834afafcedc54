"""The cross-run stage cache: finished stages shared by every run folder and sweep job.

``<root>/<stage>/<key>/`` holds a finished stage folder and its manifest. Entries appear by an atomic rename of
a complete temporary sibling and are never modified; their files are hardlinks shared with the run folders,
which therefore must not be edited in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platypus import __version__
from platypus.runtime.identity import digest, to_plain
from platypus.runtime.io import read_json

log = logging.getLogger("platypus")
MANIFEST = "manifest.json"


def key_inputs(value: Any) -> Any:
    """Inputs as they enter a stage key: content identities only. ``path`` entries are dropped (a run
    folder's paths differ between runs whose inputs are byte-identical); manifests keep them."""
    if isinstance(value, dict):
        return {k: key_inputs(v) for k, v in value.items() if k != "path"}
    if isinstance(value, (list, tuple)):
        return [key_inputs(v) for v in value]
    return value


def stage_key(name: str, config: Any, inputs: dict[str, Any]) -> tuple[str, dict]:
    """sha256 of the stage name, its resolved config, the content identity of its inputs, the package version."""
    material = {"stage": name, "config": to_plain(config), "inputs": key_inputs(inputs), "version": __version__}
    return digest(material), material


def _link_or_copy(src: str, dst: str) -> str:
    if Path(src).name == MANIFEST:  # rewritten per run folder: never shared
        return shutil.copy2(src, dst)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem (EXDEV) or no hardlinks there: copy
        return shutil.copy2(src, dst)
    return dst


def link_tree(src: Path, dst: Path) -> None:
    """Copy a finished stage folder as hardlinks (no extra disk), falling back to copies."""
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)


@dataclass
class StageCache:
    """Finished stages shared across run folders: ``<root>/<stage>/<key>/`` (a stage folder + manifest)."""

    root: Path

    def lookup(self, stage: str, key: str) -> Path | None:
        entry = self.root / stage / key
        manifest = read_json(entry / MANIFEST)
        return entry if manifest and manifest.get("key") == key else None

    @contextmanager
    def lock(self, stage: str, key: str):
        """Exclusive while one process computes ``key``: parallel jobs of a sweep (joblib, SLURM) wait for
        it and then reuse its result instead of computing it again. No lock where flock is unavailable."""
        path = self.root / stage / f".{key}.lock"
        try:
            import fcntl

            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")
        except (ImportError, OSError):
            handle = None
        if handle is None:
            yield
            return
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info(f"[platypus] {stage}: another job is computing this very result; waiting for it ({path})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # e.g. a filesystem without flock: go on unlocked
                pass
            yield
        finally:
            handle.close()  # releases the lock

    def store(self, stage: str, key: str, folder: Path) -> Path | None:
        """Add a finished stage folder under its key (a no-op when already there). Never fails the run."""
        entry = self.root / stage / key
        if self.lookup(stage, key):
            return entry
        staging = entry.with_name(f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            link_tree(folder, staging)
            if entry.exists() and not self.lookup(stage, key):  # damaged (no valid manifest): set it aside
                entry.rename(entry.with_name(f".{key}.broken-{uuid.uuid4().hex[:8]}"))
            os.rename(staging, entry)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if self.lookup(stage, key):  # a parallel job stored the same key first: keep theirs
                return entry
            log.info(f"[platypus] {stage}: could not add the result to the stage cache ({entry}): {error}")
            return None
        log.info(f"[platypus] {stage}: stored in the stage cache -> {entry}")
        return entry

"""The cross-run stage cache: finished stages shared by every run folder and sweep job.

``<root>/<stage>/<key>/`` holds a finished stage folder and its manifest. Entries appear by an atomic rename of
a complete temporary sibling and are never modified: their files are read-only and hardlinked into the run
folders that use them (copied across filesystems), each checked against the manifest's file record before it
is reused (platypus/runtime/integrity.py). ``<root>/<stage>/.<key>.users`` lists the run folders that took
the entry; ``python -m platypus.cache`` lists, verifies and trims the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platypus import __version__
from platypus.runtime import integrity
from platypus.runtime.identity import digest, to_plain
from platypus.runtime.io import MANIFEST, read_json
from platypus.runtime.lock import flocked

log = logging.getLogger("platypus")


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


def sidecar(stage_dir: Path, key: str, kind: str) -> Path:
    """A key's bookkeeping file beside its entry: ``.<key>.lock`` (computing it) or ``.<key>.users`` (who took it)."""
    return stage_dir / f".{key}.{kind}"


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

    def _present(self, stage: str, key: str) -> Path | None:
        entry = self.root / stage / key
        manifest = read_json(entry / MANIFEST)
        return entry if manifest and manifest.get("key") == key else None

    def lookup(self, stage: str, key: str, full: bool = False) -> Path | None:
        """The entry for ``key`` if it is there and intact. A damaged entry is moved aside (kept) and missed."""
        entry = self._present(stage, key)
        if entry is None:
            return None
        problem = integrity.damage(entry, read_json(entry / MANIFEST).get("files"), MANIFEST, full)
        if problem is None:
            return entry
        aside = integrity.set_aside(entry, hidden=True)
        log.warning(f"[platypus] {stage}: the stage cache entry {entry} does not match its manifest: {problem}. "
                    f"Moved it aside to {aside} (kept, never deleted); computing the stage again.")
        return None

    def used_by(self, stage: str, key: str, run_folder: Path) -> None:
        """Note that ``run_folder`` took this entry (what ``list`` shows and ``gc`` keeps)."""
        with open(sidecar(self.root / stage, key, "users"), "a") as users:
            users.write(f"{Path(run_folder).resolve()}\n")

    @contextmanager
    def lock(self, stage: str, key: str):
        """Exclusive while one process computes ``key``: parallel jobs of a sweep (joblib, SLURM) wait for
        it and then reuse its result instead of computing it again. No lock where flock is unavailable."""
        def wait(_) -> None:
            log.info(f"[platypus] {stage}: another job is computing this very result; waiting for it")

        with flocked(sidecar(self.root / stage, key, "lock"), wait):
            yield

    def store(self, stage: str, key: str, folder: Path) -> Path | None:
        """Add a finished stage folder under its key (a no-op when already there). Never fails the run."""
        entry = self.root / stage / key
        if self._present(stage, key):
            return entry
        staging = entry.with_name(f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            link_tree(folder, staging)
            if entry.exists() and not self._present(stage, key):  # damaged (no valid manifest): set it aside
                integrity.set_aside(entry, hidden=True)
            os.rename(staging, entry)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if self._present(stage, key):  # a parallel job stored the same key first: keep theirs
                return entry
            log.info(f"[platypus] {stage}: could not add the result to the stage cache ({entry}): {error}")
            return None
        log.info(f"[platypus] {stage}: stored in the stage cache -> {entry}")
        return entry

    # ----------------------------------------------------------------------------------- inspecting and trimming
    def entries(self) -> list[Entry]:
        found = []
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []:
            for path in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                manifest = read_json(path / MANIFEST)
                if manifest and manifest.get("key") == path.name:
                    found.append(Entry.read(stage_dir.name, path, manifest))
        return found

    def set_aside(self) -> list[Path]:
        """The damaged entries moved aside earlier (kept for inspection; ``gc --damaged`` removes them)."""
        return sorted(p for p in self.root.glob("*/.*.damaged-*") if p.is_dir()) if self.root.is_dir() else []

    def collectable(self, max_bytes: int | None = None, older_than_s: float | None = None,
                    force: bool = False) -> list[Entry]:
        """What ``gc`` removes: entries unused for longer than ``older_than_s``, then the least recently used
        until the rest fits ``max_bytes``; never one a run folder still uses unless ``force``."""
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        removable = [e for e in entries if force or not e.in_use]
        now, chosen = time.time(), []
        if older_than_s is not None:
            chosen = [e for e in removable if now - e.last_used > older_than_s]
        if max_bytes is not None:
            total = sum(e.size for e in entries) - sum(e.size for e in chosen)
            for entry in removable:
                if total <= max_bytes:
                    break
                if entry not in chosen:
                    chosen.append(entry)
                    total -= entry.size
        return chosen

    def remove(self, entry: Entry) -> None:
        shutil.rmtree(entry.path)  # read-only files in a writable folder: removable
        for kind in ("users", "lock"):
            sidecar(entry.path.parent, entry.key, kind).unlink(missing_ok=True)


@dataclass
class Entry:
    """One stage cache entry as ``python -m platypus.cache list`` shows it."""

    stage: str
    path: Path
    manifest: dict
    size: int  # bytes, apparent
    last_used: float  # epoch seconds: stored, or last taken by a run folder
    users: list[Path] = field(default_factory=list)  # run folders whose stage folder is this entry now
    shared: bool = False  # a file has another hardlink (a run folder somewhere)

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def in_use(self) -> bool:
        return bool(self.users) or self.shared

    @classmethod
    def read(cls, stage: str, path: Path, manifest: dict) -> "Entry":
        files = [p for p in path.rglob("*") if p.is_file()]
        stats = [p.stat() for p in files]
        users_file = sidecar(path.parent, path.name, "users")
        last_used = max([path.stat().st_mtime] + ([users_file.stat().st_mtime] if users_file.is_file() else []))
        named = dict.fromkeys(users_file.read_text().split("\n") if users_file.is_file() else [])
        users = [Path(u) for u in named if u and (read_json(Path(u) / stage / MANIFEST) or {}).get("key") == path.name]
        return cls(stage, path, manifest, sum(s.st_size for s in stats), last_used, users,
                   any(s.st_nlink > 1 for p, s in zip(files, stats) if p.name != MANIFEST))

"""Finished results that cannot change behind a user's back.

A finished stage folder's manifest lists every file with its size, sha256 and modification time (``files``),
and every file of it is made read-only (no write bit for anyone). Hardlinked run folders share those
read-only files with the stage cache. Before a finished result is reused, :func:`damage` compares the folder
with its record: ``fast`` (sizes and modification times, hashing only a file whose time moved) or ``full``
(every sha256). A damaged result is moved aside (kept, never deleted) and computed again.

Root ignores permission bits (these machines run as root): there the check is what catches an edit.
"""

from __future__ import annotations

import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from platypus.runtime.identity import digest, sha256_now

WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
SKIPPED = (".key",)  # a partial folder's own bookkeeping


def _files(folder: Path, manifest_name: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (manifest_name, *SKIPPED)}


def record(folder: Path, manifest_name: str) -> tuple[dict[str, dict], float]:
    """``{relative path: {size, sha256, mtime_ns}}`` of every file but the manifest, and the seconds hashing took."""
    started = time.perf_counter()
    files = {}
    for rel, path in _files(folder, manifest_name).items():
        info = path.stat()
        files[rel] = {"size": info.st_size, "sha256": sha256_now(path), "mtime_ns": info.st_mtime_ns}
    return files, time.perf_counter() - started


def seal(folder: Path) -> None:
    """Every file under ``folder`` read-only (folders stay writable, so a run folder can still be moved or removed)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode
            if mode & WRITE_BITS:
                path.chmod(mode & ~WRITE_BITS)


def damage(folder: Path, files: dict[str, dict] | None, manifest_name: str, full: bool = False) -> str | None:
    """What no longer matches the recorded ``files`` (the first few problems, in words), or None when intact.
    ``full``: hash every file; otherwise only files whose size matches but whose modification time moved."""
    if files is None:
        return "its manifest has no file record (made before results were recorded; computing it again)"
    present = _files(folder, manifest_name)
    problems = [f"{rel} is missing" for rel in files if rel not in present]
    problems += [f"{rel} was added" for rel in present if rel not in files]
    for rel, want in files.items():
        path = present.get(rel)
        if path is None:
            continue
        info = path.stat()
        if info.st_size != want["size"]:
            problems.append(f"{rel} changed size ({want['size']:,} -> {info.st_size:,} bytes)")
        elif (full or info.st_mtime_ns != want["mtime_ns"]) and sha256_now(path) != want["sha256"]:
            problems.append(f"{rel} changed content (sha256 {want['sha256'][:12]}… recorded)")
    if not problems:
        return None
    shown = "; ".join(problems[:3])
    return shown + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")


def set_aside(folder: Path, hidden: bool = False) -> Path:
    """Move a damaged result out of the way, kept for inspection: ``<name>.damaged-<time>`` beside it."""
    prefix = "." if hidden and not folder.name.startswith(".") else ""
    aside = folder.with_name(f"{prefix}{folder.name}.damaged-{datetime.now():%Y%m%d-%H%M%S-%f}")
    folder.rename(aside)
    return aside


def sealed(payload: dict[str, Any]) -> dict[str, Any]:
    """A JSON record with the digest of its own content (``content_sha256``), checked by :func:`intact`."""
    body = {k: v for k, v in payload.items() if k != "content_sha256"}
    return {**body, "content_sha256": digest(body)}


def intact(payload: dict[str, Any]) -> bool:
    body = {k: v for k, v in payload.items() if k != "content_sha256"}
    return payload.get("content_sha256") == digest(body)


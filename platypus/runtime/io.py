"""Writes that never leave a half-written result behind: a file or a folder appears complete or not at all."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"


def write_json_atomic(path: Path, content: Any, indent: int = 1) -> None:
    """Write ``content`` as JSON through a temporary sibling renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=indent, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (a half-written file never counts)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; renamed to ``target`` when the block completes, removed
    when it fails. If another process created ``target`` meanwhile, theirs is kept and ours discarded."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

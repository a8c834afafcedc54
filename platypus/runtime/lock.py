"""Exclusive file locks (flock): :func:`flocked` for the stage cache's keys (a second job waits) and for run folders.

One process writes a run folder at a time: ``<run>/.platypus.lock``, held for the whole run.

A second process on the same folder is refused (it would interleave stages): by the command-line check before
Hydra writes anything into the folder (:func:`holder`), and by :func:`exclusive` when the run starts.
No lock where flock is unavailable.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterator

from platypus.runtime.errors import PlatypusError

LOCK = ".platypus.lock"


def in_use(root: Path, who: str) -> PlatypusError:
    return PlatypusError(
        f"{root} is in use by another platypus process ({who or 'unknown'}). Nothing was changed. Wait for it to "
        f"finish and run again (finished stages are reused), or give this run its own folder: "
        f"hydra.run.dir=<new folder>."
    )


def holder(root: Path) -> str | None:
    """Who holds ``root``'s lock now (their pid, host, start and command), or None."""
    try:
        import fcntl

        handle = open(Path(root) / LOCK)
    except (ImportError, OSError):
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        except OSError:
            return None
    return None


@contextmanager
def flocked(path: Path, busy: Callable[[IO[str]], None]) -> Iterator[IO[str] | None]:
    """Hold an exclusive flock on ``path`` while the block runs. When another process holds it, ``busy(handle)``
    raises (refuse) or returns (then this waits for it). No lock where flock is unavailable (yields None)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except (ImportError, OSError):
        yield None
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock: go on unlocked
            pass
        yield handle
    finally:
        handle.close()  # releases the lock


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold ``root``'s lock while the block runs; refuse when another process holds it."""
    def refuse(handle: IO[str]) -> None:
        handle.seek(0)
        raise in_use(root, handle.read().strip())

    with flocked(Path(root) / LOCK, refuse) as handle:
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now():%Y-%m-%d %H:%M:%S}: "
                         f"{' '.join(sys.argv)}")
            handle.flush()
        yield

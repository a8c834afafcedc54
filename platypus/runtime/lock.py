"""One process writes a run folder at a time: ``<run>/.platypus.lock`` (flock), held for the whole run.

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
def exclusive(root: Path):
    """Hold ``root``'s lock while the block runs; refuse when another process holds it."""
    try:
        import fcntl

        handle = open(Path(root) / LOCK, "a+")
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise in_use(root, handle.read().strip()) from None
        except OSError:  # a filesystem without flock: go on unlocked
            pass
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now():%Y-%m-%d %H:%M:%S}: "
                     f"{' '.join(sys.argv)}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock

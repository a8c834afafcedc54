"""One error type for everything a user can fix, and how the entrypoint reports it: one paragraph, exit code 2."""

from __future__ import annotations

from pathlib import Path


class PlatypusError(Exception):
    """Bad input or environment: the message names the key/file/line and what to do."""


class ConfigError(PlatypusError):
    """A command-line problem found before the run starts; ``cause`` is the Hydra/OmegaConf error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


EXIT_USER_ERROR = 2
# A full disk or quota, no permission, a read-only or missing folder: the machine, not the code.
WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR"}


def is_write_error(error: OSError) -> bool:
    import errno

    return errno.errorcode.get(error.errno) in WRITE_ERRNOS


def fail(message: str, show_traceback: bool = False) -> None:
    """Print the one paragraph on stderr and exit with code 2 (``show_traceback``: re-raise, the full traceback)."""
    import sys

    if show_traceback:
        raise  # noqa: PLE0704 - re-raises the exception being handled: the full traceback
    print(f"\nerror: {message}\n(nothing finished was changed; add traceback=true for the full traceback)", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR) from None


def write_error_message(error: OSError, root: Path) -> str:
    """What failed (path, reason), what was kept, and what to do."""
    import errno

    code = errno.errorcode.get(error.errno, str(error.errno))
    path = error.filename or "a file"
    reason = error.strerror or str(error)
    unfinished = sorted(p for p in root.glob(".*.partial") if p.is_dir()) if root.is_dir() else []
    from platypus.runtime.io import MANIFEST

    finished = sorted(manifest.parent.name for manifest in root.glob(f"*/{MANIFEST}"))
    kept = (f" The unfinished stage stays in {', '.join(str(p) for p in unfinished)} (no manifest.json, so it is "
            f"never taken for a finished result; a rerun continues or replaces it)." if unfinished else "")
    done = f" Finished stages ({', '.join(finished)}) were not touched." if finished else ""
    if code in ("ENOSPC", "EDQUOT", "EFBIG"):
        todo = ("Free space on that disk (or point hydra.run.dir=<folder> / PLATYPUS_CACHE at a disk with room), "
                "then rerun the same command in the same run folder: finished stages are reused and training "
                "continues from its last checkpoint.")
        what = "The disk is full"
    else:
        todo = ("Fix the permissions, or choose a folder you can write to (hydra.run.dir=<folder>, cache_dir / "
                "PLATYPUS_CACHE=<folder>), then rerun the same command.")
        what = "Cannot write"
    return f"{what}: {reason} ({code}) writing {path}.{kept}{done} {todo}"

"""Failed writes, whoever raised them, as one paragraph: the folder, the system's reason and what to do.

A full disk reaches us as an ``OSError`` from Python's own files, but libraries wrap it in their own types:
safetensors' ``SafetensorError("... No space left on device (os error 28)")``, torch.save's file writer a
``RuntimeError`` that has lost the errno (``unexpected pos ...``, ``basic_ios::clear: iostream error``), pyarrow an
``OSError`` whose text holds ``[errno 28]``, logging's configuration a ``ValueError`` raised from the ``OSError``.
:func:`write_failure` finds the failed write anywhere in an error's chain; :func:`reported` turns it into the
paragraph and exit code 2 for every command-line entry point (the run, ``python -m platypus.cache``,
``python -m platypus.report``, ``python -m platypus.lm_eval``), :func:`hydra_app_reported` also for Hydra's own
writes (the run folder, ``.hydra/*.yaml``, the log file), which happen outside the job's code.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from hydra.experimental.callback import Callback

from platypus.runtime.errors import fail

# A full disk or quota, a file-size limit, no permission, a read-only or missing folder: the machine, not the code.
WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR"}
NO_ROOM = {"ENOSPC", "EDQUOT", "EFBIG"}
HEADLINES = {"ENOSPC": "The disk is full", "EDQUOT": "The disk quota is full",
             "EFBIG": "A file grew past the size allowed"}
ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[errno (\d+)\]", re.IGNORECASE)
# torch.save's zip writer (caffe2's inline_container.cc) drops the errno of a failed write.
TORCH_WRITER = ("PytorchStreamWriter", "unexpected pos", "basic_ios::clear: iostream error")


@dataclass(frozen=True)
class WriteFailure:
    code: str | None  # ENOSPC, EFBIG, ...; None when the library did not say
    reason: str  # the system's words ("No space left on device")
    path: str | None  # the file, when the error names it (a failed write() or close() does not)


def _failure(error: BaseException) -> WriteFailure | None:
    if isinstance(error, OSError) and error.errno is not None:
        code = errno.errorcode.get(error.errno)
        return WriteFailure(code, os.strerror(error.errno), error.filename) if code in WRITE_ERRNOS else None
    text = str(error)
    found = ERRNO_IN_TEXT.search(text)
    if found:
        number = int(found.group(1) or found.group(2))
        code = errno.errorcode.get(number)
        return WriteFailure(code, os.strerror(number), None) if code in WRITE_ERRNOS else None
    if isinstance(error, RuntimeError) and any(mark in text for mark in TORCH_WRITER):
        return WriteFailure(None, f"torch's file writer failed ({text.strip().splitlines()[0]}) without saying "
                                  f"why (most often a full disk or a file-size limit)", None)
    return None


def write_failure(error: BaseException | None) -> WriteFailure | None:
    """The failed write behind ``error`` or any error it was raised from, or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        failure = _failure(error)
        if failure:
            return failure
        error = error.__cause__ or error.__context__
    return None


def _free(folder: Path) -> str:
    """'<n> GB free there' (and the file-size limit, when one is set), or '' when the disk cannot be asked."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        said = f" {shutil.disk_usage(existing).free / 1e9:.2f} GB are free on the disk of {existing}."
    except OSError:
        said = ""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        said += f" This process may not write files over {limit} bytes (its ulimit -f)."
    return said


def _kept(root: Path | None) -> str:
    """What the failure left in the run folder: the unfinished stage (never taken for finished), the finished ones."""
    if root is None or not root.is_dir():
        return ""
    from platypus.runtime.io import MANIFEST

    unfinished = sorted(p for p in root.glob(".*.partial") if p.is_dir())
    finished = sorted(manifest.parent.name for manifest in root.glob(f"*/{MANIFEST}"))
    kept = (f" The unfinished stage stays in {', '.join(map(str, unfinished))} (no manifest.json, so it is never "
            f"taken for a finished result; a rerun continues or replaces it)." if unfinished else "")
    return kept + (f" Finished stages ({', '.join(finished)}) were not touched." if finished else "")


def _working_in(root: Path | None) -> Path | None:
    """Where the run was writing when the error named no file: its newest unfinished stage, else the run folder."""
    if root is None or not root.is_dir():
        return root
    unfinished = [p for p in root.glob(".*.partial") if p.is_dir()]
    return max(unfinished, key=lambda p: p.stat().st_mtime) if unfinished else root


def message(failure: WriteFailure, root: Path | None = None) -> str:
    """One paragraph: what failed where, what was kept, what to do."""
    folder = Path(failure.path).parent if failure.path else _working_in(root) or Path.cwd()
    what = f"writing {failure.path}" if failure.path else f"writing in {folder}"
    code = f" ({failure.code})" if failure.code else ""
    if failure.code is None or failure.code in NO_ROOM:
        limit = " (or raise the file-size limit, ulimit -f)" if failure.code in ("EFBIG", None) else ""
        return (f"{HEADLINES.get(failure.code, 'A write failed')}: {failure.reason}{code} {what}.{_free(folder)}"
                f"{_kept(root)} Free space on that disk{limit}, or write elsewhere: hydra.run.dir=<folder> for the run "
                f"folder, stage_cache=<folder> and cache_dir=<folder> for the caches. Then rerun the same "
                f"command: finished stages are reused and training continues from its last checkpoint.")
    return (f"Cannot write: {failure.reason}{code} {what}.{_kept(root)} Fix the permissions, or choose folders you "
            f"can write to: hydra.run.dir=<folder> for the run folder, stage_cache=<folder> and cache_dir=<folder> "
            f"for the caches. Then rerun the same command.")


@contextmanager
def reported(root: Path | None = None, show_traceback: bool = False) -> Iterator[None]:
    """A failed write in the block becomes the paragraph on stderr and exit code 2; other errors pass."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - only failed writes are handled; the rest is re-raised
        failure = write_failure(error)
        if failure is None:
            raise
        fail(message(failure, root), show_traceback)


class OutputFolder(Callback):
    """Remembers where Hydra is writing (the run, sweep or job folder) for a failed write of Hydra's own."""

    folder: Path | None = None

    def on_run_start(self, config, **kwargs) -> None:
        OutputFolder.folder = Path(str(config.hydra.run.dir)).absolute()

    def on_multirun_start(self, config, **kwargs) -> None:
        OutputFolder.folder = Path(str(config.hydra.sweep.dir)).absolute()


def hydra_app_reported(app: Callable[[], object]) -> None:
    """Run the Hydra ``app`` so that a failed write of Hydra's own (the run folder, ``.hydra/*.yaml``, the log file,
    ``multirun.yaml``) gives the paragraph too. Hydra prints such errors itself and exits with code 1 unless
    HYDRA_FULL_ERROR is set; it is set for the call, and any other error is handed back to Hydra's own report."""
    from hydra._internal.utils import run_and_report

    user_set = "HYDRA_FULL_ERROR" in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        app()
    except Exception as error:  # noqa: BLE001 - a failed write is ours to report; the rest goes back to Hydra
        failure = write_failure(error)
        if failure is not None:
            fail(message(failure, OutputFolder.folder), show_traceback=False)
        if user_set:
            raise
        del os.environ["HYDRA_FULL_ERROR"]
        run_and_report(partial(_raise, error))
    finally:
        if not user_set:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def _raise(error: BaseException) -> None:
    raise error


class LogFile(logging.FileHandler):
    """The run's log file (``<run>/run.log``). When a line cannot be written (a full disk), this says so once on
    stderr and stops writing the file instead of printing a traceback per line; the console keeps every line,
    and the run's next write meets the same disk and stops the run with the paragraph."""

    broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        failure = write_failure(sys.exc_info()[1])
        if failure is None:
            super().handleError(record)
            return
        self.broken = True
        stream, self.stream = self.stream, None
        try:
            stream.close()
        except OSError:
            pass
        print(f"[platypus] cannot write the log file {self.baseFilename}: {failure.reason}"
              f"{f' ({failure.code})' if failure.code else ''}; its lines go to the console only from now on.",
              file=sys.stderr)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the last flush of a file on a full disk
            self.stream = None

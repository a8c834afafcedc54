"""Write-fault injection for tests/test_write_faults.py: put this folder on a child process's PYTHONPATH and the
N-th file write of that process fails, as a full disk (ENOSPC) or a file-size limit (EFBIG) makes it fail.

    PLATYPUS_FAULT_AT=N      the write point that fails (1-based); 0 or unset: none fails, each is only counted
    PLATYPUS_FAULT_ERRNO     ENOSPC (default) or EFBIG
    PLATYPUS_FAULT_LOG       a file that gets one line per write point ("<n> <kind> <path>") and "FAILED <n> ..."

Write points, in the order the process reaches them:
- a file opened for writing (``open``/``io.open``/``Path.open``...): the file is created, and its first write
  (or its close, when nothing was written) stores half of the data and fails, without a file name, as the
  kernel reports it; the file stays failed;
- ``os.mkdir``, ``os.rename``, ``os.replace``, ``os.link``: fail before doing anything, with the file name;
- the writers that bypass Python's files (safetensors' ``serialize_file``, ``torch.save``'s zip writer, the
  ``tokenizers`` Rust save): the real failure, by lowering the file-size limit (RLIMIT_FSIZE) to a few bytes for
  the call, so the library raises its own error type with its own message (always EFBIG).
Only the first process counts (subprocesses it starts inherit PYTHONPATH but not the fault).
"""

from __future__ import annotations

import builtins
import errno
import importlib.abc
import importlib.machinery
import io
import os
import resource
import signal
import sys
import threading

AT = int(os.environ.get("PLATYPUS_FAULT_AT") or 0)
ERRNO = getattr(errno, os.environ.get("PLATYPUS_FAULT_ERRNO", "ENOSPC"))
LOG = os.environ.get("PLATYPUS_FAULT_LOG")
ACTIVE = os.environ.setdefault("PLATYPUS_FAULT_PID", str(os.getpid())) == str(os.getpid())
FEW_BYTES = 64
_lock = threading.Lock()
_count = 0


def _note(line: str) -> None:
    if LOG:
        with _real_open(LOG, "a") as out:
            out.write(line + "\n")


def _point(kind: str, path) -> bool:
    """Count one write point; True when it is the one that fails."""
    global _count
    with _lock:
        _count += 1
        n = _count
    _note(f"{n} {kind} {os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else path}")
    if n == AT:
        _note(f"FAILED {n} {kind} {errno.errorcode[ERRNO] if kind in _PY_KINDS else 'EFBIG'}")
        return True
    return False


def _skipped(path) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return True  # a file descriptor: its creation (os.open, mkstemp) is not a Python-level file
    name = os.fsdecode(path)
    return name.startswith(("/dev/", "/proc/")) or (LOG is not None and name == LOG)


class _FailingFile:
    """A real file whose first write (or close) stores half of the data and then fails, like a full disk."""

    def __init__(self, file):
        self._file = file
        self._failed = False

    def _fail(self):
        self._failed = True
        raise OSError(ERRNO, os.strerror(ERRNO))

    def write(self, data):
        if not self._failed:
            self._file.write(data[: len(data) // 2])
            self._file.flush()
        self._fail()

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._failed:
            self._fail()
        self._file.flush()

    def close(self):
        failed = self._failed
        try:
            self._file.close()
        except OSError:
            pass
        if not failed:
            self._fail()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __iter__(self):
        return iter(self._file)


_real_open = io.open


def _open(file, mode="r", *args, **kwargs):
    opened = _real_open(file, mode, *args, **kwargs)
    if not any(c in mode for c in "wax+") or _skipped(file) or not _point("open", file):
        return opened
    return _FailingFile(opened)


def _fails_first(kind: str, function):
    def wrapper(src, *args, **kwargs):
        exists = kind == "mkdir" and os.path.isdir(src)  # makedirs(exist_ok=True) on a folder already there
        if exists or _skipped(src):
            return function(src, *args, **kwargs)
        where = os.fsdecode(src) if kind == "mkdir" or not args else f"{os.fsdecode(src)} -> {os.fsdecode(args[0])}"
        if _point(kind, where):
            raise OSError(ERRNO, os.strerror(ERRNO), src)
        return function(src, *args, **kwargs)
    return wrapper


def _file_size_limited(kind: str, function, path_of):
    """``function`` with its N-th call failing for real: the file-size limit lowered to a few bytes meanwhile."""
    def wrapper(*args, **kwargs):
        path = path_of(args, kwargs)
        if _skipped(path) or not _point(kind, path):
            return function(*args, **kwargs)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FEW_BYTES, hard))
        try:
            return function(*args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return wrapper


_PY_KINDS = {"open", "mkdir", "rename", "replace", "link"}


def _patch_safetensors(module) -> None:
    module.serialize_file = _file_size_limited("safetensors", module.serialize_file, lambda a, k: a[1])


def _patch_torch(module) -> None:
    save = _file_size_limited("torch.save", module.serialization.save,
                              lambda a, k: a[1] if len(a) > 1 else k.get("f"))
    module.save = module.serialization.save = save


def _patch_tokenizers(module) -> None:
    cls = module.TokenizersBackend
    def tokenizer_json(args, kwargs) -> str:
        return os.path.join(str(args[1] if len(args) > 1 else kwargs["save_directory"]), "tokenizer.json")

    cls._save_pretrained = _file_size_limited("tokenizer", cls._save_pretrained, tokenizer_json)


PATCHES = {"safetensors.torch": _patch_safetensors, "torch": _patch_torch,
           "transformers.tokenization_utils_tokenizers": _patch_tokenizers}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Patches a module of PATCHES once it has been imported (wherever the import comes from)."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_and_patch
        return spec


if ACTIVE:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file-size limit: EFBIG, not a killed process
    builtins.open = io.open = _open
    os.mkdir = _fails_first("mkdir", os.mkdir)
    for _name in ("rename", "replace", "link"):
        setattr(os, _name, _fails_first(_name, getattr(os, _name)))
    sys.meta_path.insert(0, _AfterImport())

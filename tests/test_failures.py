"""Failed writes recognised whoever raised them (platypus/runtime/failures.py), from the libraries' real errors:
the file-size limit (RLIMIT_FSIZE) is lowered for the save, so each library raises what it raises on a full disk."""

from __future__ import annotations

import errno
import logging
import logging.config
import os
import resource
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from platypus.runtime.failures import LogFile, message, reported, write_failure


@contextmanager
def file_size_limit(limit: int = 64):
    """Writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored meanwhile, as a full disk's ENOSPC would)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def raised(save) -> BaseException:
    with pytest.raises(Exception) as info, file_size_limit():
        save()
    return info.value


def test_library_errors_that_wrap_a_failed_write_are_recognised(tmp_path, tiny_model_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tensors = {"w": torch.zeros(10_000)}
    saves = {
        "safetensors": lambda: save_file(tensors, tmp_path / "a.safetensors"),
        "torch.save": lambda: torch.save(tensors, tmp_path / "a.pt"),
        "tokenizer": lambda: tokenizer.save_pretrained(tmp_path / "tokenizer"),
        "pyarrow": lambda: pq.write_table(pa.table({"x": list(range(100_000))}), tmp_path / "a.parquet"),
        "open": lambda: (tmp_path / "a.txt").write_text("x" * 100_000),
    }
    for library, save in saves.items():
        error = raised(save)
        failure = write_failure(error)
        assert failure is not None, f"{library}: {type(error).__name__}: {error}"
        if library == "torch.save":  # its zip writer drops the errno
            assert failure.code is None and "torch's file writer failed" in failure.reason
        else:
            assert (failure.code, failure.reason) == ("EFBIG", "File too large"), (library, failure)


def test_errors_raised_from_a_failed_write_and_the_rest():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/run/run.log")
        except OSError as cause:
            raise ValueError("Unable to configure handler 'file'") from cause  # logging.config's wrapping
    except ValueError as error:
        assert write_failure(error).path == "/run/run.log"
    full = type("SafetensorError", (Exception,), {})("Error while serializing: I/O error: No space left on device "
                                                     "(os error 28)")  # its words on a full tmpfs
    assert write_failure(full).code == "ENOSPC"
    assert write_failure(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert write_failure(RuntimeError("PytorchStreamReader failed reading zip archive")) is None
    assert write_failure(ValueError("Error while deserializing header (os error 2)")) is None


def test_the_paragraph_names_the_folder_the_reason_and_what_to_do(tmp_path, capsys):
    (tmp_path / ".train.partial").mkdir()
    with pytest.raises(SystemExit) as info, reported(tmp_path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    err = capsys.readouterr().err
    print(err)
    assert info.value.code == 2 and "Traceback" not in err
    assert f"writing in {tmp_path / '.train.partial'}." in err and "GB are free on the disk of" in err
    assert f"The unfinished stage stays in {tmp_path / '.train.partial'}" in err
    assert "hydra.run.dir=<folder>" in err and "stage_cache=<folder>" in err
    text = message(write_failure(OSError(errno.EROFS, "Read-only file system", "/data/x")), tmp_path)
    assert text.startswith("Cannot write: Read-only file system (EROFS) writing /data/x.")
    with pytest.raises(KeyError), reported(tmp_path):
        raise KeyError("not a write")


def test_a_log_file_on_a_full_disk_is_said_once(tmp_path, capsys):
    handler = LogFile(tmp_path / "run.log")
    log = logging.getLogger("test_failures")
    log.addHandler(handler)
    try:
        log.warning("kept")
        with file_size_limit(Path(tmp_path / "run.log").stat().st_size + 8):
            for i in range(3):
                log.warning(f"line {i} that does not fit")
        log.warning("after")
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("[platypus] cannot write the log file") == 1 and "File too large (EFBIG)" in err
    assert "Traceback" not in err and "Logging error" not in err


def test_the_report_command_on_a_full_disk(tmp_path, capsys):
    from platypus import report
    from tests.helpers import hand_made_run

    hand_made_run(tmp_path / "sweep/0", ["lora=attention"], 80, 1.2, {"base": 0.3, "merged": 0.31})
    with pytest.raises(SystemExit) as info, file_size_limit():
        report.main([str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    print(err)
    assert info.value.code == 2 and "File too large (EFBIG) writing in" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("hydra_file", ["run.log", ".hydra/config.yaml"])
def test_a_write_of_hydra_s_own_that_fails_is_one_paragraph(hydra_file, tmp_path):
    """Hydra writes the log file and .hydra/*.yaml before our code runs; a failure there is the paragraph too."""
    import subprocess
    import sys

    from tests.helpers import ENV, REPO

    (tmp_path / hydra_file).mkdir(parents=True)  # what cannot be opened for writing
    done = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={tmp_path}", "logger=none", "stages=[curate]"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    print(done.stderr)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Cannot write: Is a directory (EISDIR) writing {tmp_path / hydra_file}." in done.stderr
    assert "HYDRA_FULL_ERROR" not in done.stderr and not (tmp_path / "curate").exists()

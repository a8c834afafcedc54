"""Finished results cannot change behind a user's back: read-only files, a file record checked before reuse,
damaged results moved aside and recomputed, a cache that can be listed, verified and trimmed, one process per
run folder. (These machines run as root, who ignores permission bits: there the record is what catches edits.)"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from platypus import cache as cache_cli
from platypus.pipeline import run_pipeline
from platypus.runtime import integrity
from platypus.runtime.cache import StageCache
from platypus.runtime.identity import sha256_now
from platypus.runtime.lock import exclusive
from platypus.stages.evaluate.runner import _reusable
from tests.helpers import compose_config

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false"}
SMALL_CURATE = ["stages=[curate]", "logger=none", "data.sample=20", "curate.benchmarks=[truthfulqa_mc2]"]


def curate(run: Path, cache: Path, *overrides: str) -> dict:
    run_pipeline(compose_config(*SMALL_CURATE, f"stage_cache={cache}", *overrides), run)
    return json.loads((run / "curate" / "manifest.json").read_text())


def force_append(path: Path, text: str) -> None:
    """What a user's editor or script does to a file it may write (root may write anything)."""
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    with open(path, "a") as handle:
        handle.write(text)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_finished_files_are_read_only_recorded_and_shared_with_the_cache(tmp_path):
    manifest = curate(tmp_path / "a", tmp_path / "cache")
    entry = tmp_path / "cache" / "curate" / manifest["key"]
    assert set(manifest["files"]) == {str(p.relative_to(entry)) for p in entry.rglob("*")
                                      if p.is_file() and p.name != "manifest.json"}
    assert manifest["hash_seconds"] > 0  # hashing the files took measurable time, and it was recorded
    for rel, record in manifest["files"].items():
        ours, cached = tmp_path / "a" / "curate" / rel, entry / rel
        assert os.stat(ours).st_ino == os.stat(cached).st_ino  # hardlinked, so both are read-only:
        assert not os.stat(ours).st_mode & integrity.WRITE_BITS
        assert record["sha256"] == sha256_now(ours) and record["size"] == ours.stat().st_size
    assert not (tmp_path / "a/curate/manifest.json").stat().st_mode & integrity.WRITE_BITS
    if os.geteuid() != 0:  # a normal user cannot edit a finished file in place
        with pytest.raises(PermissionError):
            open(tmp_path / "a/curate/train.jsonl", "a")


def test_an_edited_result_is_detected_set_aside_and_recomputed(tmp_path, caplog):
    cache = tmp_path / "cache"
    first = curate(tmp_path / "c1", cache)
    train = tmp_path / "c1/curate/train.jsonl"
    rows = lines(train)
    force_append(train, '{"instruction": "hand-written", "input": "", "output": "x"}\n')  # the cache's file too

    caplog.set_level(logging.INFO, logger="platypus")
    second = curate(tmp_path / "c2", cache)  # the cache entry is damaged: not reused
    assert not second.get("reused") and second["key"] == first["key"]
    assert lines(tmp_path / "c2/curate/train.jsonl") == rows
    said = [r.getMessage() for r in caplog.records if "does not match its manifest" in r.getMessage()]
    assert len(said) == 1 and "train.jsonl changed size" in said[0]
    aside = list((cache / "curate").glob(f".{first['key']}.damaged-*"))
    assert len(aside) == 1 and lines(aside[0] / "train.jsonl") == rows + 1  # kept, never deleted

    caplog.clear()
    third = curate(tmp_path / "c1", cache)  # the run folder's own damaged copy: moved aside, taken from the cache
    assert third.get("reused") and lines(train) == rows
    assert len(list((tmp_path / "c1").glob("curate.damaged-*"))) == 1
    assert any("c1/curate does not match its manifest: train.jsonl" in r.getMessage() for r in caplog.records)


def test_full_verification_catches_an_edit_that_kept_size_and_time(tmp_path):
    cache = tmp_path / "cache"
    first = curate(tmp_path / "a", cache)
    train = tmp_path / "a/curate/train.jsonl"
    info = train.stat()
    data = bytearray(train.read_bytes())
    data[10] = ord("#") if data[10] != ord("#") else ord("%")
    train.chmod(0o644)
    train.write_bytes(bytes(data))
    train.chmod(0o444)
    os.utime(train, ns=(info.st_atime_ns, info.st_mtime_ns))  # size and modification time as recorded

    assert curate(tmp_path / "b", cache).get("reused")  # the fast check cannot see it
    assert not curate(tmp_path / "c", cache, "stage_cache_verify=full").get("reused")  # the full check does
    assert list((cache / "curate").glob(f".{first['key']}.damaged-*"))


def test_an_evaluation_result_that_changed_is_moved_aside(tmp_path):
    said = []
    path = tmp_path / "eval_results" / "k.json"
    path.parent.mkdir()
    payload = integrity.sealed({"key": "k", "results": {"acc": 0.5}})
    path.write_text(json.dumps(payload))
    assert _reusable(path, "k", said.append) == payload
    assert _reusable(path, "other", said.append) is None and path.is_file()  # another key: not ours, untouched

    path.write_text(json.dumps({**payload, "results": {"acc": 0.9}}))
    assert _reusable(path, "k", said.append) is None and not path.exists()
    assert len(list(path.parent.glob("k.damaged-*.json"))) == 1
    assert said == [f"[evaluate] {path} changed since it was written: moved aside to "
                    f"{next(path.parent.glob('k.damaged-*.json'))} (kept); evaluating the task again"]


def test_cache_command_lists_verifies_and_collects(tmp_path, capsys):
    cache = tmp_path / "cache"
    kept = curate(tmp_path / "a", cache)
    gone = curate(tmp_path / "b", cache, "curate.steps.dedup.threshold=0.7")
    shutil.rmtree(tmp_path / "b")  # run folder b deleted (read-only files go with it): its entry is unused now
    at = f"stage_cache={cache}"

    assert cache_cli.main(["list", at]) == 0
    listed = capsys.readouterr().out
    assert f"| curate | {kept['key'][:12]} |" in listed and str((tmp_path / "a").resolve()) in listed
    assert f"| curate | {gone['key'][:12]} |" in listed and "| none |" in listed

    assert cache_cli.main(["du", at]) == 0
    assert "| curate | 2 |" in capsys.readouterr().out

    assert cache_cli.main(["verify", at]) == 0
    assert "2 of 2 entries intact" in capsys.readouterr().out

    dry = cache_cli.main(["gc", "--max-gb", "0.000001", "--dry-run", at])  # overrides after the options too
    out = capsys.readouterr().out
    assert dry == 0 and f"would remove curate/{gone['key']}" in out and kept["key"] not in out
    assert (cache / "curate" / gone["key"]).is_dir()  # a dry run removes nothing

    assert cache_cli.main(["gc", at, "--max-gb", "0.000001"]) == 0
    assert f"removed curate/{gone['key']}" in capsys.readouterr().out
    assert not (cache / "curate" / gone["key"]).exists() and (cache / "curate" / kept["key"]).is_dir()  # in use

    force_append(cache / "curate" / kept["key"] / "removed.csv", "x\n")
    assert cache_cli.main(["verify", at]) == 1
    assert "DAMAGED curate/" in (out := capsys.readouterr().out) and "removed.csv changed size" in out


def test_gc_without_a_budget_says_what_it_needs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cache_cli.main(["gc", f"stage_cache={tmp_path}"])
    assert exit_.value.code == 2 and "--max-gb" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-gb", "--older-than"])
def test_gc_refuses_a_negative_size_or_age_before_touching_anything(flag, tmp_path, capsys):
    cache = tmp_path / "cache"
    unused = curate(tmp_path / "a", cache)
    shutil.rmtree(tmp_path / "a")  # no run folder uses the entry: any valid budget or age could remove it
    with pytest.raises(SystemExit) as exit_:
        cache_cli.main(["gc", flag, "-1", f"stage_cache={cache}"])
    err = capsys.readouterr().err
    print(err)
    assert exit_.value.code == 2 and f"gc {flag} -1: must be a number >= 0" in err and "Traceback" not in err
    assert (cache / "curate" / unused["key"]).is_dir()


def test_the_size_budget_trims_unused_entries_after_a_run(tmp_path):
    cache = tmp_path / "cache"
    old = curate(tmp_path / "a", cache, "curate.steps.dedup.threshold=0.7")
    shutil.rmtree(tmp_path / "a")
    new = curate(tmp_path / "b", cache, "stage_cache_max_gb=0.000001")
    assert not (cache / "curate" / old["key"]).exists()  # unused by any run folder: trimmed
    assert (cache / "curate" / new["key"]).is_dir()  # this run's own entry is in use: kept
    assert [e.key for e in StageCache(cache).entries()] == [new["key"]]


@pytest.mark.slow
def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    command = [sys.executable, "run.py", f"hydra.run.dir={run}", *SMALL_CURATE, f"stage_cache={tmp_path / 'cache'}"]
    with exclusive(run):  # another run working in this folder
        refused = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{run} is in use by another platypus process (pid {os.getpid()}" in refused.stderr
    assert not (run / "curate").exists() and not (run / ".hydra").exists()  # refused before Hydra wrote there
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "curate" / "manifest.json").read_text())["files"]

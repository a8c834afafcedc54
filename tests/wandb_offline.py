"""Read what an offline W&B run logged, from its ``run-*.wandb`` file.

wandb 0.31 writes no ``files/wandb-summary.json`` offline, and its own reader lives in the Go
core; the file is a LevelDB-style log (32 KiB blocks of crc/length/type-framed chunks) after a
7-byte ``:W&B`` header, each record a ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # b":W&B" + magic 0xBEE1 + version


def records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B datastore"
    pos, chunks = HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            yield record
            chunks = b""


def summary(run_folder: Path) -> dict:
    """Last logged value of every key (history rows and summary updates)."""
    values: dict = {}
    for record in records(next(run_folder.glob("run-*.wandb"))):
        items = record.history.item if record.HasField("history") else (
            record.summary.update if record.HasField("summary") else [])
        for item in items:
            key = item.key or "/".join(item.nested_key)
            values[key] = json.loads(item.value_json)
    return values


def history(run_folder: Path) -> list[dict]:
    """Every logged history row (one per ``wandb.log`` call), in order."""
    rows = []
    for record in records(next(run_folder.glob("run-*.wandb"))):
        if record.HasField("history"):
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


def run_info(run_folder: Path) -> dict:
    """The run record: ``{"group", "job_type", "name", "tags", "config"}`` (config: the logged values)."""
    info: dict = {"config": {}}
    for record in records(next(run_folder.glob("run-*.wandb"))):
        if record.HasField("run"):
            run = record.run
            info.update(group=run.run_group, job_type=run.job_type, name=run.display_name, tags=list(run.tags))
            items = run.config.update
        elif record.HasField("config"):
            items = record.config.update
        else:
            continue
        for item in items:
            info["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return info

"""Pinned inputs: model.revision, merge.target=hub_id@revision and data.sources.*.revision reach the download, and
what was loaded is recorded by its resolved commit. The hub is replaced by stand-ins (no network here)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from omegaconf import OmegaConf

from platypus.data import sources
from platypus.runtime import models
from platypus.runtime.identity import identity
from platypus.stages.merge.fold import resolve_target
from tests.helpers import compose_config

COMMIT = "8df40d0" + "0" * 33


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stand-in hub: records every snapshot asked for and answers with a cache-shaped folder."""
    asked: list[tuple[str, str, list[str]]] = []

    def snapshot_download(repo_id, revision, ignore_patterns):
        asked.append((repo_id, revision, ignore_patterns))
        folder = tmp_path / f"models--{repo_id.replace('/', '--')}" / "snapshots" / COMMIT
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        return str(folder)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo_id, revision: ["model.safetensors", "x.bin"])
    return asked


def test_hub_id_at_revision_is_split_but_a_local_path_is_kept(tmp_path):
    assert models.split_revision("augtoma/qCammel-13@8df40d0") == ("augtoma/qCammel-13", "8df40d0")
    assert models.split_revision("augtoma/qCammel-13") == ("augtoma/qCammel-13", None)
    local = tmp_path / "model@v2"
    local.mkdir()
    assert models.split_revision(str(local)) == (str(local), None)


def test_model_revision_downloads_that_snapshot_and_records_its_commit(hub, tmp_path):
    cfg = OmegaConf.create({"model": {"path": "meta-llama/Llama-2-13b-hf", "gguf_file": None, "revision": "main"},
                            "cache_dir": str(tmp_path)})
    assert models.base_model(cfg, convert=False) == "meta-llama/Llama-2-13b-hf" and hub == [], "checks download nothing"
    folder = models.base_model(cfg)
    assert hub[0][:2] == ("meta-llama/Llama-2-13b-hf", "main") and "*.bin" in hub[0][2], "safetensors only"
    recorded = identity(folder)
    assert recorded["hub_id"] == "meta-llama/Llama-2-13b-hf" and recorded["revision"] == COMMIT


def test_merge_target_at_revision_is_what_gets_folded(hub, tmp_path):
    cfg = compose_config("merge=into_model", "merge.target=augtoma/qCammel-13@8df40d0").merge
    folder = resolve_target(cfg, str(tmp_path / "base"), str(tmp_path))
    assert hub[0][:2] == ("augtoma/qCammel-13", "8df40d0")
    assert Path(folder).name == COMMIT and identity(folder)["hub_id"] == "augtoma/qCammel-13"


def test_an_unknown_revision_is_one_clear_error(monkeypatch):
    def missing(repo_id, revision, ignore_patterns):
        raise huggingface_hub.errors.RevisionNotFoundError("404 Revision Not Found")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo_id, revision: [])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(models.PlatypusError, match=r"merge.target='org/model' at revision 'nope'"):
        models.resolve("org/model@nope", None, ".", key="merge.target")


def test_data_source_revision_reaches_the_hub_its_identity_and_the_load_report(monkeypatch):
    import datasets

    asked = {}

    def load_dataset(dataset_id, split, revision):
        asked.update(dataset_id=dataset_id, split=split, revision=revision)
        return [{"instruction": "q", "input": "", "output": "a"}]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(huggingface_hub, "dataset_info",
                        lambda dataset_id, revision: type("Info", (), {"sha": f"{revision}{'0' * 33}"}))
    data = OmegaConf.create({"name": "pinned", "sources": {"open_platypus": {
        "path": "garage-bAInd/Open-Platypus",
        "kind": {"_target_": "platypus.data.kinds.HubDataset", "split": "train", "revision": "7ba4746"},
        "fields": {"instruction": "instruction", "input": "input", "output": "output"},
        "keywords": [], "fraction": None, "max_rows": None, "data_source": None}}, "sample": None})
    rows, report = sources.load_mixture(data, "error", 0)
    assert asked["revision"] == "7ba4746" and len(rows) == 1
    assert report["sources"]["open_platypus"]["resolved_revision"] == "7ba4746" + "0" * 33, "the commit it named"
    assert sources.mixture_identity(data)["open_platypus"]["revision"] == "7ba4746"

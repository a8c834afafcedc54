"""Loading data mixtures and benchmark questions: bad rows, filters, sampling, bundled files."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest
from omegaconf import OmegaConf

from platypus.config import conf_dir, BenchmarksConfig, DataConfig, SourceConfig
from platypus.data import load_benchmark_questions, load_mixture
from platypus.data.kinds import BundledFile, HubDataset, LocalFile, SourceKind, kind_of
from platypus.data.sources import mixture_identity
from platypus.runtime.errors import PlatypusError



def mixture(sample=None, **sources) -> OmegaConf:
    cfg = DataConfig(name="test", sources={k: SourceConfig(**v) for k, v in sources.items()}, sample=sample)
    return OmegaConf.structured(cfg)


def write_jsonl(path, records, bad_line: str | None = None, gz: bool = False):
    lines = [json.dumps(r) for r in records]
    if bad_line is not None:
        lines.insert(2, bad_line)
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rec(i: int, **extra) -> dict:
    return {"instruction": f"question {i}", "input": "", "output": f"answer {i}", **extra}


def test_bad_jsonl_row_errors_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(4)], bad_line="{not json")
    with pytest.raises(PlatypusError) as info:
        load_mixture(mixture(a={"path": str(path)}), "error", 0)
    message = str(info.value)
    assert f"{path}:3" in message and "curate.on_bad_row=skip" in message and "data.sources.a" in message


def test_skip_mode_counts_and_lists_bad_rows(tmp_path):
    records = [rec(0), {"instruction": "q", "output": ""}, rec(2), {"instruction": "q"}, rec(4)]
    path = write_jsonl(tmp_path / "d.jsonl.gz", records, bad_line="[1, 2", gz=True)
    rows, report = load_mixture(mixture(a={"path": str(path)}), "skip", 0)
    assert [r["instruction"] for r in rows] == ["question 0", "question 2", "question 4"]
    src = report["sources"]["a"]
    assert src["rows_read"] == 6 and src["bad_rows"] == 3 and report["total"] == 3
    examples = "\n".join(src["bad_row_examples"])
    assert f"{path}:3: unreadable" in examples
    assert f"{path}:2: empty output" in examples
    assert f"{path}:5: missing field 'output'" in examples


def test_missing_mapped_field_and_field_mapping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "a": "y", "src": "math"}, {"q": "x2", "b": "y"}])
    cfg = mixture(a={"path": str(path), "fields": {"instruction": "q", "output": "a", "data_source": "src"}})
    with pytest.raises(PlatypusError, match=r"d\.jsonl:2: missing field 'a' \(mapped to 'output'\)"):
        load_mixture(cfg, "error", 0)
    rows, _ = load_mixture(cfg, "skip", 0)
    assert rows == [{"instruction": "x", "input": "", "output": "y", "data_source": "math"}]


def test_data_source_constant_and_fallback_to_key(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [rec(0)])
    rows, _ = load_mixture(mixture(mine={"path": str(path)}, other={"path": str(path), "data_source": "lbl"}), "error", 0)
    assert [r["data_source"] for r in rows] == ["mine", "lbl"]


def test_missing_local_file_names_path_and_key(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(PlatypusError, match=r"nope\.jsonl.*data\.sources\.a\.path"):
        load_mixture(mixture(a={"path": str(missing)}), "error", 0)


def test_keyword_filter_fraction_and_cap(tmp_path):
    records = [
        {"instruction": "Solve this Algebra problem", "input": "", "output": "1"},
        {"instruction": "Write a poem", "input": "about geometry", "output": "2"},
        {"instruction": "Write a poem", "input": "about algebraic love", "output": "3"},  # not a whole word
        {"instruction": "Tell a joke", "input": "", "output": "4"},
    ]
    path = write_jsonl(tmp_path / "d.json", [])
    path.write_text(json.dumps(records), encoding="utf-8")  # a JSON array file
    rows, report = load_mixture(mixture(a={"path": str(path), "keywords": ["algebra", "Geometry"]}), "error", 0)
    assert [r["output"] for r in rows] == ["1", "2"]
    assert report["sources"]["a"]["after_keywords"] == 2
    rows, report = load_mixture(mixture(a={"path": str(path), "max_rows": 3, "fraction": 0.5}), "error", 0)
    assert len(rows) == 2 and report["sources"]["a"]["after_cap"] == 2


def test_sample_is_seeded_and_order_preserving(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(50)])
    cfg = mixture(sample=10, a={"path": str(path)})
    first, _ = load_mixture(cfg, "error", 7)
    again, _ = load_mixture(cfg, "error", 7)
    other, _ = load_mixture(cfg, "error", 8)
    numbers = [int(r["output"].split()[1]) for r in first]
    assert first == again and first != other and len(first) == 10 and numbers == sorted(numbers)


def test_empty_after_filter_and_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\nhello,world\n,empty\n", encoding="utf-8")
    with pytest.raises(PlatypusError, match=r"d\.csv:3: empty instruction"):
        load_mixture(mixture(a={"path": str(path)}), "error", 0)
    with pytest.raises(PlatypusError, match="empty after filtering"):
        load_mixture(mixture(a={"path": str(path), "keywords": ["absent"]}), "skip", 0)


def test_bundled_source_loads():
    cfg = OmegaConf.load(conf_dir() / "data" / "open_platypus_rebuild.yaml")
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg, {"sample": 100})
    rows, report = load_mixture(cfg, "error", 42)
    assert len(rows) == 100 and report["sources"]["open_platypus_rebuild"]["rows_read"] == 13984
    assert set(rows[0]) == {"instruction", "input", "output", "data_source"}
    assert {r["data_source"] for r in rows} <= {"MATH/PRM-800K", "scibench", "theoremqa"}


def test_benchmark_questions_bundled_and_unknown_name():
    hub, bundled = (OmegaConf.load(conf_dir() / "benchmarks" / f"{name}.yaml") for name in ("hub", "bundled"))
    bundled.pop("defaults")  # bundled.yaml extends hub.yaml through Hydra's defaults list
    cfg = OmegaConf.merge(OmegaConf.structured(BenchmarksConfig), hub, bundled)
    questions = load_benchmark_questions(cfg, ["arc_challenge", "truthfulqa_mc2"])
    assert len(questions["arc_challenge"]) == 1172 and len(questions["truthfulqa_mc2"]) == 817
    assert all(isinstance(q, str) and q for q in questions["arc_challenge"])
    with pytest.raises(PlatypusError, match="valid names: arc_challenge, hellaswag, mmlu, truthfulqa_mc2"):
        load_benchmark_questions(cfg, ["gsm8k"])


# --------------------------------------------------------------------------- source kinds are plug-ins
@dataclasses.dataclass
class Reversed(SourceKind):
    """A kind of the user's own (it could live in their package): a local JSONL file read last line first."""

    limit: int = 2

    def records(self, path, key):
        return reversed(list(LocalFile().records(path, key))[: self.limit])

    def identity(self, path):
        return {"reversed": path, "limit": self.limit}


def test_a_source_kind_named_by_target_reads_the_source(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(5)])
    kind = {"_target_": f"{__name__}.Reversed", "limit": 3}
    rows, _ = load_mixture(mixture(s={"path": str(path), "kind": kind}), "error", 0)
    assert [r["instruction"] for r in rows] == ["question 2", "question 1", "question 0"]
    assert mixture_identity(mixture(s={"path": str(path), "kind": kind}))["s"] == {"reversed": str(path), "limit": 3}


def test_without_a_kind_the_path_chooses_one(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [rec(0)])
    chosen = {p: type(kind_of(OmegaConf.create({"path": p}), "data.sources.s")) for p in
              ("bundled:lima.jsonl.gz", str(path), "org/dataset")}
    assert chosen == {"bundled:lima.jsonl.gz": BundledFile, str(path): LocalFile, "org/dataset": HubDataset}


@pytest.mark.parametrize("kind,message", [
    ({"_target_": "platypus.data.kinds.HubDataset", "revison": "abc"}, r"data\.sources\.s\.kind\.revison: .*revision"),
    ({"_target_": "platypus.data.kinds.HubDataset", "split": ["train"]}, r"data\.sources\.s\.kind\.split"),
    ({"_target_": "collections.OrderedDict"}, r"data\.sources\.s\.kind\._target_=.*not a SourceKind"),
])
def test_a_wrong_kind_is_named_by_its_key(tmp_path, kind, message):
    with pytest.raises(PlatypusError, match=message):
        load_mixture(mixture(s={"path": "org/dataset", "kind": kind}), "error", 0)

"""Curate steps on hand-made rows and hand-made unit vectors with known similarities."""

from __future__ import annotations

import csv
import importlib
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from platypus.config import CurateConfig, conf_dir
from platypus.stages.curate import run_curate
from platypus.stages.curate.decontaminate import decontaminate, ngram_contamination
from platypus.stages.curate.exact import exact_dedup
from tests.helpers import compose_config
from platypus.stages.curate.semantic import semantic_dedup
from platypus.runtime.errors import PlatypusError


def row(instruction: str, output: str, input: str = "", source: str = "s") -> dict:
    return {"instruction": instruction, "input": input, "output": output, "data_source": source}


def unit(angle_deg: float) -> np.ndarray:
    """A unit vector in the plane: cos(angle between two of them) = their cosine similarity."""
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a), 0.0], dtype=np.float32)


def naive_dedup(emb: np.ndarray, threshold: float, order: np.ndarray | None = None) -> np.ndarray:
    """The paper's loop: keep a row iff it is below the threshold against every kept row."""
    order = np.arange(len(emb)) if order is None else order
    kept: list[int] = []
    for i in order:
        if not kept or (emb[kept] @ emb[i]).max() < threshold:
            kept.append(int(i))
    mask = np.zeros(len(emb), bool)
    mask[kept] = True
    return mask


# --------------------------------------------------------------------------- exact
def test_exact_dedup_keeps_longest_output_at_first_position():
    rows = [
        row("What is 2+2?", "4"),
        row("Name a colour.", "red"),
        row("  What is   2+2? ", "It is 4."),  # whitespace variant, longer output
        row("What is 2+2?", "four!"),
        row("What is 2+2?", "x", input="in base 3"),  # different input: distinct
    ]
    result = exact_dedup(rows)
    assert result.kept == [2, 1, 4]  # the winner takes the first occurrence's position
    assert result.removed == {0: 2, 3: 2}


# --------------------------------------------------------------------------- semantic
def test_exact_dedup_with_the_authors_key_keeps_whitespace_variants():
    """curate.steps.exact_dedup.normalise_whitespace=false: merged_largest_keep.py's f"{instruction}-{input}" key, as is."""
    rows = [{"instruction": "Add 1 and 2.", "input": "", "output": "3"},
            {"instruction": "Add  1 and 2. ", "input": "", "output": "It is 3"},
            {"instruction": "Add 1 and 2.", "input": "", "output": "3, because 1 + 2 = 3"}]
    assert exact_dedup(rows).kept == [2] and exact_dedup(rows).removed == {0: 2, 1: 2}
    authors = exact_dedup(rows, normalise_whitespace=False)
    assert authors.kept == [2, 1] and authors.removed == {0: 2}
    assert compose_config("curate=notebook").curate.steps.exact_dedup.normalise_whitespace is False


def test_semantic_dedup_known_angles_first_and_longest():
    # cos(30°)=0.866, cos(40°)=0.766, cos(90°)=0
    emb = np.stack([unit(0), unit(30), unit(90), unit(45)])
    first = semantic_dedup(emb, 0.8, "first")
    assert first.keep.tolist() == [True, False, True, True]  # 45° is 45° (0.707) from both kept rows
    assert first.match[1] == 0 and first.score[1] == pytest.approx(np.cos(np.deg2rad(30)), abs=1e-6)
    assert first.keep.tolist() == naive_dedup(emb, 0.8).tolist()
    # At 0.7 the 40° pair (0.766) collides too.
    emb2 = np.stack([unit(0), unit(40), unit(80)])
    assert semantic_dedup(emb2, 0.7).keep.tolist() == [True, False, True]
    assert semantic_dedup(emb2, 0.8).keep.tolist() == [True, True, True]
    # longest: row 1 has the longest output, so it is decided first and wins over row 0.
    longest = semantic_dedup(emb, 0.8, "longest", output_lengths=[5, 50, 1, 1])
    assert longest.keep.tolist() == [False, True, True, False]  # 45° is 15° from row 1
    assert longest.match[0] == 1 and longest.match[3] == 1
    assert longest.keep.tolist() == naive_dedup(emb, 0.8, np.argsort([-5, -50, -1, -1], kind="stable")).tolist()


def test_semantic_dedup_chain_needs_exact_greedy_order():
    # a-b and b-c collide, a-c do not: b is removed by a, so c survives (a naive "remove every
    # row with any earlier neighbour" would wrongly drop c).
    emb = np.stack([unit(0), unit(30), unit(60)])
    for block in (1, 2, 3):
        assert semantic_dedup(emb, 0.8, block_size=block).keep.tolist() == [True, False, True]


@pytest.mark.parametrize("keep", ["first", "longest"])
@pytest.mark.parametrize("block_size", [7, 64, 1000])
@pytest.mark.parametrize("screen", ["off", "bfloat16"])
def test_blocked_dedup_equals_naive_loop_on_planted_duplicates(keep, block_size, screen, monkeypatch):
    import platypus.stages.curate.semantic as module

    monkeypatch.setattr(module, "KEPT_CHUNK_ELEMENTS", 5000)  # several kept chunks per block
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 32)).astype(np.float32)
    # Near-duplicates of random earlier rows, placed far away (across block boundaries),
    # with noise levels straddling the threshold.
    sources = rng.integers(0, 300, 200)
    noise = rng.uniform(0.2, 1.2, (200, 1)).astype(np.float32)
    dups = base[sources] + noise * rng.standard_normal((200, 32)).astype(np.float32)
    emb = np.concatenate([base, dups])
    emb = emb[rng.permutation(len(emb))]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    lengths = rng.integers(0, 20, len(emb))  # many ties
    order = np.argsort(-lengths, kind="stable") if keep == "longest" else None
    for threshold in (0.6, 0.8, 0.95):
        result = semantic_dedup(emb, threshold, keep, lengths, block_size, screen)
        expected = naive_dedup(emb, threshold, order)
        assert 0 < (~expected).sum() < len(emb) - 300
        assert result.keep.tolist() == expected.tolist()
        removed = np.flatnonzero(~result.keep)
        assert result.keep[result.match[removed]].all()
        assert (result.score[removed] >= threshold).all()
        sims = (emb[removed] * emb[result.match[removed]]).sum(1)
        np.testing.assert_allclose(sims, result.score[removed], atol=1e-5)


def test_bf16_screen_keeps_rows_a_hair_below_the_threshold():
    """Pairs at threshold +- 1e-4 (far below bf16 resolution) decide exactly as in fp32."""
    rng = np.random.default_rng(1)
    dim, threshold = 64, 0.8
    anchors = rng.standard_normal((50, dim)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    rows = [anchors]
    for delta in (-1e-4, 1e-4):
        target = threshold + delta
        ortho = rng.standard_normal((50, dim)).astype(np.float32)
        ortho -= (ortho * anchors).sum(1, keepdims=True) * anchors
        ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
        rows.append(target * anchors + np.sqrt(1 - target**2) * ortho)
    emb = np.concatenate(rows).astype(np.float32)
    expected = naive_dedup(emb, threshold, None)
    assert expected[50:100].all() and not expected[100:].any()  # below the threshold kept, above removed
    assert semantic_dedup(emb, threshold, screen="bfloat16").keep.tolist() == expected.tolist()


# --------------------------------------------------------------------------- decontaminate
def test_decontaminate_all_vs_nearest_only():
    # Question q0 has two near-copies in train (rows 0 and 1); row 2 is far from it.
    train = np.stack([unit(0), unit(10), unit(70)])
    questions = {"bench": np.stack([unit(5)])}
    everything = decontaminate(train, questions, 0.8, "all")
    nearest = decontaminate(train, questions, 0.8, "nearest_only")
    assert everything.remove.tolist() == [True, True, False]
    assert nearest.remove.tolist() == [True, False, False]  # row 1 (also cos 0.996) is left behind
    for result in (everything, nearest):
        assert result.counts == {"all": {"bench": 2}, "nearest_only": {"bench": 1}}
        assert result.totals == {"all": 2, "nearest_only": 1}
    assert everything.benchmark[1] == "bench" and everything.question[1] == 0
    assert everything.score[1] == pytest.approx(np.cos(np.deg2rad(5)), abs=1e-6)
    assert np.isnan(everything.score[2]) and everything.nearest[2] == pytest.approx(np.cos(np.deg2rad(65)), abs=1e-6)


def test_decontaminate_chunks_and_multiple_benchmarks(monkeypatch):
    module = importlib.import_module("platypus.stages.curate.decontaminate")  # the package exports a same-named function
    rng = np.random.default_rng(1)
    train = rng.standard_normal((50, 16)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    qa = train[[3, 7]] + 0.05 * rng.standard_normal((2, 16)).astype(np.float32)
    qb = np.concatenate([train[[7, 20]], rng.standard_normal((5, 16)).astype(np.float32)])
    benches = {n: q / np.linalg.norm(q, axis=1, keepdims=True) for n, q in {"a": qa, "b": qb}.items()}
    full = decontaminate(train, benches, 0.9)
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 60)  # one question per product
    chunked = decontaminate(train, benches, 0.9)
    assert sorted(np.flatnonzero(full.remove)) == [3, 7, 20]
    assert chunked.remove.tolist() == full.remove.tolist()
    assert chunked.counts == full.counts == {"all": {"a": 2, "b": 2}, "nearest_only": {"a": 2, "b": 2}}
    assert full.benchmark[20] == "b" and full.benchmark[3] == "a"
    brute = np.max(np.concatenate([train @ q.T for q in benches.values()], axis=1), axis=1)
    np.testing.assert_allclose(full.nearest, brute, atol=1e-6)


def test_ngram_detector():
    questions = {"q": ["The quick brown fox jumps over the lazy dog near the river bank today", "short one"]}
    texts = [
        "Story: the QUICK brown fox, jumps over the lazy dog near the river; bank today! Continue.",
        "the quick brown fox jumps over the lazy dog",
        "short one",
    ]
    assert ngram_contamination(texts, questions, 13) == {0: ("q", 0)}


# --------------------------------------------------------------------------- run_curate
def curate_cfg(*removed: str, **overrides) -> OmegaConf:
    """curate=paper, without the steps ``removed``, with ``overrides`` (keys under curate)."""
    cfg = OmegaConf.merge(OmegaConf.structured(CurateConfig), OmegaConf.load(conf_dir() / "curate" / "paper.yaml"))
    for name in removed:
        del cfg.steps[name]
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_run_curate_off_passes_rows_through_without_a_model(tmp_path, monkeypatch):
    import platypus.stages.curate.embed as embed

    monkeypatch.setattr(embed.Embedder, "_embed", lambda *a: pytest.fail("no embedding expected"))
    rows = [row("a", "1"), row("a", "22"), row("b", "3", source="t")]
    cfg = curate_cfg("exact_dedup", "dedup", "decontaminate")
    metrics = run_curate(cfg, rows, {}, tmp_path / "out", tmp_path / "cache")
    assert metrics["kept"] == 3 and not any(name.startswith("removed_") for name in metrics)
    lines = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == rows
    assert (tmp_path / "out" / "similarity_hist.png").stat().st_size > 0


def test_run_curate_with_fake_embeddings(tmp_path, monkeypatch):
    """Every step on hand-made vectors: the model is replaced by a text -> angle table."""
    import platypus.stages.curate.embed as embed

    angles = {"q1 ": 0, "q1 paraphrase ": 20, "q2 ": 90, "leaked ": 190, "almost leaked ": 228, "Test question?": 205}
    calls: list[int] = []

    def fake_embed(self, texts):
        calls.append(len(texts))
        return np.stack([unit(angles[t]) for t in texts])

    monkeypatch.setattr(embed.Embedder, "_embed", fake_embed)
    monkeypatch.setattr(embed, "resolve_model", lambda model_id: model_id)
    rows = [
        row("q1", "short"),
        row("q1", "much longer answer"),  # exact duplicate, longer output
        row("q1 paraphrase", "x", source="t"),  # cos 20° = 0.94 to q1
        row("q2", "y"),
        row("leaked", "z"),
        row("almost leaked", "w"),
    ]
    bench = {"bench": ["Test question?"]}
    cfg = curate_cfg(benchmarks=["bench"])
    metrics = run_curate(cfg, rows, bench, tmp_path / "out", tmp_path / "cache")
    assert metrics["rows_in"] == 6 and metrics["kept"] == 2
    assert metrics["removed_exact"] == 1 and metrics["removed_semantic"] == 1
    assert metrics["removed_contamination"] == 2 and metrics["contamination_bench"] == 2
    assert metrics["contamination_total_nearest_only"] == 1
    kept = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert kept == [rows[1], rows[3]]
    with open(tmp_path / "out" / "removed.csv", encoding="utf-8") as fh:
        removed = list(csv.DictReader(fh))
    assert [r["step"] for r in removed] == ["exact_dedup", "semantic_dedup", "decontaminate", "decontaminate"]
    assert removed[1]["collided_with"] == "q1" and float(removed[1]["score"]) == pytest.approx(0.9397, abs=1e-4)
    assert removed[2]["collided_with"] == "bench: Test question?"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["step"] for s in report["steps"]] == ["load", "exact_dedup", "semantic_dedup", "decontaminate"]
    assert report["steps"][2]["per_source"]["t"] == {"in": 1, "out": 0}
    # A second run with another threshold reuses the cache: nothing is embedded again.
    embedded = sum(calls)
    run_curate(curate_cfg(**{"steps.dedup.threshold": 0.5}), rows, bench, tmp_path / "out2", tmp_path / "cache")
    assert sum(calls) == embedded


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("steps.dedup.threshold", 1.5, "curate.steps.dedup.threshold=1.5 is outside (0, 1]"),
        ("steps.decontaminate.threshold", 0.0, "curate.steps.decontaminate.threshold=0.0 is outside (0, 1]"),
        ("steps.dedup.keep", "shortest", "curate.steps.dedup.keep='shortest'"),
        ("steps.decontaminate.policy", "some", "curate.steps.decontaminate.policy='some'"),
        ("steps.dedup.treshold", 0.7, "curate.steps.dedup.treshold: SemanticDedup has no such parameter. Did you mean "
                                      "curate.steps.dedup.threshold?"),
        ("steps.dedup._target_", "platypus.stages.curate.exact.ExactResult", "curate.steps.dedup._target_="),
    ],
)
def test_run_curate_rejects_bad_settings(tmp_path, key, value, message):
    with pytest.raises(PlatypusError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        run_curate(curate_cfg(**{key: value}), [row("a", "b")], {"x": ["q"]}, tmp_path, tmp_path)


def test_run_curate_ngram_detector_removes_what_embeddings_miss(tmp_path, monkeypatch):
    import platypus.stages.curate.embed as embed

    basis: dict[str, int] = {}  # every distinct text gets its own orthogonal vector

    def fake_embed(self, texts):
        return np.stack([np.eye(16, dtype=np.float32)[basis.setdefault(t, len(basis))] for t in texts])

    monkeypatch.setattr(embed.Embedder, "_embed", fake_embed)
    monkeypatch.setattr(embed, "resolve_model", lambda model_id: model_id)
    rows = [row("Prove that alpha beta gamma delta holds", "ok"), row("unrelated", "ok")]
    cfg = curate_cfg("dedup", **{"steps.decontaminate.ngram": 4})
    metrics = run_curate(cfg, rows, {"b": ["Does alpha beta gamma delta hold?"]}, tmp_path / "out", tmp_path / "cache")
    assert metrics["contamination_b"] == 0 and metrics["contamination_ngram"] == 1
    assert metrics["removed_ngram_only"] == 1 and metrics["removed_contamination"] == 1 and metrics["kept"] == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["decontaminate"]["ngram"] == {"n": 4, "flagged": 1, "removed_only_by_ngram": 1}


def test_ngram_only_preset_runs_its_steps_in_its_order_without_an_embedding_model(tmp_path, monkeypatch):
    """curate=ngram_only (a YAML listing two steps): exact dedup, then the 13-gram filter."""
    import platypus.stages.curate.embed as embed
    from tests.helpers import compose_config as config

    monkeypatch.setattr(embed.Embedder, "_embed", lambda *a: pytest.fail("no embedding expected"))
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu"  # 13 words
    rows = [row(f"Prove that {words} holds", "ok"), row("a", "1"), row("a", "1"), row("unrelated", "ok")]
    cfg = config("curate=ngram_only").curate
    metrics = run_curate(cfg, rows, {"b": [f"Does {words} hold?"]}, tmp_path / "out", tmp_path / "cache")
    assert list(cfg.steps) == ["exact_dedup", "ngram_decontaminate"]
    assert metrics["removed_exact"] == 1 and metrics["removed_ngram"] == 1 and metrics["kept"] == 2
    removed = (tmp_path / "out" / "removed.csv").read_text()
    assert "ngram_decontaminate" in removed and "Prove that alpha" in removed

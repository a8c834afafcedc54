"""The approximate search (faiss IVF, candidates re-scored exactly) against the exact passes."""

from __future__ import annotations

import numpy as np
import pytest

from platypus.stages.curate.approximate import approximate_dedup, greedy_over_pairs
from platypus.stages.curate.decontaminate import decontaminate
from platypus.stages.curate.search import IndexParams, exact_pairs, use_approximate
from platypus.stages.curate.semantic import semantic_dedup
from platypus.stages.curate.vectors import VectorFile, fill_chunked


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Rows around a few centres, a third of them noisy copies of earlier rows straddling 0.8."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)).astype(np.float32)
    emb = centres[rng.integers(0, 8, n)] * 0.5 + rng.standard_normal((n, dim)).astype(np.float32)
    copies = rng.choice(np.arange(1, n), n // 3, replace=False)
    sources = (rng.random(len(copies)) * copies).astype(np.int64)
    emb[copies] = emb[sources] + rng.uniform(0.2, 0.9, (len(copies), 1)).astype(np.float32) * rng.standard_normal(
        (len(copies), dim)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_greedy_over_pairs_follows_kept_rows_only():
    """Chain 0~1~2: 1 is dropped by 0, so 2 (close only to 1) stays."""
    later, earlier, sims = np.array([1, 2]), np.array([0, 1]), np.array([0.9, 0.9], np.float32)
    result = greedy_over_pairs(3, later, earlier, sims, np.arange(3))
    assert result.keep.tolist() == [True, False, True]
    assert result.match.tolist() == [-1, 0, -1]


@pytest.mark.parametrize("keep", ["first", "longest"])
def test_approximate_with_every_list_probed_equals_exact(keep):
    emb = clustered(3000)
    lengths = np.random.default_rng(1).integers(0, 20, len(emb))
    expected = semantic_dedup(emb, 0.8, keep, lengths)
    params = IndexParams(nlist=16, nprobe=16)  # all lists visited: every pair is a candidate
    result, report = approximate_dedup(emb, 0.8, keep, lengths, params, recall_sample=1000 if keep == "first" else 0,
                                       log=lambda _: None)
    assert 0 < (~expected.keep).sum() < len(emb) // 2
    assert result.keep.tolist() == expected.keep.tolist()
    removed = np.flatnonzero(~result.keep)
    np.testing.assert_allclose((emb[removed] * emb[result.match[removed]]).sum(1), result.score[removed], atol=1e-5)
    assert report["search"] == "approximate" and report["nlist"] == 16
    if keep == "first":
        assert report["recall_sample"]["recall_of_dropped"] == 1.0
        assert report["recall_sample"]["dropped_that_exact_keeps"] == 0


def test_few_probes_miss_pairs_but_report_it():
    emb = clustered(4000, dim=64)
    result, report = approximate_dedup(emb, 0.8, params=IndexParams(nlist=64, nprobe=1), recall_sample=4000,
                                       log=lambda _: None)
    sample = report["recall_sample"]
    assert sample["dropped_approximate"] == int((~result.keep).sum())
    assert 0.5 < sample["recall_of_dropped"] <= 1.0


def test_exact_pairs_finds_every_pair_at_the_threshold():
    emb = clustered(500)
    q, b, s = exact_pairs(emb, emb, 0.8, chunk_elements=7000)
    sims = emb @ emb.T
    assert sorted(zip(q.tolist(), b.tolist())) == sorted(zip(*np.nonzero(sims >= np.float32(0.8))))


@pytest.mark.parametrize("policy", ["all", "nearest_only"])
def test_approximate_decontamination_equals_exact(policy):
    emb = clustered(2000)
    questions = {"a": emb[::7] * 0.999 + 0.001 * emb[1::7][: len(emb[::7])], "b": emb[5:300:3]}
    questions = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in questions.items()}
    exact = decontaminate(emb, questions, 0.8, policy)
    approx = decontaminate(emb, questions, 0.8, policy, IndexParams(nlist=16, nprobe=16))
    assert exact.remove.any()
    assert approx.remove.tolist() == exact.remove.tolist()
    assert approx.counts == exact.counts and approx.totals == exact.totals
    np.testing.assert_allclose(approx.score[exact.remove], exact.score[exact.remove], atol=1e-5)


def test_auto_search_switches_at_the_configured_size():
    assert not use_approximate("auto", 100, 100) and use_approximate("auto", 101, 100)
    assert use_approximate("approximate", 5, 100) and not use_approximate("exact", 10**9, 100)


def test_vector_file_resumes_only_unfinished_chunks(tmp_path):
    emb = clustered(1000)
    calls = []

    def compute(start, stop):
        calls.append(start)
        if start == 512 and len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third chunk
        return emb[start:stop]

    with pytest.raises(KeyboardInterrupt):
        fill_chunked(tmp_path / "v.f16", 1000, 32, compute, chunk_rows=256)
    calls.clear()
    store = fill_chunked(tmp_path / "v.f16", 1000, 32, compute, chunk_rows=256)
    assert calls == [512, 768]  # the first two chunks were kept
    assert isinstance(store, VectorFile) and store.rows == 1000
    np.testing.assert_allclose(store.read(100, 900), emb[100:900], atol=1e-3)
    np.testing.assert_allclose(store.take(np.array([999, 3, 500])), emb[[999, 3, 500]], atol=1e-3)

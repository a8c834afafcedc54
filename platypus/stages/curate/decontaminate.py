"""Contamination filter: training rows too close to a benchmark test question.

Two policies over the same similarities (both counted every run, one applied):
- ``all`` (ours): remove every training row whose similarity to any test question reaches
  the threshold;
- ``nearest_only`` (the paper's notebook): per test question, remove only its single most
  similar training row, if that reaches the threshold -- a second near-copy survives.
Test questions are processed in chunks against all training rows, so memory stays bounded.
An optional word n-gram detector (GPT-3 / lm-eval style) runs independently of embeddings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from platypus.fields import DecontaminationPolicy

CHUNK_ELEMENTS = 1 << 25  # question-chunk x train similarity entries per product (128 MiB)
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass
class Contamination:
    """Per training row (n,) and per benchmark counts.

    ``benchmark``/``question``/``score`` attribute each removed row to the test question that
    removed it with the highest similarity ("" / -1 / nan for kept rows).
    """

    remove: np.ndarray  # bool (n,), under the applied policy
    benchmark: np.ndarray  # object (n,)
    question: np.ndarray  # int64 (n,), index into that benchmark's questions
    score: np.ndarray  # float32 (n,)
    nearest: np.ndarray  # float32 (n,): max similarity to any test question (histogram)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # policy -> benchmark -> rows
    totals: dict[str, int] = field(default_factory=dict)  # policy -> rows flagged by any benchmark


@dataclass
class _BenchmarkScan:
    row_best: np.ndarray  # (n,) max similarity of each train row to this benchmark's questions
    row_arg: np.ndarray  # (n,) the question reaching it
    question_best: np.ndarray  # (m,) max similarity of each question to the train rows
    question_arg: np.ndarray  # (m,) the train row reaching it


def decontaminate(
    train: np.ndarray, benchmarks: dict[str, np.ndarray], threshold: float, policy: str = "all",
    index_params=None,
) -> Contamination:
    """Flag training rows (L2-normalised ``train``) against each benchmark's question embeddings.

    With ``index_params`` (a ``search.IndexParams``) each benchmark's questions go into a faiss index that
    the rows query (search.py): only pairs at or above the threshold are found, so ``nearest`` is then
    known only for rows with such a pair (-inf for the others)."""
    policy = DecontaminationPolicy(policy)
    n = len(train)
    thr = np.float32(threshold)
    result = Contamination(
        remove=np.zeros(n, bool),
        benchmark=np.full(n, "", dtype=object),
        question=np.full(n, -1, np.int64),
        score=np.full(n, np.nan, np.float32),
        nearest=np.full(n, -np.inf, np.float32),
        counts={p.value: {} for p in DecontaminationPolicy},
    )
    union = {p.value: np.zeros(n, bool) for p in DecontaminationPolicy}
    for name, questions in benchmarks.items():
        scan = _scan(train, questions) if index_params is None else _scan_pairs(train, questions, thr, index_params)
        result.nearest = np.maximum(result.nearest, scan.row_best)
        flagged = {DecontaminationPolicy.all.value: _flag_all(scan, thr),
                   DecontaminationPolicy.nearest_only.value: _flag_nearest(scan, thr, n)}
        for p, (mask, _, _) in flagged.items():
            result.counts[p][name] = int(mask.sum())
            union[p] |= mask
        mask, question, score = flagged[policy]
        better = mask & ~(score <= result.score)  # nan-safe: first hit, or a higher score
        result.remove |= mask
        result.benchmark[better] = name
        result.question[better] = question[better]
        result.score[better] = score[better]
    result.totals = {p: int(u.sum()) for p, u in union.items()}
    return result


def _scan(train: np.ndarray, questions: np.ndarray) -> _BenchmarkScan:
    n, m = len(train), len(questions)
    row_best = np.full(n, -np.inf, np.float32)
    row_arg = np.full(n, -1, np.int64)
    question_best = np.empty(m, np.float32)
    question_arg = np.empty(m, np.int64)
    chunk = max(1, CHUNK_ELEMENTS // max(1, n))
    for q0 in range(0, m, chunk):
        sims = questions[q0 : q0 + chunk] @ train.T  # (chunk, n)
        q_arg = sims.argmax(axis=1)
        question_arg[q0 : q0 + len(sims)] = q_arg
        question_best[q0 : q0 + len(sims)] = sims[np.arange(len(sims)), q_arg]
        r_arg = sims.argmax(axis=0)
        r_best = sims[r_arg, np.arange(n)]
        better = r_best > row_best
        row_best[better] = r_best[better]
        row_arg[better] = q0 + r_arg[better]
    return _BenchmarkScan(row_best, row_arg, question_best, question_arg)


def _scan_pairs(train: np.ndarray, questions: np.ndarray, thr: np.float32, params) -> _BenchmarkScan:
    """The scan restricted to pairs at or above ``thr``, found by the approximate search."""
    from platypus.stages.curate.search import approximate_pairs, build_index
    from platypus.stages.curate.vectors import InMemory

    bench = InMemory(questions)
    index = build_index(bench, params.resolved(len(questions)), log=lambda _: None)
    rows, qs, sims = approximate_pairs(index, InMemory(train), bench, thr, self_join=False, log=lambda _: None)
    scan = _BenchmarkScan(np.full(len(train), -np.inf, np.float32), np.full(len(train), -1, np.int64),
                          np.full(len(questions), -np.inf, np.float32), np.zeros(len(questions), np.int64))
    for best, arg, own, other in ((scan.row_best, scan.row_arg, rows, qs), (scan.question_best, scan.question_arg, qs, rows)):
        order = np.lexsort((sims, own))  # per owner, the most similar last: its assignment wins
        best[own[order]] = sims[order]
        arg[own[order]] = other[order]
    return scan


def _flag_all(scan: _BenchmarkScan, thr: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = scan.row_best >= thr
    return mask, scan.row_arg, np.where(mask, scan.row_best, np.nan).astype(np.float32)


def _flag_nearest(scan: _BenchmarkScan, thr: np.float32, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each question's nearest row, if over the threshold; a row elected by several questions
    is attributed to the most similar of them."""
    hits = np.flatnonzero(scan.question_best >= thr)
    hits = hits[np.argsort(scan.question_best[hits], kind="stable")]  # ascending: best written last
    mask = np.zeros(n, bool)
    question = np.full(n, -1, np.int64)
    score = np.full(n, np.nan, np.float32)
    rows = scan.question_arg[hits]
    mask[rows] = True
    question[rows] = hits
    score[rows] = scan.question_best[hits]
    return mask, question, score


def ngram_contamination(texts: list[str], benchmarks: dict[str, list[str]], n: int) -> dict[int, tuple[str, int]]:
    """Rows sharing a lower-cased alphanumeric word ``n``-gram with a test question.

    Returns row index -> (benchmark, question index) of a question holding a shared n-gram.
    Questions shorter than ``n`` words cannot match (as in GPT-3 / lm-eval decontamination).
    """
    index: dict[tuple[str, ...], tuple[str, int]] = {}
    for name, questions in benchmarks.items():
        for q, text in enumerate(questions):
            for gram in _ngrams(text, n):
                index.setdefault(gram, (name, q))
    hits: dict[int, tuple[str, int]] = {}
    for i, text in enumerate(texts):
        hit = next((index[g] for g in _ngrams(text, n) if g in index), None)
        if hit is not None:
            hits[i] = hit
    return hits


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    tokens = _TOKEN.findall(text.lower())
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]

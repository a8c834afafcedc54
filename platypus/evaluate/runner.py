"""Evaluate models on a suite with lm-eval's Python API and write results, summary, table, chart.

Each model is loaded once (``HFLM``) and each suite task is one ``simple_evaluate`` call, because
few-shot counts and limits differ per task. A task's result file carries a settings key (model
identity, task, few-shot, limit, batch size, dtype, lm-eval version, benchmark definition), so a
rerun skips tasks already done with the same settings and a model whose tasks are all done is
never loaded. Finished task results are also kept under ``<cache_dir>/eval_results/<key>.json``,
so another run evaluating the same model files with the same settings reuses them. Seeds are lm-eval's CLI defaults, so numbers match ``lm_eval`` run by hand.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from platypus.errors import PlatypusError
from platypus.evaluate.aggregate import AVERAGE, leaderboard_v1, size_weighted_mean, subject_breakdown
from platypus.evaluate.tasks import Suite, SuiteTask, build_suite, check_hub_names, subject_categories
from platypus import hardware, models
from platypus.models import DTYPES

# lm-eval's own defaults (lm_eval.defaults), pinned so a given model + settings gives fixed numbers.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # hardware.fast_precision -> eval.dtype
LM_EVAL_KEYS = ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better")


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: a folder or hub id (+ an adapter folder), or a model already in memory."""

    label: str
    pretrained: str  # model folder or hub id; for an in-memory model, a name for logs and results
    peft: str | None = None  # adapter folder, applied by HFLM(peft=...)
    dtype: str | None = None  # overrides eval.dtype
    # (model, tokenizer) already loaded, e.g. just merged in a notebook: evaluated as they are (their own
    # dtype and device), results keyed on a digest of their weights, config and vocabulary.
    loaded: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)

    def describe(self, dtype: str) -> dict[str, Any]:
        return {"label": self.label, "pretrained": self.pretrained, "peft": self.peft, "dtype": dtype,
                "in_memory": self.loaded is not None}


def plain_config(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def resolve_dtype(name: str, device: str) -> str:
    """``auto`` becomes the dtype fast on this device; results record (and are keyed on) the resolved one."""
    if name == "auto":
        return TORCH_NAMES[hardware.fast_precision(device.startswith("cuda"))]
    if name not in DTYPES:
        raise PlatypusError(f"eval.dtype={name!r}: use auto, {', '.join(sorted(DTYPES))}.")
    return name


def resolve_batch_size(eval_cfg: Mapping[str, Any]) -> int | str:
    """``eval.batch_size``: a positive integer, or ``auto``: lm-eval's largest-that-fits search on CUDA (vLLM
    batches by itself), and 1 elsewhere. lm-eval's search halves the batch on CUDA out-of-memory errors, which
    a CPU never raises: the process is killed instead (SmolLM2-135M at 25-shot grew to 23 GiB and was
    OOM-killed on a 24 GiB machine). On a 2-core CPU batch 1 was also the fastest for the v1 suite's long
    few-shot prompts: ARC 25-shot 46.7 s vs 55.3 s at batch 8, 1.9 vs 7.0 GB peak RSS (short 0-shot prompts
    gain from batching: the whole ARC at 0-shot took 387 s at batch 1, 218 s at 8)."""
    value = eval_cfg["batch_size"]
    text = str(value)
    if text == "auto" or text.startswith("auto:"):
        gpu = eval_cfg.get("backend", "prefix") == "vllm" or str(eval_cfg["device"]).startswith("cuda")
        return text if gpu else 1
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise PlatypusError(f"eval.batch_size={value!r}: use a positive integer, or 'auto' (1 on CPU, the largest "
                        f"batch that fits on CUDA).")


def task_limit(eval_cfg: Mapping[str, Any], key: str) -> int | float | None:
    """The task's limit, else the suite's; counts become ints, fractions (<1) stay floats."""
    own = eval_cfg["tasks"][key].get("limit")
    limit = own if own is not None else eval_cfg.get("limit")
    if limit is None:
        return None
    if limit <= 0:
        raise PlatypusError(f"eval.tasks.{key}.limit / eval.limit={limit}: use a count >= 1 or a fraction in (0, 1).")
    return int(limit) if limit >= 1 else float(limit)


def model_identity(model: EvalModel) -> dict[str, Any]:
    """The model's (and adapter's) identity as manifests record it: file hashes, or hub id + revision;
    for a model in memory, a digest of what it computes with."""
    if model.loaded is not None:
        return {"in_memory": in_memory_digest(*model.loaded)}
    identity: dict[str, Any] = {}
    for role, where in (("pretrained", model.pretrained), ("peft", model.peft)):
        if where is not None:
            folder = Path(where).expanduser()
            identity[role] = models.identity(folder.resolve() if folder.is_dir() else where)
    return identity


def in_memory_digest(net, tokenizer) -> str:
    """sha256 over the config, every parameter and buffer (name, dtype, shape, bytes) and the vocabulary."""
    import torch

    digest = hashlib.sha256(json.dumps(net.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def model_dtype(model: EvalModel, eval_cfg: Mapping[str, Any]) -> str:
    """The dtype the model is evaluated in: an in-memory model's own, else eval.dtype (or the model's override)."""
    if model.loaded is not None:
        return str(next(model.loaded[0].parameters()).dtype).removeprefix("torch.")
    return resolve_dtype(model.dtype or eval_cfg["dtype"], eval_cfg["device"])


def _key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


BACKENDS = ("prefix", "hf", "vllm")


def load_lm(model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any]):
    """The lm-eval model for ``eval.backend``: ours (``prefix``, HFLM computing each shared context once),
    lm-eval's HFLM (``hf``) or its vLLM backend; a separate function so tests can observe loads."""
    backend = eval_cfg.get("backend", "prefix")
    if backend not in BACKENDS:
        raise PlatypusError(f"eval.backend={backend!r}: use one of {list(BACKENDS)}.")
    if backend == "vllm":
        if model.loaded is not None:
            raise PlatypusError(f"Model '{model.label}' is in memory, and eval.backend=vllm loads models from folders: "
                                f"save it with save_pretrained() and pass the folder, or use eval.backend=prefix.")
        return _load_vllm(model, dtype, eval_cfg)
    from lm_eval.models.huggingface import HFLM

    from platypus.evaluate.prefix import PrefixLM

    cls, extra = HFLM, {}
    if backend == "prefix":  # an explicit eval.batch_size also caps the answers scored per pass
        explicit = str(eval_cfg["batch_size"]).isdigit()
        cls, extra = PrefixLM, {"kv_cache_gb": eval_cfg.get("kv_cache_gb", 4.0),
                                "answers_per_pass": int(eval_cfg["batch_size"]) if explicit else None}
    if model.loaded is not None:
        net, tokenizer = model.loaded
        return cls(pretrained=net, tokenizer=tokenizer, batch_size=resolve_batch_size(eval_cfg), **extra)
    return cls(
        pretrained=model.pretrained,
        peft=model.peft,
        dtype=dtype,
        batch_size=resolve_batch_size(eval_cfg),
        device=eval_cfg["device"],
        **extra,
    )


def _load_vllm(model: EvalModel, dtype: str, eval_cfg: Mapping[str, Any]):
    """lm-eval's vLLM backend: same tasks and metrics, much faster on GPUs. An adapter is applied by
    vLLM's LoRA support (``lora_local_path``); results are keyed on the backend like any setting."""
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None:
        raise PlatypusError("eval.backend=vllm needs vLLM: `pip install 'lm-eval[vllm]'` on a CUDA machine, "
                            "or use eval.backend=prefix.")
    if not torch.cuda.is_available():
        raise PlatypusError("eval.backend=vllm needs a CUDA GPU; this machine has none. Use eval.backend=prefix.")
    from lm_eval.models.vllm_causallms import VLLM

    kwargs: dict[str, Any] = {"pretrained": model.pretrained, "dtype": dtype, "batch_size": resolve_batch_size(eval_cfg)}
    if model.peft:
        rank = json.loads((Path(model.peft) / "adapter_config.json").read_text())["r"]
        kwargs |= {"lora_local_path": model.peft, "max_lora_rank": max(16, int(rank))}
    return VLLM(**kwargs)


def _run_task(lm, task: SuiteTask, task_manager, num_fewshot: int, limit) -> dict[str, Any]:
    import lm_eval

    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(task.lm_eval_names),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=task_manager,
        log_samples=False,
        **SEEDS,
    )
    return {key: output.get(key, {}) for key in LM_EVAL_KEYS}


def evaluate_models(
    eval_cfg: Mapping[str, Any],
    benchmarks_cfg: Mapping[str, Any],
    models: list[EvalModel],
    out_dir: Path,
    cache_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every suite task on every model; the first model is the base of the table's deltas."""
    import lm_eval
    from lm_eval.utils import handle_non_serializable

    if not models:
        raise PlatypusError("No models to evaluate: give evaluate.models or run the train/merge stages first.")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels) or any(not label or "/" in label for label in labels):
        raise PlatypusError(f"Model labels must be unique, non-empty and contain no '/': got {labels}.")
    eval_cfg, benchmarks_cfg = plain_config(eval_cfg), plain_config(benchmarks_cfg)
    out_dir = Path(out_dir)
    suite = build_suite(eval_cfg, benchmarks_cfg, out_dir / "tasks", Path(cache_dir))
    task_manager = suite.task_manager()
    if suite.source == "hub":
        check_hub_names(suite, benchmarks_cfg, task_manager)
    bs = resolve_batch_size(eval_cfg)

    all_results: dict[str, Any] = {}
    for model in models:
        dtype = model_dtype(model, eval_cfg)
        identity = model_identity(model)
        lm = None
        tasks_out, seconds, task_settings = {}, {}, {}
        for key, task in suite.tasks.items():
            task_cfg = eval_cfg["tasks"][key]
            bench = benchmarks_cfg["sets"][task.benchmark]
            settings = {
                "model": identity,
                "task": key,
                "lm_eval_tasks": task.lm_eval_names,
                "benchmark": {"source": suite.source, **bench},
                "num_fewshot": int(task_cfg["num_fewshot"]),
                "limit": task_limit(eval_cfg, key),
                "batch_size": bs,
                "dtype": dtype,
                "device": eval_cfg["device"],
                "backend": eval_cfg.get("backend", "prefix"),
                "lm_eval_version": lm_eval.__version__,
                "seeds": SEEDS,
            }
            key_hash = _key(settings)
            path = out_dir / model.label / f"{key}.json"
            shared = Path(cache_dir) / "eval_results" / f"{key_hash}.json"  # across runs: same model + settings
            cached = json.loads(path.read_text()) if path.is_file() else None
            if cached and cached.get("key") == key_hash:
                log(f"[evaluate] {model.label}/{key}: reusing {path}")
            elif shared.is_file():
                cached = json.loads(shared.read_text())
                _write_atomic(path, cached)
                log(f"[evaluate] {model.label}/{key}: reusing the identical evaluation cached in {shared}")
            else:
                if lm is None:
                    log(f"[evaluate] loading {model.label}: {model.pretrained}" + (f" + {model.peft}" if model.peft else ""))
                    lm = load_lm(model, dtype, eval_cfg)
                log(f"[evaluate] {model.label}/{key}: {len(task.lm_eval_names)} lm-eval task(s), "
                    f"{settings['num_fewshot']}-shot, limit {settings['limit']}")
                start = time.perf_counter()
                before = dataclasses.replace(lm.counts) if hasattr(lm, "counts") else None
                output = _run_task(lm, task, task_manager, settings["num_fewshot"], settings["limit"])
                cached = {"key": key_hash, "settings": settings, "seconds": time.perf_counter() - start, "lm_eval": output}
                if before is not None:  # the prefix scorer: tokens HFLM would have run, and tokens computed
                    cached["tokens"] = {"requested": lm.counts.requested - before.requested,
                                        "computed": lm.counts.computed - before.computed}
                cached = json.loads(json.dumps(cached, default=handle_non_serializable))
                _write_atomic(path, cached)
                _write_atomic(shared, cached)
                tokens = cached.get("tokens")
                shared = f" ({tokens['computed']:,} of {tokens['requested']:,} tokens computed)" if tokens else ""
                log(f"[evaluate] {model.label}/{key}: {cached['seconds']:.1f} s{shared}")
            tasks_out[key] = cached["lm_eval"]
            seconds[key] = cached["seconds"]
            task_settings[key] = {k: settings[k] for k in ("num_fewshot", "limit")}
            if suite.source == "bundled" and bench.get("note"):
                task_settings[key]["note"] = bench["note"]
        del lm
        gc.collect()
        all_results[model.label] = {
            "model": model.describe(dtype),
            "settings": {
                "batch_size": bs,
                "dtype": dtype,
                "device": eval_cfg["device"],
                "backend": eval_cfg.get("backend", "prefix"),
                "benchmarks_source": suite.source,
                "lm_eval_version": lm_eval.__version__,
                "seeds": SEEDS,
                "tasks": task_settings,
            },
            "seconds": seconds,
            "tasks": tasks_out,
        }

    summary = {
        label: leaderboard_v1(
            {key: res["tasks"][key]["results"] for key in suite.tasks}, eval_cfg["tasks"]
        )
        for label, res in all_results.items()
    }
    subjects = _subject_results(suite, eval_cfg, benchmarks_cfg, all_results)
    table = markdown_table(summary, subjects, eval_cfg)
    files = {
        "results": out_dir / "results.json",
        "summary": out_dir / "summary.json",
        "subjects": out_dir / "subjects.json",
        "table": out_dir / "table.md",
        "chart": out_dir / "chart.png",
    }
    files["results"].write_text(json.dumps(all_results, indent=1, default=handle_non_serializable))
    files["summary"].write_text(json.dumps(summary, indent=1))
    files["subjects"].write_text(json.dumps(subjects, indent=1))
    files["table"].write_text(table)
    bar_chart(summary, files["chart"])
    return {"summary": summary, "subjects": subjects, "table": table, "results": all_results, "files": files}


def _write_atomic(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=1))
    tmp.replace(path)


def _subject_results(
    suite: Suite, eval_cfg: Mapping[str, Any], benchmarks_cfg: Mapping[str, Any], all_results: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """{task: {label: {"categories", "subjects", "weighted_by_size"}}} for per-subject tasks (MMLU)."""
    out: dict[str, dict[str, Any]] = {}
    for key, task in suite.tasks.items():
        if not task.subjects:
            continue
        categories = subject_categories(task.benchmark, benchmarks_cfg["sets"][task.benchmark])
        metric_key = eval_cfg["tasks"][key]["lm_eval_metric"]
        out[key] = {}
        for label, res in all_results.items():
            lm_out = res["tasks"][key]
            breakdown = subject_breakdown(lm_out["results"], metric_key, task.subjects, categories)
            sizes = {name: int(n["effective"]) for name, n in lm_out["n-samples"].items()}
            breakdown["weighted_by_size"] = size_weighted_mean(lm_out["results"], metric_key, sizes)
            out[key][label] = breakdown
    return out


# --------------------------------------------------------------------------- table and chart
def _cell(value: float | None, base: float | None, is_base: bool) -> str:
    if value is None:
        return "–"
    if is_base or base is None:
        return f"{value:.4f}"
    return f"{value:.4f} ({value - base:+.4f})"


def _value(entry: Any) -> float | None:
    if entry is None:
        return None
    return float(entry) if not isinstance(entry, Mapping) else float(next(iter(entry.values())))


def markdown_table(summary: Mapping[str, Any], subjects: Mapping[str, Any], eval_cfg: Mapping[str, Any]) -> str:
    """Model x benchmark with deltas vs the first model, then per category and per subject."""
    labels = list(summary)
    base = labels[0]
    columns = list(eval_cfg["tasks"]) + ([AVERAGE] if any(AVERAGE in s for s in summary.values()) else [])
    heads = [
        f"{key} {eval_cfg['tasks'][key]['metric']} ({eval_cfg['tasks'][key]['num_fewshot']}-shot)"
        if key in eval_cfg["tasks"] else "average"
        for key in columns
    ]
    lines = ["| model | " + " | ".join(heads) + " |", "|---" * (len(columns) + 1) + "|"]
    for label in labels:
        cells = [
            _cell(_value(summary[label].get(c)), _value(summary[base].get(c)), label == base) for c in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, per_label in subjects.items():
        for part, noun in (("categories", "category"), ("subjects", "subject")):
            lines += ["", f"### {key} per {noun}", ""]
            lines += [f"| {noun} | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
            for name in per_label[base][part]:
                cells = [
                    _cell(per_label[label][part].get(name), per_label[base][part].get(name), label == base)
                    for label in labels
                ]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(summary: Mapping[str, Any], path: Path) -> None:
    """Grouped bars: benchmarks (and the average) on x, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    columns = list(dict.fromkeys(c for s in summary.values() for c in s))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(columns)), 4))
    for i, label in enumerate(labels):
        values = [_value(summary[label].get(c)) or 0.0 for c in columns]
        ax.bar([x + (i - (len(labels) - 1) / 2) * width for x in range(len(columns))], values, width, label=label)
    ax.set_xticks(range(len(columns)), columns, rotation=15)
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

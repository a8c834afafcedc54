"""Every range / enum setting of a composed config, checked before any stage starts.

The typed schema (``platypus/config.py``) already refuses unknown keys and wrong types at
composition; :func:`check_config` refuses the values a type cannot express (a threshold outside
(0, 1], an unknown recipe, a batch size of 0, QLoRA without CUDA, ...) so that a typo fails in the
first seconds, not after hours of training. Each check is the stage module's own (the stage runs it
again before its work), so a message is the same whichever catches it: it names the key, the bad
value, the valid values and what to do.
"""

from __future__ import annotations

from typing import Any

from platypus.errors import PlatypusError

LOGGER_NAMES = ("none", "wandb")
LOGGER_MODES = ("offline", "online", "disabled")
EVALUATE_INCLUDE = ("base", "adapter", "merged")


def check_config(cfg: Any) -> None:
    """Raise :class:`PlatypusError` for the first invalid value in ``cfg`` (a composed RootConfig)."""
    from platypus import models
    from platypus.curate import validate as check_curate
    from platypus.data.sources import check_mixture
    from platypus.merge import check_settings as check_merge
    from platypus.pipeline import check_stages
    from platypus.train import check_settings as check_train

    stages = list(cfg.stages)
    check_stages(stages)
    if "curate" in stages:  # each section is checked when a stage that reads it runs
        check_mixture(cfg.data)
        check_curate(cfg.curate)
    models.torch_dtype(cfg.model.dtype, "model.dtype")
    if "train" in stages:
        models.check_quantization(cfg.model.quantization)  # QLoRA: CUDA + bitsandbytes, before curate runs
        check_train(cfg.train, cfg.lora)
    else:
        _quantization_name(cfg)
    if "merge" in stages:
        check_merge(cfg.merge)
    check_eval(cfg)
    check_inputs(cfg)
    if cfg.logger.name not in LOGGER_NAMES:
        raise PlatypusError(
            f"logger.name={cfg.logger.name!r}: use one of {', '.join(LOGGER_NAMES)} (the config group: logger=wandb|none)."
        )
    if cfg.logger.name == "wandb" and cfg.logger.mode not in LOGGER_MODES:
        raise PlatypusError(
            f"logger.mode={cfg.logger.mode!r}: use one of {', '.join(LOGGER_MODES)} (offline: sync later with "
            f"`wandb sync`)."
        )


def _quantization_name(cfg: Any) -> None:
    from platypus.models import QUANTIZATIONS

    if cfg.model.quantization not in QUANTIZATIONS:
        raise PlatypusError(
            f"model.quantization={cfg.model.quantization!r}: use one of {', '.join(QUANTIZATIONS)} "
            f"(4bit/8bit: QLoRA, CUDA only)."
        )


def check_eval(cfg: Any) -> None:
    from omegaconf import OmegaConf

    from platypus.evaluate.backends import resolve_batch_size, resolve_dtype
    from platypus.evaluate.documents import SUBSETS, task_limit
    from platypus.evaluate.tasks import SOURCES, resolve_benchmark

    if cfg.benchmarks.source not in SOURCES:
        raise PlatypusError(
            f"benchmarks.source={cfg.benchmarks.source!r}: use one of {', '.join(SOURCES)} (the config group: "
            f"benchmarks=bundled|hub)."
        )
    unknown = [m for m in cfg.evaluate.include if m not in EVALUATE_INCLUDE]
    if unknown:
        raise PlatypusError(
            f"evaluate.include={list(cfg.evaluate.include)}: {unknown} unknown; use {', '.join(EVALUATE_INCLUDE)}."
        )
    if "evaluate" not in cfg.stages:
        return
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    resolve_batch_size(eval_cfg)
    resolve_dtype(cfg.eval.dtype, cfg.eval.device)
    if cfg.eval.subset not in SUBSETS:
        raise PlatypusError(f"eval.subset={cfg.eval.subset!r}: use random (a seeded random sample per task) or first.")
    benchmarks = OmegaConf.to_container(cfg.benchmarks, resolve=True)
    if not eval_cfg["tasks"]:
        raise PlatypusError(f"eval.tasks of suite '{cfg.eval.name}' is empty: nothing to evaluate; pick eval=quick or "
                            f"eval=leaderboard_v1.")
    for key, task_cfg in eval_cfg["tasks"].items():
        resolve_benchmark(key, task_cfg, benchmarks)
        task_limit(eval_cfg, key)
        if task_cfg["num_fewshot"] < 0:
            raise PlatypusError(f"eval.tasks.{key}.num_fewshot={task_cfg['num_fewshot']} must be >= 0.")


def check_inputs(cfg: Any) -> None:
    """The files and models the selected stages read, where the config names them: without loading or
    converting anything (a hub id is checked against the local cache when HF_HUB_OFFLINE=1)."""
    from pathlib import Path

    from platypus import models
    from platypus.merge import adapter_config

    stages = set(cfg.stages)
    explicit_models = list(cfg.evaluate.models)
    if stages & {"train", "merge"} or ("evaluate" in stages and not explicit_models):
        models.resolve(cfg.model.path, cfg.model.gguf_file, cfg.cache_dir, "model.path", convert=False)
    if "train" in stages and "curate" not in stages and cfg.train.dataset and not Path(cfg.train.dataset).is_file():
        raise PlatypusError(
            f"train.dataset={cfg.train.dataset!r}: no such file. Give a curated JSONL (e.g. <run>/curate/train.jsonl), "
            f"or add curate to stages and leave train.dataset=null."
        )
    if "merge" in stages and cfg.merge.recipe != "none":
        for entry in cfg.merge.adapters:
            if entry != "train":
                adapter_config(Path(entry))
    if "evaluate" in stages:
        for entry in explicit_models:
            models.resolve(entry, None, cfg.cache_dir, "evaluate.models", convert=False)

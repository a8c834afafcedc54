"""The schema's field vocabulary: every choice set (each spelled once), the field helpers that attach a choice
set or a range to a field (:func:`choice`, :func:`ranged`), and the one function that checks them all
(:func:`validate`). The fields themselves are declared in :mod:`platypus.config`."""

from __future__ import annotations

import typing
from enum import Enum
from dataclasses import field, fields, is_dataclass
from typing import Any, Callable

from omegaconf import MISSING

# The choice sets, each spelled once (modules that need them import them from here).


class Role(str, Enum):
    """The models a run can evaluate: its base, and what its stages make (target: merge.target, when not the base)."""

    base = "base"
    target = "target"
    adapter = "adapter"
    merged = "merged"

    def __str__(self) -> str:
        return self.value


MODEL_ROLES = tuple(role.value for role in Role)
DTYPES = ("bfloat16", "float16", "float32")
QUANTIZATIONS = ("none", "4bit", "8bit")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BENCHMARK_SOURCES = ("bundled", "hub")
SUBSETS = ("random", "first")
FEWSHOT_STREAMS = ("lm_eval", "v1")  # eval.fewshot_stream: platypus/stages/evaluate/fewshot_v1.py
DEDUP_KEEP = ("first", "longest")
DEDUP_SCREENS = ("auto", "off", "bf16")
SEARCHES = ("auto", "exact", "approximate")  # curate.steps.dedup.search / curate.steps.decontaminate.search
DECONTAMINATION_POLICIES = ("all", "nearest_only")
ON_BAD_ROW = ("error", "skip")
LORA_BIAS = ("none", "all", "lora_only")
RESUME = ("auto", "never")
LOSS_AVERAGES = ("token", "sequence")  # train.loss_average: platypus/stages/train/loss.py
CACHE_VERIFY = ("fast", "full")  # how a finished result is checked before reuse
# summary.json keys of paired deltas: vs the run's first model; the merged model's vs the merge target
DELTA_KEYS = ("delta", "delta_target")

POSITIVE = "{key}={value} must be a positive integer; set {key}=<n >= 1>."
NOT_KNOWN = "{key}={value!r} is not known; use one of {options} ({key}=...)."
SIMILARITY = ("{key}={value} is outside (0, 1]; it is a cosine similarity: set {key} to a value in (0, 1], "
              "e.g. {key}=0.8 (the paper's).")
DTYPE = "{key}={value!r} is not a dtype this project knows; use one of {options}."


def choice(default: Any, options: tuple, message: str = "{key}={value!r}: use one of {options}.") -> Any:
    """A field whose value (or each value, for a list) is one of ``options``."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(**factory, metadata={"choices": options, "message": message})


def ranged(default: Any, test: Callable[[Any], bool], message: str = POSITIVE) -> Any:
    """A field whose value (when not null) passes ``test``."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(**factory, metadata={"test": test, "message": message})


def positive(value: Any) -> bool:
    return value >= 1


def unit_interval(value: Any) -> bool:
    return 0 < value <= 1


def unwrap_optional(tp: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _check_field(key: str, value: Any, meta: Any) -> None:
    from platypus.runtime.errors import PlatypusError

    if "choices" in meta:
        options = meta["choices"]
        values = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "_iter_ex") else [value]
        unknown = [v for v in values if v not in options]
        if unknown:
            shown = list(value) if len(values) != 1 or isinstance(value, (list, tuple)) else value
            raise PlatypusError(meta["message"].format(key=key, value=shown, unknown=unknown,
                                                       options=", ".join(options), options_list=list(options)))
    if "test" in meta and not meta["test"](value):
        raise PlatypusError(meta["message"].format(key=key, value=value))


def validate(cfg: Any, schema: type, prefix: str = "") -> None:
    """Every declared choice and range of a composed config (or of one node, with its ``schema`` and key
    ``prefix``): raises PlatypusError with the field's message for the first value outside them."""
    from omegaconf import OmegaConf

    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        value = OmegaConf.select(cfg, f.name, throw_on_missing=False) if OmegaConf.is_config(cfg) else cfg[f.name]
        if value is None:
            continue
        key, tp = f"{prefix}{f.name}", unwrap_optional(hints[f.name])
        if is_dataclass(tp):
            validate(value, tp, f"{key}.")
        elif typing.get_origin(tp) in (dict, typing.Dict) and is_dataclass(typing.get_args(tp)[1]):
            for name, item in value.items():
                validate(item, typing.get_args(tp)[1], f"{key}.{name}.")
        elif f.metadata and value != MISSING and value != "???":
            _check_field(key, value, f.metadata)

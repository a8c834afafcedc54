"""The schema of the data mixture, curation and the benchmark sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from platypus.fields import BenchmarkSource, OnBadRow, positive, ranged, unit_interval


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
    on_bad_row: OnBadRow = OnBadRow.error  # skip: drop and count unreadable rows
    # The steps in the order they run: name -> a platypus.stages.curate.steps.Step named by _target_, its
    # parameters beside it (curate.steps.dedup.threshold, ...; built by platypus.plugins.build). Listed = run.
    steps: Dict[str, Any] = field(default_factory=dict)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # The benchmarks whose test questions the decontamination steps compare the rows with; null: every entry of
    # benchmarks.sets whose facts.decontaminate is true.
    benchmarks: Optional[List[str]] = None


# --------------------------------------------------------------------------- benchmarks
@dataclass
class BenchmarkPlan:
    """What plan=true assumes for a benchmark (platypus/stages/evaluate/budget.py): the documents of its evaluated
    split, and the tokens run per document at its v1 few-shot count, computed by our scorer (each shared context
    once) and requested (what HFLM and vLLM run)."""

    documents: int = ranged(MISSING, positive)
    subjects: int = ranged(1, positive)  # a limit applies per subject (MMLU: 57)
    tokens_computed: float = MISSING
    tokens_requested: float = MISSING


@dataclass
class BenchmarkFacts:
    """What a run does with a benchmark beside reading its data (not part of an evaluation result's key)."""

    v1_average: bool = False  # counts in the Open LLM Leaderboard v1 average (leaderboard_avg)
    decontaminate: bool = False  # curate compares the rows with its test questions (unless curate.benchmarks is set)
    v1_fewshot_stream: bool = False  # eval.fewshot_stream=v1 replays the v1 harness's exemplars for it
    plan: Optional[BenchmarkPlan] = None  # null: plan=true leaves its evaluation out


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
    facts: BenchmarkFacts = field(default_factory=BenchmarkFacts)


@dataclass
class BenchmarksConfig:
    source: BenchmarkSource = BenchmarkSource.bundled  # the config group: benchmarks=bundled|hub
    sets: Dict[str, BenchmarkConfig] = field(default_factory=dict)

"""Curate steps: each one a :class:`Step` dataclass named by ``_target_`` (its fields are its parameters), built
by platypus.plugins.build. A step may live in the user's own package.

``curate.steps`` (conf/curate/*.yaml) maps a name to each step, in the order they run; a step runs when it is
listed (``~curate.steps.<name>`` removes one). A step reads the rows still kept (``state.current``), removes some
with ``state.keep(...)`` and records its settings for report.json in ``state.settings``.
"""

from __future__ import annotations

import abc
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
from omegaconf import OmegaConf

from platypus import plugins
from platypus.fields import validate
from platypus.stages.curate.audit import Removal


def build(name: str, node: Any) -> "Step":
    """The step ``curate.steps.<name>`` names, its parameters checked (types, unknown keys, ranges)."""
    where = f"curate.steps.{name}"
    step = plugins.build(node, Step, where)
    validate(OmegaConf.structured(step), type(step), f"{where}.")  # its ranges and choices, typed
    return step


def build_all(cfg: Any) -> list["Step"]:
    """The steps of ``curate.steps``, in the order they run."""
    return [build(name, node) for name, node in cfg.steps.items()]


@dataclass
class Step(abc.ABC):
    """One curate step: its fields are its parameters (``curate.steps.<name>.<field>``)."""

    label: ClassVar[str]  # its name in report.json and removed.csv
    metric: ClassVar[str]  # the name of its removal count
    needs_questions: ClassVar[bool] = False  # compares rows with the benchmarks' test questions

    @abc.abstractmethod
    def run(self, state: "State") -> None:
        """Remove rows with ``state.keep(...)``; record removals, metrics and settings in ``state``."""


@dataclass
class State:
    """The rows and what every step did to them."""

    cfg: Any  # the curate config
    rows: list[dict]
    questions: dict[str, list[str]]  # benchmark -> test questions
    embedder_factory: Callable[[], Any]
    current: list[int] = field(default_factory=list)  # indices into rows still kept, in order
    embeddings: np.ndarray | None = None  # aligned with current, once a step embedded the rows
    removed: list[Removal] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # per-step thresholds and counts, for report.json
    metrics: dict[str, int] = field(default_factory=dict)
    neighbour: np.ndarray | None = None  # nearest kept row's similarity (histogram)
    neighbour_threshold: float | None = None
    benchmark_nearest: np.ndarray | None = None  # nearest test question's similarity (histogram)
    benchmark_threshold: float | None = None
    _embedder: Any = None

    def __post_init__(self) -> None:
        self.current = list(range(len(self.rows)))
        self.steps.append(self.record("load", self.current, 0.0))

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self.embedder_factory()
        return self._embedder

    def texts(self) -> list[str]:
        """What is embedded and compared: ``instruction + " " + input``, as the paper does."""
        return [self.rows[i]["instruction"] + " " + self.rows[i]["input"] for i in self.current]

    def embedded(self) -> np.ndarray:
        if self.embeddings is None:
            t0 = time.perf_counter()
            self.embeddings = self.embedder.encode(self.texts())
            self.timings["embed_train"] = time.perf_counter() - t0
        return self.embeddings

    def index_params(self):
        """The approximate search's index settings (curate.search)."""
        from platypus.stages.curate.search import IndexParams

        return IndexParams(nlist=self.cfg.search.nlist, nprobe=self.cfg.search.nprobe)

    def row(self, local: int) -> dict:
        return self.rows[self.current[local]]

    def keep(self, step: str, kept: np.ndarray | list[int], seconds: float) -> None:
        """Keep the rows at local positions ``kept`` (a list of indices, in output order, or a bool mask)."""
        before = self.current
        if isinstance(kept, np.ndarray) and kept.dtype == bool:
            if self.embeddings is not None:
                self.embeddings = self.embeddings[kept]
            kept = np.flatnonzero(kept)
        elif self.embeddings is not None:
            self.embeddings = self.embeddings[list(kept)]
        self.current = [before[i] for i in kept]
        self.timings[step] = seconds
        self.steps.append(self.record(step, before, seconds))

    def record(self, step: str, before: list[int], seconds: float) -> dict:
        """Rows in/out of one step, overall and per data_source."""
        rows_in = Counter(self.rows[i]["data_source"] for i in before)
        rows_out = Counter(self.rows[i]["data_source"] for i in self.current)
        return {"step": step, "rows_in": len(before), "rows_out": sum(rows_out.values()), "seconds": round(seconds, 3),
                "per_source": {s: {"in": rows_in[s], "out": rows_out[s]} for s in sorted(rows_in)}}


def row_text(row: dict) -> str:
    return (row["instruction"] + " " + row["input"]).strip()

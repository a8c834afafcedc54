"""Curate steps: each one a module here with ``METRIC`` (its removal count's name) and ``run(state)``.

``curate.steps`` (conf/curate/*.yaml) lists them in the order they run; a step whose section says
``enabled: false`` is skipped. A step reads the rows still kept (``state.current``), removes some with
``state.keep(...)`` and records its settings for report.json in ``state.settings``.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from platypus.runtime.errors import PlatypusError
from platypus.stages.curate.audit import Removal


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def get(name: str):
    """The step module ``name`` (``platypus/stages/curate/steps/<name>.py``)."""
    if name not in available():
        raise PlatypusError(f"curate.steps: unknown step {name!r}; the steps are {available()} "
                            f"(modules in platypus/stages/curate/steps/).")
    return importlib.import_module(f"{__name__}.{name}")


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
    benchmark_nearest: np.ndarray | None = None  # nearest test question's similarity (histogram)
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


def enabled(cfg: Any, name: str) -> bool:
    """A step runs when it is listed in curate.steps and its own section (if any) is enabled."""
    module = get(name)
    section = getattr(module, "SECTION", None)
    return name in cfg.steps and (section is None or cfg[section].enabled)

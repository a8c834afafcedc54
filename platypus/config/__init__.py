"""Typed schema of every config group: its keys, types, choice sets and ranges.

Registered with Hydra's ConfigStore as the primary config's schema (``conf/config.yaml`` lists
``platypus_schema`` first in its defaults), so a misspelt key or a wrong type anywhere in ``conf/`` or on
the command line fails at composition, before any work starts. A choice among names is an Enum of
:mod:`platypus.fields` (checked at composition too); a range, which a type cannot express, is declared next to its
field (:func:`ranged`) and checked by one generic function, :func:`platypus.fields.validate`, with the field's own
message: the config is the validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from platypus.config.data import (
    BenchmarkConfig, BenchmarkFacts, BenchmarkPlan, BenchmarksConfig, CurateConfig, DataConfig, EmbeddingConfig,
    SearchConfig, SourceConfig,
)
from platypus.config.evaluate import EvalConfig, EvalTaskConfig, EvaluateConfig, PublishedConfig
from platypus.config.model import LoraConfig, MergeConfig, ModelConfig, TrainConfig
from platypus.fields import CacheVerify, choice_message, choice_of, ranged

__all__ = [  # the sections, importable from here
    "BenchmarkConfig", "BenchmarkFacts", "BenchmarkPlan", "BenchmarksConfig", "CurateConfig", "DataConfig",
    "EmbeddingConfig", "EvalConfig", "EvalTaskConfig", "EvaluateConfig", "LoraConfig", "MergeConfig", "ModelConfig", "PublishedConfig", "RootConfig",
    "SearchConfig", "SourceConfig", "TrainConfig", "compose", "conf_dir", "filled", "register",
]
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
    stage_cache_verify: CacheVerify = CacheVerify.fast
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


def filled(schema: type, node: Any, where: str) -> dict:
    """``node`` (a composed section, or a partial mapping from Python) with every field of ``schema``, typed (a
    choice as its string): stage code reads its section through this, so a default lives only in the schema.
    ``where``: the section's key, named by the paragraph for a value outside its choice set."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from platypus.runtime.errors import PlatypusError

    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ValidationError as error:
        options = choice_of(schema, str(error.full_key))
        if options is None:
            raise
        raise PlatypusError(choice_message(f"{where}.{error.full_key}", error.value, options)) from None
    return OmegaConf.to_container(typed, resolve=True, enum_to_str=True)


def register() -> None:
    ConfigStore.instance().store(name="platypus_schema", node=RootConfig)

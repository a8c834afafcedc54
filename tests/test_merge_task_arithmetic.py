"""merge=task_arithmetic (platypus/stages/merge/recipes/task_arithmetic.py, conf/merge/task_arithmetic.yaml): the
folded weights are exactly W + scale * Σ s_i ΔW_i, a negative coefficient subtracts an adapter, and bad settings
are refused before any work. The recipe is the example of "a merge recipe = one module + one YAML + one test"."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from platypus.config import conf_dir
from platypus.runtime.errors import PlatypusError
from platypus.stages.merge.fold import merge
from tests.helpers import MODEL, assert_weights, factors, merge_cfg, random_adapter, saved


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("task_vectors")
    return [random_adapter(tiny_model_dir, root / "a", r=4, alpha=8, seed=1),
            random_adapter(tiny_model_dir, root / "b", r=8, alpha=4, seed=2,
                           targets=("gate_proj", "up_proj", "down_proj", "q_proj"))]


def task_arithmetic(**params):
    preset = OmegaConf.load(conf_dir() / "merge" / "task_arithmetic.yaml")
    node = {**OmegaConf.to_container(preset.recipe), **params}
    return OmegaConf.merge(merge_cfg(), {"recipe": node})


def test_signed_task_vectors_are_added_exactly(tiny_model_dir, tmp_path, adapters):
    scales, scale = [1.0, -0.5], 0.8
    card = merge(task_arithmetic(scales=scales, scale=scale), MODEL, str(tiny_model_dir), adapters, tmp_path,
                 str(tmp_path), seed=0)
    expected = {k: v.clone() for k, v in saved(tiny_model_dir).items()}
    for adapter, s in zip(adapters, scales):
        for key, (a, b, scaling) in factors(adapter).items():
            expected[key] += scale * s * scaling * (b @ a)
    assert_weights(saved(tmp_path / "model"), expected)
    assert card["check_max_abs_error"] <= 1e-4


@pytest.mark.parametrize("params,message", [
    ({"scales": [1.0]}, "merge.recipe.scales has 1 value(s) for 2 adapter(s)"),
    ({"scales": [1.0, 1.0], "scale": 0.0}, "every scale is 0"),
])
def test_bad_settings_are_refused(tiny_model_dir, tmp_path, adapters, params, message):
    with pytest.raises(PlatypusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge(task_arithmetic(**params), MODEL, str(tiny_model_dir), adapters, tmp_path, str(tmp_path), seed=0)
    assert not (tmp_path / "model").exists()

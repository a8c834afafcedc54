"""platypus.plugins.build: a config node naming a dataclass with _target_ becomes its instance, or one paragraph."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from platypus.plugins import build
from platypus.runtime.errors import PlatypusError
from platypus.runtime.tracking import Tracker, WandbTracker


@dataclass
class Counter(Tracker):
    """A tracker defined outside platypus/ (here, in a test module), with one ranged parameter."""

    every: int = 1

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every={self.every} must be >= 1")


HERE = f"{__name__}.Counter"


def test_builds_the_named_class_with_typed_parameters():
    assert build({"_target_": HERE, "every": "3"}, Tracker, "logger") == Counter(every=3)
    wandb = build({"_target_": "platypus.runtime.tracking.WandbTracker", "mode": "online"}, Tracker, "logger")
    assert isinstance(wandb, WandbTracker) and wandb.mode.value == "online" and wandb.project == "platypus"


@pytest.mark.parametrize("node,message", [
    ({"_target_": HERE, "evry": 2}, "logger.evry: Counter has no such parameter. Did you mean logger.every? It takes: every."),
    ({"_target_": HERE, "every": "often"}, "logger.every: Value 'often' of type 'str' could not be converted to Integer"),
    ({"_target_": HERE, "every": 0}, "logger (Counter): every=0 must be >= 1"),
    ({"_target_": "acme.trackers.Nope"}, "logger._target_='acme.trackers.Nope' cannot be imported (ModuleNotFoundError"),
    ({"_target_": "collections.OrderedDict"}, "logger._target_='collections.OrderedDict' is not a Tracker dataclass"),
    ({"every": 2}, "logger names no class: give it `_target_: <package.module.Class>`, a Tracker"),
])
def test_a_bad_node_is_one_paragraph_naming_the_key(node, message):
    with pytest.raises(PlatypusError) as info:
        build(node, Tracker, "logger")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)

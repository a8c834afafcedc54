"""Plug-ins: what users extend (stages, curate steps, merge recipes, evaluation backends, data source kinds,
trackers) is a dataclass named by ``_target_`` in its YAML; its fields are its parameters, their defaults live
only there, and its ``__post_init__`` checks their ranges. The class may live in the user's own package, with its
YAML added through ``hydra.searchpath``.

:func:`build` turns a config node into the instance, or one paragraph naming the key that is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from platypus.fields import choice_message, choice_of
from platypus.runtime.errors import PlatypusError

T = TypeVar("T")
TARGET = "_target_"


def target_class(node: Any, base: type[T], where: str) -> type[T]:
    """The class ``node._target_`` names, checked to be a dataclass derived from ``base``."""
    if node is not None and not hasattr(node, "get"):
        raise PlatypusError(f"{where}={node!r}: a plug-in is a node naming its class (`{where}._target_=<package.module."
                            f"Class>` and its parameters); pick an option of its config group instead (e.g. "
                            f"{where.split('.')[0]}=<option>), or give the node in a config file.")
    name = node.get(TARGET) if node is not None else None
    if not name:
        raise PlatypusError(f"{where} names no class: give it `{TARGET}: <package.module.Class>`, a {base.__name__} "
                            f"(see docs/extending.md).")
    try:
        module, _, attribute = name.rpartition(".")
        cls = getattr(importlib.import_module(module), attribute)
    except Exception as error:  # noqa: BLE001 - an import of the user's module can fail in any way
        raise PlatypusError(f"{where}.{TARGET}={name!r} cannot be imported ({error!r}). Check the "
                            f"spelling, and that its package is installed or on PYTHONPATH.") from None
    if not (isinstance(cls, type) and issubclass(cls, base) and dataclasses.is_dataclass(cls)):
        raise PlatypusError(f"{where}.{TARGET}={name!r} is not a {base.__name__} dataclass; a plug-in here subclasses "
                            f"{base.__module__}.{base.__name__} and is decorated with @dataclass.")
    return cls


def parameters(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def build(node: Any, base: type[T], where: str) -> T:
    """The instance ``node`` describes: unknown keys, wrong types and values its class refuses are one
    PlatypusError naming ``where.<key>``."""
    cls = target_class(node, base, where)
    given = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    given.pop(TARGET)
    known = parameters(cls)
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {where}.{close[0]}?" if close else ""
            raise PlatypusError(f"{where}.{key}: {cls.__name__} has no such parameter.{hint} It takes: "
                                f"{', '.join(known) or 'none'}.")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(cls), given)
        return OmegaConf.to_object(typed)
    except OmegaConfBaseException as error:
        key = f"{where}.{error.full_key}" if getattr(error, "full_key", None) else where
        options = choice_of(cls, error.full_key) if getattr(error, "full_key", None) else None
        if options is not None:
            raise PlatypusError(f"{choice_message(key, error.value, options)[:-1]} ({cls.__name__}).") from None
        raise PlatypusError(f"{key}: {error.msg.splitlines()[0]} ({cls.__name__}).") from None
    except (TypeError, ValueError) as error:
        raise PlatypusError(f"{where} ({cls.__name__}): {error}") from None

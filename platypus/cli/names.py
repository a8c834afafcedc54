"""Names on the command line: unknown config keys and group options, with the closest valid names.

Keys are looked up in the typed schema (:class:`platypus.config.RootConfig`), group options in the folders
of ``conf/``; Hydra itself only says that a key or option does not exist.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Sequence

from platypus.config import conf_dir

CONF = conf_dir()
from platypus.fields import unwrap_optional
from platypus.runtime.errors import ConfigError

# --------------------------------------------------------------------------- schema
def _fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _root() -> type:
    from platypus.config import RootConfig

    return RootConfig


def walk(key: str, root: type | None = None) -> tuple[int | None, Any]:
    """Follow a dotted key through the schema: (index of the first unknown part or None, type reached).

    ``Dict[str, X]`` fields accept any key (and continue into ``X``); anything below a list or a plain
    value is left to Hydra (it reports a clear error itself)."""
    tp: Any = root or _root()
    for i, part in enumerate(key.split(".")):
        tp = unwrap_optional(tp)
        if dataclasses.is_dataclass(tp):
            hints = _fields(tp)
            if part not in hints:
                return i, tp
            tp = hints[part]
        elif typing.get_origin(tp) in (dict, typing.Dict):
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        else:  # a list index, or below a plain value / Any: Hydra decides
            return None, Any
    return None, tp


def schema_keys(root: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (nodes and leaves), not descending into Dict-typed fields."""
    keys = []
    for name, tp in _fields(root or _root()).items():
        full = f"{prefix}{name}"
        keys.append(full)
        inner = unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            keys.extend(schema_keys(inner, f"{full}."))
    return keys


def describe(tp: Any) -> str:
    """A type in words, for messages."""
    optional = typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)
    tp = unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        text = "true or false"
    elif tp is int:
        text = "an integer"
    elif tp is float:
        text = "a number"
    elif tp is str:
        text = "a string"
    elif origin in (list, typing.List):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        text = f"a list of {describe(inner).replace('an integer', 'integers').replace('a number', 'numbers').replace('a string', 'strings')} ([a,b,...])"
    elif origin in (dict, typing.Dict):
        text = "a mapping {key: value}"
    elif dataclasses.is_dataclass(tp):
        text = f"a config node ({tp.__name__}): set its keys one by one, or pick an option of its config group"
    else:
        text = str(tp)
    return text + (", or null" if optional else "")


# --------------------------------------------------------------------------- 1. names
def group_options(conf: Path = CONF) -> dict[str, list[str]]:
    """Config group (folder under conf/, nested as a/b) -> its options (yaml stems)."""
    groups = {}
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[folder.relative_to(conf).as_posix()] = options
    return groups


def _suggest(word: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    found = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
    if not found:  # a prefix or a fragment: smolm2 -> smollm2_135m
        lowered = word.lower()
        found = [c for c in candidates if lowered and (lowered in c.lower() or c.lower().startswith(lowered[:4]))][:n]
    return found


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for raw in overrides:
        try:
            parsed.append(parser.parse_override(raw))
        except HydraException as error:
            message = " ".join(str(error).split()).rstrip(".")
            raise ConfigError(
                f"Could not parse the command-line argument {raw!r} ({message}). Overrides look like key=value, "
                f"group=option, +key=value or ~key; put values with spaces or special characters in quotes.",
                error,
            ) from None
    return parsed


def _choices(override) -> list[Any]:
    """The value(s) an override sets: one, or each value of a simple choice / range sweep."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    if not override.is_sweep_override():
        value = override.value()
        return list(value) if isinstance(value, list) else [value]
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    if isinstance(value, Glob):
        return []
    return list(override.sweep_string_iterator())


def check_overrides(overrides: list[str], conf: Path = CONF, multirun: bool = False) -> None:
    """Unknown group options and unknown keys, with suggestions; sweeps without --multirun."""
    groups = group_options(conf)
    for raw, override in zip(overrides, _parse(overrides)):
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        if override.is_sweep_override() and not multirun:
            raise ConfigError(
                f"{raw!r} gives several values (a sweep). Add --multirun (-m) to run one job per value, or give "
                f"a single value."
            )
        if "." not in key and (key in groups or "/" in key):
            if not override.is_delete():
                _check_group(raw, key, override, groups, conf)
            continue
        _check_key(raw, key, override, groups)


def _check_group(raw: str, group: str, override, groups: dict[str, list[str]], conf: Path) -> None:
    options = groups.get(group)
    if options is None:
        close = _suggest(group, list(groups))
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(
            f"{raw}: there is no config group '{group}' (conf/{group}/).{hint} Groups: {', '.join(groups)}."
        )
    for value in _choices(override):
        if value is None or str(value) in options:
            continue
        close = _suggest(str(value), options)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(
            f"{group}={value}: no such option in config group '{group}' (conf/{group}/).{hint} "
            f"Options: {', '.join(options)}."
        )


def _check_key(raw: str, key: str, override, groups: dict[str, list[str]]) -> None:
    unknown_at, _ = walk(key)
    if unknown_at is None:
        return
    parts = key.split(".")
    parent = ".".join(parts[:unknown_at])
    parent_type = unwrap_optional(walk(parent)[1]) if parent else _root()
    siblings = list(_fields(parent_type)) if dataclasses.is_dataclass(parent_type) else []
    rest = parts[unknown_at + 1:]
    close = [".".join([*parts[:unknown_at], s, *rest]) for s in _suggest(parts[unknown_at], siblings)]
    close = [c for c in close if walk(c)[0] is None]
    if not close:  # the right name in the wrong place: lerning_rate=1 -> train.learning_rate
        every = schema_keys()
        leaf = parts[-1]
        close = [k for k in every if k.rsplit(".", 1)[-1] in _suggest(leaf, [k.rsplit(".", 1)[-1] for k in every])][:3]
    if not parent:
        close += [g for g in _suggest(key, list(groups)) if g not in close]
    hint = f" Did you mean {' or '.join(close[:3])}?" if close else ""
    where = f"under {parent}" if parent else "at the top level"
    top_groups = [g for g in groups if "/" not in g and g != "hydra" and g not in siblings]
    valid = ", ".join(siblings + (top_groups if not parent else []))
    adding = " ('+' cannot add keys to the typed schema.)" if override.is_add() or override.is_force_add() else ""
    raise ConfigError(f"Unknown config key '{key}' (in {raw!r}).{hint} Valid keys {where}: {valid}.{adding}")



"""Hydra's and OmegaConf's composition errors in words: the key, what it is now, the closest valid names.

Everything is read off the composed config (without the offending override), so keys and options that a user's
``hydra.searchpath`` adds are known here as they are to Hydra.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Sequence

from platypus.runtime.errors import ConfigError

UNTYPED = (dict, typing.Any, None)


def parse(overrides: list[str]) -> list:
    """Hydra's parse of each override; a line it cannot parse is one paragraph."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, parsed = OverridesParser.create(), []
    for raw in overrides:
        try:
            parsed.append(parser.parse_override(raw))
        except HydraException as error:
            message = " ".join(str(error).split()).rstrip(".")
            raise ConfigError(f"Could not parse the command-line argument {raw!r} ({message}). Overrides look like "
                              f"key=value, group=option, +key=value or ~key; put values with spaces or special "
                              f"characters in quotes.", error) from None
    return parsed


def suggest(word: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    found = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
    if not found:  # a prefix or a fragment: smolm2 -> smollm2_135m
        lowered = word.lower()
        found = [c for c in candidates if lowered and (lowered in c.lower() or c.lower().startswith(lowered[:4]))][:n]
    return found


def did_you_mean(names: Sequence[str]) -> str:
    return f" Did you mean {' or '.join(names[:3])}?" if names else ""


def explain(error: BaseException, overrides: list[str]) -> str:
    """One paragraph for a composition error of ``overrides``."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from platypus.config import RootConfig
    from platypus.fields import choice_message, choice_of

    if isinstance(error, MissingConfigException):
        return missing_option(error)
    cause = omegaconf_cause(error)
    if cause is None:
        text = " ".join(str(error).split()).rstrip(".")
        return f"The config could not be composed: {text}. Check the command line and the files in conf/."
    key, raw = locate(cause.full_key, overrides)
    given = f" (from {raw!r})" if raw else " (set in a file under conf/)"
    message = (cause.msg or str(cause)).splitlines()[0].rstrip(".")
    others = [o for o in overrides if o != raw]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) or (raw and raw.startswith("+") and absent(key, others)):
        return unknown_key(key, raw or key, others)
    if isinstance(cause, ValidationError) and choice_of(RootConfig, key):
        now, _ = current(key, others)
        return choice_message(key, cause.value, choice_of(RootConfig, key), as_override(now) if raw else None)
    if isinstance(cause, ValidationError):
        now, expected = current(key, others)
        example = f", e.g. {key}={as_override(now)} (its value without this override)" if now is not None else ""
        return f"Wrong type for config key '{key}'{given}: {message}. {key} expects {expected}{example}."
    return f"Config key '{key}'{given}: {message}. Check the command line and the files in conf/."


def missing_option(error, option: str | None = None) -> str:
    """A group option Hydra did not find (``option``: another one, missing from the options Hydra listed)."""
    text = str(error).strip().splitlines()[0].rstrip(".")
    missing = (error.missing_cfg_file or "").strip("/")
    group, _, found = missing.rpartition("/")
    option = option or found
    if group.startswith("hydra/"):
        plugin = group.split("/")[1:] + [option]
        return (f"{text}. Options of Hydra's own groups (hydra/sweeper, hydra/launcher) come from Hydra plugins: "
                f"install the plugin that provides it (pip install hydra-{plugin[-1]}-{plugin[0]}, if that is the "
                f"plugin's name), or pick an installed option.")
    if not group or error.options is None:
        return f"{text}. Check the config group options in conf/ and the command line."
    return (f"{group}={option}: no such option in config group '{group}' (conf/{group}/)."
            f"{did_you_mean(suggest(option, error.options))} Options: {', '.join(error.options)}.")


def unknown_key(key: str, raw: str, others: list[str]) -> str:
    """A key the config does not have: the closest keys, and the valid ones where it was meant to be."""
    from omegaconf import DictConfig, OmegaConf

    from platypus.config import compose

    cfg = compose(*others)
    parts = key.split(".")
    depth = next(i for i in range(len(parts)) if OmegaConf.select(cfg, ".".join(parts[: i + 1])) is None)
    parent, name, rest = ".".join(parts[:depth]), parts[depth], parts[depth + 1:]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    siblings = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    if parent and OmegaConf.get_type(node) is dict and "_target_" not in siblings:
        return (f"Unknown entry '{name}' in {parent} (from {raw!r}); {parent} has: {', '.join(siblings) or 'none'}. "
                f"Fix the name; a new entry cannot be added on the command line (Hydra cannot build a typed node from "
                f"an override): add it in a config file (e.g. a new option in conf/{parts[0]}/).")
    close = [".".join([*parts[:depth], s, *rest]) for s in suggest(name, siblings)]
    close = [c for c in close if OmegaConf.select(cfg, c) is not None or not rest]
    if not close:  # the right name in the wrong place: lerning_rate=1 -> train.learning_rate
        leaves = leaf_keys(cfg)
        matches = suggest(parts[-1], sorted({k.rsplit(".", 1)[-1] for k in leaves}))
        close = [k for k in leaves if k.rsplit(".", 1)[-1] in matches]
    where = f"under {parent}" if parent else "at the top level"
    adding = " ('+' cannot add keys to the typed schema.)" if raw.startswith("+") else ""
    return (f"Unknown config key '{key}' (in {raw!r}).{did_you_mean(close)} Valid keys {where}: "
            f"{', '.join(k for k in siblings if k != 'hydra')}.{adding}")


def absent(key: str, others: list[str]) -> bool:
    from omegaconf import OmegaConf

    from platypus.config import compose

    return OmegaConf.select(compose(*others), key) is None


def leaf_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for key in node.keys():
        if str(key) == "hydra":
            continue
        value = node._get_node(key)
        full = f"{prefix}{key}"
        keys.extend(leaf_keys(value, f"{full}.") if isinstance(value, DictConfig) else [full])
    return keys


def current(key: str, others: list[str]) -> tuple[Any, str]:
    """(the value ``key`` has without the offending override, its type in words)."""
    from omegaconf import OmegaConf

    from platypus.config import compose

    try:
        cfg = compose(*others)
        parent, _, name = key.rpartition(".")
        node = (OmegaConf.select(cfg, parent) if parent else cfg)._get_node(name)
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return value, describe(node._metadata.ref_type, node._metadata.optional)
    except Exception:  # noqa: BLE001 - best effort: the message stands without it
        return None, "another type"


def describe(tp: Any, optional: bool = False) -> str:
    """A type in words, for messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in words:
        text = words[tp]
    elif origin in (list, typing.List):
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        text = f"a list of {plural.get(args[0], 'values') if args else 'values'} ([a,b,...])"
    elif origin in (dict, typing.Dict) or tp in UNTYPED:
        text = "a mapping {key: value}"
    else:
        text = getattr(tp, "__name__", str(tp))
    return text + (", or null" if optional else "")


def omegaconf_cause(error: BaseException):
    from omegaconf.errors import OmegaConfBaseException

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
            return error
        error = error.__cause__ or error.__context__
    return None


def locate(full_key: str, overrides: list[str]) -> tuple[str, str | None]:
    """(the dotted key as the user wrote it, the override that set it). OmegaConf sometimes reports only the
    last part of the key (``extra`` for ``data.sources.extra``), and a list item as ``key[i]``."""
    for raw in overrides:
        key = override_key(raw)
        if key in (full_key, full_key.split("[")[0]) or key.startswith(full_key + "."):
            return key, raw
    for raw in overrides:
        parts = override_key(raw).split(".")
        if full_key in parts:
            return ".".join(parts[: parts.index(full_key) + 1]), raw
    return full_key, None


def override_key(raw: str) -> str:
    return raw.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def as_override(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(as_override(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{as_override(v)}" for k, v in value.items()) + "}"
    return str(value)

"""Command-line checks that run before Hydra starts a job (and before torch is imported).

``run.py`` calls :func:`precheck` with ``sys.argv[1:]``. It parses the overrides with Hydra's own
parser, then

1. names unknown group options and config keys, with the closest valid names
   (``model=smolm2`` -> ``Did you mean smollm2_135m?``, ``train.lerning_rate`` -> ``train.learning_rate``),
   from the folders of ``conf/`` and the typed schema (:class:`platypus.config.RootConfig`);
2. composes the config exactly as Hydra will (every value of a ``--multirun`` sweep once) and turns a
   composition error (wrong type, value not optional, a broken file in ``conf/``) into one paragraph
   naming the key, the expected type and what to do;
3. checks that the output folder (``hydra.run.dir``, or ``hydra.sweep.dir`` with ``--multirun``) can
   be created and written;
4. runs :func:`platypus.validate.check_config` (ranges and enums) on the composed config(s).

Each problem is printed as one paragraph on stderr and the process exits with code 2, before Hydra
creates the run folder. Steps 1-3 take about a second (nothing heavy is imported); step 4 imports torch
(a few seconds, which the run itself would spend anyway). ``debug=true`` adds the traceback. Anything this module
does not understand (``--config-name``, ``--help``, ``hydra.*`` and ``hydra/...`` overrides) is left to
Hydra unchanged.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Any, Sequence

from platypus.errors import PlatypusError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
CONFIG_NAME = "config"
EXIT_CODE = 2
FOOTER = "Nothing was run; add debug=true for the full traceback."
MAX_VARIANTS = 32  # sweep values composed one by one (each ~0.3 s)


class ConfigError(PlatypusError):
    """A config problem found before the run starts; ``cause`` is the Hydra/OmegaConf error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------- entry
def precheck(argv: Sequence[str], conf: Path = CONF, config_name: str = CONFIG_NAME) -> None:
    """Exit with code 2 and one paragraph if the command line cannot give a valid run."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(list(argv))
    except SystemExit:  # argparse already printed its usage error; let Hydra print it the same way
        return
    if (args.help or args.hydra_help or args.shell_completion or args.info or args.config_path or args.config_name
            or args.config_dir or args.experimental_rerun):
        return  # Hydra's own modes, or another config than the one this module knows
    overrides = list(args.overrides)
    debug = _debug_requested(overrides)
    try:
        check_overrides(overrides, conf, multirun=bool(args.multirun))
        configs = compose_variants(overrides, conf, config_name, multirun=bool(args.multirun))
        if configs and args.cfg is None:
            check_output_folder(configs[0], multirun=bool(args.multirun))
            check_values(configs)
    except ConfigError as error:
        if debug:
            traceback.print_exception(error.cause or error, file=sys.stderr)
        footer = "Nothing was run." if debug else FOOTER
        print(f"\nerror: {error} {footer}", file=sys.stderr)
        raise SystemExit(EXIT_CODE) from None


def _debug_requested(overrides: list[str]) -> bool:
    return any(o.replace(" ", "").lower() in ("debug=true", "++debug=true", "debug=1") for o in overrides)


# --------------------------------------------------------------------------- schema
def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


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
        tp = _unwrap(tp)
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
        inner = _unwrap(tp)
        if dataclasses.is_dataclass(inner):
            keys.extend(schema_keys(inner, f"{full}."))
    return keys


def describe(tp: Any) -> str:
    """A type in words, for messages."""
    optional = typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)
    tp = _unwrap(tp)
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
    parent_type = _unwrap(walk(parent)[1]) if parent else _root()
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


# --------------------------------------------------------------------------- 2. composition
def compose_variants(overrides: list[str], conf: Path = CONF, config_name: str = CONFIG_NAME,
                     multirun: bool = False):
    """Compose as Hydra will (once per sweep value); return the composed configs (with their ``hydra`` node)."""
    parsed = _parse(overrides)
    plain = [raw for raw, o in zip(overrides, parsed) if not o.is_sweep_override()]
    variants = [plain]
    if multirun:
        for override in parsed:
            if not override.is_sweep_override():
                continue
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # noqa: BLE001 - a glob etc.: Hydra expands it itself
                values = []
            for value in values:
                variants.append(plain + [f"{override.get_key_element()}={value}"])
    return [compose_one(variant, conf, config_name, overrides) for variant in variants[:MAX_VARIANTS]]


def check_values(configs: list) -> None:
    """Ranges and enums (platypus.validate): the job checks them again, this fails before Hydra starts it."""
    from platypus.validate import check_config

    for cfg in configs:
        try:
            check_config(cfg)
        except PlatypusError as error:
            raise ConfigError(str(error), error) from None


def compose_one(overrides: list[str], conf: Path, config_name: str, shown: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from platypus.config import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except Exception as error:  # noqa: BLE001 - every composition failure becomes one paragraph
        raise ConfigError(explain(error, overrides, conf, config_name), error) from None


def _omegaconf_error(error: BaseException):
    from omegaconf.errors import OmegaConfBaseException

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
            return error
        error = error.__cause__ or error.__context__
    return None


def _current_value(key: str, overrides: list[str], conf: Path, config_name: str) -> Any:
    """The value ``key`` has without the offending override (for 'it is 12 now')."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    others = [o for o in overrides if _override_key(o) != key and not _override_key(o).startswith(key + ".")]
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=others)
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    except Exception:  # noqa: BLE001 - best effort
        return None


def explain(error: BaseException, overrides: list[str], conf: Path = CONF, config_name: str = CONFIG_NAME) -> str:
    """One paragraph for a Hydra/OmegaConf composition error."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(error, MissingConfigException):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        text = lines[0]
        options = [line for line in lines[1:] if not line.startswith(("Config search path", "provider=", "Available"))]
        if "Available options" in str(error):
            text += f" (options: {', '.join(options)})"
        if "'hydra/" in text:
            plugin = text.rsplit("'hydra/", 1)[1].split("'", 1)[0].split("/")
            hint = f" (pip install hydra-{plugin[1]}-{plugin[0]}, if that is the plugin's name)" if len(plugin) > 1 else ""
            return (f"{text}. Options of Hydra's own groups (hydra/sweeper, hydra/launcher) come from Hydra plugins: "
                    f"install the plugin that provides it{hint}, or pick an installed option.")
        return f"{text}. Check the config group options in conf/ and the command line."
    cause = _omegaconf_error(error)
    if cause is None:
        text = " ".join(str(error).split()).rstrip(".")
        return f"The config could not be composed: {text}. Check the command line and the files in conf/."
    key, raw = _locate(cause.full_key, overrides)
    given = f" (from {raw!r})" if raw else " (set in a file under conf/)"
    message = (cause.msg or str(cause)).splitlines()[0].rstrip(".")
    parent, _, name = key.rpartition(".")
    unknown_at, tp = walk(parent) if parent else (None, None)
    if raw and parent and unknown_at is None and typing.get_origin(_unwrap(tp)) in (dict, typing.Dict):
        existing = _current_value(parent, overrides, conf, config_name)
        if isinstance(existing, dict) and name not in existing:  # a new entry of a Dict of config nodes
            names = ", ".join(existing) if existing else "none"
            return (f"Unknown entry '{name}' in {parent} (from {raw!r}); {parent} has: {names}. Fix the name; a new "
                    f"entry cannot be added on the command line (Hydra cannot build a typed node from an override): "
                    f"add it in a config file (e.g. a new option in conf/{parent.split('.')[0]}/).")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return f"Unknown config key '{key}'{given}: {message}. Check the spelling in conf/ and on the command line."
    if isinstance(cause, ValidationError):
        unknown_at, tp = walk(key)
        expected = describe(tp) if unknown_at is None and tp is not Any else "another type"
        now = _current_value(key, overrides, conf, config_name)
        example = f", e.g. {key}={_as_override(now)} (its value without this override)" if now is not None else ""
        return f"Wrong type for config key '{key}'{given}: {message}. {key} expects {expected}{example}."
    return f"Config key '{key}'{given}: {message}. Check the command line and the files in conf/."


def _locate(full_key: str, overrides: list[str]) -> tuple[str, str | None]:
    """(the dotted key as the user wrote it, the override that set it). OmegaConf sometimes reports only the
    last part of the key (``extra`` for ``data.sources.extra``)."""
    for raw in overrides:
        key = _override_key(raw)
        if key == full_key or key.startswith(full_key + "."):
            return full_key, raw
    for raw in overrides:
        parts = _override_key(raw).split(".")
        if full_key in parts:
            return ".".join(parts[: parts.index(full_key) + 1]), raw
    return full_key, None


def _override_key(raw: str) -> str:
    return raw.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _as_override(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_as_override(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_as_override(v)}" for k, v in value.items()) + "}"
    return str(value)


# --------------------------------------------------------------------------- 3. output folder
def check_output_folder(cfg, multirun: bool = False) -> None:
    from omegaconf import OmegaConf

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(cfg, key)
    except Exception:  # noqa: BLE001 - needs runtime values (e.g. ${hydra.job.override_dirname}): Hydra's job
        return
    if folder:
        check_writable(Path(str(folder)), key)


def check_writable(folder: Path, key: str) -> None:
    """``folder`` exists and is writable, or can be created (its nearest existing ancestor is)."""
    folder = Path(os.path.abspath(folder.expanduser()))
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"Output folder {folder} ({key}) cannot be created: {existing} is a file, not a folder. "
            f"Choose another folder with {key}=<folder>."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
        raise ConfigError(
            f"Output folder {folder} ({key}) {what} (permission denied or a read-only file system). "
            f"Choose a folder you can write to with {key}=<folder>, or fix the permissions of {existing}."
        )

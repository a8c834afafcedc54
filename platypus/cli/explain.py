"""The composed config: composition errors in words, the values' checks, a writable output folder."""

from __future__ import annotations

import copy
import errno
import os
import tempfile
import typing
from pathlib import Path
from typing import Any

from platypus.cli.names import _parse, describe, group_options, walk
from platypus.config import conf_dir

CONF = conf_dir()
from platypus.fields import unwrap_optional
from platypus.runtime.errors import ConfigError, PlatypusError

MAX_VARIANTS = 32  # swept group options composed one by one (each ~0.3 s)


def compose_variants(overrides: list[str], conf: Path = CONF, config_name: str = "config",
                     multirun: bool = False) -> list:
    """The configs Hydra will compose (with their ``hydra`` node): the command line without its sweeps, then
    one per swept group option (composed) and one per swept key value (set on the first, type-checked)."""
    from omegaconf import OmegaConf


    parsed = _parse(overrides)
    plain = [raw for raw, o in zip(overrides, parsed) if not o.is_sweep_override()]
    first = compose_one(plain, conf, config_name)
    configs, groups = [first], group_options(conf)
    for override in parsed if multirun else []:
        if not override.is_sweep_override():
            continue
        key = override.get_key_element()
        try:
            values = list(override.sweep_iterator())
        except Exception:  # noqa: BLE001 - a glob etc.: Hydra expands it itself
            values = []
        for value in values:
            if override.key_or_group in groups:
                if len(configs) < MAX_VARIANTS:
                    configs.append(compose_one(plain + [f"{key}={value}"], conf, config_name))
                continue
            cfg = copy.deepcopy(first)
            try:
                OmegaConf.update(cfg, override.key_or_group, value, merge=True)
            except Exception as error:  # noqa: BLE001 - the same paragraph as a composition error
                raise ConfigError(explain(error, plain + [f"{key}={value}"], conf, config_name), error) from None
            configs.append(cfg)
    return configs


def check_values(configs: list) -> None:
    """Ranges and enums (platypus.pipeline.check_config): the job checks them again, this fails before Hydra starts it."""
    from platypus.pipeline import check_config

    for cfg in configs:
        if cfg.get("plan"):  # plan=true runs nothing: a plan for a GPU run is asked for where there is none
            continue
        try:
            check_config(cfg)
        except PlatypusError as error:
            raise ConfigError(str(error), error) from None


def compose_one(overrides: list[str], conf: Path, config_name: str):
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


def explain(error: BaseException, overrides: list[str], conf: Path = CONF, config_name: str = "config") -> str:
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
    if raw and parent and unknown_at is None and typing.get_origin(unwrap_optional(tp)) in (dict, typing.Dict):
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
        from platypus.runtime.lock import holder, in_use

        if not multirun and (who := holder(Path(str(folder)))):  # refused before Hydra writes into the folder
            raise ConfigError(str(in_use(Path(str(folder)), who)))


def check_writable(folder: Path, key: str) -> None:
    """``folder`` exists and is writable, or can be created: a folder is made and removed in it or in its nearest
    existing ancestor (permission bits alone pass e.g. /proc, where nothing can be created)."""
    folder = Path(os.path.abspath(folder.expanduser()))
    existing = folder
    try:
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
        os.rmdir(tempfile.mkdtemp(prefix=".platypus-probe-", dir=existing))
    except OSError as error:
        what = "is not writable" if existing == folder else "cannot be created"
        raise ConfigError(
            f"Output folder {folder} ({key}) {what}: no folder can be made in {existing} ({error.strerror or error}, "
            f"{errno.errorcode.get(error.errno, error.errno)}). Choose a folder on a disk you can write to with "
            f"{key}=<folder>."
        ) from None

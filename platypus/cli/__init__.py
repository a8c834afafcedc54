"""The command line, checked before Hydra starts a job (and before torch or any stage module is imported).

``run.py`` calls :func:`precheck` with ``sys.argv[1:]``. The config is composed once, as Hydra will compose it;
what Hydra reports in its own words becomes one paragraph on stderr and exit code 2, before any run folder exists:
a line that does not parse, a sweep without ``--multirun``, an unknown key or group option (with the closest valid
names, :mod:`platypus.cli.explain`), a wrong type, a value outside its choice set, and an output folder that cannot be written. Settings are
checked by the composed job itself (:class:`platypus.pipeline.CheckConfig`, before Hydra makes the run folder).

``traceback=true`` adds the traceback. Hydra's other modes (``--help``, ``--info``, another config, shell
completion, ``--experimental-rerun``) are left to Hydra unchanged.
"""

from __future__ import annotations

import sys
import traceback
from typing import Sequence

from platypus.cli.explain import explain, missing_option, parse
from platypus.runtime.errors import EXIT_USER_ERROR, ConfigError

FOOTER = "Nothing was run; add traceback=true for the full traceback."
MULTIRUN = ("-m", "--multirun")
LIST_OPTIONS = "__platypus_list_options__"  # an option no group has: Hydra answers with the options
WITH_VALUE = ("-c", "--cfg", "-p", "--package")  # Hydra flags that keep this config: checked like a run


def split_argv(argv: Sequence[str]) -> tuple[list[str], bool, bool] | None:
    """(overrides, multirun, printing the config) from Hydra's command line; None for Hydra's other modes."""
    overrides, multirun, cfg, args = [], False, False, list(argv)
    while args:
        arg = args.pop(0)
        if arg in MULTIRUN:
            multirun = True
        elif arg in WITH_VALUE:
            cfg = cfg or arg in ("-c", "--cfg")
            args = args[1:]
        elif arg.startswith("-"):
            return None
        else:
            overrides.append(arg)
    return overrides, multirun, cfg


def compose_once(overrides: list[str], multirun: bool):
    """The config Hydra will compose (a sweep at its first value), with its ``hydra`` node. Every value of a swept
    config group is checked against the group's options (as Hydra lists them, ``hydra.searchpath`` included), and
    every other value of a swept key composes (its type, its choice set)."""
    from platypus.config import compose

    first, groups, swept = [], {}, {}
    for raw, override in zip(overrides, parse(overrides)):
        if override.is_sweep_override() and not multirun:
            raise ConfigError(f"{raw!r} gives several values (a sweep). Add --multirun (-m) to run one job per value, "
                              f"or give a single value.")
        values = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else None
        key = override.get_key_element()
        first.append(f"{key}={values[0]}" if values else raw)
        if values and "." not in override.key_or_group:
            groups[key] = values
        elif values:
            swept[key] = values
    try:
        cfg = compose(*first, hydra_node=True)
        for key, values in groups.items():
            _check_options(first, key, values)
        for key, values in swept.items():  # each value of a swept key composes (a choice, a type)
            for value in values[1:]:
                compose(*[f"{key}={value}" if o.split("=", 1)[0] == key else o for o in first])
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - every composition failure becomes one paragraph
        raise ConfigError(explain(error, first), error) from None
    return cfg


def _check_options(first: list[str], key: str, values: list[str]) -> None:
    """Each swept option of group ``key`` exists: the options come from Hydra's own error for a missing one."""
    from hydra.errors import MissingConfigException

    from platypus.config import compose

    try:
        compose(*[o for o in first if not o.startswith(f"{key}=")], f"{key}={LIST_OPTIONS}")
    except MissingConfigException as error:
        for value in values:
            if value not in (error.options or [value]):
                raise ConfigError(missing_option(error, value), error) from None


def precheck(argv: Sequence[str]) -> None:
    """Exit with code 2 and one paragraph if the command line cannot give a valid run."""
    from hydra.core.global_hydra import GlobalHydra

    from platypus.runtime.output_folder import check_output_folder

    split = split_argv(argv)
    if split is None:
        return
    overrides, multirun, printing = split
    show_traceback = any(o.replace(" ", "").lower() in ("traceback=true", "++traceback=true") for o in overrides)
    try:
        cfg = compose_once(overrides, multirun)
        if not printing:
            check_output_folder(cfg, multirun=multirun)
    except ConfigError as error:
        if show_traceback:
            traceback.print_exception(error.cause or error, file=sys.stderr)
        print(f"\nerror: {error} {'Nothing was run.' if show_traceback else FOOTER}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        GlobalHydra.instance().clear()

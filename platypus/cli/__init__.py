"""Command-line checks that run before Hydra starts a job (and before torch is imported).

``run.py`` calls :func:`precheck` with ``sys.argv[1:]``. Hydra reports a bad override with its own
exception text and exit code 1; this adds what Hydra does not do, each problem as one paragraph on
stderr and exit code 2, before Hydra creates the run folder:

1. unknown group options and config keys, with the closest valid names (:mod:`platypus.cli.names`:
   ``model=smolm2`` -> ``Did you mean smollm2_135m?``, ``train.lerning_rate`` -> ``train.learning_rate``);
2. a composition error (wrong type, value not optional, a broken file in ``conf/``) in words: the key, the
   expected type, an example (:mod:`platypus.cli.explain`); the config is composed once, plus once per
   swept group option (a swept key's values are set on that config, which the schema type-checks);
3. an output folder (``hydra.run.dir``, or ``hydra.sweep.dir`` with ``--multirun``) that cannot be written;
4. :func:`platypus.pipeline.check_config` (ranges, choices, each stage's checks) on the composed config(s).

``traceback=true`` adds the traceback. Hydra's other modes (``--help``, ``--info``, another config with
``--config-name``/``--config-path``/``--config-dir``, shell completion, ``--experimental-rerun``) are left to
Hydra unchanged.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Sequence

from platypus.cli.explain import check_output_folder, check_values, compose_variants
from platypus.cli.names import check_overrides
from platypus.config import CONFIG_NAME, conf_dir
from platypus.runtime.errors import EXIT_USER_ERROR, ConfigError


FOOTER = "Nothing was run; add traceback=true for the full traceback."
MULTIRUN = ("-m", "--multirun")
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


def precheck(argv: Sequence[str], conf: Path | None = None, config_name: str = CONFIG_NAME) -> None:
    """Exit with code 2 and one paragraph if the command line cannot give a valid run."""
    conf = conf or conf_dir()
    split = split_argv(argv)
    if split is None:
        return
    overrides, multirun, printing = split
    show_traceback = any(o.replace(" ", "").lower() in ("traceback=true", "++traceback=true") for o in overrides)
    try:
        check_overrides(overrides, conf, multirun=multirun)
        configs = compose_variants(overrides, conf, config_name, multirun=multirun)
        if not printing:
            check_output_folder(configs[0], multirun=multirun)
            check_values(configs)
    except ConfigError as error:
        if show_traceback:
            traceback.print_exception(error.cause or error, file=sys.stderr)
        print(f"\nerror: {error} {'Nothing was run.' if show_traceback else FOOTER}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None

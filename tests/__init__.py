"""Helpers the test modules share (fixtures: tests/conftest.py)."""

from __future__ import annotations


def compose_config(*overrides: str, hydra: bool = False):
    """The config run.py would compose from platypus/conf/ with ``overrides`` (``hydra``: with its ``hydra`` node).
    ``debug=fast`` (platypus/conf/debug/fast.yaml) gives the tiny sizes most tests want."""
    from hydra import compose, initialize_config_dir

    from platypus.config import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)

"""Helpers the test modules share (fixtures: tests/conftest.py)."""

from __future__ import annotations


def compose_config(*overrides: str, hydra: bool = False):
    """The config run.py would compose from conf/ with ``overrides`` (``hydra``: with its ``hydra`` node).
    ``debug=fast`` (conf/debug/fast.yaml) gives the tiny sizes most tests want."""
    from platypus.config import compose

    return compose(*overrides, hydra_node=hydra)

"""The config groups. They live at the repository's top (``conf/``) and ship in the wheel as the package
``platypus.conf`` (pyproject's ``package-dir``); Hydra loads them as ``pkg://platypus.conf``."""

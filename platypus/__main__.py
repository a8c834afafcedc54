"""The platypus app: ``platypus`` (the console script), ``python -m platypus`` and the checkout's ``python run.py``
are this one Hydra app, composed from the package's configs (``conf/``).

    platypus                                  # curate -> train -> merge -> evaluate, embedded default
    platypus stages=[evaluate] evaluate.models=[path/to/model] eval=leaderboard_v1
    platypus --multirun curate.steps.dedup.threshold=0.7,0.8 lora=platypus,attention

Before Hydra starts a job, :func:`platypus.cli.precheck` names unknown keys and group options (with the closest
valid names), wrong types and an unwritable output folder in one paragraph (exit code 2); a write that fails
later, Hydra's own included, is one paragraph too (platypus/runtime/failures.py).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from platypus.config import register

register()


@hydra.main(version_base="1.3", config_path="pkg://platypus.conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    from platypus.pipeline import main as run_pipeline  # torch & co.: imported only once the config is valid

    return run_pipeline(cfg)


def main() -> None:
    from platypus.cli import precheck
    from platypus.runtime.failures import hydra_app_reported

    precheck(sys.argv[1:])
    hydra_app_reported(app)


if __name__ == "__main__":
    main()

"""The single entrypoint: check the command line, compose the config with Hydra, run the selected stages.

    python run.py                                  # curate -> train -> merge -> evaluate, embedded default
    python run.py stages=[evaluate] evaluate.models=[path/to/model] eval=leaderboard_v1
    python run.py --multirun curate.dedup.threshold=0.7,0.8 lora=platypus,attention

Before Hydra starts a job, ``platypus.cli.precheck`` names unknown keys and group options (with the
closest valid names), wrong types and an unwritable output folder in one paragraph (exit code 2).
"""

import sys

import hydra
from omegaconf import DictConfig

from platypus.config import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from platypus.pipeline import main as run_pipeline  # torch & co.: imported only once the config is valid

    return run_pipeline(cfg)


if __name__ == "__main__":
    from platypus.cli import precheck

    precheck(sys.argv[1:])
    main()

"""The single entrypoint: compose the config with Hydra, run the selected stages.

    python run.py                                  # curate -> train -> merge -> evaluate, embedded default
    python run.py stages=[evaluate] evaluate.models=[path/to/model] eval=leaderboard_v1
    python run.py --multirun curate.dedup.threshold=0.7,0.8 lora=platypus,attention
"""

import hydra
from omegaconf import DictConfig

from platypus.config import register
from platypus.pipeline import main as run_pipeline

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_pipeline(cfg)


if __name__ == "__main__":
    main()

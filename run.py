"""The repository's entrypoint: the platypus app (platypus/__main__.py), as ``platypus`` and ``python -m platypus``.

    python run.py                                  # curate -> train -> merge -> evaluate, embedded default
    python run.py stages=[evaluate] evaluate.models=[path/to/model] eval=leaderboard_v1
    python run.py --multirun curate.steps.dedup.threshold=0.7,0.8 lora=platypus,attention
"""

from platypus.__main__ import main

if __name__ == "__main__":
    main()

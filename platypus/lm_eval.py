"""lm-eval's own command line, with platypus' model classes registered (``--model hf-prefix``).

    python -m platypus.lm_eval --model hf-prefix --model_args pretrained=<folder or hub id>,dtype=float32 \\
        --tasks arc_challenge --num_fewshot 25 --batch_size 8

lm-eval imports no third-party model modules by itself; this one imports ours, which registers them,
and hands every argument to lm-eval's CLI unchanged (``--include_path``, ``--output_path``, ...).
"""

from __future__ import annotations


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    import platypus.stages.evaluate.prefix  # noqa: F401 - registers hf-prefix with lm-eval
    from platypus.runtime.failures import reported

    with reported():  # a full disk under --output_path: the paragraph, exit code 2
        cli_evaluate()


if __name__ == "__main__":
    main()

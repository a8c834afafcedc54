"""Sweeps on the tiny model: Hydra multirun (basic and joblib launchers), the cross-run stage cache,
the sweep summary (platypus.report + its Hydra callback), W&B runs grouped by sweep, the presets."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from platypus import report
from platypus.config import SourceConfig
from platypus.pipeline import run_pipeline
from platypus.runtime.cache import StageCache, stage_key
from tests import wandb_offline
from tests.helpers import compose_config, hand_made_run

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
SMALL_CURATE = ["data.sample=20", "curate.benchmarks=[truthfulqa_mc2]"]
SMALL_EVAL = ["~eval.tasks.arc_challenge", "~eval.tasks.hellaswag", "~eval.tasks.mmlu"]


def tiny(model: Path) -> list[str]:
    """The tiny model with debug=fast's sizes (conf/debug/fast.yaml: 20 rows, one optimizer step, 2 documents)."""
    return [f"model.path={model}", "model.gguf_file=null", "model.name=tiny", "debug=fast"]


def multirun(tmp: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "run.py", "--multirun", f"hydra.sweep.dir={tmp / 'sweep'}",
               f"stage_cache={tmp / 'cache'}", *overrides]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def manifests(sweep: Path, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{stage}/manifest.json"))]


def computed(sweep: Path, stage: str) -> int:
    return sum(not m.get("reused") for m in manifests(sweep, stage))


config = compose_config


# --------------------------------------------------------------------------- 2x2: lora x merge
@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_model_dir) -> dict:
    tmp = tmp_path_factory.mktemp("sweep")
    done = multirun(tmp, "lora=platypus,attention", "merge=into_base,none", "logger=wandb",
                    "stages=[curate,train,merge,evaluate]", *tiny(tiny_model_dir), *SMALL_EVAL)
    return {"dir": tmp / "sweep", "cache": tmp / "cache", "stdout": done.stdout}


@pytest.mark.slow
def test_lora_by_merge_sweep_trains_twice_and_curates_once(sweep):
    folder = sweep["dir"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert computed(folder, "curate") == 1 and len(manifests(folder, "curate")) == 4
    assert computed(folder, "train") == 2 and len(manifests(folder, "train")) == 4
    assert computed(folder, "merge") == 2  # merge=none folds nothing
    # base+merged, and base+adapter where nothing is merged: four model sets, each evaluated once
    assert computed(folder, "evaluate") == 4 and len(manifests(folder, "evaluate")) == 4
    for manifest in manifests(folder, "train") + manifests(folder, "curate"):
        if manifest.get("reused"):
            source = Path(manifest["reused_from"])
            assert source.parent.parent == sweep["cache"] and source.name == manifest["key"]
            assert not json.loads((source / "manifest.json").read_text()).get("reused")  # the cache is untouched
    assert sweep["stdout"].count("reused from the stage cache") == 3 + 2
    adapters = {p.parent.parent.parent.name: os.stat(p).st_ino for p in folder.glob("*/train/adapter/adapter_model.safetensors")}
    assert adapters["0"] == adapters["1"] != adapters["2"] == adapters["3"]  # hardlinks, not copies


@pytest.mark.slow
def test_sweep_summary_has_one_row_per_job(sweep):
    folder = sweep["dir"]
    with open(folder / "summary.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["swept"] for r in rows] == ["lora=platypus merge=into_base", "lora=platypus merge=none",
                                          "lora=attention merge=into_base", "lora=attention merge=none"]
    assert [r["reused"] for r in rows] == ["", "curate+train", "curate", "curate+train"]
    for row in rows:
        assert int(row["curate_kept"]) > 0 and float(row["train_loss"]) > 0
        assert 0 <= float(row["base/truthfulqa_mc2/mc2"]) <= 1
    assert rows[0]["merged/truthfulqa_mc2/mc2"] and not rows[1]["merged/truthfulqa_mc2/mc2"]
    assert rows[1]["adapter/truthfulqa_mc2/mc2"] and not rows[0]["adapter/truthfulqa_mc2/mc2"]  # merge=none: its adapter
    # paired deltas with 95% intervals: each model vs its run's base, each job's final model vs job 0's
    assert rows[0]["merged/delta/truthfulqa_mc2"].count("[") == 1 and rows[1]["adapter/delta/truthfulqa_mc2"]
    assert float(rows[0]["merged/delta/truthfulqa_mc2/low"]) <= float(rows[0]["merged/delta/truthfulqa_mc2/high"])
    assert [r["vs_ref"] for r in rows] == ["reference (merged)", "1/adapter vs 0/merged", "2/merged vs 0/merged",
                                           "3/adapter vs 0/merged"]
    assert not rows[0]["vs_ref/truthfulqa_mc2"] and all(" [" in r["vs_ref/truthfulqa_mc2"] for r in rows[1:])
    md = (folder / "summary.md").read_text().splitlines()
    assert len(md) == 2 + 4 and md[0].startswith("| job | swept |")
    assert (folder / "summary.png").stat().st_size > 1000


@pytest.mark.slow
def test_wandb_runs_of_a_sweep_are_grouped_named_and_keyed_alike(sweep):
    folder = sweep["dir"]
    names = set()
    for job in ("0", "1", "2", "3"):
        runs = list((folder / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, job
        info, summary = wandb_offline.run_info(runs[0]), wandb_offline.summary(runs[0])
        assert info["group"] == str(folder)
        assert info["job_type"] == "curate+train+merge+evaluate"
        names.add(info["name"])
        assert info["config"]["lora"]["name"] in ("platypus", "attention")
        assert info["config"]["hydra_job"]["swept"] == ["lora", "merge"]
        assert summary["curate/kept"] > 0 and "curate/removed" in summary and summary["train/loss"] > 0
        assert 0 <= summary["eval/base/truthfulqa_mc2/mc2"] <= 1
        if job in ("0", "2"):
            assert 0 <= summary["eval/merged/truthfulqa_mc2/mc2"] <= 1
    assert names == {"lora=platypus,merge=into_base", "lora=platypus,merge=none",
                     "lora=attention,merge=into_base", "lora=attention,merge=none"}


# --------------------------------------------------------------------------- joblib launcher
@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_and_computes_a_shared_stage_once(tmp_path, tiny_model_dir):
    done = multirun(tmp_path, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "lora=platypus,attention",
                    "logger=none", "stages=[curate,train]", *tiny(tiny_model_dir))
    folder = tmp_path / "sweep"
    launched = [line for line in (done.stdout + done.stderr).splitlines() if "Joblib.Parallel(" in line]
    assert len(launched) == 1 and launched[0].endswith(  # the plugin's own line: our parallel.yaml's settings reached it
        "[HYDRA] Joblib.Parallel(n_jobs=2,backend=loky,prefer=processes,require=None,verbose=0,timeout=None,"
        "pre_dispatch=2*n_jobs,batch_size=auto,temp_folder=None,max_nbytes=None,mmap_mode=r) is launching 2 jobs"), launched
    assert computed(folder, "curate") == 1 and len(manifests(folder, "curate")) == 2  # the other job waited
    assert computed(folder, "train") == 2
    with open(folder / "summary.csv", encoding="utf-8") as handle:
        assert [r["swept"] for r in csv.DictReader(handle)] == ["lora=platypus", "lora=attention"]


# --------------------------------------------------------------------------- stage cache
def test_a_second_run_reuses_the_cached_stage_and_says_so(tmp_path):
    cache = tmp_path / "cache"
    run_pipeline(config("stages=[curate]", "logger=none", *SMALL_CURATE, f"stage_cache={cache}"), tmp_path / "a")
    first = json.loads((tmp_path / "a/curate/manifest.json").read_text())
    assert not first.get("reused")
    entry = cache / "curate" / first["key"]
    assert json.loads((entry / "manifest.json").read_text()) == first

    run_pipeline(config("stages=[curate]", "logger=none", *SMALL_CURATE, f"stage_cache={cache}"), tmp_path / "b")
    second = json.loads((tmp_path / "b/curate/manifest.json").read_text())
    assert second["reused"] is True and second["reused_from"] == str(entry) and second["key"] == first["key"]
    assert second["metrics"] == first["metrics"]
    a, b = tmp_path / "a/curate/train.jsonl", tmp_path / "b/curate/train.jsonl"
    assert os.stat(a).st_ino == os.stat(b).st_ino  # hardlinked
    assert json.loads((entry / "manifest.json").read_text()) == first  # writing b's manifest left the cache alone
    assert not list((tmp_path / "b").glob(".*partial"))

    # another config: computed, next to the first entry
    run_pipeline(config("stages=[curate]", "logger=none", *SMALL_CURATE, f"stage_cache={cache}",
                        "curate.steps.dedup.threshold=0.7"), tmp_path / "c")
    assert not json.loads((tmp_path / "c/curate/manifest.json").read_text()).get("reused")
    assert len([p for p in (cache / "curate").iterdir() if not p.name.startswith(".")]) == 2  # (.<key>.lock files)


def test_stage_cache_null_disables_it(tmp_path, monkeypatch):
    def untouchable(*args, **kwargs):
        raise AssertionError("stage_cache=null must not touch the cache")

    for method in ("lookup", "lock", "store"):
        monkeypatch.setattr(StageCache, method, untouchable)
    run_pipeline(config("stages=[curate]", "logger=none", *SMALL_CURATE, "stage_cache=null"), tmp_path / "run")
    assert not json.loads((tmp_path / "run/curate/manifest.json").read_text()).get("reused")


def test_the_key_ignores_where_inputs_are_but_not_what_they_hold():
    cfg = {"lora": {"r": 16}}
    a = {"dataset": {"path": "/runs/a/curate/train.jsonl", "sha256": "1"}, "base_model": {"path": "/x", "files": {"m": "2"}}}
    b = {"dataset": {"path": "/runs/b/curate/train.jsonl", "sha256": "1"}, "base_model": {"path": "/y", "files": {"m": "2"}}}
    c = {"dataset": {"path": "/runs/a/curate/train.jsonl", "sha256": "9"}, "base_model": {"path": "/x", "files": {"m": "2"}}}
    assert stage_key("train", cfg, a)[0] == stage_key("train", cfg, b)[0] != stage_key("train", cfg, c)[0]
    assert stage_key("train", cfg, a)[0] != stage_key("train", {"lora": {"r": 8}}, a)[0]
    assert stage_key("train", cfg, a)[0] != stage_key("merge", cfg, a)[0]


def test_curate_key_follows_the_content_of_a_local_source(tmp_path):
    from platypus.stages.curate.stage import curate_inputs

    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    cfg = config()
    with open_dict(cfg):
        cfg.data.sources["mine"] = OmegaConf.structured(SourceConfig(path=str(data)))
    before = curate_inputs(cfg)
    assert before["sources"]["mine"]["path"] == str(data) and before["sources"]["open_platypus_rebuild"]["sha256"]
    assert set(before["benchmark_questions"]) == {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"}
    data.write_text('{"instruction": "a", "output": "c"}\n')
    assert curate_inputs(cfg)["sources"]["mine"]["sha256"] != before["sources"]["mine"]["sha256"]
    hub = curate_inputs(config("data=open_platypus", "~curate.steps.decontaminate"))
    assert hub == {"sources": {"open_platypus": {"hub_id": "garage-bAInd/Open-Platypus", "split": "train"}},
                   "benchmark_questions": {}}


def test_parallel_store_of_one_key_keeps_the_first(tmp_path, monkeypatch):
    cache = StageCache(tmp_path / "cache")
    for name in ("mine", "theirs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "out.txt").write_text(name)
        (tmp_path / name / "manifest.json").write_text(json.dumps({"key": "k", "by": name}))
    assert cache.store("train", "k", tmp_path / "theirs") == tmp_path / "cache/train/k"
    # "mine" finished at the same moment: it saw no entry, its rename finds the target taken
    real_lookup = StageCache.lookup
    calls = iter([None])
    monkeypatch.setattr(StageCache, "lookup", lambda self, s, k: next(calls, real_lookup(self, s, k)))
    assert cache.store("train", "k", tmp_path / "mine") == tmp_path / "cache/train/k"
    assert (tmp_path / "cache/train/k/out.txt").read_text() == "theirs"
    assert [p.name for p in (tmp_path / "cache/train").iterdir()] == ["k"]  # no temporary left behind


# --------------------------------------------------------------------------- report on hand-made runs
def test_report_on_hand_made_run_folders(tmp_path, capsys):
    sweep = tmp_path / "multirun/2026-11-22/08-00-00"
    hand_made_run(sweep / "0", ["curate.steps.dedup.threshold=0.7", "train.max_steps=3"], 90, 1.5, {"base": 0.30, "merged": 0.32})
    hand_made_run(sweep / "1", ["curate.steps.dedup.threshold=0.8", "train.max_steps=3"], 95, 1.4, {"base": 0.30, "merged": 0.35},
         reused=("curate",))
    (sweep / "10").mkdir()  # a job that failed before Hydra wrote anything: not a run
    (sweep / "multirun.yaml").write_text("{}\n")

    assert report.main([str(sweep)]) == 0
    assert "| job | swept |" in capsys.readouterr().out
    with open(sweep / "summary.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["swept"] for r in rows] == ["curate.steps.dedup.threshold=0.7", "curate.steps.dedup.threshold=0.8"]
    assert rows[0]["overrides"] == "curate.steps.dedup.threshold=0.7 train.max_steps=3"
    assert [r["curate_kept"] for r in rows] == ["90", "95"] and rows[1]["curate_removed"] == "5"
    assert [float(r["merged/leaderboard_avg"]) for r in rows] == [0.32, 0.35]
    assert float(rows[1]["base/truthfulqa_mc2/mc2"]) == 0.15
    assert [r["reused"] for r in rows] == ["", "curate"]
    assert [r["computed"] for r in rows] == ["curate+train+evaluate", "train+evaluate"]
    assert [float(r["wall_s"]) for r in rows] == [30.0, 20.5] and float(rows[1]["compute_s"]) == 30.0
    header = list(rows[0])
    assert header.index("base/arc_challenge/acc_norm") < header.index("base/leaderboard_avg") < header.index("merged/arc_challenge/acc_norm")
    md = (sweep / "summary.md").read_text()
    assert md.count("\n") == 4 and "| 1 | curate.steps.dedup.threshold=0.8 | 95 | 5 |" in md and "0.3500" in md
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"

    # several folders -> --out is required; run folders given directly are rows too
    other = tmp_path / "outputs/run"
    hand_made_run(other, ["lora=attention"], 80, 1.2, {"base": 0.3})
    assert report.main([str(sweep), str(other)]) == 2
    assert report.main([str(sweep), str(other), "--out", str(tmp_path / "cmp")]) == 0
    with open(tmp_path / "cmp/summary.csv", encoding="utf-8") as handle:
        assert [r["job"] for r in csv.DictReader(handle)] == ["08-00-00/0", "08-00-00/1", "run"]
    assert report.main([str(tmp_path / "empty-nothing")]) == 2


@pytest.mark.slow
def test_report_module_entry_point(tmp_path):
    hand_made_run(tmp_path / "sweep/0", ["lora=attention"], 80, 1.2, {"base": 0.3, "merged": 0.31})
    done = subprocess.run([sys.executable, "-m", "platypus.report", str(tmp_path / "sweep")], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 run(s) ->" in done.stdout and (tmp_path / "sweep/summary.csv").is_file()


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset,key,values", [
    ("lora_targets", "lora", "platypus,attention,all_linear"),
    ("dedup_threshold", "curate.steps.dedup.threshold", "0.7,0.8,0.9"),
    ("merge_methods", "merge", "into_base,none"),
])
def test_sweep_presets_compose_with_the_schema(preset, key, values):
    cfg = config(f"+sweep={preset}", hydra=True)
    assert cfg.hydra.sweeper.params[key] == values
    assert cfg.lora.name == "platypus"  # the job config itself is the default
    if preset == "merge_methods":
        assert list(cfg.evaluate.include) == ["base", "adapter", "merged"]


def test_launcher_presets_and_the_summary_callback_are_configured():
    cfg = config("hydra/launcher=parallel", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.callbacks.sweep_summary._target_ == "platypus.report.SweepSummaryCallback"
    assert cfg.stage_cache == f"{cfg.cache_dir}/stages"


def test_optional_plugin_presets_compose_when_installed():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = config("hydra/launcher=slurm", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.tasks_per_node == 1


def test_optuna_preset_composes_when_installed():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = config("+sweep=optuna_avg", hydra=True)
    assert cfg.hydra.sweeper.direction == "maximize" and "lora" in cfg.hydra.sweeper.params

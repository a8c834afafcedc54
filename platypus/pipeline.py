"""Stage order, the run folder, manifests and reuse.

Each stage writes into ``<run>/.<stage>.partial`` and is renamed to ``<run>/<stage>`` when
complete, with ``manifest.json`` (config, inputs, outputs, metrics, timings, versions). A stage
whose manifest key (its config + the identity of its inputs) matches is reused; a finished
stage computed from something else is never overwritten (``overwrite=true`` moves it aside).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from platypus import __version__, models, tracking
from platypus.config import STAGES
from platypus.errors import PlatypusError

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "sentence-transformers", "lm_eval", "hydra-core")


# --------------------------------------------------------------------------- helpers
def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platypus": __version__}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def to_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def check_stages(stages: list[str]) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PlatypusError(f"stages={list(stages)}: unknown stage(s) {unknown}; valid stages are {list(STAGES)}.")
    if len(set(stages)) != len(stages) or list(stages) != sorted(stages, key=STAGES.index):
        raise PlatypusError(
            f"stages={list(stages)}: stages run in the order {list(STAGES)}, each at most once; "
            f"e.g. stages=[train,merge]."
        )


# --------------------------------------------------------------------------- run folder
@dataclass
class Run:
    cfg: DictConfig
    root: Path
    tracker: tracking.Tracker
    results: dict[str, dict] = field(default_factory=dict)

    def finished(self, stage: str) -> Path | None:
        folder = self.root / stage
        return folder if (folder / "manifest.json").is_file() else None

    def stage(self, name: str, config: Any, inputs: dict[str, Any], work: Callable[[Path], dict]) -> tuple[Path, dict]:
        """Run ``work(partial_dir) -> metrics`` unless an identical finished result exists."""
        key_material = {"stage": name, "config": to_plain(config), "inputs": inputs, "version": __version__}
        key = hashlib.sha256(json.dumps(key_material, sort_keys=True, default=str).encode()).hexdigest()
        final, partial = self.root / name, self.root / f".{name}.partial"
        if process_rank() != 0:  # other ranks of a multi-process train only help compute
            partial.mkdir(parents=True, exist_ok=True)
            return partial, {"metrics": work(partial)}
        if (final / "manifest.json").is_file():
            manifest = json.loads((final / "manifest.json").read_text())
            if manifest.get("key") == key:
                print(f"[platypus] {name}: reusing the finished result in {final}", flush=True)
                self.results[name] = manifest
                return final, manifest
            if not self.cfg.overwrite:
                raise PlatypusError(
                    f"{final} already holds a finished '{name}' result computed from a different config or inputs. "
                    f"Nothing was changed. Use a new run folder (hydra.run.dir=...) or pass overwrite=true to move "
                    f"the old result aside (it is kept, never deleted)."
                )
            aside = final.with_name(f"{name}.replaced-{datetime.now():%Y%m%d-%H%M%S}")
            final.rename(aside)
            print(f"[platypus] {name}: moved the previous result aside to {aside}", flush=True)
        elif final.exists():
            raise PlatypusError(f"{final} exists but has no manifest.json; move it away and rerun.")
        key_file = partial / ".key"
        if partial.exists() and (not key_file.is_file() or key_file.read_text() != key):
            shutil.rmtree(partial)  # an interrupted attempt of another config: nothing worth keeping
        partial.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)

        print(f"[platypus] {name}: running", flush=True)
        started = time.time()
        metrics = work(partial)
        seconds = time.time() - started
        key_file.unlink()
        manifest = {
            "stage": name,
            "key": key,
            "config": key_material["config"],
            "inputs": inputs,
            "outputs": sorted(str(p.relative_to(partial)) for p in partial.rglob("*") if p.is_file()),
            "metrics": metrics,
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
            "seconds": round(seconds, 2),
            "versions": versions(),
            "command": " ".join(sys.argv),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        partial.rename(final)
        print(f"[platypus] {name}: done in {seconds:.1f} s -> {final}", flush=True)
        self.results[name] = manifest
        return final, manifest


# --------------------------------------------------------------------------- stages
def base_model_path(run: Run) -> str:
    return models.resolve(run.cfg.model.path, run.cfg.model.gguf_file, run.cfg.cache_dir)


def curate_stage(run: Run) -> Path:
    from platypus.curate import run_curate
    from platypus.data.benchmarks import load_benchmark_questions
    from platypus.data.sources import load_mixture

    cfg = run.cfg
    config = {"data": cfg.data, "curate": cfg.curate, "benchmarks": cfg.benchmarks, "seed": cfg.seed}

    def work(out: Path) -> dict:
        rows, load_report = load_mixture(cfg.data, cfg.curate.on_bad_row, cfg.seed)
        names = list(cfg.curate.decontaminate.benchmarks) if cfg.curate.decontaminate.enabled else []
        questions = load_benchmark_questions(cfg.benchmarks, names)
        metrics = run_curate(cfg.curate, rows, questions, out, Path(cfg.cache_dir))
        (out / "load_report.json").write_text(json.dumps(load_report, indent=2))
        return metrics

    folder, manifest = run.stage("curate", config, {"package_data": "bundled resources or configured sources"}, work)
    run.tracker.log({f"curate/{k}": v for k, v in manifest["metrics"].items() if isinstance(v, (int, float))})
    with open(folder / "removed.csv", encoding="utf-8", newline="") as handle:
        removed = list(csv.reader(handle))
    if removed:
        run.tracker.table("curate/removed", removed[0], removed[1:])
    run.tracker.image("curate/similarity_hist", folder / "similarity_hist.png")
    return folder / "train.jsonl"


def train_stage(run: Run, dataset: Path) -> Path:
    from platypus.train import train

    cfg = run.cfg
    base = base_model_path(run)
    config = {"model": cfg.model, "lora": cfg.lora, "train": {**to_plain(cfg.train), "dataset": None}, "seed": cfg.seed}
    inputs = {"dataset": {"path": str(dataset), "sha256": models.file_sha256(dataset)}, "base_model": models.identity(base)}

    def work(out: Path) -> dict:
        return train(cfg.train, cfg.lora, cfg.model, base, dataset, out, cfg.seed, run.tracker.report_to)

    folder, manifest = run.stage("train", config, inputs, work)
    run.tracker.log({f"train/{k}": v for k, v in manifest["metrics"].items() if isinstance(v, (int, float))})
    run.tracker.image("train/loss_curve", folder / "loss.png")
    return folder / "adapter"


def merge_stage(run: Run, adapters: list[Path]) -> Path | None:
    """``adapters``: this run's adapter(s); ``merge.adapters`` (paths, ``train`` = this run's) replaces them."""
    from platypus.merge import check_recipe, merge, resolve_target

    cfg = run.cfg
    if cfg.merge.recipe == "none":
        print("[platypus] merge: recipe 'none', nothing to fold", flush=True)
        return None
    trained = run.finished("train")
    chosen = []
    for entry in cfg.merge.adapters:
        if entry == "train" and not trained:
            raise PlatypusError(
                "merge.adapters: 'train' means this run's train adapter, but this run folder has no finished train "
                "stage. Add train to stages, or give the adapter's path."
            )
        chosen.append(trained / "adapter" if entry == "train" else Path(entry))
    if chosen and trained and (trained / "adapter") not in chosen:
        print(f"[platypus] merge: using merge.adapters; this run's train adapter is not among them "
              f"(list 'train' in merge.adapters to include it)", flush=True)
    chosen = chosen or list(adapters)
    check_recipe(cfg.merge, chosen)  # before hashing or loading anything
    base = base_model_path(run)
    target = resolve_target(cfg.merge, base, cfg.cache_dir)
    config = {"merge": cfg.merge, "model": cfg.model, "seed": cfg.seed}
    inputs = {"adapters": [models.identity(a) for a in chosen], "base_model": models.identity(base)}
    if target != base:
        inputs["target"] = models.identity(target)

    def work(out: Path) -> dict:
        return merge(cfg.merge, cfg.model, base, chosen, out, cfg.cache_dir, seed=cfg.seed)

    folder, _ = run.stage("merge", config, inputs, work)
    return folder / "model"


def evaluate_stage(run: Run, candidates: dict[str, dict]) -> dict:
    from platypus.evaluate import EvalModel, evaluate_models

    cfg = run.cfg
    explicit = list(cfg.evaluate.models)
    if explicit:
        chosen = {Path(p).name if Path(p).exists() else p: {"pretrained": models.resolve(p, None, cfg.cache_dir, "evaluate.models")}
                  for p in explicit}
    else:
        unknown = [m for m in cfg.evaluate.include if m not in ("base", "adapter", "merged")]
        if unknown:
            raise PlatypusError(f"evaluate.include={list(cfg.evaluate.include)}: {unknown} unknown; use base, adapter, merged.")
        chosen = {name: spec for name, spec in candidates.items() if name in cfg.evaluate.include}
    if not chosen:
        raise PlatypusError(
            "evaluate: no model to evaluate. Give evaluate.models=[folder or hub id, ...], or run the stages "
            "that produce them (e.g. stages=[train,merge,evaluate])."
        )
    eval_models = [EvalModel(label=label, pretrained=spec["pretrained"], peft=spec.get("peft")) for label, spec in chosen.items()]
    config = {"eval": cfg.eval, "benchmarks": cfg.benchmarks}
    inputs = {m.label: {"model": models.identity(m.pretrained), "peft": m.peft and models.identity(m.peft)} for m in eval_models}

    def work(out: Path) -> dict:
        result = evaluate_models(cfg.eval, cfg.benchmarks, eval_models, out, Path(cfg.cache_dir))
        return {"summary": result["summary"], "table": result["table"]}

    folder, manifest = run.stage("evaluate", config, inputs, work)
    summary = manifest["metrics"]["summary"]
    for label, tasks in summary.items():
        flat = {}
        for task, metrics in tasks.items():
            if isinstance(metrics, dict):
                flat.update({f"eval/{label}/{task}/{m}": v for m, v in metrics.items()})
            else:
                flat[f"eval/{label}/{task}"] = metrics
        run.tracker.log(flat)
    run.tracker.image("eval/chart", folder / "chart.png")
    rows = [[label, task, metric, value] for label, tasks in summary.items() for task, metrics in tasks.items()
            for metric, value in (metrics.items() if isinstance(metrics, dict) else [("value", metrics)])]
    run.tracker.table("eval/results", ["model", "task", "metric", "value"], rows)
    return manifest["metrics"]


# --------------------------------------------------------------------------- entry
def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def run_pipeline(cfg: DictConfig, root: Path) -> float | None:
    check_stages(list(cfg.stages))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and list(cfg.stages) != ["train"]:
        raise PlatypusError(
            f"stages={list(cfg.stages)} under a multi-process launcher: only training is distributed. Run "
            f"`accelerate launch ... run.py stages=[train] train.dataset=...` (or hydra.run.dir=<run> after curate), "
            f"then the other stages with plain `python run.py` in the same run folder."
        )
    stages = set(cfg.stages)
    root.mkdir(parents=True, exist_ok=True)
    name = "-".join(str(cfg[g].name) for g in ("data", "lora", "merge"))
    tracker = tracking.start(cfg.logger, cfg, root, name) if process_rank() == 0 else tracking.Tracker()
    run = Run(cfg, root, tracker)
    try:
        dataset = Path(cfg.train.dataset) if cfg.train.dataset else None
        if "curate" in stages:
            dataset = curate_stage(run)
        elif dataset is None and run.finished("curate"):
            dataset = run.root / "curate" / "train.jsonl"

        adapters = [Path(a) for a in cfg.merge.adapters if a != "train"]  # "train": this run's, below
        if "train" in stages:
            if dataset is None:
                raise PlatypusError(
                    "stages: 'train' needs a curated dataset. Add curate to stages, or give train.dataset=<file.jsonl>."
                )
            if not dataset.is_file():
                raise PlatypusError(f"train.dataset={str(dataset)!r}: no such file.")
            adapters = [train_stage(run, dataset)]
        elif not adapters and run.finished("train"):
            adapters = [run.root / "train" / "adapter"]

        merged = None
        if "merge" in stages:
            merged = merge_stage(run, adapters)  # checks the adapter count against merge.recipe
        elif run.finished("merge"):
            merged = run.root / "merge" / "model"

        if "evaluate" not in stages:
            return None
        candidates: dict[str, dict] = {"base": {"pretrained": base_model_path(run)}}
        if adapters:
            candidates["adapter"] = {"pretrained": candidates["base"]["pretrained"], "peft": str(adapters[0])}
        if merged:
            candidates["merged"] = {"pretrained": str(merged)}
        result = evaluate_stage(run, candidates)
        (root / "summary.json").write_text(json.dumps(result["summary"], indent=2))
        headline = result["table"].split("\n### ")[0]  # the per-category/subject tables stay in table.md
        print(f"\n{headline}\n(full table with MMLU per category and subject: {root / 'evaluate' / 'table.md'})", flush=True)
        averages = [v.get("leaderboard_avg") for v in result["summary"].values() if isinstance(v, dict)]
        return averages[-1] if averages else None
    finally:
        write_run_summary(run)
        run.tracker.finish()


def write_run_summary(run: Run) -> None:
    """One line per stage with its wall time: what the README and the closing notes quote."""
    timings = {name: manifest.get("seconds") for name, manifest in run.results.items()}
    if timings:
        print("[platypus] stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()), flush=True)


def main(cfg: DictConfig) -> float | None:
    """Entry called by run.py: user-fixable problems become one paragraph and exit code 2."""
    from hydra.core.hydra_config import HydraConfig

    root = Path(HydraConfig.get().runtime.output_dir)
    try:
        return run_pipeline(cfg, root)
    except PlatypusError as error:
        if cfg.debug:
            raise
        print(f"\nerror: {error}\n(nothing finished was changed; add debug=true for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None

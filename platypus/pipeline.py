"""Stage order, the run folder, manifests and reuse.

Each stage writes into ``<run>/.<stage>.partial`` and is renamed to ``<run>/<stage>`` when
complete, with ``manifest.json`` (config, inputs, outputs, metrics, timings, versions). A stage
whose key (its resolved config + the content hashes of its inputs + the package version) matches
is reused: from this run folder, or from the cross-run stage cache (``stage_cache``), whose entry
is hardlinked into the run folder with ``"reused": true`` in its manifest. A finished stage
computed from something else is never overwritten (``overwrite=true`` moves it aside).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, nullcontext
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
    """Config nodes (also inside dicts and lists) as plain containers, so manifests hold data, not reprs."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    return cfg


def check_stages(stages: list[str]) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PlatypusError(f"stages={list(stages)}: unknown stage(s) {unknown}; valid stages are {list(STAGES)}.")
    if len(set(stages)) != len(stages) or list(stages) != sorted(stages, key=STAGES.index):
        raise PlatypusError(
            f"stages={list(stages)}: stages run in the order {list(STAGES)}, each at most once; "
            f"e.g. stages=[train,merge]."
        )


# --------------------------------------------------------------------------- stage keys and the stage cache
def key_inputs(value: Any) -> Any:
    """Inputs as they enter a stage key: content identities only. ``path`` entries are dropped (a run
    folder's paths differ between runs whose inputs are byte-identical); manifests keep them."""
    if isinstance(value, dict):
        return {k: key_inputs(v) for k, v in value.items() if k != "path"}
    if isinstance(value, (list, tuple)):
        return [key_inputs(v) for v in value]
    return value


def stage_key(name: str, config: Any, inputs: dict[str, Any]) -> tuple[str, dict]:
    """sha256 of the stage name, its resolved config, the content identity of its inputs, the package version."""
    material = {"stage": name, "config": to_plain(config), "inputs": key_inputs(inputs), "version": __version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest(), material


def _link_or_copy(src: str, dst: str) -> str:
    if Path(src).name == "manifest.json":  # rewritten per run folder: never shared
        return shutil.copy2(src, dst)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem (EXDEV) or no hardlinks there: copy
        return shutil.copy2(src, dst)
    return dst


def link_tree(src: Path, dst: Path) -> None:
    """Copy a finished stage folder as hardlinks (no extra disk), falling back to copies."""
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)


@dataclass
class StageCache:
    """Finished stages shared across run folders: ``<root>/<stage>/<key>/`` (a stage folder + manifest).

    Entries appear by an atomic rename of a complete temporary sibling and are never modified; their
    files are hardlinks shared with the run folders, which therefore must not be edited in place.
    """

    root: Path

    def lookup(self, stage: str, key: str) -> Path | None:
        entry = self.root / stage / key
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return entry if manifest.get("key") == key else None

    @contextmanager
    def lock(self, stage: str, key: str):
        """Exclusive while one process computes ``key``: parallel jobs of a sweep (joblib, SLURM) wait for
        it and then reuse its result instead of computing it again. No lock where flock is unavailable."""
        path = self.root / stage / f".{key}.lock"
        try:
            import fcntl

            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")
        except (ImportError, OSError):
            handle = None
        if handle is None:
            yield
            return
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"[platypus] {stage}: another job is computing this very result; waiting for it ({path})", flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # e.g. a filesystem without flock: go on unlocked
                pass
            yield
        finally:
            handle.close()  # releases the lock

    def store(self, stage: str, key: str, folder: Path) -> Path | None:
        """Add a finished stage folder under its key (a no-op when already there). Never fails the run."""
        entry = self.root / stage / key
        if self.lookup(stage, key):
            return entry
        staging = entry.with_name(f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            link_tree(folder, staging)
            if entry.exists() and not self.lookup(stage, key):  # damaged (no valid manifest): set it aside
                entry.rename(entry.with_name(f".{key}.broken-{uuid.uuid4().hex[:8]}"))
            os.rename(staging, entry)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if self.lookup(stage, key):  # a parallel job stored the same key first: keep theirs
                return entry
            print(f"[platypus] {stage}: could not add the result to the stage cache ({entry}): {error}", flush=True)
            return None
        print(f"[platypus] {stage}: stored in the stage cache -> {entry}", flush=True)
        return entry


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

    def cache(self) -> StageCache | None:
        root = self.cfg.get("stage_cache")
        return StageCache(Path(str(root)).expanduser()) if root else None

    def stage(self, name: str, config: Any, inputs: dict[str, Any], work: Callable[[Path], dict]) -> tuple[Path, dict]:
        """Run ``work(partial_dir) -> metrics`` unless an identical finished result exists, in this run
        folder or in the stage cache (then it is hardlinked here and its manifest says ``reused``)."""
        key, key_material = stage_key(name, config, inputs)
        final, partial = self.root / name, self.root / f".{name}.partial"
        if process_rank() != 0:  # other ranks of a multi-process train only help compute (and never touch the cache)
            partial.mkdir(parents=True, exist_ok=True)
            return partial, {"metrics": work(partial)}
        cache = self.cache()
        if (final / "manifest.json").is_file():
            manifest = json.loads((final / "manifest.json").read_text())
            if manifest.get("key") == key:
                print(f"[platypus] {name}: reusing the finished result in {final}", flush=True)
                if cache:
                    cache.store(name, key, final)
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
        # Held while computing: a parallel job of the same sweep with the same key waits, then reuses.
        # A multi-process train never takes a cached result: the other ranks are already training.
        alone = int(os.environ.get("WORLD_SIZE", "1")) == 1
        with cache.lock(name, key) if cache else nullcontext():
            entry = cache.lookup(name, key) if cache and alone else None
            if entry:
                manifest = self._materialize(name, entry, inputs)
            else:
                manifest = self._compute(name, key, key_material, inputs, work)
                if cache:
                    cache.store(name, key, final)
        self.results[name] = manifest
        return final, manifest

    def _compute(self, name: str, key: str, key_material: dict, inputs: dict, work: Callable[[Path], dict]) -> dict:
        final, partial = self.root / name, self.root / f".{name}.partial"
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
        return manifest

    def _materialize(self, name: str, entry: Path, inputs: dict) -> dict:
        """Hardlink a cached result into ``<run>/<name>`` (via a partial folder and a rename)."""
        final, staging = self.root / name, self.root / f".{name}.reuse.partial"
        started = time.time()
        shutil.rmtree(staging, ignore_errors=True)
        link_tree(entry, staging)
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest.update({
            "inputs": inputs,  # this run's paths; the key (content hashes) is the cached one
            "reused": True,
            "reused_from": str(entry),
            "reused_at": datetime.now(timezone.utc).isoformat(),
            "reuse_seconds": round(time.time() - started, 2),
            "reused_by_command": " ".join(sys.argv),
        })
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))  # a copy, not a link
        staging.rename(final)
        partial = self.root / f".{name}.partial"  # an interrupted attempt at this very result: superseded
        if (partial / ".key").is_file() and (partial / ".key").read_text() == manifest["key"]:
            shutil.rmtree(partial)
        print(f"[platypus] {name}: reused from the stage cache {entry} (computed there in {manifest.get('seconds')} s) "
              f"-> {final}", flush=True)
        return manifest


# --------------------------------------------------------------------------- stages
def base_model_path(run: Run) -> str:
    return models.resolve(run.cfg.model.path, run.cfg.model.gguf_file, run.cfg.cache_dir)


def curate_inputs(cfg: DictConfig) -> dict:
    """What curate reads, by content: sha256 of every bundled or local source file (hub sources: id +
    split), and of the benchmark test files the contamination filter compares against."""
    from platypus.resources import BENCHMARKS, BUNDLED_PREFIX, DATASETS, bundled

    sources: dict[str, dict] = {}
    for name, src in cfg.data.sources.items():
        path = str(src.path)
        local = Path(path).expanduser()
        if path.startswith(BUNDLED_PREFIX):
            sources[name] = {"bundled": path, "sha256": models.file_sha256(bundled(DATASETS, path[len(BUNDLED_PREFIX):]))}
        elif local.is_file():
            sources[name] = {"path": str(local.resolve()), "sha256": models.file_sha256(local)}
        else:  # a hub dataset (or a missing file, which the load names)
            sources[name] = {"hub_id": path, "split": str(src.split)}
    benchmarks: dict[str, dict] = {}
    if cfg.curate.decontaminate.enabled:
        for name in cfg.curate.decontaminate.benchmarks:
            bench = cfg.benchmarks.sets.get(name)
            if bench is None:
                continue  # unknown name: the load says so, with the valid ones
            if cfg.benchmarks.source == "bundled" and bench.test_split in bench.files:
                file = bench.files[bench.test_split]
                benchmarks[name] = {"bundled": file, "sha256": models.file_sha256(bundled(BENCHMARKS, file))}
            else:
                benchmarks[name] = {"hub_id": bench.hub_path, "name": bench.hub_name, "split": bench.test_split}
    return {"sources": sources, "benchmark_questions": benchmarks}


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

    folder, manifest = run.stage("curate", config, curate_inputs(cfg), work)
    metrics = {f"curate/{k}": v for k, v in manifest["metrics"].items() if isinstance(v, (int, float))}
    metrics["curate/removed"] = manifest["metrics"].get("rows_in", 0) - manifest["metrics"].get("kept", 0)
    run.tracker.log(metrics)
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


def plan_evaluation(run: Run, eval_models: list) -> None:
    """``evaluate.plan=true``: requests per task and a time estimate from a measured warm-up; evaluates nothing."""
    from platypus.evaluate.plan import plan
    from platypus.evaluate.backends import resolve_batch_size, resolve_dtype

    cfg = run.cfg
    with tempfile.TemporaryDirectory(prefix="platypus-plan-") as scratch:
        found = plan(cfg.eval, cfg.benchmarks, eval_models, Path(scratch), Path(cfg.cache_dir), cfg.evaluate.plan_warmup_docs,
                     disagreement=cfg.evaluate.plan_disagreement, mc2_sd=cfg.evaluate.plan_mc2_sd)
    names = ", ".join(f"{m.label} ({m.pretrained}{' + ' + m.peft if m.peft else ''})" for m in eval_models)
    dtype = resolve_dtype(cfg.eval.dtype, cfg.eval.device)
    text = (f"# Evaluation plan: eval={cfg.eval.name}, backend {cfg.eval.backend}, batch size "
            f"{resolve_batch_size(cfg.eval)}, {dtype}\n\n"
            f"Models: {names}\n\n{found['table']}")
    (run.root / "evaluate_plan.md").write_text(text)
    (run.root / "evaluate_plan.json").write_text(json.dumps({k: v for k, v in found.items() if k != "table"}, indent=1))
    print(f"\n{text}\n(plan only: nothing was evaluated; written to {run.root / 'evaluate_plan.md'})", flush=True)
    return None


def evaluated_models(include: list[str], candidates: dict[str, dict]) -> list[str]:
    """The run's models named in ``evaluate.include``. ``merged`` stands for the run's final model: a run that
    folds nothing (``merge=none``) evaluates its unmerged adapter in its place, so a ``merge=into_base,none``
    sweep compares merged against unmerged instead of the base alone."""
    names = [name for name in candidates if name in include]
    if "merged" in include and "merged" not in candidates and "adapter" in candidates and "adapter" not in names:
        print("[platypus] evaluate: this run merges nothing; evaluating its adapter in place of 'merged'", flush=True)
        names.append("adapter")
    return names


def evaluate_stage(run: Run, candidates: dict[str, dict]) -> dict | None:
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
        chosen = {name: candidates[name] for name in evaluated_models(list(cfg.evaluate.include), candidates)}
    if not chosen:
        raise PlatypusError(
            "evaluate: no model to evaluate. Give evaluate.models=[folder or hub id, ...], or run the stages "
            "that produce them (e.g. stages=[train,merge,evaluate])."
        )
    eval_models = [EvalModel(label=label, pretrained=spec["pretrained"], peft=spec.get("peft")) for label, spec in chosen.items()]
    if cfg.evaluate.plan:
        return plan_evaluation(run, eval_models)
    config = {"eval": cfg.eval, "benchmarks": cfg.benchmarks}
    inputs = {m.label: {"model": models.identity(m.pretrained), "peft": m.peft and models.identity(m.peft)} for m in eval_models}

    def work(out: Path) -> dict:
        result = evaluate_models(cfg.eval, cfg.benchmarks, eval_models, out, Path(cfg.cache_dir))
        return {"summary": result["summary"], "table": result["table"]}

    folder, manifest = run.stage("evaluate", config, inputs, work)
    summary = manifest["metrics"]["summary"]
    for label, tasks in summary.items():
        run.tracker.log(tracking.flatten(tasks, f"eval/{label}"))
    run.tracker.image("eval/chart", folder / "chart.png")
    rows = [[label, task, metric, value] for label, tasks in summary.items() for task, metrics in tasks.items()
            if task != "delta" for metric, value in (metrics.items() if isinstance(metrics, dict) else [("value", metrics)])]
    run.tracker.table("eval/results", ["model", "task", "metric", "value"], rows)
    deltas = [[label, d["reference"], task, v["value"], v["low"], v["high"], v["p"], v["significant"], v["n"]]
              for label, tasks in summary.items() if (d := tasks.get("delta")) for task, v in d.items() if task != "reference"]
    if deltas:
        run.tracker.table("eval/deltas", ["model", "reference", "task", "delta", "low", "high", "p", "significant", "n"],
                          deltas)
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
    tracker = (tracking.start(cfg.logger, cfg, root, name, tracking.hydra_job(), job_type="+".join(cfg.stages))
               if process_rank() == 0 else tracking.Tracker())
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
        if result is None:  # evaluate.plan=true: a plan, no results
            return None
        (root / "summary.json").write_text(json.dumps(result["summary"], indent=2))
        headline = result["table"].split("\n### ")[0]  # the per-category/subject tables stay in table.md
        print(f"\n{headline}\n(full table with MMLU per category and subject: {root / 'evaluate' / 'table.md'})", flush=True)
        averages = [v.get("leaderboard_avg") for v in result["summary"].values() if isinstance(v, dict)]
        return averages[-1] if averages else None
    finally:
        write_run_summary(run)
        run.tracker.finish()


def write_run_summary(run: Run) -> None:
    """One line per stage with its wall time (or where it was reused from): what the README quotes."""
    parts, reused = [], []
    for name, manifest in run.results.items():
        if manifest.get("reused"):
            reused.append(name)
            parts.append(f"{name} reused ({manifest.get('reuse_seconds')})")
        else:
            parts.append(f"{name} {manifest.get('seconds')}")
    if parts:
        print("[platypus] stage wall times (s): " + ", ".join(parts), flush=True)
        run.tracker.summary({"stages/reused": "+".join(reused) or "none",
                             "stages/computed": "+".join(n for n in run.results if n not in reused) or "none"})


def main(cfg: DictConfig) -> float | None:
    """Entry called by run.py: user-fixable problems become one paragraph and exit code 2."""
    from hydra.core.hydra_config import HydraConfig

    return run_checked(cfg, Path(HydraConfig.get().runtime.output_dir))


# --------------------------------------------------------------------------- errors the user can fix
EXIT_USER_ERROR = 2
# A full disk or quota, no permission, a read-only or missing folder: the machine, not the code.
WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR"}


def run_checked(cfg: DictConfig, root: Path) -> float | None:
    """Check every setting (platypus.validate), then run the pipeline; a PlatypusError, or an OSError of the
    disk or the permissions, becomes one paragraph on stderr and exit code 2 (``debug=true``: the traceback)."""
    import errno

    from omegaconf import errors as omegaconf_errors

    from platypus.validate import check_config

    try:
        check_config(cfg)
        return run_pipeline(cfg, root)
    except PlatypusError as error:
        _fail(cfg, str(error))
    except OSError as error:
        if errno.errorcode.get(error.errno) not in WRITE_ERRNOS:
            raise
        _fail(cfg, write_error_message(error, root))
    except omegaconf_errors.MissingMandatoryValue as error:
        _fail(cfg, f"Config key '{error.full_key}' has no value (???): set it, e.g. {error.full_key}=<value>.")
    return None


def _fail(cfg: DictConfig, message: str) -> None:
    if cfg.get("debug"):
        raise  # noqa: PLE0704 - re-raises the exception being handled: the full traceback
    print(f"\nerror: {message}\n(nothing finished was changed; add debug=true for the full traceback)", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR) from None


def write_error_message(error: OSError, root: Path) -> str:
    """What failed (path, reason), what was kept, and what to do."""
    import errno

    code = errno.errorcode.get(error.errno, str(error.errno))
    path = error.filename or "a file"
    reason = error.strerror or str(error)
    unfinished = sorted(p for p in root.glob(".*.partial") if p.is_dir()) if root.is_dir() else []
    finished = [s for s in STAGES if (root / s / "manifest.json").is_file()]
    kept = (f" The unfinished stage stays in {', '.join(str(p) for p in unfinished)} (no manifest.json, so it is "
            f"never taken for a finished result; a rerun continues or replaces it)." if unfinished else "")
    done = f" Finished stages ({', '.join(finished)}) were not touched." if finished else ""
    if code in ("ENOSPC", "EDQUOT", "EFBIG"):
        todo = (f"Free space on that disk (or point hydra.run.dir=<folder> / PLATYPUS_CACHE at a disk with room), "
                f"then rerun the same command in the same run folder: finished stages are reused and training "
                f"continues from its last checkpoint.")
        what = "The disk is full"
    else:
        todo = (f"Fix the permissions, or choose a folder you can write to (hydra.run.dir=<folder>, cache_dir / "
                f"PLATYPUS_CACHE=<folder>), then rerun the same command.")
        what = "Cannot write"
    return f"{what}: {reason} ({code}) writing {path}.{kept}{done} {todo}"

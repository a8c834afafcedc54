"""lm-eval task definitions for an eval suite, from the hub or from the bundled benchmark copies.

Bundled benchmarks reuse lm-eval's *own* task YAMLs: each generated YAML ``include:``s the
installed file by absolute path and overrides only where the data comes from, so prompts,
few-shot rules and metrics stay the official ones and results are keyed by the official task
names. MMLU's per-subject tasks read per-subject JSONL files (written once into the cache,
keyed by the bundled files' hash), which keeps lm-eval's own ``dev``/``first_n`` few-shot intact.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from platypus.fields import BenchmarkSource, FewshotStream
from platypus.runtime.errors import PlatypusError
from platypus.runtime.identity import digest, file_sha256
from platypus.runtime.io import staged_folder
from platypus.resources import BENCHMARKS
from platypus.stages.evaluate import fewshot_v1

SUBJECT = "{subject}"
SUBJECT_FIELD = "subject"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


@dataclass(frozen=True)
class SuiteTask:
    """One entry of ``eval.tasks``: the lm-eval task(s) it runs (57 for MMLU)."""

    key: str
    benchmark: str
    lm_eval_names: list[str]
    # lm-eval task name -> subject, for per-subject benchmarks (MMLU); empty otherwise.
    subjects: dict[str, str]
    fewshot_stream: str = "lm_eval"  # v1: the task's YAML carries v1's exemplars and runs 0-shot (fewshot_v1.py)

    def lm_eval_fewshot(self, num_fewshot: int) -> int:
        """The few-shot count lm-eval is given: 0 where the v1 blocks are already in the documents."""
        return 0 if self.fewshot_stream == FewshotStream.v1 else num_fewshot


@dataclass(frozen=True)
class Suite:
    source: str
    tasks: dict[str, SuiteTask]
    # Folder of generated YAMLs (bundled; hub: the v1 stream's tasks) or None (hub: lm-eval's built-in tasks).
    include_path: Path | None

    def task_manager(self):
        """Bundled: index only our folder (0.01 s); hub: lm-eval's defaults (~12 s), overridden by our folder."""
        from lm_eval.tasks import TaskManager

        if self.include_path is None:
            return TaskManager()
        return TaskManager(include_path=str(self.include_path), include_defaults=self.source == BenchmarkSource.hub)


# --------------------------------------------------------------------------- official YAMLs
def _official_yaml(name: str, bench: Mapping[str, Any], subject: str | None = None) -> Path:
    rel = bench["lm_eval_yaml"]
    path = lm_eval_tasks_dir() / (rel.replace(SUBJECT, subject) if subject else rel)
    if not path.is_file():
        raise PlatypusError(
            f"benchmarks.sets.{name}.lm_eval_yaml={rel!r}: {path} does not exist in the installed lm-eval "
            f"({lm_eval_tasks_dir()}). Give a path relative to lm-eval's tasks/ folder, e.g. arc/arc_challenge.yaml."
        )
    return path


def _load_yaml(path: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False, recursive=True)


def subject_yamls(name: str, bench: Mapping[str, Any]) -> dict[str, Path]:
    """subject -> lm-eval's YAML, for a per-subject benchmark (``{subject}`` in lm_eval_yaml)."""
    rel = bench["lm_eval_yaml"]
    prefix, suffix = rel.split(SUBJECT, 1)
    pattern_dir = lm_eval_tasks_dir() / Path(prefix).parent
    stem_prefix = Path(prefix).name
    found = {
        path.name[len(stem_prefix): len(path.name) - len(suffix)]: path
        for path in sorted(pattern_dir.glob(f"{stem_prefix}*{suffix}"))
    }
    if not found:
        raise PlatypusError(
            f"benchmarks.sets.{name}.lm_eval_yaml={rel!r} matches no file in {pattern_dir} of the installed lm-eval."
        )
    return found


def subject_categories(name: str, bench: Mapping[str, Any]) -> dict[str, str]:
    """subject -> category (MMLU: stem, humanities, social_sciences, other), from lm-eval's tags.

    lm-eval tags each subject task ``<task>_<category>_tasks``; that tag is what its own
    category groups collect, so the split is exactly lm-eval's.
    """
    head, tail = f"{bench['task']}_", "_tasks"
    categories = {}
    for subject, path in subject_yamls(name, bench).items():
        tags = _load_yaml(path).get("tag") or []
        for tag in [tags] if isinstance(tags, str) else tags:
            if tag.startswith(head) and tag.endswith(tail):
                categories[subject] = tag[len(head): -len(tail)]
    return categories


def is_per_subject(bench: Mapping[str, Any]) -> bool:
    return SUBJECT in bench["lm_eval_yaml"]


# --------------------------------------------------------------------------- suite
def resolve_benchmark(task_key: str, task_cfg: Mapping[str, Any], benchmarks_cfg: Mapping[str, Any]):
    name = task_cfg["benchmark"]
    sets = benchmarks_cfg["sets"]
    if name not in sets:
        raise PlatypusError(
            f"eval.tasks.{task_key}.benchmark={name!r} is not a benchmark of this config; "
            f"benchmarks.sets has: {', '.join(sorted(sets))}. Fix the name or add the set to conf/benchmarks/."
        )
    return name, sets[name]


def data_definition(bench: Mapping[str, Any]) -> dict[str, Any]:
    """A ``benchmarks.sets`` entry without its facts: what an evaluation result is computed from."""
    return {key: value for key, value in bench.items() if key != "facts"}


def build_suite(
    eval_cfg: Mapping[str, Any], benchmarks_cfg: Mapping[str, Any], folder: Path, cache_dir: Path,
    log: Callable[[str], None] = print,
) -> Suite:
    """Resolve every ``eval.tasks`` entry; for bundled data, write the task YAMLs into ``folder``; with
    ``eval.fewshot_stream=v1``, rewrite ARC's and HellaSwag's to carry v1's exemplars."""
    source = benchmarks_cfg["source"]
    if not eval_cfg["tasks"]:
        raise PlatypusError(f"eval.tasks of suite '{eval_cfg.get('name')}' is empty: nothing to evaluate.")
    tasks: dict[str, SuiteTask] = {}
    definitions: dict[str, dict[str, Any]] = {}
    for key, task_cfg in eval_cfg["tasks"].items():
        name, bench = resolve_benchmark(key, task_cfg, benchmarks_cfg)
        if is_per_subject(bench):
            subjects = {
                _load_yaml(path)["task"]: subject for subject, path in subject_yamls(name, bench).items()
            }
            names = list(subjects)
        else:
            _official_yaml(name, bench)
            subjects, names = {}, [bench["task"]]
        tasks[key] = SuiteTask(key=key, benchmark=name, lm_eval_names=names, subjects=subjects)
        if source == BenchmarkSource.bundled:
            definitions.update(_bundled_definitions(name, bench, cache_dir))
    suite = Suite(source=source, tasks=tasks, include_path=None if source == BenchmarkSource.hub else folder)
    if source == BenchmarkSource.bundled:
        folder.mkdir(parents=True, exist_ok=True)
        for task_name, definition in definitions.items():
            (folder / f"{task_name}.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    if eval_cfg.get("fewshot_stream", FewshotStream.lm_eval) == FewshotStream.v1:
        suite = _replay_v1(suite, eval_cfg, benchmarks_cfg, definitions, folder, log)
    return suite


def _replay_v1(suite: Suite, eval_cfg: Mapping[str, Any], benchmarks_cfg: Mapping[str, Any],
               definitions: Mapping[str, dict], folder: Path, log: Callable[[str], None]) -> Suite:
    """The suite with the tasks of the benchmarks marked ``facts.v1_fewshot_stream`` (ARC, HellaSwag) replaying v1's
    exemplars (a task whose pool, its train split, is not available is said so in one line and keeps lm-eval's
    sampler)."""
    chosen = {key: task for key, task in suite.tasks.items()
              if benchmarks_cfg["sets"][task.benchmark]["facts"]["v1_fewshot_stream"]
              and int(eval_cfg["tasks"][key]["num_fewshot"]) > 0}
    if not chosen:
        return suite
    loaded = suite.task_manager().load([task.lm_eval_names[0] for task in chosen.values()])["tasks"]
    folder.mkdir(parents=True, exist_ok=True)
    tasks = dict(suite.tasks)
    for key, task in chosen.items():
        name = task.lm_eval_names[0]  # ARC and HellaSwag are one lm-eval task each
        lm_task = loaded[name]
        if not lm_task.has_training_docs():
            log(f"[evaluate] eval.fewshot_stream=v1: {task.benchmark}'s v1 exemplar pool (its train split) is not "
                f"in benchmarks.source={suite.source}; its few-shot examples come from lm-eval's sampler instead.")
            continue
        bench = benchmarks_cfg["sets"][task.benchmark]
        definition = definitions.get(name) or {"include": str(_official_yaml(task.benchmark, bench)), "task": name,
                                               "tag": []}
        fewshot_v1.replay(lm_task, int(eval_cfg["tasks"][key]["num_fewshot"]), definition, folder)
        tasks[key] = dataclasses.replace(task, fewshot_stream="v1")
    return Suite(source=suite.source, tasks=tasks, include_path=folder)


def check_hub_names(suite: Suite, benchmarks_cfg: Mapping[str, Any], task_manager) -> None:
    """Hub source: every task must exist among lm-eval's built-in tasks."""
    known = set(task_manager.all_tasks)
    for task in suite.tasks.values():
        missing = [n for n in task.lm_eval_names if n not in known]
        if missing:
            raise PlatypusError(
                f"benchmarks.sets.{task.benchmark}.task={benchmarks_cfg['sets'][task.benchmark]['task']!r}: "
                f"lm-eval has no task {missing[0]!r}. Use a name from `lm_eval ls tasks`."
            )


# --------------------------------------------------------------------------- bundled definitions
def _bundled_files(name: str, bench: Mapping[str, Any]) -> dict[str, Path]:
    files = dict(bench.get("files") or {})
    if bench["test_split"] not in files:
        raise PlatypusError(
            f"benchmarks.sets.{name}.files has no '{bench['test_split']}' entry (its test_split), so "
            f"benchmarks.source=bundled cannot evaluate it. Add the file, or use benchmarks=hub."
        )
    paths = {}
    for split, rel in files.items():
        path = BENCHMARKS / rel
        if not path.is_file():
            raise PlatypusError(
                f"benchmarks.sets.{name}.files.{split}={rel!r}: {path} does not exist. Bundled copies live "
                f"under {BENCHMARKS}; fix the path or use benchmarks=hub."
            )
        paths[split] = path
    return paths


def _definition(include: Path, task_name: str, data_files: Mapping[str, Path], bench: Mapping[str, Any]) -> dict:
    definition: dict[str, Any] = {
        "include": str(include),
        "task": task_name,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(path) for split, path in data_files.items()}},
    }
    definition.update(bench.get("overrides") or {})
    return definition


def _bundled_definitions(name: str, bench: Mapping[str, Any], cache_dir: Path) -> dict[str, dict]:
    files = _bundled_files(name, bench)
    if not is_per_subject(bench):
        return {bench["task"]: _definition(_official_yaml(name, bench), bench["task"], files, bench)}
    subject_dir = split_by_subject(files, cache_dir)
    definitions = {}
    for subject, path in subject_yamls(name, bench).items():
        task_name = _load_yaml(path)["task"]
        data = {split: subject_dir / subject / f"{split}.jsonl" for split in files}
        data = {split: path for split, path in data.items() if path.is_file()}
        if bench["test_split"] not in data:
            raise PlatypusError(
                f"benchmarks.sets.{name}.files.{bench['test_split']}: the bundled file has no rows with "
                f"{SUBJECT_FIELD}={subject!r}, which lm-eval's {path.name} evaluates."
            )
        definitions[task_name] = _definition(path, task_name, data, bench)
    return definitions


def split_by_subject(files: Mapping[str, Path], cache_dir: Path) -> Path:
    """Write ``<subject>/<split>.jsonl`` once per content of the bundled files; return the folder."""
    key = digest({split: file_sha256(files[split]) for split in files})
    target = cache_dir / "benchmarks" / f"subjects-{key[:16]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(target) as staging:
        for split, path in files.items():
            rows: dict[str, list[str]] = {}
            with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        rows.setdefault(json.loads(line)[SUBJECT_FIELD], []).append(line.rstrip("\n"))
            for subject, lines in rows.items():
                (staging / subject).mkdir(parents=True, exist_ok=True)
                (staging / subject / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target

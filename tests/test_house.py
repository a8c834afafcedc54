"""The house rules, enforced: no import cycle, small modules and functions, and every name spelled once (a stage
name, ``manifest.json`` or a model role appears as a literal only in the module that defines it; a benchmark's
name only in conf/benchmarks/)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platypus"
MODULE_LINES, FUNCTION_LINES = 300, 60
STAGES = ("curate", "train", "merge", "evaluate")  # a stage's name is spelled only in its own package
# literal -> the modules allowed to spell it: where it is defined
NAMES = {
    "manifest.json": {"runtime/io.py"},
    **{role: {"fields.py"} for role in ("base", "target", "adapter", "merged")},  # fields.Role
    **{stage: set() for stage in STAGES},
}
NOT_NAMES = {  # the same word meaning something else
    "train": {"data/kinds.py",  # a dataset split
              "stages/train/loss.py",  # TRL's mode
              "stages/merge/stage.py"},  # the token for this run's adapter in merge.adapters=[train,...]
    "merge": {"stages/merge/card.py"},  # a hub tag
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``path`` imports, at the top or inside functions (a lazy import is still a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def test_no_import_cycle():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")
    assert len(order) == len(known)


def test_modules_and_functions_are_small():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long


def literals(path: Path, names=NAMES) -> list[tuple[int, str]]:
    """The string constants of ``path`` (docstrings left out) that are one of ``names``."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and node.value in names and id(node) not in docstrings]


def test_every_name_is_spelled_once():
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for line, value in literals(path):
            own = value in STAGES and where.startswith(f"stages/{value}/")
            if not own and where not in NAMES[value] | NOT_NAMES.get(value, set()):
                strays.append(f"platypus/{where}:{line}: {value!r}")
    assert not strays, "\n".join(strays)


def test_benchmark_names_are_spelled_only_in_conf():
    """The benchmarks and their facts (v1 average, decontamination, planning figures) live in conf/benchmarks/:
    no module of the package names one as a literal (docstrings and comments may mention them)."""
    import yaml

    conf = PACKAGE.parent / "conf" / "benchmarks"
    names = {name for path in conf.glob("*.yaml") for name in (yaml.safe_load(path.read_text()).get("sets") or {})}
    assert {"arc_challenge", "mmlu"} <= names
    strays = [f"platypus/{path.relative_to(PACKAGE).as_posix()}:{line}: {value!r}"
              for path in sorted(PACKAGE.rglob("*.py")) for line, value in literals(path, names)]
    assert not strays, "\n".join(strays)

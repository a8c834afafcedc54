"""What tests/test_docs.py checks in README.md, docs/ and benchmarks/README.md: relative links that resolve (files,
and headings for ``page.md#anchor``), and documented ``run.py`` command lines that Hydra composes. A line containing
SKIP is left out (a command that needs an uninstalled extra, or that shows a mistake on purpose)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SKIP = "docs-check: skip"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`]*run\.py[^`]*)`")
# run.py as a command: after python/python3, or as the script of a launcher (accelerate launch ... run.py).
COMMAND = re.compile(r"(?:\bpython3?|\blaunch\b.*)\s+run\.py(?:\s|$)")
# Hydra flags of run.py that take a value (the value is not an override) and those that take none.
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn", "--config-path", "-cp",
                    "--config-dir", "-cd", "--experimental-rerun"}


@dataclass(frozen=True)
class Where:
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def markdown_files(repo: Path) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md")), repo / "benchmarks" / "README.md"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file (or heading) does not exist, as 'file:line: target'."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if SKIP in line:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http(s):, mailto: ...
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file) if file else path
            if not resolved.exists():
                found.append(f"{Where(path, number)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                found.append(f"{Where(path, number)}: {target} (no such heading in {resolved.name})")
    return found


def _command_lines(path: Path):
    """(where, text after 'run.py') for every documented run.py command: in code blocks (with '\\' continuations
    joined and '#' comments dropped) and in inline code."""
    lines = path.read_text(encoding="utf-8").splitlines()
    in_block, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if SKIP in line:
            pending = ""
            continue
        if in_block:
            start = start if pending else number
            text = pending + re.split(r"\s#\s", " " + line, maxsplit=1)[0]
            if text.rstrip().endswith("\\"):
                pending = text.rstrip()[:-1] + " "
                continue
            pending = ""
            if COMMAND.search(text):
                yield Where(path, start), COMMAND.split(text, maxsplit=1)[1]
        else:
            for code in INLINE_CODE.findall(line):
                if COMMAND.search(code):
                    yield Where(path, number), COMMAND.split(code, maxsplit=1)[1]


def overrides_of(arguments: str) -> list[str]:
    """The Hydra overrides of a run.py argument string: flags, '...', optional parts ('[key=value]') and overrides
    whose whole value is a '<placeholder>' dropped; a placeholder inside a value becomes 'x'."""
    tokens = shlex.split(re.sub(r"<[^>]*>", "<>", arguments))
    out, skip_next = [], False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in FLAGS_WITH_VALUE:
            skip_next = True
        elif not (token.startswith("-") or token in ("...", "…") or token.endswith("=<>")
                  or token.startswith("[") and token.endswith("]") and "=" in token):
            out.append(token.replace("<>", "x"))
    return out


def documented_commands(paths: list[Path]) -> list[tuple[Where, list[str]]]:
    return [(where, overrides_of(text)) for path in paths for where, text in _command_lines(path)]


def one_job(overrides: list[str]) -> list[str]:
    """A sweep's first job: 'a=x,y' -> 'a=x' (compose takes no sweeps)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    jobs = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            jobs.append(f"{override.get_key_element()}={next(override.sweep_string_iterator())}")
        else:
            jobs.append(override.input_line)
    return jobs


def compose_errors(commands: list[tuple[Where, list[str]]]) -> list[str]:
    """'file:line: run.py ...: why' for each command Hydra does not compose (one process, one Hydra context; a
    command documented in several places is composed once)."""
    from hydra import initialize_config_module

    from platypus.config import CONFIG_MODULE, compose
    reasons: dict[tuple[str, ...], str] = {}
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for _, overrides in commands:
            key = tuple(overrides)
            if key in reasons:
                continue
            try:
                compose(*one_job(overrides), hydra_node=True)
                reasons[key] = ""
            except Exception as error:  # noqa: BLE001 - every failure is reported, with its command
                reasons[key] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return [f"{where}: run.py {' '.join(overrides)}: {reasons[tuple(overrides)]}"
            for where, overrides in commands if reasons[tuple(overrides)]]

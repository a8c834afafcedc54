"""Files shipped inside the package: the data and benchmark copies (see each SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

from platypus.runtime.errors import PlatypusError

ROOT = Path(__file__).resolve().parent
DATASETS = ROOT / "datasets"
BENCHMARKS = ROOT / "benchmarks"
EMBEDDINGS = ROOT / "embeddings"
BUNDLED_PREFIX = "bundled:"


def bundled(folder: Path, name: str) -> Path:
    """Path of a bundled file, with a clear error when it does not exist."""
    path = folder / name
    if not path.is_file():
        available = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.gz"))
        raise PlatypusError(
            f"Bundled file '{name}' does not exist in {folder}. Available: {', '.join(available)}."
        )
    return path

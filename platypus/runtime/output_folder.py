"""The run's output folder, checked before Hydra writes into it: writable (or creatable) and not in use."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from platypus.runtime.errors import ConfigError


def check_output_folder(cfg, multirun: bool = False) -> None:
    from omegaconf import OmegaConf

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(cfg, key)
    except Exception:  # noqa: BLE001 - needs runtime values (e.g. ${hydra.job.override_dirname}): Hydra's job
        return
    if folder:
        check_writable(Path(str(folder)), key)
        from platypus.runtime.lock import holder, in_use

        if not multirun and (who := holder(Path(str(folder)))):  # refused before Hydra writes into the folder
            raise ConfigError(str(in_use(Path(str(folder)), who)))


def check_writable(folder: Path, key: str) -> None:
    """``folder`` exists and is writable, or can be created: a folder is made and removed in it or in its nearest
    existing ancestor (permission bits alone pass e.g. /proc, where nothing can be created)."""
    folder = Path(os.path.abspath(folder.expanduser()))
    existing = folder
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(
                f"Output folder {folder} ({key}) cannot be created: {existing} is a file, not a folder. "
                f"Choose another folder with {key}=<folder>."
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
            raise ConfigError(
                f"Output folder {folder} ({key}) {what} (permission denied or a read-only file system). "
                f"Choose a folder you can write to with {key}=<folder>, or fix the permissions of {existing}."
            )
        os.rmdir(tempfile.mkdtemp(prefix=".platypus-probe-", dir=existing))
    except OSError as error:
        what = "is not writable" if existing == folder else "cannot be created"
        raise ConfigError(
            f"Output folder {folder} ({key}) {what}: no folder can be made in {existing} ({error.strerror or error}, "
            f"{errno.errorcode.get(error.errno, error.errno)}). Choose a folder on a disk you can write to with "
            f"{key}=<folder>."
        ) from None

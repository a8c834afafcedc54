"""``python -m platypus.cache``: see, check and trim the cross-run stage cache.

    python -m platypus.cache list                       # entries: stage, key, size, last used, made by, used by
    python -m platypus.cache verify                     # every file's sha256 against its manifest (exit 1: damage)
    python -m platypus.cache du                         # sizes per stage
    python -m platypus.cache gc --max-gb 20 --dry-run   # what would go: least recently used first
    python -m platypus.cache gc --older-than 30         # entries unused for 30 days
    python -m platypus.cache list stage_cache=/scratch/stages   # Hydra overrides pick the cache (as for a run)

``gc`` never removes an entry a run folder still uses (``--force`` does); its budget defaults to the config's
``stage_cache_max_gb``. Damaged entries a run moved aside are kept until ``gc --damaged``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from platypus.runtime import integrity
from platypus.runtime.cache import MANIFEST, Entry, StageCache
from platypus.runtime.errors import fail
from platypus.runtime.failures import reported


def _config(overrides: list[str]):
    from platypus.config import compose

    try:
        return compose(*overrides)
    except Exception as error:  # noqa: BLE001 - Hydra's composition errors, shown in one paragraph
        fail(f"{' '.join(overrides)}: {error}. Overrides select the cache as for a run, e.g. stage_cache=/path.", False)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _age(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.1f} d" if days >= 1 else f"{seconds / 3600:.1f} h"


def list_entries(cache: StageCache) -> int:
    now = time.time()
    print("| stage | key | size | last used | made by | used by |\n|---|---|---|---|---|---|")
    for e in cache.entries():
        users = ", ".join(str(u) for u in e.users) or ("(hardlinked elsewhere)" if e.shared else "none")
        print(f"| {e.stage} | {e.key[:12]} | {_size(e.size)} | {_age(now - e.last_used)} ago "
              f"| `{e.manifest.get('command', '?')}` | {users} |")
    return 0


def verify(cache: StageCache, set_aside: bool) -> int:
    entries, damaged = cache.entries(), 0
    for e in entries:
        problem = integrity.damage(e.path, e.manifest.get("files"), MANIFEST, full=True)
        if problem:
            damaged += 1
            where = f"; moved aside to {integrity.set_aside(e.path, hidden=True)}" if set_aside else ""
            print(f"DAMAGED {e.stage}/{e.key}: {problem}{where}")
    print(f"{len(entries) - damaged} of {len(entries)} entries intact (sha256 of every file).")
    if damaged and not set_aside:
        print("A run that needs a damaged entry moves it aside and recomputes it; --set-aside does that now.")
    return 1 if damaged else 0


def du(cache: StageCache) -> int:
    entries = cache.entries()
    print("| stage | entries | size | used by a run folder |\n|---|---|---|---|")
    for stage in sorted({e.stage for e in entries}):
        mine = [e for e in entries if e.stage == stage]
        used = sum(e.size for e in mine if e.in_use)
        print(f"| {stage} | {len(mine)} | {_size(sum(e.size for e in mine))} | {_size(used)} |")
    aside = cache.set_aside()
    aside_size = sum(f.stat().st_size for p in aside for f in p.rglob("*") if f.is_file())
    print(f"total {_size(sum(e.size for e in entries))} in {len(entries)} entries under {cache.root}; "
          f"{len(aside)} damaged entries set aside ({_size(aside_size)})")
    return 0


def gc(cache: StageCache, max_gb: float | None, older_than_days: float | None, force: bool, damaged: bool,
       dry_run: bool) -> int:
    if max_gb is None and older_than_days is None and not damaged:
        fail("gc: say what to remove: --max-gb N (or the config's stage_cache_max_gb), --older-than DAYS, "
             "or --damaged. Add --dry-run to see the list first.", False)
    chosen: list[Entry] = cache.collectable(None if max_gb is None else int(max_gb * 1e9),
                                            None if older_than_days is None else older_than_days * 86400, force)
    verb = "would remove" if dry_run else "removed"
    for e in chosen:
        if not dry_run:
            cache.remove(e)
        print(f"{verb} {e.stage}/{e.key} ({_size(e.size)}, last used {_age(time.time() - e.last_used)} ago)")
    for path in cache.set_aside() if damaged else []:
        if not dry_run:
            shutil.rmtree(path)
        print(f"{verb} {path} (damaged, set aside)")
    kept = [e for e in cache.entries() if e not in chosen] if dry_run else cache.entries()
    print(f"{verb} {len(chosen)} entries ({_size(sum(e.size for e in chosen))}); "
          f"{len(kept)} left ({_size(sum(e.size for e in kept))}).")
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """Nonsense is refused before anything is read or removed: a negative budget or age is a typo, not a request
    to empty the cache."""
    for flag, value in (("--max-gb", args.max_gb), ("--older-than", args.older_than)):
        if value is not None and not value >= 0:  # also NaN
            example = "--max-gb 20: keep the cache within 20 GB" if flag == "--max-gb" else \
                "--older-than 30: entries unused for 30 days"
            fail(f"{args.command} {flag} {value:g}: must be a number >= 0 (e.g. {example}). Nothing was read or "
                 f"removed.", False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platypus.cache", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("list", "verify", "du", "gc"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for a run (stage_cache=..., cache_dir=...)")
    parser.add_argument("--max-gb", type=float, help="gc: keep the cache within this size (default: stage_cache_max_gb)")
    parser.add_argument("--older-than", type=float, metavar="DAYS", help="gc: remove entries unused this long")
    parser.add_argument("--force", action="store_true", help="gc: also entries a run folder still uses")
    parser.add_argument("--damaged", action="store_true", help="gc: also damaged entries set aside earlier")
    parser.add_argument("--dry-run", action="store_true", help="gc: print what would go, remove nothing")
    parser.add_argument("--set-aside", action="store_true", help="verify: move damaged entries aside now")
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    check_arguments(args)
    cfg = _config(args.overrides)
    if not cfg.get("stage_cache"):
        fail("The stage cache is off (stage_cache=null): there is nothing to inspect.", False)
    cache = StageCache(Path(str(cfg.stage_cache)).expanduser())
    with reported(cache.root):
        return run_command(args, cfg, cache)


def run_command(args: argparse.Namespace, cfg, cache: StageCache) -> int:
    if args.command == "list":
        return list_entries(cache)
    if args.command == "verify":
        return verify(cache, args.set_aside)
    if args.command == "du":
        return du(cache)
    max_gb = args.max_gb if args.max_gb is not None else cfg.get("stage_cache_max_gb")
    return gc(cache, max_gb, args.older_than, args.force, args.damaged, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())

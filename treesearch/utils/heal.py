"""Healing a directory after a kill: what interrupted atomic writes left behind.

``treesearch.utils.atomic`` writes every file and directory to a temporary sibling first
and renames it into place, so a kill never leaves half a file where a reader looks; but
the temporaries themselves stay (``atomic.TEMP_FILE``, ``TEMP_DIR``, ``ASIDE_DIR``).

    leftovers(run_dir)       # [Path] of the temporaries under run_dir, nothing changed
    sweep(run_dir)           # removes them; returns one line per thing done

A previous version moved aside (killed between ``atomic_dir``'s two renames, its target
gone) is put back, not deleted: it was the complete version until the kill. Only a
directory no process is writing to may be swept (a resume, before its work starts).

Imports only the standard library and ``atomic``: every layer may use it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from treesearch.utils.atomic import ASIDE_DIR, TEMP_DIR, TEMP_FILE


def _kind(path: Path) -> str | None:
    """"file", "dir" or "aside" for a temporary an atomic write left, else None."""
    if path.is_symlink():
        return None
    if path.is_file() and TEMP_FILE.match(path.name):
        return "file"
    if path.is_dir() and TEMP_DIR.match(path.name):
        return "dir"
    if path.is_dir() and ASIDE_DIR.match(path.name):
        return "aside"
    return None


def leftovers(root) -> list[Path]:
    """The temporaries of interrupted atomic writes under ``root``, sorted (not descended
    into: what a temporary directory holds is its own)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in filenames:
            if _kind(here / name):
                found.append(here / name)
        for name in list(dirnames):
            if _kind(here / name):
                found.append(here / name)
                dirnames.remove(name)
    return sorted(found)


def sweep(root) -> list[str]:
    """Remove every leftover under ``root``; a previous version moved aside whose target is
    missing goes back in place first. Returns one line per leftover, naming it (relative to
    ``root``) and what was done with it."""
    root = Path(root)
    done = []
    for path in leftovers(root):
        shown, kind = path.relative_to(root).as_posix(), _kind(path)
        if kind == "file":
            path.unlink(missing_ok=True)
            done.append(f"{shown}: removed (a file write killed before its rename)")
            continue
        what = "removed (a directory write killed before its rename)"
        if kind == "aside":
            target = path.parent / ASIDE_DIR.match(path.name)["target"]
            kept = path / target.name
            if kept.exists() and not os.path.lexists(target):
                os.replace(kept, target)
                what = (f"the previous {target.name} put back in place (a directory write "
                        "killed between its two renames)")
            else:
                what = f"removed (the replaced {target.name}, left by a kill after its rename)"
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"{shown}: {what}")
    return done

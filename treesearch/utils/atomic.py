"""The one way to write files and directories atomically.

Everything goes to a temporary sibling first (same directory, so ``os.replace`` is a rename
on one file system), is flushed to disk, gets the permissions a plain ``open`` or
``mkdir`` would have given it under the current umask, and only then replaces the target.
A crash or kill leaves either the old version or the new one, never half of one.

    atomic_write(path, lambda fh: fh.write(text))              # a file, text mode
    atomic_write(path, lambda fh: fig.savefig(fh), binary=True)
    with atomic_dir(out) as tmp:                                # a directory
        model.save_pretrained(tmp)

A kill (SIGKILL, power loss) can still leave the temporaries behind, next to their
targets: a file ``<name>.<8 random>.tmp`` (``TEMP_FILE``), a directory
``.<name>.tmp-<8 random>`` (``TEMP_DIR``) and, killed between ``atomic_dir``'s two renames,
``.<name>.old-<8 random>/<name>`` holding the previous version while ``<name>`` is gone
(``ASIDE_DIR``). ``treesearch.utils.heal.sweep`` clears them (and puts such a previous
version back) when a run resumes.

Imports only the standard library: every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


# what a kill may leave behind (tempfile's random part: 8 of [a-z0-9_]); group "target":
# the name of the file or directory being written
TEMP_FILE = re.compile(r"^(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
TEMP_DIR = re.compile(r"^\.(?P<target>.+)\.tmp-[a-z0-9_]{8}$")
ASIDE_DIR = re.compile(r"^\.(?P<target>.+)\.old-[a-z0-9_]{8}$")


def _step(step: str, path: str) -> None:
    """A seam for tests, called at each point a kill leaves something behind: "file" (the
    temporary file written and fsynced, not yet renamed onto ``path``), "dir" (the
    temporary directory filled, nothing renamed yet), "aside" (an existing ``path`` moved
    aside, the new one not yet renamed in). Does nothing; tests replace it to pause there
    and be killed (tests/test_heal.py)."""


def umask() -> int:
    """The process umask (it can only be read by setting it; restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable, *, binary: bool = False) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, fsync it, give it the mode
    a new file gets under the umask (mkstemp makes 0600), then ``os.replace`` it onto
    ``path``. Missing parent folders are created. On any error the temporary file is
    removed and ``path`` is left as it was."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _step("file", path)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(text))


def _settle_tree(root: Path) -> None:
    """fsync every file under ``root`` and give it the mode a plain ``open`` would (some
    writers, safetensors among them, create their files 0600)."""
    mode = 0o666 & ~umask()
    for dirpath, _, files in os.walk(root):
        for name in files:
            file = os.path.join(dirpath, name)
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(file, mode)


@contextlib.contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Yield a temporary directory next to ``path`` to fill; when the block ends without
    error its files are fsynced and get the mode a plain ``open`` would give, it gets the
    mode ``mkdir`` would give (mkdtemp makes 0700), and it replaces ``path`` (an existing
    ``path`` is moved aside first and removed after; if the final rename fails it is moved
    back). On error the temporary directory is removed and ``path`` is untouched."""
    path = Path(os.fspath(path)).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        _settle_tree(tmp)
        _step("dir", str(path))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            _step("aside", str(path))
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old / path.name, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""Reading a trees file (``treesearch.engine.export`` JSONL, plain or gzip) strictly: a
malformed or truncated file raises ``TreeFileError`` naming the file and the line.

``export.read_jsonl`` checks every record's fields; this module first walks the file line
by line so that what ``read_jsonl`` only reports for the whole file (a gzip stream cut
short, bytes that are not UTF-8, a last line cut mid-record) gets a line number too.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path

from treesearch.engine.export import read_jsonl
from treesearch.engine.forest import Forest
from treesearch.view.errors import TreeFileError, ViewError

_LINE = re.compile(r": line (\d+): (.*)", re.DOTALL)


def scan_lines(path: Path) -> int:
    """Check that every line of ``path`` is one JSON object; returns the number of lines.
    Raises ``TreeFileError`` at the first line that is not (or where the stream ends)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    count = 0
    try:
        with opener(path, "rb") as fh:
            while True:
                try:
                    raw = fh.readline()
                except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                    raise TreeFileError(path, count + 1, f"compressed stream breaks off "
                                        f"(truncated or corrupt gzip: {exc})") from exc
                if not raw:
                    break
                count += 1
                _check_line(path, count, raw)
    except FileNotFoundError as exc:
        raise ViewError(f"{path}: no such trees file") from exc
    if count == 0:
        raise TreeFileError(path, None, "no trees (empty file)")
    return count


def _check_line(path: Path, lineno: int, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TreeFileError(path, lineno, f"not UTF-8 text ({exc})") from exc
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = "" if text.endswith("\n") else " (the line has no end: truncated file?)"
        raise TreeFileError(path, lineno, f"not a JSON record: {exc.msg} at column "
                            f"{exc.colno}{cut}") from exc
    if not isinstance(record, dict):
        raise TreeFileError(path, lineno, f"expected a JSON object, got {type(record).__name__}")


def read_trees(path) -> Forest:
    """The ``Forest`` of a trees file (line i = tree i), or ``TreeFileError`` naming the
    file and line of the first malformed record."""
    path = Path(path)
    if not path.is_file():
        raise ViewError(f"{path}: no such trees file")
    scan_lines(path)
    try:
        return read_jsonl(path)
    except ValueError as exc:
        match = _LINE.search(str(exc))
        if match:
            raise TreeFileError(path, int(match.group(1)), match.group(2)) from exc
        raise TreeFileError(path, None, str(exc).removeprefix(f"{path}: ")) from exc

"""The viewer's errors: every one names the input it could not use."""

from __future__ import annotations


class ViewError(Exception):
    """An input the viewer cannot show (a missing path, an unknown problem or round, a run
    directory without trees); the message names it. No HTML is written."""


class TreeFileError(ViewError):
    """A malformed or truncated trees file: ``path`` and the 1-based ``line`` it breaks at
    (None when the whole file is unusable, e.g. empty)."""

    def __init__(self, path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}: line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")

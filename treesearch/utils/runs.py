"""Run directories: resolved config, stage bookkeeping, metrics, atomic checkpoints, resume.

A run directory holds::

    config.yaml          the resolved config (what ran, every default spelled out)
    state.json           stages finished so far, e.g. {"done": ["0/eval", "1/search", ...]}
    metrics.jsonl        one JSON row per (round, stage) with figures
    round_<k>/...        that round's trees, policy and critic checkpoints
    *.png, summary.md    plots and the final table

Every file is written atomically (temp file or directory in the same place, then
``os.replace``), so a kill leaves either the old or the new version, never half of one.
``--resume`` reopens the directory and skips the stages listed in state.json; a stage
killed half-way is redone from its start (its seeds depend only on the run seed, the round
and the stage, so the redo is the same computation). What a kill leaves of an atomic write
(temporary siblings) is swept on resume (``treesearch.utils.heal``); ``unmark`` and
``drop_rows`` take stages back for a deliberate redo (``treesearch.selfplay.heal``).
"""

from __future__ import annotations

import json
from pathlib import Path

from treesearch.utils.atomic import write_text


def portable_path(path) -> str:
    """``path`` as committed results may show it: relative to the working directory or the
    project root when under one of them, ``~/...`` under the home directory; never another
    machine's absolute path where it can be avoided."""
    path = Path(path).expanduser().resolve()
    project = Path(__file__).resolve().parents[2]
    for base, shown in ((Path.cwd().resolve(), ""), (project, ""), (Path.home().resolve(), "~/")):
        if path.is_relative_to(base):
            return shown + str(path.relative_to(base))
    return str(path)


class RunError(RuntimeError):
    """A run directory or checkpoint that cannot be used; the message names the file."""


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")


def read_json(path):
    """JSON from ``path``; RunError naming the file when it is missing or corrupt."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: corrupt JSON ({exc})") from None


class RunDir:
    """One run's directory. ``create`` starts a new one, ``open`` reopens one to resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, config_yaml: str) -> "RunDir":
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise RunError(f"{path}: run directory exists and is not empty; resume it with "
                           f"--resume {path}, or choose another out=")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        write_text(path / "config.yaml", config_yaml)
        write_json(path / "state.json", {"done": []})
        write_text(path / "metrics.jsonl", "")
        return run

    @classmethod
    def open(cls, path) -> "RunDir":
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise RunError(f"{path}: not a run directory (no config.yaml)")
        run = cls(path)
        run.done()  # fails early, naming state.json, when it is corrupt
        return run

    # -- stages ----------------------------------------------------------------------
    def done(self) -> list[str]:
        state = read_json(self.path / "state.json")
        if not isinstance(state, dict) or not isinstance(state.get("done"), list):
            raise RunError(f"{self.path / 'state.json'}: corrupt (no 'done' list)")
        return state["done"]

    def is_done(self, round_: int, stage: str) -> bool:
        return f"{round_}/{stage}" in self.done()

    def mark_done(self, round_: int, stage: str) -> None:
        done = self.done()
        done.append(f"{round_}/{stage}")
        write_json(self.path / "state.json", {"done": done})

    def unmark(self, stages) -> None:
        """Take the ``stages`` ("round/stage" strings) off the done list (a redo)."""
        drop = set(stages)
        write_json(self.path / "state.json", {"done": [s for s in self.done() if s not in drop]})

    # -- metrics ---------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        rows = []
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return rows
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise RunError(f"{path}: line {lineno}: corrupt JSON ({exc})") from None
        return rows

    def log(self, row: dict) -> None:
        """Add a metrics row; a row for the same (round, stage) replaces the old one (a
        redone stage after resume)."""
        rows = [r for r in self.metrics()
                if (r.get("round"), r.get("stage")) != (row.get("round"), row.get("stage"))]
        rows.append(row)
        self._write_rows(rows)

    def drop_rows(self, stages) -> None:
        """Remove the metrics rows of the ``stages`` ("round/stage" strings); the others
        stay as they were, in order."""
        drop = set(stages)
        self._write_rows([r for r in self.metrics()
                          if f"{r.get('round')}/{r.get('stage')}" not in drop])

    def _write_rows(self, rows: list[dict]) -> None:
        write_text(self.path / "metrics.jsonl",
                   "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def round_dir(self, round_: int) -> Path:
        path = self.path / f"round_{round_}"
        path.mkdir(parents=True, exist_ok=True)
        return path

"""Chart specifications for the page, from a run's ``metrics.jsonl`` and calibration files
and from a decode result's rows. The page draws them (``static/viewer.js``); a spec is
``{"title", "xlabel", "ylabel", "x": [...], "series": [{"name", "y": [...]}]}`` (a line
per series, None where a round has no value), or ``{"kind": "reliability", "title",
"series": [{"name", "confidence", "frequency", "count"}]}``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from treesearch.view.errors import ViewError

CALIBRATION = ("ece", "brier", "auroc")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``; ``ViewError`` naming the file and line of a
    malformed one."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ViewError(f"{path}: line {lineno}: not a JSON record ({exc.msg})") from exc
        if not isinstance(row, dict) or "stage" not in row or "round" not in row:
            raise ViewError(f"{path}: line {lineno}: expected an object with 'round' and 'stage'")
        rows.append(row)
    return rows


def _num(x):
    number = isinstance(x, (int, float)) and not isinstance(x, bool)
    return x if number and math.isfinite(x) else None


def _line_chart(title, ylabel, rows, keys, names=None, xlabel="round") -> dict | None:
    """One line per key present in some row (x: the rows' rounds); None when no key is."""
    keys = [k for k in keys if any(_num(_get(r, k)) is not None for r in rows)]
    if not keys:
        return None
    names = names or {}
    return {"title": title, "xlabel": xlabel, "ylabel": ylabel,
            "x": [r["round"] for r in rows],
            "series": [{"name": names.get(k, k), "y": [_num(_get(r, k)) for r in rows]}
                       for k in keys]}


def _get(row: dict, key: str):
    """``row[key]``, or a nested value for ``"outcome.ece"``."""
    for part in key.split("."):
        if not isinstance(row, dict):
            return None
        row = row.get(part)
    return row


def run_charts(rows: list[dict]) -> list[dict]:
    """Per-round charts of a self-play run: held-out accuracy (greedy, MCTS, pass@k), the
    training search (share solved), and each learned critic's calibration (ECE, Brier,
    AUROC on held-out trees) and skill."""
    evals = sorted((r for r in rows if r["stage"] == "eval"), key=lambda r: r["round"])
    search = sorted((r for r in rows if r["stage"] == "search"), key=lambda r: r["round"])
    critics = sorted((r for r in rows if r["stage"] == "critics"), key=lambda r: r["round"])
    passk = sorted({k for r in evals for k in r if re.fullmatch(r"pass@\d+", k)},
                   key=lambda k: int(k[5:]))
    charts = [
        _line_chart("Held-out accuracy", "accuracy", evals, ["greedy", "mcts", *passk],
                    {"mcts": "MCTS"}),
        _line_chart("Training search", "share solved", search, ["train_solved"],
                    {"train_solved": "solved (chosen answer)"}),
    ]
    kinds = sorted({k for r in critics for k, v in r.items() if isinstance(v, dict)})
    names = {"value": "value", "process": "PRM", "outcome": "ORM"}
    charts.append(_line_chart(
        "Critic calibration (held-out trees)", "ECE / Brier / AUROC", critics,
        [f"{k}.{m}" for k in kinds for m in CALIBRATION],
        {f"{k}.{m}": f"{names.get(k, k)} {m.upper() if m != 'brier' else 'Brier'}"
         for k in kinds for m in CALIBRATION}))
    charts.append(_line_chart(
        "Critic skill (1 - MSE / MSE of a constant)", "skill", critics,
        [f"{k}.skill" for k in kinds], {f"{k}.skill": names.get(k, k) for k in kinds}))
    return [c for c in charts if c is not None]


def reliability_chart(round_dir: Path) -> dict | None:
    """The reliability diagram of each critic calibrated in a round (``critics/
    calibration_*.json``: held-out confidence vs frequency per bin); None when none."""
    series = []
    for path in sorted((round_dir / "critics").glob("calibration_*.json")):
        try:
            bins = json.loads(path.read_text(encoding="utf-8"))["calibration"]["bins"]
            series.append({"name": path.stem.removeprefix("calibration_"),
                           "confidence": [_num(x) for x in bins["confidence"]],
                           "frequency": [_num(x) for x in bins["frequency"]],
                           "count": [int(c) for c in bins["count"]]})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ViewError(f"{path}: not a calibration report ({exc})") from exc
    if not series:
        return None
    return {"kind": "reliability",
            "title": f"Critic reliability, {round_dir.name.replace('_', ' ')}",
            "series": series}


def decode_charts(result: dict, path: Path) -> list[dict]:
    """Accuracy against generated tokens per strategy, one chart per table of a decode
    result (``decode.json``'s ``rows``)."""
    rows = result.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ViewError(f"{path}: not a decode result (no 'rows' list)")
    charts = []
    for table in sorted({str(r.get("table", "")) for r in rows}):
        mine = [r for r in rows if str(r.get("table", "")) == table]
        series = []
        for strategy in dict.fromkeys(r.get("strategy") for r in mine):
            pts = sorted(((_num(r.get("tokens")), _num(r.get("accuracy"))) for r in mine
                          if r.get("strategy") == strategy), key=lambda p: p[0] or 0)
            series.append({"name": str(strategy), "x": [p[0] for p in pts],
                           "y": [p[1] for p in pts]})
        charts.append({"title": f"Decoding: accuracy vs tokens{f' ({table})' if table else ''}",
                       "xlabel": "generated tokens per problem", "ylabel": "accuracy",
                       "x": None, "series": series})
    return charts

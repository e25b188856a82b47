"""What a finished self-play run writes beside its metrics: ``summary.md`` (held-out
accuracy per round; where the rows keep per-problem verdicts, MCTS against majority vote
and greedy against round 0, each paired per problem with its standard error; and with
``eval.passk_samples`` > 0 what shrinks: pass@k, the share of problems whose pass@max-k
fell from round 0, distinct, entropy), ``accuracy.png``,
``passk.png`` and ``report.html`` (the tree viewer over every round, ``treesearch.view``)."""

from __future__ import annotations

import sys
from pathlib import Path

from treesearch.utils.atomic import write_text
from treesearch.utils.estimators import paired_difference
from treesearch.utils.plots import line_plot
from treesearch.view import ViewError, write_report

__all__ = ["write_run_report", "write_summary"]


def write_run_report(path: Path, rows: list[dict], task: str) -> None:
    """The summary and plots of the eval ``rows`` (one per round), then the viewer; a
    finished run stays finished when the viewer cannot be written."""
    write_summary(path, rows, task)
    try:
        write_report(path)
    except ViewError as exc:
        print(f"selfplay: report.html not written: {exc}", file=sys.stderr)


def write_summary(path: Path, rows: list[dict], task: str) -> None:
    """``summary.md``, ``accuracy.png`` (and ``passk.png`` when every round measured
    pass@k) in the run directory ``path``; the table printed with the directory."""
    keys = [k for k in rows[0]
            if k in ("greedy", "mcts", "majority") or k.startswith("pass@")]
    header = "| round | " + " | ".join(keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 1)]
    for m in rows:
        lines.append(f"| {m['round']} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    table = "\n".join(lines)
    text = f"# Self-play: held-out accuracy per round\n\n{table}\n"
    paired = _paired_table(rows)
    if paired:
        text += f"\n## Paired per problem\n\n{paired}\n"
    if all("passk" in m for m in rows):
        diversity = _diversity_table(rows)
        text += f"\n## What shrinks: diversity per round\n\n{diversity}\n"
        _passk_plot(rows, path / "passk.png", f"{task}: held-out pass@k")
    write_text(path / "summary.md", text)
    _plot(rows, keys, path / "accuracy.png", f"{task}: held-out accuracy")
    print(table)
    print(f"run directory: {path}")


def _plot(rows, keys, path, title) -> None:
    rounds = [m["round"] for m in rows]
    line_plot({k: (rounds, [m[k] for m in rows]) for k in keys}, path, xlabel="round",
              ylabel="held-out accuracy", title=title, xticks=rounds)


def _paired_difference(a: list[int], b: list[int]) -> str:
    """"mean ± SE" of a - b over problems (0/1 verdicts of the same problems, in order)."""
    mean, se = paired_difference(a, b)
    return f"{mean:+.3f} ± {se:.3f}"


def _paired_table(rows: list[dict]) -> str | None:
    """Markdown: per round, MCTS - majority vote on the same problems at the same token
    budget, and greedy minus round 0's greedy on the same problems, each the mean over
    problems ± its standard error paired per problem (a difference inside two standard
    errors is a tie); None when a row lacks the verdicts (runs from before they were
    logged)."""
    need = ("greedy_flags", "mcts_flags", "majority_flags")
    if not rows or any(k not in m for m in rows for k in need):
        return None
    first = rows[0]["greedy_flags"]
    lines = ["| round | MCTS - majority vote | greedy - round 0 greedy |", "|---|---|---|"]
    for m in rows:
        lines.append(f"| {m['round']} | {_paired_difference(m['mcts_flags'], m['majority_flags'])}"
                     f" | {_paired_difference(m['greedy_flags'], first)} |")
    return (f"{len(first)} problems for greedy, {len(rows[0]['mcts_flags'])} for MCTS and "
            "majority vote; ± the standard error over problems (one seed: what training "
            "varies is not in it).\n\n" + "\n".join(lines))


def _diversity_table(rows: list[dict]) -> str:
    """Markdown: per round, pass@k at k = 1, 8 (where measured) and the largest k, the share
    of problems whose pass@(largest k) fell from round 0 ("-" where the run logged no
    per-problem counts), distinct correct solutions per problem, token entropy, format
    shares and strategy shares."""
    n = rows[0]["passk_samples"]
    ks = [k for k in ("1", "8", str(n)) if k in rows[0]["passk"]]
    ks = list(dict.fromkeys(ks))
    head = ([f"pass@{k}" for k in ks] + [f"pass@{n} fell (share)", "distinct correct",
                                         "entropy (nats)", "formats", "strategies (correct)"])
    lines = ["| round | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]

    def shares(d):
        return ", ".join(f"{k} {v:.2f}" for k, v in d.items()) or "-"

    for m in rows:
        fell = m.get("passk_fell")
        cells = ([f"{m['passk'][k]:.3f}" for k in ks]
                 + ["-" if fell is None else f"{fell:.3f}",
                    f"{m['distinct_correct']:.2f}", f"{m['entropy']:.3f}",
                    shares(m["format_share"]), shares(m["strategy_share"])])
        lines.append(f"| {m['round']} | " + " | ".join(cells) + " |")
    return (f"{rows[0]['passk_problems']} problems x {n} samples each.\n\n"
            + "\n".join(lines))


def _passk_plot(rows: list[dict], path, title) -> None:
    """pass@k against k (log scale), one line per round."""
    series = {}
    for m in rows:
        ks = sorted(int(k) for k in m["passk"])
        series[f"round {m['round']}"] = (ks, [m["passk"][str(k)] for k in ks])
    line_plot(series, path, xlabel="k (samples)", ylabel="pass@k", title=title, xscale="log")

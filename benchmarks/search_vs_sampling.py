"""Held-out MCTS against majority vote at equal tokens, round by round, over seeds.

    python benchmarks/search_vs_sampling.py runs/g24/g24-test-s0 runs/g24/g24-test-s1 \
        runs/g24/g24-test-s2 --json out.json --md out.md --png out.png

Self-play's eval decodes its first ``eval.mcts_problems`` held-out problems with MCTS at
``eval.mcts_budget`` generated tokens per problem (``mcts``, ``mcts_tokens``) and with
majority vote over samples drawn to the same budget (``majority``, ``majority_tokens``).
This table reads both from each run's ``metrics.jsonl`` and gives, per round, their means
over the runs (one run a seed), the paired difference MCTS - majority with its standard
error over seeds, and the within-run sampling error for scale (the binomial standard error
of one run's accuracy on its problems, averaged over runs). Where every run logged the
per-problem verdicts (``mcts_flags``, ``majority_flags``), ``paired_se`` is the standard
error of MCTS - majority paired per problem, over all runs' problems pooled: the error
that sampling the problems and the decodes alone would give (the seed error above also
holds what training varies). Runs that did not log majority vote (made before it was part
of the eval) are refused by name.

JSON: {"runs": [names], "problems": n, "rounds": [{"round", "mcts", "majority",
"mcts_tokens", "majority_tokens", "diff", "diff_se", "within_se", "paired_se"}]}
(``paired_se`` null without the verdicts); names only, never paths.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from treesearch.utils.estimators import paired_difference, standard_error

KEYS = ("mcts", "majority", "mcts_tokens", "majority_tokens")


def eval_rows(run: Path) -> dict[int, dict]:
    """{round: eval row} of a run's metrics.jsonl; a ValueError naming the run when it has
    no eval row with both MCTS and majority vote."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run}: no metrics.jsonl (not a self-play run)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = {r["round"]: r for r in rows if r.get("stage") == "eval"}
    if not rows or any(r.get(k) is None for r in rows.values() for k in KEYS):
        raise ValueError(f"{run}: its eval rows lack MCTS or majority vote (self-play "
                         "logs majority vote beside MCTS since it joined the eval)")
    return rows


def paired_se(rows: list[dict]) -> float | None:
    """Standard error of MCTS - majority per problem over the rows' problems pooled (each
    row's ``mcts_flags`` against its ``majority_flags``, the same problems in the same
    order); None when a row lacks them (runs from before they were logged)."""
    if any("mcts_flags" not in row or "majority_flags" not in row for row in rows):
        return None
    for row in rows:
        if len(row["mcts_flags"]) != len(row["majority_flags"]):
            raise ValueError(f"round {row['round']}: MCTS and majority vote judged different "
                             "numbers of problems")
    return paired_difference([c for row in rows for c in row["mcts_flags"]],
                             [c for row in rows for c in row["majority_flags"]])[1]


def table(runs: list[Path], problems: int) -> list[dict]:
    """One dict per round that every run reached (see the module docstring)."""
    per_run = [eval_rows(run) for run in runs]
    rounds = sorted(set.intersection(*(set(rows) for rows in per_run)))
    out = []
    for r in rounds:
        rows = [rows[r] for rows in per_run]
        entry = {"round": r}
        for key in KEYS:
            entry[key] = sum(float(row[key]) for row in rows) / len(rows)
        diffs = [row["mcts"] - row["majority"] for row in rows]
        entry["diff"] = sum(diffs) / len(diffs)
        entry["diff_se"] = standard_error(diffs) if len(diffs) > 1 else None
        entry["within_se"] = sum(math.sqrt(p * (1 - p) / problems)
                                 for row in rows for p in (row["mcts"], row["majority"])
                                 ) / (2 * len(rows))
        entry["paired_se"] = paired_se(rows)
        out.append(entry)
    return out


def markdown(rounds: list[dict], n_runs: int) -> str:
    lines = [f"| round | MCTS | majority vote | tokens (MCTS / majority) | MCTS - majority "
             f"({n_runs} seeds) | within-run SE | paired SE (per problem) |",
             "|---|---|---|---|---|---|---|"]
    for e in rounds:
        se = f" ± {e['diff_se']:.3f}" if e["diff_se"] is not None else ""
        paired = "-" if e.get("paired_se") is None else f"{e['paired_se']:.3f}"
        lines.append(f"| {e['round']} | {e['mcts']:.3f} | {e['majority']:.3f} | "
                     f"{e['mcts_tokens']:.0f} / {e['majority_tokens']:.0f} | "
                     f"{e['diff']:+.3f}{se} | {e['within_se']:.3f} | {paired} |")
    return "\n".join(lines) + "\n"


def plot(rounds: list[dict], path: Path) -> None:
    from treesearch.utils.plots import line_plot

    xs = [e["round"] for e in rounds]
    line_plot({"MCTS": (xs, [e["mcts"] for e in rounds]),
               "majority vote": (xs, [e["majority"] for e in rounds])}, path,
              xlabel="self-play round", ylabel="held-out accuracy (mean over seeds)",
              title="MCTS against majority vote at equal tokens", xticks=xs)


def mcts_problems(runs: list[Path]) -> int:
    """The runs' common eval.mcts_problems; a ValueError when they differ or cannot be read."""
    from omegaconf import OmegaConf

    seen = set()
    for run in runs:
        if not (run / "config.yaml").is_file():
            raise ValueError(f"{run}: no config.yaml (not a self-play run)")
        try:
            seen.add(int(OmegaConf.load(run / "config.yaml").eval.mcts_problems))
        except Exception as exc:  # noqa: BLE001 - any unreadable config is named the same way
            raise ValueError(f"{run}: cannot read eval.mcts_problems from config.yaml "
                             f"({exc})") from None
    if len(seen) != 1:
        raise ValueError(f"the runs differ in eval.mcts_problems ({sorted(seen)}): table "
                         "runs of one recipe")
    return seen.pop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--problems", type=int, default=None,
                        help="held-out MCTS problems per run (default: the runs' "
                             "eval.mcts_problems, read from config.yaml)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    try:
        problems = args.problems or mcts_problems(args.runs)
        rounds = table(args.runs, problems)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    text = markdown(rounds, len(args.runs))
    print(text, end="")
    if args.md:
        args.md.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"runs": [r.name for r in args.runs],
                                         "problems": problems, "rounds": rounds},
                                        indent=1) + "\n")
    if args.png:
        plot(rounds, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

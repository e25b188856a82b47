"""Issue 15's comparison table: self-play arms (today's default and each diversity option)
over seeds, round 0 against the last round.

    python benchmarks/widen_table.py runs/i15/default-s0 runs/i15/default-s1 ... \
        --json benchmarks/results/widen_val.json --md benchmarks/results/widen_val.md

Every argument is a finished self-play run directory made with ``eval.passk_samples`` > 0;
runs are grouped into arms by their directory name without its ``-s<seed>`` suffix. Per arm
and metric the table gives the mean over seeds of round 0, of the last round and of their
difference, with the standard error of the difference over seeds (n = 1: "-"). Metrics:
greedy accuracy, sampled pass@1 and pass@64 (``passk``), distinct correct solutions per
problem and mean token entropy, as self-play logged them. Paths in the outputs are the
run directories' names only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

METRICS = ("greedy", "pass@1", "pass@64", "distinct_correct", "entropy")


def eval_rows(run: Path) -> list[dict]:
    """The eval rows of a run's metrics.jsonl, by round; a ValueError naming the run when
    it has none or lacks the pass@k measurement."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run}: no metrics.jsonl (not a self-play run)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if r.get("stage") == "eval"), key=lambda r: r["round"])
    if len(rows) < 2:
        raise ValueError(f"{run}: fewer than two eval rounds (unfinished?)")
    if "passk" not in rows[-1]:
        raise ValueError(f"{run}: no pass@k curve (run it with eval.passk_samples=64)")
    return rows


def metric(row: dict, name: str) -> float:
    if name == "pass@64":
        return float(row["passk"][str(max(map(int, row["passk"])))])
    if name == "pass@1":
        return float(row["passk"]["1"])
    return float(row[name])


def arm_of(run: Path) -> tuple[str, int]:
    m = re.fullmatch(r"(.+)-s(\d+)", run.name)
    return (m.group(1), int(m.group(2))) if m else (run.name, 0)


def summarise(runs: list[Path]) -> dict:
    """{arm: {"seeds": [...], "rounds": last round, metric: {"first", "last", "delta",
    "delta_se"}}}, means over the arm's seeds."""
    arms: dict[str, dict] = {}
    for run in runs:
        arm, seed = arm_of(run)
        rows = eval_rows(run)
        entry = arms.setdefault(arm, {"seeds": [], "rounds": rows[-1]["round"], "values": []})
        entry["seeds"].append(seed)
        entry["values"].append({m: (metric(rows[0], m), metric(rows[-1], m)) for m in METRICS})
    out = {}
    for arm, entry in arms.items():
        res = {"seeds": sorted(entry["seeds"]), "rounds": entry["rounds"]}
        for m in METRICS:
            first = [v[m][0] for v in entry["values"]]
            last = [v[m][1] for v in entry["values"]]
            delta = [b - a for a, b in zip(first, last)]
            n = len(delta)
            mean = sum(delta) / n
            se = (math.sqrt(sum((d - mean) ** 2 for d in delta) / (n - 1) / n) if n > 1 else None)
            res[m] = {"first": sum(first) / n, "last": sum(last) / n, "delta": mean,
                      "delta_se": se}
        out[arm] = res
    return out


def markdown(table: dict) -> str:
    head = "| arm | seeds | " + " | ".join(f"{m} (r0 -> last, change)" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for arm, res in table.items():
        cells = []
        for m in METRICS:
            v = res[m]
            se = f" ± {v['delta_se']:.3f}" if v["delta_se"] is not None else ""
            cells.append(f"{v['first']:.3f} -> {v['last']:.3f} ({v['delta']:+.3f}{se})")
        lines.append(f"| {arm} | {len(res['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)
    try:
        table = summarise(args.runs)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    text = markdown(table)
    print(text, end="")
    if args.json:
        args.json.write_text(json.dumps({"runs": [r.name for r in args.runs], "arms": table},
                                        indent=1) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

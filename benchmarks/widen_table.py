"""The diversity comparison table: self-play arms (today's default and each diversity option)
over seeds, round 0 against the last round.

    python benchmarks/widen_table.py runs/i15/default-s0 runs/i15/default-s1 ... \
        --json benchmarks/results/widen_val.json --md benchmarks/results/widen_val.md

Every argument is a finished self-play run directory made with ``eval.passk_samples`` > 0;
runs are grouped into arms by their directory name without its ``-s<seed>`` suffix. Per arm
and metric the table gives the mean over seeds of round 0, of the last round and of their
difference, with the standard error of the difference over seeds (n = 1: "-"). Metrics:
greedy accuracy, sampled pass@1 and pass@64 (``passk``), the share of problems whose
pass@64 fell from round 0 ("fell": the eval row's ``passk_fell``, else from its per-problem
``passk_counts``; 0 at round 0; "-" for runs that logged neither), distinct correct
solutions per problem and mean token entropy, as self-play logged them. ``--against ARM``
adds a second table: every other arm's last round minus ARM's, paired by seed (the seeds
both ran; a seed's round 0 is the same model in every arm). ``--png`` plots each arm's
mean pass@k curve at round 0 and at the last round (``--plot-arms``: only those). Paths
in the outputs are the run directories' names only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

METRICS = ("greedy", "pass@1", "pass@64", "fell", "distinct_correct", "entropy")


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


def metric(row: dict, name: str, first: dict | None = None) -> float:
    """``name`` of an eval ``row``; "fell" also reads round 0's row ``first`` (None: the
    row is round 0's own)."""
    if name == "fell":
        return fell(first, row)
    if name == "pass@64":
        return float(row["passk"][str(max(map(int, row["passk"])))])
    if name == "pass@1":
        return float(row["passk"]["1"])
    return float(row[name])


def fell(first: dict | None, row: dict) -> float:
    """Share of problems whose pass@max-k fell from round 0's row ``first`` to ``row``:
    0.0 for round 0 itself (``first`` None), the logged ``passk_fell``, else from the two
    rows' ``passk_counts`` (at k = n the unbiased pass@n is 1 with a correct sample and 0
    without: a problem falls when round 0 solved it in some sample and ``row`` in none),
    else nan."""
    if first is None:
        return 0.0
    if row.get("passk_fell") is not None:
        return float(row["passk_fell"])
    before, after = first.get("passk_counts"), row.get("passk_counts")
    if not before or not after or len(before) != len(after):
        return float("nan")
    return sum(b > 0 and a == 0 for b, a in zip(before, after)) / len(before)


def arm_of(run: Path) -> tuple[str, int]:
    m = re.fullmatch(r"(.+)-s(\d+)", run.name)
    return (m.group(1), int(m.group(2))) if m else (run.name, 0)


def summarise(runs: list[Path]) -> dict:
    """{arm: {"seeds": [...], "rounds": last round, metric: {"first", "last", "delta",
    "delta_se"}}}, means over the arm's seeds; a ValueError when two runs are one seed of
    one arm (the mean would count that seed twice)."""
    arms: dict[str, dict] = {}
    for run in runs:
        arm, seed = arm_of(run)
        rows = eval_rows(run)
        entry = arms.setdefault(arm, {"runs": {}, "rounds": rows[-1]["round"], "values": [],
                                      "curves": []})
        if seed in entry["runs"]:
            raise ValueError(f"{run} and {entry['runs'][seed]}: both are seed {seed} of arm "
                             f"{arm!r} (an arm holds one run per seed)")
        entry["runs"][seed] = run
        entry["values"].append({m: (metric(rows[0], m), metric(rows[-1], m, rows[0]))
                                for m in METRICS})
        entry["curves"].append((rows[0]["passk"], rows[-1]["passk"]))
    out = {}
    for arm, entry in arms.items():
        res = {"seeds": sorted(entry["runs"]), "rounds": entry["rounds"],
               "per_seed": {str(seed): {m: list(v[m]) for m in METRICS}
                            for seed, v in zip(entry["runs"], entry["values"])},
               "passk": {which: _mean_curve([c[i] for c in entry["curves"]])
                         for i, which in enumerate(("first", "last"))}}
        for m in METRICS:
            first = [v[m][0] for v in entry["values"]]
            last = [v[m][1] for v in entry["values"]]
            mean, se = _mean_se([b - a for a, b in zip(first, last)])
            res[m] = {"first": sum(first) / len(first), "last": sum(last) / len(last),
                      "delta": mean, "delta_se": se}
        out[arm] = res
    return out


def _mean_curve(curves: list[dict]) -> dict:
    """{k: mean pass@k} over the curves' common ks (string keys, as logged), k ascending."""
    ks = sorted(set.intersection(*(set(c) for c in curves)), key=int)
    return {k: sum(float(c[k]) for c in curves) / len(curves) for k in ks}


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    return mean, (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1
                  else None)


def against(table: dict, base: str) -> dict:
    """{arm: {"seeds": [...], metric: {"diff", "diff_se"}}}: each other arm's last round
    minus ``base``'s, paired over the seeds both ran (mean and its standard error over
    those seeds); a ValueError naming ``base`` when it is not an arm."""
    if base not in table:
        raise ValueError(f"--against {base!r}: not an arm (arms: {', '.join(table)})")
    out = {}
    for arm, res in table.items():
        common = sorted(set(res["per_seed"]) & set(table[base]["per_seed"]), key=int)
        if arm == base or not common:
            continue
        out[arm] = {"seeds": [int(s) for s in common]}
        for m in METRICS:
            diff, se = _mean_se([res["per_seed"][s][m][1] - table[base]["per_seed"][s][m][1]
                                 for s in common])
            out[arm][m] = {"diff": diff, "diff_se": se}
    return out


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``; "-" for nan (a metric the runs did not log)."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


def against_markdown(diffs: dict, base: str) -> str:
    lines = [f"| arm minus {base}, last round | seeds | " + " | ".join(METRICS) + " |",
             "|" + "---|" * (len(METRICS) + 2)]
    for arm, res in diffs.items():
        cells = [_fmt(res[m]["diff"], "+.3f") + (f" ± {res[m]['diff_se']:.3f}"
                                                 if _fmt(res[m]["diff_se"], ".3f") != "-"
                                                 else "")
                 for m in METRICS]
        lines.append(f"| {arm} | {len(res['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, arms: list[str] | None = None) -> None:
    """Each arm's mean pass@k curve (k on a log2 axis): round 0 dashed, last round solid;
    ``arms``: only these (default: all)."""
    from treesearch.utils.plots import new_figure, save_png

    missing = [a for a in arms or [] if a not in table]
    if missing:
        raise ValueError(f"--plot-arms {missing}: not arms (arms: {', '.join(table)})")
    fig = new_figure((8, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for i, arm in enumerate(arms or list(table)):
        res, color = table[arm], f"C{i % 10}"
        for which, style in (("first", "--"), ("last", "-")):
            curve = res["passk"][which]
            label = f"{arm}, round {0 if which == 'first' else res['rounds']}"
            ax.plot([int(k) for k in curve], list(curve.values()), style, color=color,
                    marker="o", markersize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k (mean over seeds)")
    ax.set_title("pass@k before and after self-play")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    save_png(fig, path)


def markdown(table: dict) -> str:
    head = "| arm | seeds | " + " | ".join(f"{m} (r0 -> last, change)" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for arm, res in table.items():
        cells = []
        for m in METRICS:
            v = res[m]
            se = f" ± {v['delta_se']:.3f}" if _fmt(v["delta_se"], ".3f") != "-" else ""
            cells.append(f"{_fmt(v['first'], '.3f')} -> {_fmt(v['last'], '.3f')} "
                         f"({_fmt(v['delta'], '+.3f')}{se})")
        lines.append(f"| {arm} | {len(res['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _no_nan(obj):
    """``obj`` with every nan float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--against", metavar="ARM", help="pair every other arm with this one")
    parser.add_argument("--png", type=Path, help="pass@k curves, round 0 and the last round")
    parser.add_argument("--plot-arms", nargs="+", metavar="ARM", help="only these in --png")
    args = parser.parse_args(argv)
    try:
        table = summarise(args.runs)
        diffs = against(table, args.against) if args.against else None
        if args.png:
            plot(table, args.png, args.plot_arms)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    text = markdown(table)
    if diffs is not None:
        text += "\n" + against_markdown(diffs, args.against)
    print(text, end="")
    if args.json:
        payload = {"runs": [r.name for r in args.runs], "arms": table}
        if diffs is not None:
            payload["against"] = {"base": args.against, "arms": diffs}
        args.json.write_text(json.dumps(_no_nan(payload), indent=1) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

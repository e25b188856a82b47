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

``--include TABLE.json`` adds the arms of an earlier ``--json`` output (runs no longer on
disk), by name, and its run names to the JSON's "runs". ``--default ARM`` names the arm
that is the recipe's default (JSON key "default"). ``--plane PNG`` places every arm on the
plane of its pass@1 change (x) against its pass@max-k change (y), with standard errors, and
draws the trade-off line: the least-squares fit through the ``--line-arms`` (default: every
arm). Each arm's distance from the line ("off": its pass@64 change minus the line's at its
pass@1 change, with the standard error of its own pass@64 change) goes to the markdown and,
under "plane", to the JSON: an arm above the line keeps more reach than the trade-off
prices for its gain.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from treesearch.utils.estimators import standard_error

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
        per_seed = {str(seed): {m: list(v[m]) for m in METRICS}
                    for seed, v in zip(entry["runs"], entry["values"])}
        curves = {which: _mean_curve([c[i] for c in entry["curves"]])
                  for i, which in enumerate(("first", "last"))}
        out[arm] = arm_stats(per_seed, curves, entry["rounds"])
    return out


def arm_stats(per_seed: dict, passk: dict, rounds: int) -> dict:
    """One arm's table entry from its ``per_seed`` {seed: {metric: [round 0, last]}}: the
    seeds, ``rounds``, the mean ``passk`` curves, and per metric the means over seeds of
    round 0, the last round and the change, with the change's standard error."""
    res = {"seeds": sorted(int(s) for s in per_seed), "rounds": rounds,
           "per_seed": per_seed, "passk": passk}
    for m in METRICS:
        first = [v[m][0] for v in per_seed.values()]
        last = [v[m][1] for v in per_seed.values()]
        mean, se = _mean_se([b - a for a, b in zip(first, last)])
        res[m] = {"first": sum(first) / len(first), "last": sum(last) / len(last),
                  "delta": mean, "delta_se": se}
    return res


def _mean_curve(curves: list[dict]) -> dict:
    """{k: mean pass@k} over the curves' common ks (string keys, as logged), k ascending."""
    ks = sorted(set.intersection(*(set(c) for c in curves)), key=int)
    return {k: sum(float(c[k]) for c in curves) / len(curves) for k in ks}


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error over seeds; None for the error of one seed."""
    return sum(values) / len(values), standard_error(values) if len(values) > 1 else None


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
    from treesearch.utils.plots import new_figure

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
    _finish(fig, ax, path, "k (samples)", "pass@k (mean over seeds)",
            "pass@k before and after self-play", legend_size=7)


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


def included_runs(path: Path) -> list[str]:
    """The run names an earlier ``--json`` output at ``path`` was made from (its "runs")."""
    return list(json.loads(path.read_text()).get("runs", []))


def include(table: dict, path: Path) -> dict:
    """``table`` with the arms of an earlier ``--json`` output at ``path`` added (metrics
    that table lacks become nan). An arm in both gains the stored seeds (its mean pass@k
    curves weighted by seeds over their common ks); a ValueError naming an arm whose seeds
    overlap, or a file that is not such an output."""
    try:
        stored = json.loads(path.read_text())["arms"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--include {path}: not a widen_table --json output ({exc})") from None
    out = dict(table)
    for arm, res in stored.items():
        per_seed = {seed: {m: [math.nan if x is None else x  # JSON null: not logged
                               for x in v.get(m, [None, None])] for m in METRICS}
                    for seed, v in res["per_seed"].items()}
        passk = res["passk"]
        if arm in out:
            both = set(per_seed) & set(out[arm]["per_seed"])
            if both or res["rounds"] != out[arm]["rounds"]:
                raise ValueError(f"--include {path}: arm {arm!r} is also among the runs "
                                 + (f"with seed(s) {sorted(int(x) for x in both)}" if both
                                    else f"with {out[arm]['rounds']} rounds, not {res['rounds']}"))
            ours = out[arm]
            n, k = len(ours["per_seed"]), len(per_seed)
            passk = {w: {q: (ours["passk"][w][q] * n + passk[w][q] * k) / (n + k)
                         for q in ours["passk"][w] if q in passk[w]} for w in ("first", "last")}
            per_seed = {**ours["per_seed"], **per_seed}
        out[arm] = arm_stats(per_seed, passk, res["rounds"])
    return out


def plane(table: dict, line_arms: list[str] | None = None) -> dict:
    """The pass@1 / pass@64 plane: {"line": {"intercept", "slope", "arms"}, "arms": {arm:
    {"x", "x_se", "y", "y_se", "off", "off_se"}}}. x and y are an arm's mean pass@1 and
    pass@max-k changes (round 0 -> last); the line is the least-squares fit y = intercept
    + slope * x through ``line_arms`` (default: all; at least two, with distinct x); off =
    y - line(x), its standard error y's (the line's own error left out). A ValueError
    names an unknown arm or a line it cannot fit."""
    names = line_arms or list(table)
    missing = [a for a in names if a not in table]
    if missing:
        raise ValueError(f"--line-arms {missing}: not arms (arms: {', '.join(table)})")
    xs = [table[a]["pass@1"]["delta"] for a in names]
    ys = [table[a]["pass@64"]["delta"] for a in names]
    if len(names) < 2 or max(xs) - min(xs) < 1e-12:
        raise ValueError(f"--line-arms {names}: a line needs two arms or more whose pass@1 "
                         "changes differ")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
             / sum((x - mx) ** 2 for x in xs))
    intercept = my - slope * mx
    arms = {}
    for arm, res in table.items():
        x, y = res["pass@1"]["delta"], res["pass@64"]["delta"]
        arms[arm] = {"x": x, "x_se": res["pass@1"]["delta_se"], "y": y,
                     "y_se": res["pass@64"]["delta_se"], "off": y - (intercept + slope * x),
                     "off_se": res["pass@64"]["delta_se"], "seeds": len(res["seeds"])}
    return {"line": {"intercept": intercept, "slope": slope, "arms": names}, "arms": arms}


def plane_markdown(pl: dict) -> str:
    line = pl["line"]
    lines = [f"The line (least squares through {len(line['arms'])} arms): pass@64 change = "
             f"{line['intercept']:+.3f} {line['slope']:+.2f} x pass@1 change.", "",
             "| arm | seeds | pass@1 change | pass@64 change | off the line |",
             "|---|---|---|---|---|"]

    def cell(v, se):
        return _fmt(v, "+.3f") + (f" ± {se:.3f}" if se is not None else "")

    for arm, a in sorted(pl["arms"].items(), key=lambda kv: -kv[1]["off"]):
        lines.append(f"| {arm} | {a['seeds']} | {cell(a['x'], a['x_se'])} | "
                     f"{cell(a['y'], a['y_se'])} | {cell(a['off'], a['off_se'])} |")
    return "\n".join(lines) + "\n"


def plot_plane(pl: dict, path: Path) -> None:
    """Each arm at (pass@1 change, pass@64 change) with standard-error bars, the fitted
    line, and the issue's target corner (pass@1 +0.05 or more, pass@64 not down)."""
    from treesearch.utils.plots import new_figure

    fig = new_figure((7.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    xs = [a["x"] for a in pl["arms"].values()]
    lo, hi = min(xs + [0.0]) - 0.01, max(xs + [0.06]) + 0.01
    line = pl["line"]
    ax.plot([lo, hi], [line["intercept"] + line["slope"] * x for x in (lo, hi)], "-",
            color="0.5", label=f"the line ({line['slope']:+.2f} pass@64 per pass@1)")
    ax.axhline(0, color="0.8", lw=0.8)
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors  # 20 distinct; then the marker changes
    for i, (arm, a) in enumerate(pl["arms"].items()):
        ax.errorbar(a["x"], a["y"], xerr=a["x_se"] or 0, yerr=a["y_se"] or 0,
                    fmt="osD^v"[i // 20 % 5], color=colors[i % 20], markersize=4, capsize=2,
                    label=f"{arm} (n={a['seeds']})")
    top = ax.get_ylim()[1]
    ax.fill_between([0.05, hi], 0, max(top, 0.01), color="C2", alpha=0.08,
                    label="target: pass@1 +0.05, pass@64 kept")
    ax.set_xlim(lo, hi)
    _finish(fig, ax, path, "pass@1 change, round 0 -> last", "pass@64 change, round 0 -> last",
            "every arm on the pass@1 / pass@64 plane", legend_size=6)


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_size: int) -> None:
    """Axis labels, title, grid and a legend right of the axes; the PNG written to ``path``."""
    from treesearch.utils.plots import save_png

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    save_png(fig, path)


def _no_nan(obj):
    """``obj`` with every nan float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--against", metavar="ARM", help="pair every other arm with this one")
    parser.add_argument("--png", type=Path, help="pass@k curves, round 0 and the last round")
    parser.add_argument("--plot-arms", nargs="+", metavar="ARM", help="only these in --png")
    parser.add_argument("--include", nargs="+", type=Path, default=[], metavar="JSON",
                        help="add the arms of earlier --json outputs")
    parser.add_argument("--plane", type=Path, help="the pass@1 / pass@64 plane (PNG)")
    parser.add_argument("--line-arms", nargs="+", metavar="ARM",
                        help="the arms the plane's line is fitted through (default: all)")
    parser.add_argument("--default", metavar="ARM",
                        help="the arm that is the recipe's default (JSON key 'default')")
    args = parser.parse_args(argv)
    if not args.runs and not args.include:
        parser.exit(2, "error: give run directories, --include tables, or both\n")
    try:
        table = summarise(args.runs)
        for path in args.include:
            table = include(table, path)
        if args.default is not None and args.default not in table:
            raise ValueError(f"--default {args.default!r}: not an arm (arms: {', '.join(table)})")
        diffs = against(table, args.against) if args.against else None
        pl = plane(table, args.line_arms) if args.plane or args.line_arms else None
        if args.png:
            plot(table, args.png, args.plot_arms)
        if args.plane:
            plot_plane(pl, args.plane)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    text = markdown(table)
    if diffs is not None:
        text += "\n" + against_markdown(diffs, args.against)
    if pl is not None:
        text += "\n" + plane_markdown(pl)
    print(text, end="")
    if args.json:
        runs = [r.name for r in args.runs] + [n for p in args.include for n in included_runs(p)]
        payload = {"runs": runs, "arms": table}
        if args.default is not None:
            payload["default"] = args.default
        if diffs is not None:
            payload["against"] = {"base": args.against, "arms": diffs}
        if pl is not None:
            payload["plane"] = pl
        args.json.write_text(json.dumps(_no_nan(payload), indent=1) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

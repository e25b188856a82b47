"""The study's analysis: tables, eta squared of prior vs optimizer, pass@k crossover plots.

``write_report(run_dir, cfg)`` reads every ``cells/*/*/measure.json`` of a study run and
writes ``report.md``, ``results.json`` (the numbers behind every table) and PNG plots:

- ``passk_<prior>.png``: held-out pass@k for k = 1..n, the prior (base) against every
  optimizer, log2 k axis: the crossover plot (does training fall below its prior at large k?);
- ``eta2.png``: share of variance explained by prior, optimizer and the rest, per metric.

Definitions (per trained cell; means over seeds in the tables):
- ``ood_drop`` = pass@1 in distribution - mean pass@1 over the OOD tasks;
- ``crossover k``: the smallest k at which the trained policy's pass@k is at or below
  its prior's after being above it at k = 1 ("-" if never; "below" if below from k = 1);
- ``newly solved``: held-out problems with no correct sample among the prior's n that
  have one among the trained policy's n; ``lost`` the reverse;
- standard errors (``±``) are over problems: std of the per-problem estimate / sqrt(P).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from treesearch.utils.atomic import write_text
from treesearch.utils.estimators import eta_squared, newly_solved, pass_at_k
from treesearch.utils.plots import new_figure, save_png
from treesearch.utils.runs import read_json, write_json

ETA_METRICS = ("pass@1", "pass@n", "ood_drop")


def load_cells(run_dir: Path) -> tuple[dict, list[dict]]:
    """(base measurements by prior, trained cells) from a run directory."""
    base, cells = {}, []
    for path in sorted((run_dir / "cells").glob("*/*/measure.json")):
        row = read_json(path)
        base[row["prior"]] = row
    for path in sorted((run_dir / "cells").glob("*/*/seed*/measure.json")):
        row = read_json(path)
        train = path.parent / "train.json"
        row["train"] = read_json(train) if train.is_file() else {}
        cells.append(row)
    return base, cells


def _per_problem(counts, n: int, k: int) -> np.ndarray:
    counts = np.asarray(counts, np.int64)
    return np.asarray(pass_at_k(np.full_like(counts, n), counts, k), np.float64).reshape(-1)


def summarise(row: dict, base: dict | None) -> dict:
    """Flat figures of one measured policy (trained cell or base)."""
    ev = row["eval"]
    idm = ev["id"]
    n = idm["n"]
    p1 = _per_problem(idm["counts"], n, 1)
    pn = _per_problem(idm["counts"], n, n)
    ood = [v["pass_at"]["1"] for k, v in ev.items() if k != "id"]
    out = {
        "prior": row["prior"], "optimizer": row["optimizer"], "seed": row.get("seed"),
        "pass@1": float(p1.mean()), "pass@1_se": float(p1.std(ddof=1) / np.sqrt(len(p1))) if len(p1) > 1 else float("nan"),
        "pass@n": float(pn.mean()), "pass@n_se": float(pn.std(ddof=1) / np.sqrt(len(pn))) if len(pn) > 1 else float("nan"),
        "n": n, "coverage": idm["coverage"], "distinct_correct": idm["distinct_correct"],
        "entropy": idm["entropy"], "brier": idm["brier"], "ece": idm["ece"],
        "ood_pass@1": {k: v["pass_at"]["1"] for k, v in ev.items() if k != "id"},
        "ood_pass@n": {k: v["pass_at"][str(v["n"])] for k, v in ev.items() if k != "id"},
        "ood_drop": float(p1.mean() - np.mean(ood)) if ood else float("nan"),
        "format_share": idm["format_share"],
        "strategy_share": idm.get("strategy_share", {}),
        "format_over_training": row.get("train", {}).get("format_over_training", []),
        "curve": {int(k): v for k, v in idm["pass_at"].items()},
    }
    if base is not None:
        out["newly_solved"] = newly_solved(base["eval"]["id"]["counts"], idm["counts"])
        out["crossover_k"] = crossover(base["eval"]["id"]["pass_at"], idm["pass_at"])
    if "sparsity" in row:
        out["train_tokens"] = row.get("train_tokens")
        out["unchanged_fp32_0"] = row["sparsity"]["fp32"]["0"]
        out["unchanged_bf16_1e-05"] = row["sparsity"]["bf16"]["1e-05"]
        out["sparsity"] = row["sparsity"]
        out["rank_share"] = row["rank"]["mean_rank_share"]
    return out


def crossover(base_curve: dict, curve: dict):
    """Smallest k where ``curve`` <= ``base_curve`` after being above at k = 1 (int), "-"
    if it stays above (or equal at every k), "below" if it starts at or below."""
    ks = sorted(int(k) for k in curve)
    diff = [curve[str(k)] - base_curve[str(k)] for k in ks]
    if diff[0] <= 0:
        return "below" if any(d < 0 for d in diff) else "-"
    for k, d in zip(ks, diff):
        if d <= 0:
            return k
    return "-"


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _fmt(x, digits=3):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def analyse(run_dir: Path) -> dict:
    base, cells = load_cells(run_dir)
    bases = {p: summarise(row, None) for p, row in base.items()}
    trained = [summarise(row, base.get(row["prior"])) for row in cells]
    eta = {}
    if trained:
        for metric in ETA_METRICS:
            try:
                eta[metric] = eta_squared([r[metric] for r in trained],
                                          [r["prior"] for r in trained],
                                          [r["optimizer"] for r in trained])
            except ValueError as exc:  # an unbalanced (unfinished) grid
                eta[metric] = {"error": str(exc)}
    return {"base": bases, "cells": trained, "eta_squared": eta}


def write_report(run_dir, cfg=None) -> Path:
    """Analyse the run and write report.md, results.json and the plots; returns the
    report's path. cfg: the study config (its setup line heads the report), or None."""
    run_dir = Path(run_dir)
    res = analyse(run_dir)
    write_json(run_dir / "results.json", res)
    groups = _groups(res["cells"])
    lines = ["# Prior vs optimizer: study report", ""]
    lines += _setup_section(cfg)
    lines += _priors_section(_read_priors(run_dir))
    lines += _in_distribution_section(res, groups)
    lines += _ood_section(res, groups)
    lines += _updates_section(res, groups)
    lines += _formats_section(res, groups)
    lines += _formats_over_training_section(groups)
    lines += _strategies_section(res, groups)
    lines += _eta_section(res)
    lines += _plots_section(_plots(run_dir, res))
    path = run_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path


# ----------------------------------------------------------------------------- report sections
# Each returns the section's markdown lines (ending with a blank line), or [] when the run
# has nothing for it. ``groups``: (prior, optimizer) -> that pair's trained cells (``_groups``).

def _read_priors(run_dir: Path) -> dict:
    """The run's ``priors.json`` (prior name -> its description), {} when absent."""
    priors_file = run_dir / "priors.json"
    return read_json(priors_file) if priors_file.is_file() else {}


def _setup_section(cfg) -> list[str]:
    """One paragraph on the task, budget, held-out sets and seeds (nothing without cfg)."""
    if cfg is None:
        return []
    return [f"Task `{cfg.task}` (OOD: {', '.join(f'`{t}`' for t in cfg.ood_tasks)}); "
            f"training budget {cfg.budget_tokens} generated tokens per run on "
            f"{cfg.train_problems} training problems; held-out: {cfg.eval.problems} "
            f"problems in distribution, {cfg.eval.ood_problems} per OOD task, "
            f"n = {cfg.eval.samples} samples each at temperature {cfg.eval.temperature}; "
            f"seeds {list(cfg.seeds)}.", ""]


def _priors_section(priors: dict) -> list[str]:
    """Each prior: how it differs from the reference, its pretraining changes, its path."""
    if not priors:
        return []
    lines = ["## Priors", "", "| prior | differs from reference in | pretraining changes | path |",
             "|---|---|---|---|"]
    for name, p in priors.items():
        lines.append(f"| {name} | {p.get('factor') or ('reference' if not p.get('reference') else '-')} "
                     f"| {json.dumps(p.get('pretrain') or {})} | `{p['path']}` |")
    lines.append("")
    return lines


def _in_distribution_section(res: dict, groups: dict) -> list[str]:
    """The held-out in-distribution table: each prior, then its optimizers (means over seeds)."""
    lines = ["## In distribution (held-out)", "",
             "| prior | optimizer | pass@1 | pass@n | coverage | newly solved | lost | crossover k "
             "| distinct correct | entropy (nats) | Brier | ECE | train tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for prior, b in res["base"].items():
        lines.append(_base_row(prior, b))
        for (p, opt), rows in groups.items():
            if p == prior:
                lines.append(_trained_row(prior, opt, rows))
    lines.append("")
    return lines


def _base_row(prior: str, b: dict) -> str:
    """The in-distribution row of a prior itself (no training columns)."""
    return (f"| {prior} | (prior) | {_fmt(b['pass@1'])} ± {_fmt(b['pass@1_se'])} | "
            f"{_fmt(b['pass@n'])} ± {_fmt(b['pass@n_se'])} | {_fmt(b['coverage'])} | - | - | - | "
            f"{_fmt(b['distinct_correct'], 1)} | {_fmt(b['entropy'])} | {_fmt(b['brier'])} | "
            f"{_fmt(b['ece'])} | - |")


def _trained_row(prior: str, opt: str, rows: list[dict]) -> str:
    """The in-distribution row of one (prior, optimizer): means over its seeds' cells;
    crossover k listed per seed."""
    ns = sum(r["newly_solved"]["newly_solved"] for r in rows) / len(rows)
    lost = sum(r["newly_solved"]["lost"] for r in rows) / len(rows)
    unsolved = rows[0]["newly_solved"]["base_unsolved"]
    cross = ", ".join(str(r["crossover_k"]) for r in rows)
    return (f"| {prior} | {opt} | {_fmt(_mean(rows, 'pass@1'))} ± {_fmt(_mean(rows, 'pass@1_se'))} | "
            f"{_fmt(_mean(rows, 'pass@n'))} ± {_fmt(_mean(rows, 'pass@n_se'))} | "
            f"{_fmt(_mean(rows, 'coverage'))} | {ns:.1f} of {unsolved} | {lost:.1f} | {cross} | "
            f"{_fmt(_mean(rows, 'distinct_correct'), 1)} | {_fmt(_mean(rows, 'entropy'))} | "
            f"{_fmt(_mean(rows, 'brier'))} | {_fmt(_mean(rows, 'ece'))} | "
            f"{_mean(rows, 'train_tokens'):.0f} |")


def _rows_by_optimizer(prior: str, b: dict, groups: dict) -> list[tuple[str, list[dict]]]:
    """[("(prior)", [the prior's summary]), (optimizer, its cells), ...] for one prior."""
    return [("(prior)", [b])] + [(o, rs) for (p, o), rs in groups.items() if p == prior]


def _ood_section(res: dict, groups: dict) -> list[str]:
    """pass@1 and pass@n per OOD task and the OOD drop, per prior and optimizer."""
    ood_names = sorted({k for r in [*res["base"].values(), *res["cells"]] for k in r["ood_pass@1"]})
    if not ood_names:
        return []
    lines = ["## Out of distribution", "",
             "| prior | optimizer | " + " | ".join(f"{t} pass@1 | {t} pass@n" for t in ood_names)
             + " | OOD drop (ID - OOD pass@1) |",
             "|---|---|" + "---|---|" * len(ood_names) + "---|"]
    for prior, b in res["base"].items():
        for opt, rows in _rows_by_optimizer(prior, b, groups):
            cells = []
            for t in ood_names:
                cells.append(_fmt(np.mean([r["ood_pass@1"][t] for r in rows])))
                cells.append(_fmt(np.mean([r["ood_pass@n"][t] for r in rows])))
            lines.append(f"| {prior} | {opt} | " + " | ".join(cells) + f" | {_fmt(_mean(rows, 'ood_drop'))} |")
    lines.append("")
    return lines


def _updates_section(res: dict, groups: dict) -> list[str]:
    """Share of parameters unchanged per tolerance (fp32, bf16) and the update rank share;
    only when the cells were measured for sparsity."""
    if not (res["cells"] and "sparsity" in res["cells"][0]):
        return []
    tols = sorted(res["cells"][0]["sparsity"]["fp32"].keys(), key=float)
    lines = ["## Parameter updates", "",
             "Share of parameters unchanged (|delta| <= tolerance) after training, and the mean "
             "numerical rank share of the matrices' updates (singular values > 1e-3 x largest).", "",
             "| prior | optimizer | " + " | ".join(f"fp32 @{t}" for t in tols) + " | "
             + " | ".join(f"bf16 @{t}" for t in tols) + " | update rank share |",
             "|---|---|" + "---|" * (2 * len(tols)) + "---|"]
    for (p, opt), rows in groups.items():
        f32 = [np.mean([r["sparsity"]["fp32"][t] for r in rows]) for t in tols]
        b16 = [np.mean([r["sparsity"]["bf16"][t] for r in rows]) for t in tols]
        lines.append(f"| {p} | {opt} | " + " | ".join(_fmt(v, 4) for v in f32 + b16)
                     + f" | {_fmt(_mean(rows, 'rank_share'))} |")
    lines.append("")
    return lines


def _formats_section(res: dict, groups: dict) -> list[str]:
    """Share of each solution format among the held-out samples, per prior and optimizer."""
    lines = ["## Solution formats (share of held-out samples)", "",
             "| prior | optimizer | formats |", "|---|---|---|"]
    for prior, b in res["base"].items():
        lines.append(f"| {prior} | (prior) | {_formats(b['format_share'])} |")
        for (p, opt), rows in groups.items():
            if p == prior:
                lines.append(f"| {prior} | {opt} | {_formats(_mean_shares([r['format_share'] for r in rows]))} |")
    lines.append("")
    return lines


def _formats_over_training_section(groups: dict) -> list[str]:
    """Format shares of the first and last training iteration (cells that recorded them)."""
    over = [(k, rows) for k, rows in groups.items() if rows[0]["format_over_training"]]
    if not over:
        return []
    lines = ["## Solution formats over training", "",
             "Share of each format among the samples the optimizer trained on (on-policy: "
             "each iteration's samples; mcts: the distilled paths), mean over seeds.", "",
             "| prior | optimizer | first iteration | last iteration |", "|---|---|---|---|"]
    for (p, opt), rows in over:
        first = _mean_shares([r["format_over_training"][0] for r in rows if r["format_over_training"]])
        last = _mean_shares([r["format_over_training"][-1] for r in rows if r["format_over_training"]])
        lines.append(f"| {p} | {opt} | {_formats(first)} | {_formats(last)} |")
    lines.append("")
    return lines


def _strategies_section(res: dict, groups: dict) -> list[str]:
    """Share of correct held-out samples using each strategy (mean over seeds, NaN-aware)."""
    strategies = sorted({k for r in [*res["base"].values(), *res["cells"]] for k in r["strategy_share"]})
    if not strategies:
        return []
    lines = ["## Strategies (share of correct held-out samples using each)", "",
             "| prior | optimizer | " + " | ".join(strategies) + " |",
             "|---|---|" + "---|" * len(strategies)]
    for prior, b in res["base"].items():
        for opt, rows in _rows_by_optimizer(prior, b, groups):
            vals = [np.nanmean([r["strategy_share"].get(st, np.nan) for r in rows])
                    if any(not np.isnan(r["strategy_share"].get(st, np.nan)) for r in rows)
                    else float("nan") for st in strategies]
            lines.append(f"| {prior} | {opt} | " + " | ".join(_fmt(v) for v in vals) + " |")
    lines.append("")
    return lines


def _eta_section(res: dict) -> list[str]:
    """The eta squared table per metric, with the caveats that apply (one seed, two priors)."""
    lines = ["## Prior vs optimizer: eta squared", "",
             "Two-way decomposition over the trained cells (prior x optimizer, seeds as "
             "replicates): the share of the metric's variance explained by each factor.", "",
             "| metric | prior | optimizer | interaction | residual (seeds) |", "|---|---|---|---|---|"]
    for metric, e in res["eta_squared"].items():
        if "error" in e:
            lines.append(f"| {metric} | {e['error']} | | | |")
        else:
            lines.append(f"| {metric} | {_fmt(e['a'])} | {_fmt(e['b'])} | {_fmt(e['interaction'])} "
                         f"| {_fmt(e['residual'])} |")
    replicates = {e.get("replicates") for e in res["eta_squared"].values() if "error" not in e}
    if replicates == {1}:
        lines += ["", "With one seed the interaction and residual cannot be told apart (reported "
                  "together as interaction)."]
    if len(res["base"]) == 2:
        lines += ["", "With two priors, the prior share rests on one contrast."]
    lines.append("")
    return lines


def _plots_section(plots: list[Path]) -> list[str]:
    """Markdown image links to the PNGs written next to the report."""
    if not plots:
        return []
    return ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]


def _mean_shares(shares: list[dict]) -> dict:
    """Key-wise mean of share dicts (a key missing from one counts as 0 there)."""
    keys = sorted({k for s in shares for k in s})
    return {k: float(np.mean([s.get(k, 0.0) for s in shares])) for k in keys} if shares else {}


def _formats(share: dict) -> str:
    return ", ".join(f"{k}: {v:.2f}" for k, v in sorted(share.items()))


def _groups(cells: list[dict]) -> dict:
    out: dict = {}
    for r in cells:
        out.setdefault((r["prior"], r["optimizer"]), []).append(r)
    return out


def _plots(run_dir: Path, res: dict) -> list[Path]:
    out = []
    groups = _groups(res["cells"])
    for prior, b in res["base"].items():
        fig = new_figure((6.5, 4.2))
        ax = fig.add_subplot()
        ks = sorted(b["curve"])
        ax.plot(ks, [b["curve"][k] for k in ks], "k--", marker="o", label="prior (base)")
        for (p, opt), rows in groups.items():
            if p != prior:
                continue
            ys = [np.mean([r["curve"][k] for r in rows]) for k in ks]
            ax.plot(ks, ys, marker=".", label=opt)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k (held-out, in distribution)")
        ax.set_title(f"prior {prior}: pass@k, base vs trained")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = run_dir / f"passk_{prior}.png"
        save_png(fig, path)
        out.append(path)
    eta = {m: e for m, e in res["eta_squared"].items() if "error" not in e}
    if eta:
        fig = new_figure((6, 3.8))
        ax = fig.add_subplot()
        metrics = list(eta)
        x = np.arange(len(metrics))
        bottom = np.zeros(len(metrics))
        for part, label in (("a", "prior"), ("b", "optimizer"), ("interaction", "interaction"),
                            ("residual", "residual")):
            vals = np.nan_to_num([eta[m][part] for m in metrics])
            ax.bar(x, vals, bottom=bottom, label=label)
            bottom += vals
        ax.set_xticks(x, metrics)
        ax.set_ylabel("share of variance (eta squared)")
        ax.set_title("prior vs optimizer")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = run_dir / "eta2.png"
        save_png(fig, path)
        out.append(path)
    return out

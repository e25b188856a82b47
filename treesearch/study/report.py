"""The study's report: tables, eta squared of prior vs optimizer, pass@k crossover plots.

``write_report(run_dir, cfg)`` takes the numbers of a study run from
``treesearch.study.analysis.analyse`` (every ``cells/*/*/measure.json``) and writes
``report.md``, ``results.json`` (the numbers behind every table) and PNG plots:

- ``passk_<prior>.png``: held-out pass@k for k = 1..n, the prior (base) against every
  optimizer, log2 k axis: the crossover plot (does training fall below its prior at large k?);
- ``eta2.png``: share of variance explained by prior, optimizer and the rest, per metric.

Definitions (per trained cell; means over seeds in the tables):
- ``ood_drop`` = pass@1 in distribution - mean pass@1 over the OOD tasks;
- ``crossover k``: the smallest k at which the trained policy's pass@k is at or below
  its prior's after being above it at k = 1 ("-" if never; "below" if below from k = 1);
- ``newly solved``: held-out problems with no correct sample among the prior's n that
  have one among the trained policy's n; ``lost`` the reverse;
- standard errors (``±``) are over problems: std of the per-problem estimate / sqrt(P);
- intervals ``[lo, hi]`` are 95% percentile bootstrap intervals (``treesearch.study.stats``)
  resampling the held-out problems (the same resample for every policy) and the seeds;
- ``heldout:<strategy>`` eval sets (problems solvable only with a strategy held out of
  pretraining) get their own section and are left out of the OOD figures.

Sections whose data a run lacks (older runs, probes not run) are left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from treesearch.study.analysis import (BOOTSTRAP_RESAMPLES, REACHABLE_PASS_AT_N, analyse,
                                       read_priors)
from treesearch.study.config import optimizers_of, seeds_of
from treesearch.study.stats import CI_LEVEL, DIFFICULTY_BINS
from treesearch.utils.atomic import write_text
from treesearch.utils.plots import new_figure, save_png
from treesearch.utils.runs import portable_path, write_json

HELDOUT_KS = (1, 16, 256)   # the pass@k columns of the held-out strategy table (those measured)

def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else float("nan")
def _fmt(x, digits=3):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def write_report(run_dir, cfg=None) -> Path:
    """Analyse the run and write report.md, results.json and the plots; returns the
    report's path. cfg: the study config (its setup line heads the report), or None."""
    run_dir = Path(run_dir)
    res = analyse(run_dir)
    write_json(run_dir / "results.json", res)
    groups = _groups(res["cells"])
    lines = ["# Prior vs optimizer: study report", ""]
    lines += _setup_section(cfg)
    lines += _priors_section(read_priors(run_dir), run_dir)
    lines += _in_distribution_section(res, groups)
    lines += _headline_section(res)
    lines += _difficulty_section(res)
    lines += _heldout_section(res, groups)
    lines += _ood_section(res, groups)
    lines += _calibration_section(res, groups)
    lines += _routing_section(groups)
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



def _setup_section(cfg) -> list[str]:
    """One paragraph on the task, budget, held-out sets and seeds (nothing without cfg)."""
    if cfg is None:
        return []
    return [(f"Task `{cfg.task}` (OOD: {', '.join(f'`{t}`' for t in cfg.ood_tasks)}); "
            f"training budget {cfg.budget_tokens} generated tokens per run on "
            f"{cfg.train_problems} training problems; held-out: {cfg.eval.problems} "
            f"problems in distribution, {cfg.eval.ood_problems} per OOD task, "
            f"n = {cfg.eval.samples} samples each at temperature {cfg.eval.temperature}; "
            f"seeds {list(cfg.seeds)}.")] + [
        f"Prior `{p.name}` has its own lists: optimizers {list(optimizers_of(cfg, p))}, "
        f"seeds {list(seeds_of(cfg, p))}." for p in cfg.priors if p.optimizers or p.seeds] + [
        f"Optimizer `{name}`: {v.optimizer} with "
        f"{'tree' if v.tree else 'rl'} "
        f"{json.dumps(_plain(v.tree or v.rl), sort_keys=True)}."
        for name, v in cfg.variants.items()] + [""]


def _plain(changes) -> dict:
    """A variant's changes as plain JSON-able values (nested mappings included)."""
    return OmegaConf.to_container(changes) if OmegaConf.is_config(changes) else dict(changes)


def _shown_path(path, run_dir: Path) -> str:
    """``path`` as the report may show it: never absolute. Relative paths are kept;
    absolute ones become ``portable_path``'s form (relative to the project or ``~/...``),
    else relative to the run directory (where report.md lies) when inside it, else
    ``.../<parent>/<name>``: enough to name the prior (its cache entry) without spelling
    out the layout of the machine that ran it."""
    path = str(path)
    if not os.path.isabs(os.path.expanduser(path)):
        return path
    shown = portable_path(path)
    if os.path.isabs(shown):
        run_dir = Path(run_dir).resolve()
        if Path(shown).resolve().is_relative_to(run_dir):
            return os.path.relpath(shown, run_dir)
        shown = f".../{Path(shown).parent.name}/{Path(shown).name}"
    return shown


def _val_columns(priors: dict) -> list[str]:
    """The validation figures some priors carry (``"val": {"pass@1": x, ...}``), in order
    of k where the name is ``pass@<k>``."""
    names = {k for p in priors.values() if isinstance(p.get("val"), dict) for k in p["val"]}

    def order(name):
        k = name.removeprefix("pass@")
        return (0, int(k), name) if k.isdigit() else (1, 0, name)

    return sorted(names, key=order)


def _priors_section(priors: dict, run_dir: Path) -> list[str]:
    """Each prior: how it differs from the reference, its pretraining changes, its
    validation pass@k where recorded, its path (never absolute)."""
    if not priors:
        return []
    val = _val_columns(priors)
    lines = ["## Priors", "", "| prior | differs from reference in | pretraining changes | "
             + "".join(f"val {v} | " for v in val) + "path |",
             "|---|---|---|" + "---|" * len(val) + "---|"]
    for name, p in priors.items():
        figures = p.get("val") if isinstance(p.get("val"), dict) else {}
        path = f"`{_shown_path(p['path'], run_dir)}`" if p.get("path") else "-"
        lines.append(f"| {name} | "
                     f"{p.get('factor') or ('reference' if not p.get('reference') else '-')} "
                     f"| {json.dumps(p.get('pretrain') or {})} | "
                     + "".join(f"{_fmt(figures.get(v))} | " for v in val) + f"{path} |")
    lines.append("")
    return lines


def _in_distribution_section(res: dict, groups: dict) -> list[str]:
    """The held-out in-distribution table: each prior, then its optimizers (means over seeds)."""
    lines = ["## In distribution (held-out)", "",
             ("| prior | optimizer | pass@1 | pass@n | coverage | newly solved | lost | "
              "crossover k "
             "| distinct correct | entropy (nats) | Brier | ECE | train tokens |"),
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
    return (f"| {prior} | {opt} | {_fmt(_mean(rows, 'pass@1'))} ± "
            f"{_fmt(_mean(rows, 'pass@1_se'))} | "
            f"{_fmt(_mean(rows, 'pass@n'))} ± {_fmt(_mean(rows, 'pass@n_se'))} | "
            f"{_fmt(_mean(rows, 'coverage'))} | {ns:.1f} of {unsolved} | {lost:.1f} | {cross} | "
            f"{_fmt(_mean(rows, 'distinct_correct'), 1)} | {_fmt(_mean(rows, 'entropy'))} | "
            f"{_fmt(_mean(rows, 'brier'))} | {_fmt(_mean(rows, 'ece'))} | "
            f"{_fmt(_mean(rows, 'train_tokens'), 0)} |")


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
                cells.append(_fmt(_mean_present([r["ood_pass@1"].get(t) for r in rows])))
                cells.append(_fmt(_mean_present([r["ood_pass@n"].get(t) for r in rows])))
            lines.append(f"| {prior} | {opt} | " + " | ".join(cells)
                         + f" | {_fmt(_mean(rows, 'ood_drop'))} |")
    lines.append("")
    reach = res.get("ood_reach") or []
    if reach:
        level = round(100 * CI_LEVEL)
        lines += [(f"Reach where a prior reaches (OOD sets with a prior's pass@n above "
                   f"{REACHABLE_PASS_AT_N}): trained minus prior pass@n, with a {level}% paired "
                   "bootstrap interval (problems and seeds resampled)."), "",
                  "| prior | optimizer | OOD set | pass@n difference | problems |",
                  "|---|---|---|---|---|"]
        for r in reach:
            lines.append(f"| {r['prior']} | {r['optimizer']} | {r['set']} | "
                         f"{_signed_interval(r['pass@n'])} | {r['pass@n'].get('problems', '-')} |")
        lines.append("")
    return lines


def _updates_section(res: dict, groups: dict) -> list[str]:
    """Share of parameters unchanged per tolerance (fp32, bf16) and the update rank share;
    only when the cells were measured for sparsity."""
    if not (res["cells"] and "sparsity" in res["cells"][0]):
        return []
    tols = sorted(res["cells"][0]["sparsity"]["fp32"].keys(), key=float)
    lines = ["## Parameter updates", "",
             ("Share of parameters unchanged (|delta| <= tolerance) after training, and the mean "
             "numerical rank share of the matrices' updates (singular values > 1e-3 x largest)."),
             "",
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
                lines.append(f"| {prior} | {opt} | "
                             f"{_formats(_mean_shares([r['format_share'] for r in rows]))} |")
    lines.append("")
    return lines


def _formats_over_training_section(groups: dict) -> list[str]:
    """Format shares of the first and last training iteration (cells that recorded them)."""
    over = [(k, rows) for k, rows in groups.items() if rows[0]["format_over_training"]]
    if not over:
        return []
    lines = ["## Solution formats over training", "",
             ("Share of each format among the samples the optimizer trained on (on-policy: "
             "each iteration's samples; mcts: the distilled paths), mean over seeds."), "",
             "| prior | optimizer | first iteration | last iteration |", "|---|---|---|---|"]
    for (p, opt), rows in over:
        first = _mean_shares([r["format_over_training"][0] for r in rows
                              if r["format_over_training"]])
        last = _mean_shares([r["format_over_training"][-1] for r in rows
                             if r["format_over_training"]])
        lines.append(f"| {p} | {opt} | {_formats(first)} | {_formats(last)} |")
    lines.append("")
    return lines


def _strategies_section(res: dict, groups: dict) -> list[str]:
    """Share of correct held-out samples using each strategy (mean over seeds, NaN-aware)."""
    strategies = sorted({k for r in [*res["base"].values(), *res["cells"]]
                         for k in r["strategy_share"]})
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


def _with_interval(point, interval, digits=3) -> str:
    """``0.620 [0.410, 0.800]``; the point alone when there is no interval."""
    if not interval or any(v is None or np.isnan(v) for v in interval):
        return _fmt(point, digits)
    return f"{_fmt(point, digits)} [{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"


def _signed_interval(d: dict | None) -> str:
    """A paired difference as ``+0.012 [-0.004, +0.030]`` ("-" when absent)."""
    if not d:
        return "-"
    return f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def _eta_section(res: dict) -> list[str]:
    """The eta squared table per metric with bootstrap intervals, and the caveats that
    apply (one seed, two priors)."""
    if not res["eta_squared"]:
        return []
    level = round(100 * CI_LEVEL)
    lines = ["## Prior vs optimizer: eta squared", "",
             ("Two-way decomposition over the trained cells (prior x optimizer, seeds as "
              "replicates): the share of the metric's variance explained by each factor. "
              f"In brackets: {level}% percentile bootstrap intervals ({BOOTSTRAP_RESAMPLES} "
              "resamples of the held-out problems, the same for every cell, and of the seeds "
              "within each prior x optimizer pair). Shares are biased upwards for small effects: "
              "an interval reaching down to about 0 means the factor cannot be told from noise."),
              "",
             "| metric | prior | optimizer | interaction | residual (seeds) |",
             "|---|---|---|---|---|"]
    for metric, e in res["eta_squared"].items():
        if "error" in e:
            lines.append(f"| {metric} | {e['error']} | | | |")
            continue
        ci = e.get("ci") or {}
        lines.append(f"| {metric} | {_with_interval(e['a'], ci.get('prior'))} "
                     f"| {_with_interval(e['b'], ci.get('optimizer'))} "
                     f"| {_with_interval(e['interaction'], ci.get('interaction'))} "
                     f"| {_with_interval(e['residual'], ci.get('residual'))} |")
    if any(":" in metric for metric in res["eta_squared"]):
        lines += ["", (f"pass@n:<set>: pass@n on an out-of-distribution set that some prior "
                       f"reaches (pass@n above {REACHABLE_PASS_AT_N}), where a loss of reach can "
                       "show; ood_drop: in-distribution pass@1 minus the mean OOD pass@1; "
                       "gain:<metric>: the trained policy's metric minus its prior's (problem "
                       "by problem, so the resamples are paired), what training changed once "
                       "the priors' different starting points are taken out.")]
    replicates = {e.get("replicates") for e in res["eta_squared"].values() if "error" not in e}
    if replicates == {1}:
        lines += ["", ("With one seed the interaction and residual cannot be told apart (reported "
                  "together as interaction), and the intervals resample problems only.")]
    grid = res.get("eta_squared_priors") or sorted(res["base"])
    trained = {c["prior"] for c in res["cells"]}
    probes = sorted(trained - set(grid))
    controls = sorted(set(res["base"]) - trained)
    left = []
    if probes:
        left.append(f"{', '.join(probes)} (trained with optimizer or seed lists of its own)")
    if controls:
        left.append(f"{', '.join(controls)} (measured untrained only)")
    if left:
        lines += ["",
                  f"Over the priors of the grid ({', '.join(grid)}); left out: {'; '.join(left)}."]
    if len(grid) == 2:
        lines += ["", "With two priors, the prior share rests on one contrast."]
    lines.append("")
    return lines


def _headline_section(res: dict) -> list[str]:
    """Each optimizer minus its prior, and the best optimizer minus the worst, with paired
    bootstrap intervals (in distribution, pass@1 and pass@n)."""
    rows = res.get("headline") or []
    if not rows:
        return []
    level = round(100 * CI_LEVEL)
    lines = ["## Headline differences", "",
             (f"Mean difference on the held-out in-distribution problems with a {level}% paired "
              f"bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples of the problems, the same for "
              "both policies, and of each policy's seeds). An interval that excludes 0 is a "
              "difference the problems and seeds support. The best and worst optimizers are "
              "picked after seeing the data, so their interval is optimistic."), "",
             "| prior | comparison | pass@1 difference | pass@n difference | problems | "
             "seeds (a vs b) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("pass@1") or r.get("pass@n") or {}
        seeds = f"{d.get('seeds_a', '-')} vs {d.get('seeds_b', '-')}"
        lines.append(f"| {r['prior']} | {r['comparison']} | {_signed_interval(r.get('pass@1'))} | "
                     f"{_signed_interval(r.get('pass@n'))} | {d.get('problems', '-')} | {seeds} |")
    lines.append("")
    return lines


def _difficulty_section(res: dict) -> list[str]:
    """pass@1 gain over the prior per difficulty bin of the prior's pass rate."""
    rows = res.get("difficulty") or []
    if not rows:
        return []
    lines = ["## Gain by difficulty", "",
             ("Held-out in-distribution problems binned by the prior's pass rate (correct "
              "samples / n, bins closed on the right); each entry: mean pass@1 gain of the "
              "trained policy (mean over seeds) over the prior in that bin, and in brackets the "
              "number of problems in it. Gains on the \"0\" bin are what training reached that "
              "the prior's n samples never did."), "",
             "| prior | optimizer | "
             + " | ".join(f"prior pass rate {b}" for b in DIFFICULTY_BINS) + " |",
             "|---|---|" + "---|" * len(DIFFICULTY_BINS)]
    for r in rows:
        cells = [f"{_signed(r['bins'][b]['gain'])} ({r['bins'][b]['problems']})"
                 for b in DIFFICULTY_BINS]
        lines.append(f"| {r['prior']} | {r['optimizer']} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _signed(x) -> str:
    return "-" if x is None or np.isnan(x) else f"{x:+.3f}"


def _heldout_section(res: dict, groups: dict) -> list[str]:
    """The ``heldout:<strategy>`` eval sets: pass@k and the share of all sampled solutions
    that use the held-out strategy, per prior and optimizer (means over seeds)."""
    summaries = [*res["base"].values(), *res["cells"]]
    sets = sorted({s for r in summaries for s in r.get("heldout") or {}})
    if not sets:
        return []
    measured = {int(k) for r in summaries for m in r["heldout"].values() for k in m["pass_at"]
                if str(k).isdigit()}
    ks = [k for k in HELDOUT_KS if k in measured]
    if measured and max(measured) not in ks:
        ks.append(max(measured))
    show_id_use = any(r.get("strategy_use") for r in summaries)
    lines = ["## Held-out strategy", "",
             "Test problems solvable only with a strategy the priors' pretraining held out "
             "(eval sets `heldout:<strategy>`), and the share of ALL sampled solutions (correct "
             "or not) that use that strategy: does training reach a strategy the prior never saw? "
             "Correct: correct samples of all samples drawn (all seeds); none of N bounds the "
             "per-sample rate below 3 / N (95%, the rule of three)."
             + (" The last column: the same share on the in-distribution problems."
                if show_id_use else ""),
             ""]
    for name in sets:
        strategy = name.split(":", 1)[1]
        header = ("| prior | optimizer | " + " | ".join(f"pass@{k}" for k in ks)
                  + f" | correct | share of samples using {strategy} |"
                  + (" in distribution |" if show_id_use else ""))
        lines += [f"### {name}", "", header, "|---|---|" + "---|" * (len(ks) + 2 + show_id_use)]
        for prior, b in res["base"].items():
            for opt, rows in _rows_by_optimizer(prior, b, groups):
                sets_here = [r["heldout"][name] for r in rows if name in (r.get("heldout") or {})]
                if not sets_here:
                    continue
                cells = [_fmt(_mean_present([m["pass_at"].get(str(k)) for m in sets_here]))
                         for k in ks]
                cells.append(_correct_of_samples(sets_here))
                cells.append(_fmt(_mean_present([m["strategy_use"].get(strategy)
                                                 for m in sets_here])))
                if show_id_use:
                    cells.append(_fmt(_mean_present([(r.get("strategy_use") or {}).get(strategy)
                                                     for r in rows])))
                lines.append(f"| {prior} | {opt} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _correct_of_samples(sets: list[dict]) -> str:
    """"<correct> of <samples>" summed over the seeds' measurements of one set, "-" when a
    measurement lacks its counts (an older run)."""
    if any(m.get("correct") is None for m in sets):
        return "-"
    return f"{sum(m['correct'] for m in sets)} of {sum(m['samples'] for m in sets)}"


def _mean_present(values) -> float | None:
    """Mean of the values that are there (not None, not nan); None when none is."""
    vals = [v for v in map(_number, values) if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _calibration_section(res: dict, groups: dict) -> list[str]:
    """Calibration of a stated confidence (``stated_brier``, ``stated_ece``) next to the
    modal-answer calibration, in distribution; only when some measurement has it."""
    summaries = [*res["base"].values(), *res["cells"]]
    # measurements without a stated confidence carry nan (newer runs) or nothing (older)
    if all(_mean_present([r.get("stated_brier"), r.get("stated_ece")]) is None
           for r in summaries):
        return []
    lines = ["## Calibration", "",
             ("In distribution. Modal answer: confidence = share of the n samples giving the "
              "modal answer, outcome = whether it is right. Stated: the confidence the policy "
              "states in its solution, against that solution's correctness; its AUROC: does "
              "it rank right solutions above wrong ones (0.5: no). Means over seeds."), "",
             ("| prior | optimizer | modal Brier | modal ECE | stated Brier | stated ECE "
              "| stated AUROC | share stating one |"),
             "|---|---|---|---|---|---|---|---|"]
    for prior, b in res["base"].items():
        for opt, rows in _rows_by_optimizer(prior, b, groups):
            figures = [_mean_present([r.get(key) for r in rows])
                       for key in ("brier", "ece", "stated_brier", "stated_ece", "stated_auroc",
                                   "stated_share")]
            lines.append(f"| {prior} | {opt} | " + " | ".join(_fmt(v) for v in figures) + " |")
    lines.append("")
    return lines


ROUTING_FIELDS = (("swapped_share", "swapped share"), ("prior_pass1", "prior pass@1"),
                  ("trained_pass1", "trained pass@1"), ("routed_pass1", "routed pass@1"))


def _recovered(routes: list[dict]) -> float | None:
    """(routed - prior) / (trained - prior) of the seeds' mean pass@1s; None unless the
    trained policy's gain exceeds two standard errors of a difference of two pass@1s over
    the probe's problems x samples (binomial; a ratio over a gain inside the noise says
    nothing)."""
    prior, trained, routed = (_mean_present([_number(r.get(k)) for r in routes])
                              for k in ("prior_pass1", "trained_pass1", "routed_pass1"))
    draws = sum((_number(r.get("problems")) or 0) * (_number(r.get("samples")) or 0)
                for r in routes)
    if prior is None or trained is None or routed is None or draws <= 0:
        return None
    se = np.sqrt((prior * (1 - prior) + trained * (1 - trained)) / draws)
    gain = trained - prior
    return (routed - prior) / gain if gain > 2 * se else None


def _routing_section(groups: dict) -> list[str]:
    """The token-routing probe (cells that recorded ``routing``): is the trained policy's
    gain in WHEN it deviates from the prior (the tokens where their top-1 choices differ)
    or in HOW its distribution is shaped elsewhere? Means over the seeds that have it."""
    probed = [(key, [r["routing"] for r in rows if isinstance(r.get("routing"), dict)])
              for key, rows in groups.items()]
    probed = [(key, routes) for key, routes in probed if routes]
    if not probed:
        return []
    lines = ["## When vs how (token routing)", "",
             ("Token-routing probe (`treesearch.study.routing`): sample from the prior, but "
              "draw from the trained policy at every position where the two policies' top-1 "
              "tokens differ. Swapped share: share of tokens so handed over; pass@1 of the "
              "prior, the trained policy and the routed sampler on the held-out problems; "
              "recovered: the share of the trained policy's pass@1 gain the routed sampler "
              "recovers (near 1: the gain is in WHEN to deviate, the top-1 flips; near 0: in "
              "HOW the distribution is shaped elsewhere), from the means over seeds, and "
              "'-' where that gain is within two standard errors of 0 (nothing to recover)."), "",
             "| prior | optimizer | " + " | ".join(label for _, label in ROUTING_FIELDS)
             + " | recovered |",
             "|---|---|" + "---|" * (len(ROUTING_FIELDS) + 1)]
    for (prior, opt), routes in probed:
        figures = [_mean_present([_number(r.get(key)) for r in routes])
                   for key, _ in ROUTING_FIELDS]
        figures.append(_recovered(routes))
        lines.append(f"| {prior} | {opt} | " + " | ".join(_fmt(v) for v in figures) + " |")
    lines.append("")
    return lines


def _number(x) -> float | None:
    """``x`` as a float when it is a number, else None (a probe field of another shape)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


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
        # horizontal bars, one metric a row (top to bottom in the table's order), labels
        # beside them: metric names are long ("gain:pass@n:<OOD set>")
        metrics = list(eta)
        fig = new_figure((7.5, 1.2 + 0.45 * len(metrics)))
        ax = fig.add_subplot()
        y = np.arange(len(metrics))[::-1]
        left = np.zeros(len(metrics))
        for part, label in (("a", "prior"), ("b", "optimizer"), ("interaction", "interaction"),
                            ("residual", "residual")):
            vals = np.nan_to_num([eta[m][part] for m in metrics])
            ax.barh(y, vals, left=left, label=label)
            left += vals
        ax.set_yticks(y, metrics, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of variance (eta squared)")
        ax.set_title("prior vs optimizer")
        ax.legend(fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.08))
        fig.tight_layout()
        path = run_dir / "eta2.png"
        save_png(fig, path)
        out.append(path)
    return out

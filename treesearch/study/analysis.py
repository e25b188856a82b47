"""The numbers of a study run, before any markdown: ``analyse(run_dir)``.

Reads every ``cells/*/*/measure.json`` (and ``priors.json``) of a study run and returns
the summaries of the base and trained cells, eta squared of prior vs optimizer with
bootstrap intervals (over the priors of the grid; a prior with optimizer or seed lists of
its own is a probe, left out), each optimizer's paired difference from its prior and the
gain per difficulty bin. ``treesearch.study.report`` renders them; definitions are in its
docstring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from treesearch.study.stats import (
    GAIN_PREFIX,
    bootstrap_eta_squared,
    eta_squared,
    gain_by_bin,
    is_heldout_set,
    ood_set_names,
    paired_difference_ci,
    pass_at_k_per_problem,
)
from treesearch.utils.estimators import newly_solved
from treesearch.utils.runs import read_json

ETA_METRICS = ("pass@1", "pass@n", "ood_drop")
# the same, as each trained policy's change from its own prior ("gain:<metric>"): what
# training added or lost, with the priors' different starting points taken out
GAIN_METRICS = ("pass@1", "pass@n")
# an OOD set on which some prior's pass@n exceeds this is one where a drop in reach can be
# measured: eta squared of its pass@n ("pass@n:<set>") is added to ETA_METRICS
REACHABLE_PASS_AT_N = 0.2
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


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


def summarise(row: dict, base: dict | None) -> dict:
    """Flat figures of one measured policy (trained cell or base). Figures a run did not
    record (newer probes on an older run) are None, empty, or absent."""
    ev = row["eval"]
    idm = ev["id"]
    n = idm["n"]
    p1 = pass_at_k_per_problem(idm["counts"], n, 1)             # [P]
    pn = pass_at_k_per_problem(idm["counts"], n, n)
    ood_sets = ood_set_names(ev)
    ood = [ev[s]["pass_at"]["1"] for s in ood_sets]
    out = {
        "prior": row["prior"], "optimizer": row["optimizer"], "seed": row.get("seed"),
        "pass@1": float(p1.mean()),
        "pass@1_se": float(p1.std(ddof=1) / np.sqrt(len(p1))) if len(p1) > 1 else float("nan"),
        "pass@n": float(pn.mean()),
        "pass@n_se": float(pn.std(ddof=1) / np.sqrt(len(pn))) if len(pn) > 1 else float("nan"),
        "n": n, "coverage": idm.get("coverage"), "distinct_correct": idm.get("distinct_correct"),
        "entropy": idm.get("entropy"), "brier": idm.get("brier"), "ece": idm.get("ece"),
        "stated_brier": idm.get("stated_brier"), "stated_ece": idm.get("stated_ece"),
        "stated_auroc": idm.get("stated_auroc"),
        "stated_share": idm.get("stated_share"),
        "ood_pass@1": {s: ev[s]["pass_at"]["1"] for s in ood_sets},
        "ood_pass@n": {s: ev[s]["pass_at"][str(ev[s]["n"])] for s in ood_sets},
        "ood_drop": float(p1.mean() - np.mean(ood)) if ood else float("nan"),
        "heldout": {s: {"n": m.get("n"), "pass_at": m.get("pass_at") or {},
                        "strategy_use": m.get("strategy_use") or {},
                        "correct": int(np.sum(m["counts"])) if "counts" in m else None,
                        "samples": int(m["n"]) * len(m["counts"]) if "counts" in m else None}
                    for s, m in ev.items() if is_heldout_set(s)},
        "strategy_use": idm.get("strategy_use") or {},
        "routing": row.get("routing"),
        "format_share": idm.get("format_share") or {},
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






def analyse(run_dir: Path) -> dict:
    """Every number the report shows: ``base`` (prior -> summary), ``cells`` (trained
    summaries), ``eta_squared`` (metric -> shares, with bootstrap intervals under "ci"),
    ``headline`` (paired differences with intervals), ``ood_reach`` (trained minus prior
    pass@n on the reachable OOD sets, with intervals) and ``difficulty`` (gain by bin)."""
    base, cells = load_cells(run_dir)
    bases = {p: summarise(row, None) for p, row in base.items()}
    trained = [summarise(row, base.get(row["prior"])) for row in cells]
    grid = _grid_priors(read_priors(run_dir), base, cells)
    in_grid = [i for i, c in enumerate(cells) if c["prior"] in grid]
    reachable = _reachable_ood_sets(bases)
    return {"base": bases, "cells": trained,
            "eta_squared": _eta_with_intervals([cells[i] for i in in_grid],
                                               [trained[i] for i in in_grid], reachable,
                                               base, bases),
            "eta_squared_priors": sorted(grid),
            "headline": _headline_differences(base, cells),
            "ood_reach": _ood_reach_differences(base, cells, reachable),
            "difficulty": _gain_by_difficulty(base, cells)}


def _grid_priors(priors: dict, base: dict, cells: list[dict]) -> set[str]:
    """The priors eta squared decomposes: those ``priors.json`` marks ``"grid": true``
    (trained with the study's own optimizer and seed lists); a prior with lists of its
    own is a probe beside the grid. Runs from before the mark: every prior."""
    names = set(base) | {c["prior"] for c in cells}
    return {n for n in names if priors.get(n, {}).get("grid", True)}


def _reachable_ood_sets(bases: dict) -> list[str]:
    """The OOD sets on which some prior's pass@n exceeds REACHABLE_PASS_AT_N, sorted."""
    return sorted({s for b in bases.values() for s, v in b["ood_pass@n"].items()
                   if v > REACHABLE_PASS_AT_N})


def _summary_value(row: dict, metric: str, bases: dict | None = None) -> float:
    """``metric`` (an ETA_METRICS name or "pass@n:<OOD set>", either after "gain:") of one
    trained summary; a gain is taken from its prior's summary in ``bases``."""
    if metric.startswith(GAIN_PREFIX):
        inner = metric[len(GAIN_PREFIX):]
        return _summary_value(row, inner) - _summary_value(bases[row["prior"]], inner)
    if metric.startswith("pass@n:"):
        return row["ood_pass@n"][metric[len("pass@n:"):]]
    return row[metric]


def _eta_with_intervals(cells: list[dict], trained: list[dict], reachable=(),
                        base_rows: dict | None = None, bases: dict | None = None) -> dict:
    """metric -> eta squared of the trained cells: shares under "a" (prior), "b"
    (optimizer), "interaction", "residual" (the names results.json always had; "prior" and
    "optimizer" too), bootstrap intervals under "ci" (part -> [lo, hi]); {"error": why}
    for a grid that cannot be decomposed (unbalanced: an unfinished run). reachable: OOD
    set names whose pass@n is decomposed too (as "pass@n:<set>"). base_rows / bases: the
    priors' raw measurements / summaries, for the GAIN_METRICS (and the reachable sets'
    pass@n) as changes from the prior."""
    eta = {}
    if len({r["prior"] for r in trained}) < 2:  # one prior: no prior factor to decompose
        return eta
    has_ood = any(ood_set_names(c["eval"]) for c in cells)
    reach = tuple(f"pass@n:{s}" for s in reachable)
    gains = tuple(GAIN_PREFIX + m for m in GAIN_METRICS + reach) if base_rows else ()
    for metric in ETA_METRICS + reach + gains:
        if metric == "ood_drop" and not has_ood:
            continue
        try:
            boot = bootstrap_eta_squared(cells, metric, n_boot=BOOTSTRAP_RESAMPLES,
                                         seed=BOOTSTRAP_SEED, bases=base_rows)
            point = boot["point"]
            ci = {part: list(interval) for part, interval in boot["ci"].items()}
        except (ValueError, KeyError, TypeError):
            # no interval (cells measured on different problems, counts missing): the
            # point estimate from the summaries alone, or the reason there is none
            try:
                point = eta_squared([_summary_value(r, metric, bases) for r in trained],
                                    [r["prior"] for r in trained],
                                    [r["optimizer"] for r in trained])
            except (ValueError, KeyError) as exc:
                eta[metric] = {"error": str(exc)}
                continue
            ci = {}
        eta[metric] = {**point, "a": point["prior"], "b": point["optimizer"], "ci": ci}
    return eta


def _by_pair(cells: list[dict]) -> dict:
    """(prior, optimizer) -> that pair's raw cells (measure.json rows), in order seen."""
    out: dict = {}
    for c in cells:
        out.setdefault((c["prior"], c["optimizer"]), []).append(c)
    return out


def _id_counts(rows: list[dict]) -> np.ndarray:
    """In-distribution counts of several cells of one pair: int [S, P]."""
    return np.array([r["eval"]["id"]["counts"] for r in rows], dtype=np.int64)


def _difference(counts_a, counts_b, n_a: int, n_b: int, k_of_n) -> dict:
    """``paired_difference_ci`` at k = ``k_of_n(n)`` (the report's resamples and seed)."""
    return paired_difference_ci(counts_a, counts_b, n_a, k_of_n(min(n_a, n_b)),
                                n_boot=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, n_b=n_b)


def _headline_differences(base: dict, cells: list[dict]) -> list[dict]:
    """Per prior: each optimizer minus the prior, and the best optimizer minus the worst
    (by pass@1, and by pass@n where that picks another pair), in-distribution pass@1 and
    pass@n with paired bootstrap intervals. Rows: {"prior", "comparison", "pass@1",
    "pass@n"} (each a ``paired_difference_ci`` dict, or None when it cannot be computed)."""
    rows = []
    pairs = _by_pair(cells)
    for prior, b in base.items():
        try:
            base_counts, base_n = np.asarray(b["eval"]["id"]["counts"]), int(b["eval"]["id"]["n"])
        except KeyError:
            continue
        trained = {}
        for (p, opt), members in pairs.items():
            if p != prior:
                continue
            try:
                counts = _id_counts(members)
            except (KeyError, ValueError):
                continue
            if counts.ndim == 2 and counts.shape[1] == base_counts.shape[0]:
                trained[opt] = (counts, int(members[0]["eval"]["id"]["n"]))
        for opt, (counts, n) in trained.items():
            rows.append({"prior": prior, "comparison": f"{opt} - prior",
                         "pass@1": _difference(counts, base_counts, n, base_n, lambda n: 1),
                         "pass@n": _difference(counts, base_counts, n, base_n, lambda n: n)})
        if len(trained) < 2:
            continue
        picked = []
        for metric in ("pass@1", "pass@n"):
            means = {opt: next(r[metric]["diff"] for r in rows
                               if r["prior"] == prior and r["comparison"] == f"{opt} - prior")
                     for opt in trained}
            best, worst = max(means, key=means.get), min(means, key=means.get)
            if best == worst or (best, worst) in picked:
                continue
            picked.append((best, worst))
            (ca, na), (cb, nb) = trained[best], trained[worst]
            rows.append({"prior": prior,
                         "comparison": f"best - worst by {metric}: {best} - {worst}",
                         "pass@1": _difference(ca, cb, na, nb, lambda n: 1),
                         "pass@n": _difference(ca, cb, na, nb, lambda n: n)})
    return rows


def _ood_reach_differences(base: dict, cells: list[dict], sets: list[str]) -> list[dict]:
    """Per (prior, optimizer) and reachable OOD set: trained minus prior pass@n on that set
    with a paired bootstrap interval. Rows: {"prior", "optimizer", "set", "pass@n"}."""
    rows = []
    for (prior, opt), members in _by_pair(cells).items():
        for name in sets:
            try:
                b = base[prior]["eval"][name]
                counts = np.array([m["eval"][name]["counts"] for m in members], dtype=np.int64)
                n = int(members[0]["eval"][name]["n"])
                diff = _difference(counts, np.asarray(b["counts"]), n, int(b["n"]), lambda k: k)
            except (KeyError, TypeError, ValueError):   # no base yet, or not measured there
                continue
            rows.append({"prior": prior, "optimizer": opt, "set": name, "pass@n": diff})
    return rows


def _gain_by_difficulty(base: dict, cells: list[dict]) -> list[dict]:
    """Per (prior, optimizer): in-distribution pass@1 gain over the prior per difficulty
    bin of the prior's pass rate (``stats.gain_by_bin``). Rows: {"prior", "optimizer",
    "bins": {bin: {"gain", "problems"}}}."""
    rows = []
    for (prior, opt), members in _by_pair(cells).items():
        b = base.get(prior)
        try:
            base_counts, base_n = b["eval"]["id"]["counts"], int(b["eval"]["id"]["n"])
            bins = gain_by_bin(base_counts, _id_counts(members), base_n,
                               trained_n=int(members[0]["eval"]["id"]["n"]))
        except (KeyError, TypeError, ValueError):   # no base yet, or other problems
            continue
        rows.append({"prior": prior, "optimizer": opt, "bins": bins})
    return rows

def read_priors(run_dir: Path) -> dict:
    """The run's ``priors.json`` (prior name -> its description), {} when absent."""
    priors_file = run_dir / "priors.json"
    return read_json(priors_file) if priors_file.is_file() else {}

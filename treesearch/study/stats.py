"""Statistics of the study that come with their uncertainty: eta squared with bootstrap
intervals, paired differences between policies, gains by problem difficulty.

Pure numpy (no torch); every function works on saved per-problem counts, so it can be
rerun on a finished study. Conventions, as in ``treesearch.utils.estimators``: a "count"
is the number of correct samples of one problem (int >= 0), ``n`` the samples drawn per
problem; ``P`` problems, ``S`` seeds, ``A`` priors, ``B`` optimizers, ``r`` seeds per
(prior, optimizer). Every interval is a percentile bootstrap interval (95% by default),
resampling the held-out PROBLEMS (all policies are measured on the same problems, so one
resample of problem indices is applied to every policy: paired) and, where there are
several, the seeds (with replacement, within each prior x optimizer group). Resamples are
drawn as multinomial weights (how often each problem / seed is drawn), so a statistic of
1000 resamples is one matrix product, not a Python loop; results are deterministic given
``seed``.

    pass_at_k_per_problem([0, 3, 16], n=16, k=1)          # [0, 0.1875, 1]
    eta_squared(values, priors, optimizers)["prior"]       # share of variance, prior factor
    bootstrap_eta_squared(cells, "pass@1")["ci"]["prior"]  # (lo, hi)
    paired_difference_ci(trained_counts, base_counts, n=256, k=1)   # {"diff", "lo", "hi"}
    gain_by_bin(base_counts, trained_counts, n=256)        # pass@1 gain per difficulty bin
"""

from __future__ import annotations

import numpy as np

from treesearch.utils import estimators
from treesearch.utils.estimators import pass_at_k

__all__ = [
    "CI_LEVEL",
    "DIFFICULTY_BINS",
    "bootstrap_eta_squared",
    "difficulty_bins",
    "eta_squared",
    "eta_squared_grid",
    "gain_by_bin",
    "is_heldout_set",
    "metric_terms",
    "ood_set_names",
    "paired_difference_ci",
    "pass_at_k_per_problem",
]

CI_LEVEL = 0.95
DIFFICULTY_BINS = ("0", "(0, 0.1]", "(0.1, 0.5]", "> 0.5")
ETA_PARTS = ("prior", "optimizer", "interaction", "residual")
HELDOUT_PREFIX = "heldout:"
GAIN_PREFIX = "gain:"       # an eta squared metric taken as the change from the prior
IN_DISTRIBUTION = "id"


# ----------------------------------------------------------------------------- pass@k


def pass_at_k_per_problem(counts, n: int, k: int) -> np.ndarray:
    """Unbiased pass@k of every problem (``treesearch.utils.estimators.pass_at_k``).

    Args:
        counts: int array of any shape, e.g. [P] or [S, P], each in [0, n]: correct samples.
        n: int, samples drawn per problem (the same for all).
        k: int, 1 <= k <= n.
    Returns:
        float64 array of the shape of ``counts``.

    pass@k depends on a problem only through its count, so the n + 1 possible values are
    computed once and looked up (fast for thousands of problems and seeds).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > n):
        raise ValueError(f"counts must lie in [0, n={n}], got [{counts.min()}, {counts.max()}]")
    table = pass_at_k(np.full(n + 1, n, dtype=np.int64), np.arange(n + 1), k)
    return table[counts]


# ----------------------------------------------------------------------------- eta squared


def eta_squared_grid(grid) -> dict:
    """Two-way eta squared of a balanced prior x optimizer grid, for a batch of grids.

    Args:
        grid: float array [..., A, B, r]: the metric of seed r of (prior a, optimizer b);
            leading axes are a batch (e.g. bootstrap resamples).
    Returns:
        ``{"prior", "optimizer", "interaction", "residual"}``: float64 arrays [...], each
        sum of squares over the total (they sum to 1), as defined in
        ``treesearch.utils.estimators.eta_squared`` (the one implementation).
    """
    shares = estimators.eta_squared_grid(grid)
    return {"prior": shares["a"], "optimizer": shares["b"],
            "interaction": shares["interaction"], "residual": shares["residual"]}


def _grid_order(prior_labels, optimizer_labels) -> tuple[list, list, np.ndarray]:
    """(prior levels, optimizer levels, index array [A, B, r] into the observations);
    levels in order of first appearance, replicates in order of appearance. ValueError
    when the design is unbalanced (some pair has another number of observations)."""
    def plain(labels):
        return [v.item() if isinstance(v, np.generic) else v for v in labels]

    priors_seen, opts_seen = plain(prior_labels), plain(optimizer_labels)
    if len(priors_seen) != len(opts_seen) or not priors_seen:
        raise ValueError(f"need as many prior as optimizer labels (>= 1), got "
                         f"{len(priors_seen)} and {len(opts_seen)}")
    priors, opts = list(dict.fromkeys(priors_seen)), list(dict.fromkeys(opts_seen))
    members: dict = {(p, o): [] for p in priors for o in opts}
    for i, (p, o) in enumerate(zip(priors_seen, opts_seen)):
        members[(p, o)].append(i)
    sizes = {key: len(v) for key, v in members.items()}
    r = sizes[(priors[0], opts[0])]
    uneven = [key for key, size in sizes.items() if size != r]
    if uneven:
        p, o = uneven[0]
        raise ValueError(f"unbalanced design: (prior={p!r}, optimizer={o!r}) has "
                         f"{sizes[uneven[0]]} "
                         f"observations, (prior={priors[0]!r}, optimizer={opts[0]!r}) has {r}; "
                         f"every pair needs the same number >= 1")
    index = np.array([[members[(p, o)] for o in opts] for p in priors], dtype=np.int64)
    return priors, opts, index


def eta_squared(values, prior_labels, optimizer_labels) -> dict:
    """Share of a metric's variance explained by the prior, the optimizer, their interaction
    and the seeds (two-way eta squared of a balanced design; see ``eta_squared_grid``).

    Args:
        values: float array [N]: the metric of each trained cell (one per prior, optimizer,
            seed).
        prior_labels: labels [N]; optimizer_labels: labels [N]. Every (prior, optimizer)
            pair must hold the same number r >= 1 of values.
    Returns:
        ``{"prior", "optimizer", "interaction", "residual"}`` floats (shares summing to 1;
        residual nan when r == 1; all nan when the values are all equal), ``"replicates"``:
        r, ``"priors"``, ``"optimizers"``: the levels in order of first appearance.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"values must be a non-empty 1-D array of finite numbers, got {values!r}")
    if len(prior_labels) != x.size:
        raise ValueError(f"values [{x.size}] and labels [{len(prior_labels)}] differ in length")
    priors, opts, index = _grid_order(prior_labels, optimizer_labels)
    shares = eta_squared_grid(x[index])
    return {**{part: float(v) for part, v in shares.items()},
            "replicates": int(index.shape[-1]), "priors": priors, "optimizers": opts}


# ----------------------------------------------------------------------------- metrics of cells


def is_heldout_set(name: str) -> bool:
    """Whether an eval set holds problems solvable only with a held-out strategy
    (``"heldout:<strategy>"``): it is neither in distribution nor a generic OOD task."""
    return str(name).startswith(HELDOUT_PREFIX)


def ood_set_names(eval_sets) -> list[str]:
    """The generic out-of-distribution eval sets among ``eval_sets`` (names), sorted:
    everything but ``"id"`` and the ``"heldout:*"`` sets."""
    return sorted(s for s in eval_sets if s != IN_DISTRIBUTION and not is_heldout_set(s))


def metric_terms(metric: str, eval_sets) -> list[tuple[str, str, float]]:
    """A metric as a weighted sum of per-set means of per-problem pass@k.

    Args:
        metric: "pass@<k>" (k an int, or "n": the set's own n) on the in-distribution set,
            "pass@<k>:<set>" on eval set <set> (e.g. "pass@n:countdown3_small_targets"), or
            "ood_drop": in-distribution pass@1 minus the mean pass@1 of the OOD sets.
        eval_sets: the eval set names a cell has.
    Returns:
        [(set name, k as str ("n" for each set's n), weight)]: the metric equals
        sum weight * mean over the set's problems of pass@k.
    """
    if metric == "ood_drop":
        ood = ood_set_names(eval_sets)
        if not ood:
            raise ValueError("ood_drop needs at least one OOD eval set")
        return [(IN_DISTRIBUTION, "1", 1.0)] + [(s, "1", -1.0 / len(ood)) for s in ood]
    if metric.startswith("pass@"):
        k, _, set_name = metric[len("pass@"):].partition(":")
        if k != "n" and not k.isdigit():
            raise ValueError(f"metric {metric!r}: k must be an int or 'n'")
        set_name = set_name or IN_DISTRIBUTION
        if set_name not in eval_sets:
            raise ValueError(f"metric {metric!r}: no eval set {set_name!r} (have "
                             f"{sorted(eval_sets)})")
        return [(set_name, k, 1.0)]
    raise ValueError(f"unknown metric {metric!r}: use 'pass@<k>', 'pass@n', 'pass@<k>:<set>' "
                     "or 'ood_drop'")


def _set_scores(measurements: list[dict], set_name: str, k: str) -> np.ndarray:
    """Per-problem pass@k of one eval set for several measurements: float [C, P].
    measurements: [C] Measurement dicts of that set (``n``, ``counts``), same problems."""
    sizes = {len(m["counts"]) for m in measurements}
    ns = {int(m["n"]) for m in measurements}
    if len(sizes) != 1 or len(ns) != 1:
        raise ValueError(f"eval set {set_name!r}: cells differ in problems {sorted(sizes)} or "
                         f"samples {sorted(ns)}; they must be measured on the same problems")
    n = ns.pop()
    counts = np.array([m["counts"] for m in measurements], dtype=np.int64)
    return pass_at_k_per_problem(counts, n, n if k == "n" else int(k))


def _resample_weights(rng: np.random.Generator, n_boot: int, size: int) -> np.ndarray:
    """Bootstrap resamples of ``size`` items as weights: float [n_boot, size], each row
    how often each item was drawn (with replacement) over ``size``; rows sum to 1."""
    return rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot) / size


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """(lo, hi) percentile interval of ``samples`` [n_boot], ignoring nan resamples
    (nan, nan when all are nan)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_eta_squared(cells: list[dict], metric: str, n_boot: int = 1000, seed: int = 0,
                          level: float = CI_LEVEL, bases: dict | None = None) -> dict:
    """Eta squared of prior and optimizer for ``metric``, with percentile bootstrap intervals.

    Args:
        cells: [N] trained cells as in ``measure.json``: ``{"prior", "optimizer", "eval":
            {set name: {"n", "counts": [P_set]}}}``; every (prior, optimizer) pair has the
            same number r of cells (seeds), and every cell was measured on the same problems.
        metric: see ``metric_terms`` ("pass@1", "pass@16", "pass@n", "ood_drop"), or
            "gain:<metric>": the metric of each cell minus that of its prior (the cell's
            change by training), problem by problem, so the same resample serves both.
        n_boot: bootstrap resamples; seed: the resampling seed; level: interval coverage.
        bases: prior name -> its untrained measurement (``{"eval": ...}`` as a cell; the
            same problems and n); needed by "gain:" metrics.
    Returns:
        ``{"point": eta_squared of the cells' metric values (as ``eta_squared``),
        "ci": {"prior", "optimizer", "interaction", "residual": (lo, hi)}, "n_boot",
        "level", "problems": {set: P_set}}``.

    One resample draws problem indices with replacement per eval set, the SAME indices for
    every cell, then seeds with replacement within each pair, and recomputes the metric of
    every cell and eta squared from them. Small effects are biased upwards (a share of
    variance is never negative), so an interval far from 0 is evidence; one touching 0
    says the factor's share cannot be told from noise.
    """
    if not cells:
        raise ValueError("bootstrap_eta_squared needs at least one cell")
    priors, opts, index = _grid_order([c["prior"] for c in cells],
                                      [c["optimizer"] for c in cells])
    gain = metric.startswith(GAIN_PREFIX)
    if gain and not all(p in (bases or {}) for p in priors):
        raise ValueError(f"metric {metric!r} needs the untrained measurement of every prior "
                         f"(bases), have {sorted(bases or {})} for priors {priors}")
    terms = metric_terms(metric[len(GAIN_PREFIX):] if gain else metric, cells[0]["eval"])
    rng = np.random.default_rng(seed)
    point = np.zeros(index.shape)                            # [A, B, r]
    boot = np.zeros((n_boot, *index.shape))                  # [n_boot, A, B, r]
    problems = {}
    for set_name, k, weight in terms:
        if any(set_name not in c["eval"] for c in cells):
            raise ValueError(f"metric {metric!r} needs eval set {set_name!r} in every cell")
        # [A, B, r, P]
        scores = _set_scores([c["eval"][set_name] for c in cells], set_name, k)[index]
        if gain:  # minus the prior's own per-problem score: [A, 1, 1, P]; scored beside a
            # cell so that _set_scores checks they share the problems and n
            both = _set_scores([bases[p]["eval"][set_name] for p in priors]
                               + [cells[0]["eval"][set_name]], set_name, k)
            scores = scores - both[:-1, None, None, :]
        problems[set_name] = scores.shape[-1]
        draws = _resample_weights(rng, n_boot, scores.shape[-1])                    # [n_boot, P]
        point += weight * scores.mean(axis=-1)
        boot += weight * np.einsum("abrp,np->nabr", scores, draws)
    seed_draws = rng.integers(0, index.shape[-1], size=boot.shape)
    boot = np.take_along_axis(boot, seed_draws, axis=-1)
    shares = eta_squared_grid(boot)
    out_point = {**{p: float(v) for p, v in eta_squared_grid(point).items()},
                 "replicates": int(index.shape[-1]), "priors": priors, "optimizers": opts}
    return {"point": out_point,
            "ci": {part: _percentile_ci(shares[part], level) for part in ETA_PARTS},
            "n_boot": int(n_boot), "level": float(level), "problems": problems}


# ----------------------------------------------------------------------------- paired differences


def _as_seeds_by_problems(counts, name: str) -> np.ndarray:
    arr = np.asarray(counts, dtype=np.int64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must be [P] or [S, P] with S, P >= 1, got shape {arr.shape}")
    return arr


def paired_difference_ci(counts_a, counts_b, n: int, k: int, n_boot: int = 1000, seed: int = 0,
                         level: float = CI_LEVEL, n_b: int | None = None) -> dict:
    """Mean pass@k of policy a minus that of policy b on the same problems, with a paired
    percentile bootstrap interval.

    Args:
        counts_a: int [P] or [S_a, P]: correct samples per problem (per seed) of policy a.
        counts_b: int [P] or [S_b, P]: the same problems, same order, policy b.
        n: samples per problem of a (and of b unless ``n_b``); k: 1 <= k <= n.
        n_boot, seed, level: bootstrap resamples, resampling seed, interval coverage.
    Returns:
        ``{"diff": mean_a - mean_b, "lo", "hi", "k", "problems": P, "seeds_a": S_a,
        "seeds_b": S_b}``, each mean over seeds and problems of per-problem pass@k.

    A resample draws problem indices with replacement (the same for a and b: paired, so
    problem difficulty cancels) and, independently for a and b, seeds with replacement.
    """
    a = _as_seeds_by_problems(counts_a, "counts_a")
    b = _as_seeds_by_problems(counts_b, "counts_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"counts_a and counts_b must cover the same problems, got "
                         f"{a.shape[1]} and {b.shape[1]}")
    scores_a = pass_at_k_per_problem(a, n, k)                          # [S_a, P]
    scores_b = pass_at_k_per_problem(b, n if n_b is None else n_b, k)  # [S_b, P]
    rng = np.random.default_rng(seed)
    problem_draws = _resample_weights(rng, n_boot, a.shape[1])         # [n_boot, P]
    seed_draws_a = _resample_weights(rng, n_boot, a.shape[0])          # [n_boot, S_a]
    seed_draws_b = _resample_weights(rng, n_boot, b.shape[0])          # [n_boot, S_b]
    boot = (np.einsum("ns,sp,np->n", seed_draws_a, scores_a, problem_draws)
            - np.einsum("ns,sp,np->n", seed_draws_b, scores_b, problem_draws))
    lo, hi = _percentile_ci(boot, level)
    return {"diff": float(scores_a.mean() - scores_b.mean()), "lo": lo, "hi": hi, "k": int(k),
            "problems": int(a.shape[1]), "seeds_a": int(a.shape[0]), "seeds_b": int(b.shape[0])}


# ----------------------------------------------------------------------------- difficulty


def difficulty_bins(base_counts, n: int) -> np.ndarray:
    """Each problem's difficulty bin by the prior's pass rate c / n.

    Args:
        base_counts: int [P], in [0, n]: the prior's correct samples per problem.
        n: samples per problem.
    Returns:
        str array [P], each one of ``DIFFICULTY_BINS``: "0" (no correct sample),
        "(0, 0.1]", "(0.1, 0.5]", "> 0.5" (bounds inclusive on the right).
    """
    c = np.asarray(base_counts, dtype=np.int64)
    if c.ndim != 1:
        raise ValueError(f"base_counts must be [P], got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() > n):
        raise ValueError(f"base_counts must lie in [0, n={n}]")
    # integer comparisons: c / n <= 0.1 exactly when 10 c <= n (no float edge at 10%, 50%)
    index = np.where(c == 0, 0, np.where(10 * c <= n, 1, np.where(2 * c <= n, 2, 3)))
    return np.array(DIFFICULTY_BINS)[index]


def gain_by_bin(base_counts, trained_counts, n: int, trained_n: int | None = None) -> dict:
    """Mean pass@1 gain of a trained policy over its prior, per difficulty bin of the prior.

    Args:
        base_counts: int [P]: the prior's correct samples per problem, of n.
        trained_counts: int [P] or [S, P]: the trained policy's (per seed), same problems.
        n: samples per problem of the prior (and of the trained policy unless ``trained_n``).
    Returns:
        ``{bin: {"gain": mean over the bin's problems of (trained pass@1, mean over seeds)
        - (prior pass@1), "problems": number of problems in the bin}}`` for every bin of
        ``DIFFICULTY_BINS`` in order; gain is nan for an empty bin.
    """
    base = np.asarray(base_counts, dtype=np.int64)
    trained = _as_seeds_by_problems(trained_counts, "trained_counts")
    if trained.shape[1] != base.shape[-1]:
        raise ValueError(f"base_counts [{base.shape[-1]}] and trained_counts "
                         f"[{trained.shape[1]}] must cover the same problems")
    gain = (trained / (n if trained_n is None else trained_n)).mean(axis=0) - base / n   # [P]
    bins = difficulty_bins(base, n)
    out = {}
    for name in DIFFICULTY_BINS:
        members = bins == name
        out[name] = {"gain": float(gain[members].mean()) if members.any() else float("nan"),
                     "problems": int(members.sum())}
    return out

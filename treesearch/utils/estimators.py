"""Estimators for the prior-vs-optimizer study: pass@k, coverage, variance shares, entropy.

Pure numpy; nothing here imports torch, a policy or a critic, so the functions can be run
on saved counts long after the samples were drawn.

    counts = np.array([0, 3, 10, 1])          # correct samples per problem, n = 16 each
    pass_at_k_curve(counts, 16, default_ks(16))   # float64 [5]: pass@1, 2, 4, 8, 16
    coverage(counts)                          # 0.75
    newly_solved(base_counts, counts)         # what RL reached that the base never did
    eta_squared(acc, prior_names, optimizer_names)["a"]   # share of variance of factor a

Conventions: a "count" is a number of correct samples (int, >= 0); ``n`` is the number of
samples drawn per problem; every share is a float in [0, 1] (or nan where undefined).
"""

from __future__ import annotations

import numbers
from typing import Callable, Hashable, Sequence

import numpy as np

__all__ = [
    "pass_at_k",
    "pass_at_k_curve",
    "default_ks",
    "coverage",
    "newly_solved",
    "eta_squared",
    "mean_token_entropy",
    "distinct_correct",
    "standard_error",
    "paired_difference",
]


# ----------------------------------------------------------------------------- helpers


def _int_array(x, name: str) -> np.ndarray:
    """``x`` as an int64 array; ValueError naming ``name`` if it holds non-integers."""
    arr = np.asarray(x)
    if arr.dtype == bool:
        raise ValueError(f"{name} must hold integers, got booleans")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers, got {x!r}")
        return arr.astype(np.int64)
    raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")


def _check_int(k, name: str) -> int:
    """``k`` as a Python int; ValueError naming ``name`` if it is not an integer scalar."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {k!r}")
    return int(k)


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    """pass@k of one problem, inputs already validated. Product form, in log space:

    C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)

    so pass@k = -expm1(sum log1p(-k / i)), accurate also when pass@k is tiny.
    """
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(-np.expm1(np.sum(np.log1p(-k / i))))


# ----------------------------------------------------------------------------- pass@k


def pass_at_k(n, c, k):
    """Unbiased pass@k estimator (Chen et al. 2021): ``1 - C(n - c, k) / C(n, k)``.

    The probability that a uniformly random k-subset of the n samples drawn for a problem
    holds at least one of its c correct ones; its expectation over the n draws equals the
    probability that k fresh samples hold a correct one.

    Args:
        n: int, or int array of any shape: samples drawn per problem.
        c: int, or int array of the same shape as ``n``: correct samples among them.
        k: int, 1 <= k <= n (for every entry of ``n``).

    Returns:
        float if ``n`` and ``c`` are scalars, else a float64 array of their shape.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` in log space, so it is stable for
    n in the tens of thousands (no binomial coefficient is ever formed).
    """
    k = _check_int(k, "k")
    n_arr, c_arr = _int_array(n, "n"), _int_array(c, "c")
    if n_arr.shape != c_arr.shape:
        raise ValueError(f"n and c must have the same shape, got {n_arr.shape} and {c_arr.shape}")
    if np.any(c_arr < 0):
        raise ValueError(f"c must be >= 0, got min {c_arr.min()}")
    if np.any(c_arr > n_arr):
        bad = np.argmax(np.ravel(c_arr > n_arr))
        raise ValueError(f"c must be <= n, got c={np.ravel(c_arr)[bad]} > "
                         f"n={np.ravel(n_arr)[bad]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n_arr.size and k > n_arr.min():
        raise ValueError(f"k must be <= n, got k={k} > n={n_arr.min()}")
    out = np.array([_pass_at_k_one(int(nn), int(cc), k)
                    for nn, cc in zip(n_arr.ravel(), c_arr.ravel())], dtype=np.float64)
    if n_arr.ndim == 0:
        return float(out[0])
    return out.reshape(n_arr.shape)


def pass_at_k_curve(counts, n, ks: Sequence[int]) -> np.ndarray:
    """Mean over problems of pass@k, for each k in ``ks``.

    Args:
        counts: int array [P]: correct samples per problem.
        n: int (same for all problems) or int array [P]: samples drawn per problem.
        ks: ints, each 1 <= k <= min(n).

    Returns:
        float64 array [len(ks)]: the dataset's pass@k, in the order of ``ks``.
    """
    counts = _int_array(counts, "counts")
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    n_arr = _int_array(n, "n")
    if n_arr.ndim == 0:
        n_arr = np.full(counts.shape, int(n_arr), dtype=np.int64)
    if n_arr.shape != counts.shape:
        raise ValueError(f"n must be an int or have the shape of counts {counts.shape}, "
                         f"got {n_arr.shape}")
    ks = list(ks)
    if not ks:
        raise ValueError("ks must not be empty")
    return np.array([pass_at_k(n_arr, counts, k).mean() for k in ks], dtype=np.float64)


def default_ks(n: int) -> list[int]:
    """``[1, 2, 4, ..., n]``: powers of two below n, then n itself (also when n is not a
    power of two). ``n`` is an int >= 1 (samples per problem)."""
    n = _check_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


# ----------------------------------------------------------------------------- coverage


def _counts_1d(counts, name: str) -> np.ndarray:
    arr = _int_array(counts, name)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got min {arr.min()}")
    return arr


def coverage(counts) -> float:
    """Share of problems with at least one correct sample (pass@n, n = samples drawn).

    Args:
        counts: int array [P], >= 0: correct samples per problem.
    Returns:
        float in [0, 1].
    """
    counts = _counts_1d(counts, "counts")
    return float(np.mean(counts > 0))


def standard_error(values) -> float:
    """Standard error of the mean of ``values`` (e.g. 0/1 correctness per problem):
    sample standard deviation (ddof 1) over sqrt(n); 0.0 for fewer than two values."""
    arr = np.asarray(values, np.float64).ravel()
    if arr.size < 2:
        return 0.0
    return float(arr.std(ddof=1) / np.sqrt(arr.size))


def paired_difference(a, b) -> tuple[float, float]:
    """Mean of ``a - b`` over items and its standard error, the two measured on the same
    items in the same order (e.g. 0/1 verdicts of two strategies, [P] each); a ValueError
    when their lengths differ."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"a paired difference needs the same items: {a.size} against "
                         f"{b.size}")
    diffs = a - b
    return float(diffs.mean()), standard_error(diffs)


def newly_solved(base_counts, counts) -> dict:
    """What a trained model solves that the base model never did, and what it lost.

    Args:
        base_counts: int array [P], >= 0: correct samples per problem, base model.
        counts: int array [P], >= 0: correct samples per problem, trained model (same
            problems, same order).

    Returns:
        ``{"base_unsolved": int, "newly_solved": int, "share": float, "lost": int}``:
        problems with ``base_counts == 0``; those among them with ``counts > 0``; the
        ratio of the two (nan when ``base_unsolved == 0``); problems with
        ``base_counts > 0`` and ``counts == 0``.
    """
    base = _counts_1d(base_counts, "base_counts")
    new = _counts_1d(counts, "counts")
    if base.shape != new.shape:
        raise ValueError(f"base_counts and counts must have the same shape, got "
                         f"{base.shape} and {new.shape}")
    unsolved = base == 0
    n_unsolved = int(unsolved.sum())
    n_new = int((unsolved & (new > 0)).sum())
    return {
        "base_unsolved": n_unsolved,
        "newly_solved": n_new,
        "share": n_new / n_unsolved if n_unsolved else float("nan"),
        "lost": int(((base > 0) & (new == 0)).sum()),
    }


# ----------------------------------------------------------------------------- eta squared


def _levels(labels: np.ndarray) -> list:
    """Distinct labels in order of first appearance."""
    return list(dict.fromkeys(labels.tolist()))


def eta_squared(values, factor_a, factor_b) -> dict:
    """Two-way variance decomposition (eta squared) of a balanced design.

    Args:
        values: float array [N]: one observation each (e.g. pass@k of one run).
        factor_a: labels [N] (ints, strings, ...): level of factor a of each observation.
        factor_b: labels [N]: level of factor b of each observation.

    Every (a, b) cell must hold the same number r >= 1 of observations (a missing cell
    counts as unbalanced). With grand mean m, level means m_a, m_b and cell means m_ab:

        SS_a        = r * B * sum_a (m_a - m)^2
        SS_b        = r * A * sum_b (m_b - m)^2
        SS_ab       = r * sum_ab (m_ab - m_a - m_b + m)^2
        SS_within   = sum_i (x_i - m_ab(i))^2
        SS_total    = sum_i (x_i - m)^2 = SS_a + SS_b + SS_ab + SS_within

    Returns:
        ``{"a", "b", "interaction", "residual"}``: each SS over SS_total (dimensionless,
        summing to 1); ``"replicates"``: r; ``"levels_a"``, ``"levels_b"``: the levels in
        order of first appearance.

    With r == 1 the interaction cannot be told apart from noise: all of what the additive
    model leaves over is reported as ``"interaction"`` and ``"residual"`` is nan (a, b and
    interaction still sum to 1). When SS_total is 0 (up to rounding: all values equal)
    every share is nan.
    """
    x = np.asarray(values, dtype=np.float64)
    fa, fb = np.asarray(factor_a), np.asarray(factor_b)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    for name, f in (("factor_a", fa), ("factor_b", fb)):
        if f.shape != x.shape:
            raise ValueError(f"{name} must have the shape of values {x.shape}, got {f.shape}")

    levels_a, levels_b = _levels(fa), _levels(fb)
    ia = np.array([levels_a.index(v) for v in fa.tolist()])
    ib = np.array([levels_b.index(v) for v in fb.tolist()])
    A, B = len(levels_a), len(levels_b)
    cell_n = np.zeros((A, B), dtype=np.int64)
    np.add.at(cell_n, (ia, ib), 1)
    r = int(cell_n[0, 0])  # >= 1: the first observation lies in cell (0, 0)
    if np.any(cell_n != r):
        i, j = np.argwhere(cell_n != r)[0]
        raise ValueError(
            f"unbalanced design: cell (a={levels_a[i]!r}, b={levels_b[j]!r}) has "
            f"{cell_n[i, j]} observations, cell (a={levels_a[0]!r}, b={levels_b[0]!r}) "
            f"has {r}; every cell needs the same number >= 1")

    order = np.lexsort((np.arange(x.size), ib, ia))  # by cell, observations in order
    shares = eta_squared_grid(x[order].reshape(A, B, r))
    return {"replicates": r, "levels_a": levels_a, "levels_b": levels_b,
            **{key: float(v) for key, v in shares.items()}}


def eta_squared_grid(grid) -> dict:
    """Two-way eta squared of a balanced design given as a grid, for a batch of grids.

    Args:
        grid: float array [..., A, B, r]: observation r of cell (level a of factor a, level
            b of factor b); leading axes are a batch (e.g. bootstrap resamples).
    Returns:
        ``{"a", "b", "interaction", "residual"}``: float64 arrays [...], each sum of squares
        over the total, with the definitions and the r == 1 / all-equal cases of
        ``eta_squared``.
    """
    x = np.asarray(grid, dtype=np.float64)
    if x.ndim < 3 or 0 in x.shape[-3:]:
        raise ValueError(f"grid must have shape [..., A, B, r] with A, B, r >= 1, got {x.shape}")
    n_a, n_b, r = x.shape[-3:]
    cell = x.mean(axis=-1)                                   # [..., A, B]
    m = cell.mean(axis=(-2, -1))                             # [...]
    m_a, m_b = cell.mean(axis=-1), cell.mean(axis=-2)        # [..., A], [..., B]
    ss_a = r * n_b * np.sum((m_a - m[..., None]) ** 2, axis=-1)
    ss_b = r * n_a * np.sum((m_b - m[..., None]) ** 2, axis=-1)
    ss_ab = r * np.sum((cell - m_a[..., :, None] - m_b[..., None, :] + m[..., None, None]) ** 2,
                       axis=(-2, -1))
    ss_within = np.sum((x - cell[..., None]) ** 2, axis=(-3, -2, -1))
    ss_total = np.sum((x - m[..., None, None, None]) ** 2, axis=(-3, -2, -1))
    # all values equal up to rounding: the deviations are pure round-off
    scale = np.max(np.abs(x), axis=(-3, -2, -1))
    flat = ss_total <= n_a * n_b * r * (64 * np.finfo(np.float64).eps * scale) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(flat, np.nan, ss_total)
        out = {"a": ss_a / total, "b": ss_b / total}
        if r == 1:
            out["interaction"] = (ss_ab + ss_within) / total
            out["residual"] = np.full_like(total, np.nan)
        else:
            out["interaction"] = ss_ab / total
            out["residual"] = ss_within / total
    return out


# ----------------------------------------------------------------------------- entropy


def mean_token_entropy(sum_logprobs, token_counts) -> float:
    """Monte-Carlo estimate of the per-token entropy (nats) of a sampling distribution.

    Args:
        sum_logprobs: float array [S]: for each sampled completion, the sum over its tokens
            of log p(token | prefix) (natural log, <= 0), under the very distribution the
            tokens were drawn from (temperature 1, no top-p/top-k truncation, or else the
            log-probs of the truncated, renormalised distribution).
        token_counts: int array [S], >= 0, total > 0: tokens in each completion.

    Returns:
        ``sum(-sum_logprobs) / sum(token_counts)``, in nats per token.

    Why it estimates entropy: for a token y drawn from p(. | prefix),
    E[-log p(y | prefix)] = H(p(. | prefix)), the entropy at that position. By the tower
    property the summed surprisal of a completion therefore has the same expectation as
    the sum of the per-position entropies along it (the chain rule makes this the entropy
    of the whole sequence), so the numerator is an unbiased estimate of the total entropy
    of the sampled positions, with no need to see the full next-token distributions.
    Dividing by the number of positions gives the token-weighted mean entropy; this is
    exactly unbiased when the lengths are fixed, and otherwise a ratio estimator that is
    consistent (bias O(1/S)) because the lengths are random too. Log-probs taken at a
    temperature other than the sampling one measure a cross-entropy, not this entropy.
    """
    lp = np.asarray(sum_logprobs, dtype=np.float64)
    counts = _int_array(token_counts, "token_counts")
    if lp.ndim != 1 or lp.size == 0:
        raise ValueError(f"sum_logprobs must be a non-empty 1-D array, got shape {lp.shape}")
    if counts.shape != lp.shape:
        raise ValueError(f"token_counts must have the shape of sum_logprobs {lp.shape}, "
                         f"got {counts.shape}")
    if not np.all(np.isfinite(lp)):
        raise ValueError("sum_logprobs must be finite")
    if np.any(lp > 1e-6 * np.maximum(counts, 1)):
        raise ValueError(f"sum_logprobs must be <= 0 (log-probabilities), got max {lp.max()}")
    if np.any(counts < 0):
        raise ValueError(f"token_counts must be >= 0, got min {counts.min()}")
    total = int(counts.sum())
    if total == 0:
        raise ValueError("token_counts must sum to more than 0")
    return float(-lp.sum() / total)


# ----------------------------------------------------------------------------- diversity


def _strip_whitespace(text: str) -> str:
    return "".join(text.split())


def distinct_correct(texts: Sequence[str], correct: Sequence[bool],
                     key: Callable[[str], Hashable] | None = None) -> int:
    """Number of distinct solutions among the correct ones.

    Args:
        texts: list[str] [S]: sampled solutions.
        correct: list[bool] [S]: whether each is correct.
        key: maps a text to what identifies it; two correct texts with equal keys count
            once. Default: the text with all whitespace removed.

    Returns:
        int in [0, sum(correct)].
    """
    texts, correct = list(texts), list(correct)
    if len(texts) != len(correct):
        raise ValueError(f"texts and correct must have the same length, got "
                         f"{len(texts)} and {len(correct)}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts must hold strings, got {type(t).__name__} at index {i}")
    key = _strip_whitespace if key is None else key
    if not callable(key):
        raise ValueError(f"key must be callable or None, got {key!r}")
    return len({key(t) for t, ok in zip(texts, correct) if ok})

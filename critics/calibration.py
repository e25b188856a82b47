"""Calibration of probability predictions against binary outcomes.

Every function takes p, float [N] with values in [0, 1] (a critic's scores), and y,
{0, 1} [N] (the observed outcomes, 1 = correct), N >= 1; bad inputs raise ValueError
naming what is wrong. Bins are equal-width on [0, 1]: bin i holds i/bins <= p <
(i+1)/bins, and the last bin also holds p = 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from treesearch.utils.plots import new_figure, save_png


class Bins(NamedTuple):
    """Reliability bins (``bins`` of them).

    edges: float64 [bins + 1], 0 .. 1; count: int64 [bins], predictions per bin;
    confidence: float64 [bins], mean p per bin; frequency: float64 [bins], mean y per
    bin (observed frequency of outcome 1). Both means are nan for an empty bin.
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    frequency: np.ndarray


def _check(p, y) -> tuple[np.ndarray, np.ndarray]:
    """p as float64 [N] in [0, 1] and y as float64 [N] in {0, 1}, or ValueError."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(f"calibration: p and y must be 1-D, got shapes {p.shape} and {y.shape}")
    if len(p) != len(y):
        raise ValueError(f"calibration: p has {len(p)} predictions but y has {len(y)} outcomes")
    if len(p) == 0:
        raise ValueError("calibration: no predictions (N = 0)")
    if not np.isfinite(p).all():
        raise ValueError(f"calibration: p has {int((~np.isfinite(p)).sum())} non-finite values")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"calibration: p must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"calibration: y must be binary (0/1), got dtype {y.dtype}") from None
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))][0]
        raise ValueError(f"calibration: y must be binary (0/1), found {bad}")
    return p, y


def _check_bins(bins: int) -> int:
    if int(bins) != bins or bins < 1:
        raise ValueError(f"calibration: bins must be a positive integer, got {bins!r}")
    return int(bins)


def brier(p, y) -> float:
    """Brier score: mean of (p - y)^2, in [0, 1] (0 = perfect)."""
    p, y = _check(p, y)
    return float(np.mean((p - y) ** 2))


def reliability_bins(p, y, bins: int = 10) -> Bins:
    """Per-bin count, mean confidence and observed frequency (see ``Bins``)."""
    p, y = _check(p, y)
    bins = _check_bins(bins)
    edges = np.arange(bins + 1) / bins
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, weights=p, minlength=bins) / count
        frequency = np.bincount(idx, weights=y, minlength=bins) / count
    return Bins(edges, count.astype(np.int64), confidence, frequency)


def ece(p, y, bins: int = 10) -> float:
    """Expected calibration error in [0, 1]: sum over non-empty bins of
    (count / N) * |mean p - mean y|."""
    b = reliability_bins(p, y, bins)
    full = b.count > 0
    gap = np.abs(b.confidence[full] - b.frequency[full])
    return float(np.sum(b.count[full] / b.count.sum() * gap))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N of x (float64 [N]), tied values sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]  # group g covers sorted positions [starts, ends)
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(p, y) -> float:
    """Area under the ROC curve in [0, 1]: the chance that a random positive scores above
    a random negative, ties counting 1/2 (Mann-Whitney U / (n_pos * n_neg), from ranks,
    O(N log N)). nan when y holds only one class."""
    p, y = _check(p, y)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = _average_ranks(p)[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibration_report(p, y, bins: int = 10) -> dict:
    """n, positives, brier, ece, auroc (nan for one class) and the bins (as lists: edges,
    count, confidence, frequency; nan for empty bins), JSON-writable."""
    p, y = _check(p, y)
    b = reliability_bins(p, y, bins)
    return {"n": int(len(p)), "positives": int(y.sum()), "brier": brier(p, y),
            "ece": ece(p, y, bins), "auroc": auroc(p, y),
            "bins": {name: values.tolist() for name, values in b._asdict().items()}}


def reliability_diagram(p, y, path, *, title: str, bins: int = 10) -> Path:
    """Write a reliability diagram PNG to ``path`` (atomically) and return it as a Path.

    Top: observed frequency against mean confidence per non-empty bin, with the diagonal
    of perfect calibration; bottom: predictions per bin. Uses matplotlib's Agg canvas
    directly (no pyplot, no display, no global backend change).
    """
    p, y = _check(p, y)
    b = reliability_bins(p, y, bins)
    path = Path(os.fspath(path))
    fig = new_figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect")
    full = b.count > 0
    top.plot(b.confidence[full], b.frequency[full], marker="o", label="observed")
    top.set(ylim=(0, 1), ylabel="observed frequency",
            title=f"{title}\nN={len(p)} ECE={ece(p, y, bins):.3f} Brier={brier(p, y):.3f}")
    top.legend(loc="upper left")
    width = b.edges[1] - b.edges[0]
    bottom.bar(b.edges[:-1], b.count, width=width, align="edge", edgecolor="black")
    bottom.set(xlim=(0, 1), xlabel="confidence (p)", ylabel="count")
    fig.tight_layout()

    save_png(fig, path)
    return path

"""PNG plots for run results: one atomic save, one line-plot helper (matplotlib's Agg
canvas; no display, no global backend change)."""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from treesearch.utils.atomic import atomic_write


def new_figure(figsize=(6, 4)):
    """A matplotlib Figure on an Agg canvas."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    """Write ``fig`` as PNG atomically (temp file in the same directory, then rename)."""
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), binary=True)


def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path, *,
              xlabel: str, ylabel: str, title: str, xscale: str | None = None,
              xticks: Sequence[float] | None = None) -> None:
    """One line with markers per entry of ``series`` (label -> (xs, ys)), saved as PNG."""
    fig = new_figure()
    ax = fig.add_subplot()
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if xscale:
        ax.set_xscale(xscale)
    if xticks is not None:
        ax.set_xticks(list(xticks))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)

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


def bar_plot(groups: Mapping[str, Sequence[tuple[str, float, float]]], path, *, ylabel: str,
             title: str, lines: Mapping[str, float] | None = None,
             labels: Sequence[str] | None = None) -> None:
    """Grouped bars with error bars, saved as PNG.

    groups: group label -> [(bar label, height, error)], bars of one group side by side in
    one colour; lines: label -> height drawn as a dashed horizontal reference line;
    labels: the bar labels in x order (default: as they first appear).
    """
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    labels = list(labels) if labels is not None else list(
        dict.fromkeys(name for bars in groups.values() for name, _, _ in bars))
    width = 0.8 / max(1, len(groups))
    for g, (group, bars) in enumerate(groups.items()):
        xs = [labels.index(name) + (g - (len(groups) - 1) / 2) * width for name, _, _ in bars]
        ax.bar(xs, [h for _, h, _ in bars], width, yerr=[e for _, _, e in bars], capsize=3,
               label=group)
    for k, (label, height) in enumerate((lines or {}).items()):
        ax.axhline(height, linestyle="--", linewidth=1, color=f"C{len(groups) + k}", label=label)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_png(fig, path)

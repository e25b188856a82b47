"""Writing pages: ``write_view`` for any PATH the viewer takes, ``write_report`` for the
end of a self-play run."""

from __future__ import annotations

from pathlib import Path

from treesearch.view.page import write_html
from treesearch.view.sources import page_data


def default_out(path: Path) -> Path:
    """Where a page goes when ``--out`` is not given: ``report.html`` in a run directory,
    else beside the input (``trees.jsonl.gz`` -> ``trees.html``, ``decode.json`` ->
    ``decode.html``)."""
    if path.is_dir():
        return path / ("report.html" if (path / "config.yaml").is_file() else "decode.html")
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".html")
    return path.with_name(name + ".html")


def write_view(path, out=None, *, round_: int | None = None, problem: str | None = None,
               recipe: str | None = None, model: str | None = None) -> Path:
    """Write the viewer page for PATH (run directory, trees file or decode result) to
    ``out`` (default ``default_out(path)``); returns where. ``ViewError`` (or its
    ``TreeFileError``) names a bad input, and then nothing is written."""
    path = Path(path)
    data = page_data(path, round_=round_, problem=problem, recipe=recipe, model=model)
    return write_html(data, Path(out) if out is not None else default_out(path))


def write_report(run_dir: Path) -> Path:
    """``report.html`` in a self-play run directory: every round's training trees, and
    the per-round charts (held-out greedy, pass@k and MCTS accuracy; training search;
    critic calibration and skill); returns its path."""
    run_dir = Path(run_dir)
    return write_view(run_dir, run_dir / "report.html")

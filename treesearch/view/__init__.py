"""See the search: one self-contained, offline HTML page of search trees.

    python -m treesearch.view PATH [--problem ID] [--round N] [--out FILE.html]

PATH is a self-play run directory, a trees file (JSONL / JSONL.gz) or a decode result.
``write_report(run_dir)`` writes a run's ``report.html``. The page: a searchable problem
list; the selected problem's tree drawn top-down and collapsible, nodes sized by visits
and coloured by Q or a critic's part; a node's step, statistics, critic parts and path on
click; the chosen answer's path highlighted; answers marked right / wrong where the run
has labels; per-round charts for a run.
"""

from treesearch.view.errors import TreeFileError, ViewError
from treesearch.view.page import build_html, write_html
from treesearch.view.report import write_report, write_view
from treesearch.view.sources import page_data

__all__ = ["TreeFileError", "ViewError", "build_html", "page_data", "write_html",
           "write_report", "write_view"]

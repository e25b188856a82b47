"""``python -m treesearch.view PATH [--problem ID] [--round N] [--out FILE.html]``."""

from __future__ import annotations

import sys

from treesearch.utils.cli import ArgumentParser
from treesearch.view.errors import ViewError
from treesearch.view.report import write_view


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m treesearch.view",
        description="Write one self-contained HTML page (works offline) showing search trees.")
    parser.add_argument("path", help="a self-play run directory, a trees file (.jsonl / "
                                     ".jsonl.gz) or a decode result (decode.json or its folder)")
    parser.add_argument("--problem", default=None,
                        help="show only this problem (its id, or a tree index as '#N')")
    parser.add_argument("--round", type=int, default=None, dest="round_",
                        help="only this round of a run")
    parser.add_argument("--out", default=None, help="the HTML file (default: report.html in a "
                                                    "run directory, else beside PATH)")
    parser.add_argument("--config", default=None, dest="recipe",
                        help="for a trees file outside a run: the self-play recipe it was "
                             "searched with (task, answer rule, model)")
    parser.add_argument("--model", default=None,
                        help="for a trees file outside a run: the policy (zoo name or "
                             "directory) whose tokenizer decodes the steps")
    args = parser.parse_args(argv)
    try:
        out = write_view(args.path, args.out, round_=args.round_, problem=args.problem,
                         recipe=args.recipe, model=args.model)
    except ViewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

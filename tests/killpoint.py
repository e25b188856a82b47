"""Run a command-line app whose atomic writes pause at one step, to be killed there
(tests/test_heal.py).

    KILLPOINT_STEP=dir KILLPOINT_PATH='*/round_1/policy' KILLPOINT_MARKER=/tmp/paused \\
        python tests/killpoint.py treesearch.selfplay rounds=1 out=/tmp/run

``treesearch.utils.atomic._step`` is replaced: the first time a write of a path matching
KILLPOINT_PATH (fnmatch on the full path) reaches KILLPOINT_STEP ("file": the temporary
file written, not renamed; "dir": the temporary directory filled, nothing renamed;
"aside": the old directory moved aside, the new one not renamed in), KILLPOINT_MARKER is
written ("<step> <path>") and the process sleeps until it is killed. With
KILLPOINT_AFTER, only once that path exists. Then the module's ``main(args)`` runs.
"""

import fnmatch
import importlib
import os
import sys
import time
from pathlib import Path

import treesearch.utils.atomic as atomic


def pause(step: str, path: str) -> None:
    after = os.environ.get("KILLPOINT_AFTER")
    if step != os.environ["KILLPOINT_STEP"] or not fnmatch.fnmatch(
            path, os.environ["KILLPOINT_PATH"]) or (after and not Path(after).exists()):
        return
    Path(os.environ["KILLPOINT_MARKER"]).write_text(f"{step} {path}\n")
    while True:
        time.sleep(60)


if __name__ == "__main__":
    atomic._step = pause
    sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))

"""The decoding scoreboard runs end to end on a small self-play run and writes its keys."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["rounds=1", "train_problems=8", "eval.problems=4", "eval.sample_problems=4",
         "eval.samples=2", "eval.mcts_problems=2", "critics.process=head", "critics.epochs=1",
         "search.simulations=4", "progress=false"]


@pytest.mark.slow
def test_scoreboard_on_a_small_run(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "treesearch.selfplay", f"out={run}", *SMALL],
                   cwd=ROOT, check=True, capture_output=True, timeout=900)
    out = tmp_path / "board.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_decode.py", "--run", str(run),
                           "--problems", "4", "--budgets", "48", "96", "--strategies", "greedy",
                           "majority", "weighted_bon", "mcts", "--json", str(out),
                           "--png", str(tmp_path / "board.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = json.loads(out.read_text())
    assert board["budgets"] == [48, 96]
    assert set(board["acc"]) == {"greedy", "majority", "weighted_bon", "mcts"}
    assert set(board["acc"]["mcts"]) == {"48", "96"} and set(board["acc"]["greedy"]) == {"ref"}
    for strategy, per in board["tokens"].items():
        for budget, tokens in per.items():
            if budget != "ref":  # every strategy stops at its budget
                assert tokens < int(budget) + 24
    assert {"orm_auroc", "prm_auroc", "value_skill"} <= set(board)
    assert set(board["checkers"]["acc"]) == {"majority", "best_of_n", "mcts"}
    assert (tmp_path / "board.png").stat().st_size > 0

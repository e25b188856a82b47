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


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small self-play run (with a PRM head) that both benchmarks replay."""
    run = tmp_path_factory.mktemp("bench") / "run"
    subprocess.run([sys.executable, "-m", "treesearch.selfplay", f"out={run}", *SMALL],
                   cwd=ROOT, check=True, capture_output=True, timeout=900)
    return run


@pytest.mark.slow
def test_scoreboard_on_a_small_run(small_run, tmp_path):
    run = small_run
    out = tmp_path / "board.json"
    rows = tmp_path / "rows.jsonl"
    board_cmd = [sys.executable, "benchmarks/bench_decode.py", "--run", str(run), "--problems",
                 "4", "--budgets", "48", "96", "--strategies", "greedy", "majority",
                 "weighted_bon", "mcts", "--rows", str(rows)]
    oracle = ["--oracle", "0", "0.5"]
    # the two tables and the oracle curve in three processes sharing the rows file, then
    # one run that assembles
    for part in (["learned"], ["checkers"], ["oracle", *oracle]):
        proc = subprocess.run(board_cmd + ["--tables", *part], cwd=ROOT, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "critics on held-out trees" not in proc.stdout  # a worker skips that part
    cached = rows.read_text()
    # greedy once + 3 x 2 budgets; checkers 2 x 2; oracle 2 flips x 2 strategies at 96
    assert len(cached.splitlines()) == 7 + 4 + 4
    proc = subprocess.run(board_cmd + oracle + ["--json", str(out), "--png",
                                                str(tmp_path / "board.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rows.read_text() == cached  # nothing decoded again
    partial = tmp_path / "partial.json"
    more = board_cmd[:board_cmd.index("96") + 1] + ["192"] + board_cmd[board_cmd.index("96") + 1:]
    proc = subprocess.run(more + ["--cached-only", "--json", str(partial)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rows.read_text() == cached  # --cached-only decodes nothing new
    assert sorted(json.loads(partial.read_text())["missing"]) == [
        "checkers:best_of_n@192", "checkers:mcts@192", "learned:majority@192",
        "learned:mcts@192", "learned:weighted_bon@192"]
    board = json.loads(out.read_text())
    assert board["budgets"] == [48, 96]
    assert set(board["acc"]) == {"greedy", "majority", "weighted_bon", "mcts"}
    assert set(board["acc"]["mcts"]) == {"48", "96"} and set(board["acc"]["greedy"]) == {"ref"}
    for strategy, per in board["tokens"].items():
        for budget, tokens in per.items():
            if budget != "ref":  # every strategy stops at its budget
                assert tokens < int(budget) + 24
    assert {"orm_auroc", "prm_auroc", "value_skill"} <= set(board)
    assert set(board["checkers"]["acc"]) == {"best_of_n", "mcts"}
    assert [point["flip"] for point in board["oracle"]] == [0.0, 0.5]
    assert {"mcts_acc", "weighted_bon_acc", "mcts_se"} <= set(board["oracle"][0])
    assert (tmp_path / "board.png").stat().st_size > 0
    assert (tmp_path / "board_oracle.png").stat().st_size > 0


@pytest.mark.slow
def test_step_oracle_board_on_a_small_run(small_run, tmp_path):
    """The step oracle (countdown has an exact solver) at every budget and over flip rates,
    written under oracle_step, plotted as the _oracle.png."""
    out = tmp_path / "board.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_decode.py", "--run", str(small_run),
                           "--problems", "4", "--budgets", "48", "96", "--strategies", "greedy",
                           "majority", "--tables", "learned", "oracle", "--step-oracle", "0",
                           "0.5", "--json", str(out), "--png", str(tmp_path / "board.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    step = json.loads(out.read_text())["oracle_step"]
    assert step["flips"] == [0.0, 0.5]
    assert set(step["acc"]) == {"mcts", "beam", "weighted_bon"}
    assert all(set(per) == {"48", "96"} for per in step["acc"].values())
    assert [(p["flip"], p["auroc"], p["budget"]) for p in step["curve"]] == [(0.0, 1.0, 96),
                                                                           (0.5, 0.5, 96)]
    assert (tmp_path / "board_oracle.png").stat().st_size > 0
    assert "step oracle, flip 0 (benchmark only)" in proc.stdout


def test_step_oracle_refused_for_a_task_without_solver(tmp_path):
    """Named before any model is loaded (the run holds nothing but its recipe)."""
    from omegaconf import OmegaConf

    from treesearch.config import load_config
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(load_config(None, ["task=arithmetic"]), run / "config.yaml")
    proc = subprocess.run([sys.executable, "benchmarks/bench_decode.py", "--run", str(run),
                           "--step-oracle", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "has no exact solver" in proc.stderr
    proc = subprocess.run([sys.executable, "benchmarks/bench_decode.py", "--run", str(run),
                           "--step-oracle", "1.5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "flip rate must be in [0, 1]" in proc.stderr


@pytest.mark.slow
def test_ablation_rows_on_a_small_run(small_run, tmp_path):
    run = small_run
    out = tmp_path / "ablation.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_ablation.py", "--run", str(run),
                           "--split", "val", "--problems", "3", "--budget", "64", "--json",
                           str(out), "--png", str(tmp_path / "ablation.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert rows[0] == "vanilla" and len(rows) == 6
    # the run trained a PRM head, so every learned row ran; checkers fill the other column
    for column in ("learned", "checkers"):
        assert all(result["acc"][column][r] is not None for r in rows)
        assert all(result["tokens"][column][r] < 64 + 24 for r in rows)
    settings = result["settings"]["rows"]
    assert settings["vanilla"]["merge"] is False and settings["vanilla"]["widen_c"] == 0
    assert settings["+ state merge"]["merge"] is True
    assert settings["+ value bootstrap"]["horizon"] == 2
    assert {"majority", "weighted_bon", "checker best_of_n"} == set(result["references"])
    assert (tmp_path / "ablation.png").stat().st_size > 0


def test_cached_rows_survive_a_new_search_field_at_its_default(tmp_path):
    """A row keeps the settings it was made under: a search field added since (absent from
    the row) at its default is the same settings, at another value it is not; a row without
    settings (older files) or of another seed is refused by name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_decode
    from treesearch.search import SearchConfig

    search = vars(SearchConfig())
    field = sorted(search)[0]
    now = {"run": "run", "round": 1, "split": "val", "problems": 4, "seed": 0,
           "search": search, "dropped": [], "temperature": 1.0}
    older = {**now, "search": {k: v for k, v in search.items() if k != field}}
    rows = tmp_path / "rows.jsonl"
    cache = bench_decode.RowCache(rows, older)
    cache.put("learned", {"strategy": "mcts", "budget": 96, "accuracy": 0.5})
    assert bench_decode.RowCache(rows, now).rows[("learned", "mcts", 96)]["accuracy"] == 0.5
    changed = dict(search)
    changed[field] = "another value"
    with pytest.raises(SystemExit, match=r"rows.jsonl:1 holds a row of other settings"):
        bench_decode.RowCache(rows, {**now, "search": changed})
    with pytest.raises(SystemExit, match="other settings"):
        bench_decode.RowCache(rows, {**now, "seed": 1})
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"table": "learned", "strategy": "mcts", "budget": 96,
                                "fingerprint": "0" * 16}) + "\n")
    with pytest.raises(SystemExit, match="other settings"):
        bench_decode.RowCache(bare, now)

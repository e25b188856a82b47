"""The MCTS-against-majority table reads self-play eval rows, pairs them over seeds and
refuses runs that lack majority vote."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import search_vs_sampling  # noqa: E402


def _run(path: Path, mcts: list[float], majority: list[float] | None, problems: int = 40):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"eval:\n  mcts_problems: {problems}\n")
    rows = []
    for r, m in enumerate(mcts):
        row = {"stage": "eval", "round": r, "mcts": m, "mcts_tokens": 380.0 + r}
        if majority is not None:
            row.update(majority=majority[r], majority_tokens=384.0)
        rows.append(json.dumps(row))
        rows.append(json.dumps({"stage": "search", "round": r + 1}))
    (path / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    return path


def test_rounds_pair_mcts_with_majority_over_seeds(tmp_path):
    runs = [_run(tmp_path / "a-s0", [0.3, 0.6], [0.4, 0.4]),
            _run(tmp_path / "a-s1", [0.2, 0.7], [0.4, 0.3])]
    rounds = search_vs_sampling.table(runs, 40)
    assert [e["round"] for e in rounds] == [0, 1]
    assert rounds[1]["mcts"] == pytest.approx(0.65)
    assert rounds[1]["diff"] == pytest.approx(0.30)        # (0.2 + 0.4) / 2
    assert rounds[1]["diff_se"] == pytest.approx(0.1)      # sd 0.1414 / sqrt(2)
    assert rounds[0]["within_se"] == pytest.approx(
        sum(math.sqrt(p * (1 - p) / 40) for p in (0.3, 0.4, 0.2, 0.4)) / 4)
    out = tmp_path / "t"
    assert search_vs_sampling.main([str(r) for r in runs] + [
        "--json", f"{out}.json", "--md", f"{out}.md", "--png", f"{out}.png"]) == 0
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["runs"] == ["a-s0", "a-s1"] and saved["problems"] == 40
    assert "+0.300 ± 0.100" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_runs_without_majority_or_of_two_recipes_are_refused(tmp_path, capsys):
    old = _run(tmp_path / "old-s0", [0.3, 0.5], None)
    with pytest.raises(ValueError, match="old-s0: its eval rows lack MCTS or majority"):
        search_vs_sampling.table([old], 40)
    a = _run(tmp_path / "a-s0", [0.3], [0.3], problems=40)
    b = _run(tmp_path / "b-s0", [0.3], [0.3], problems=60)
    with pytest.raises(SystemExit):
        search_vs_sampling.main([str(a), str(b)])
    assert "differ in eval.mcts_problems ([40, 60])" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search_vs_sampling.main([str(tmp_path / "missing")])
    assert "missing: no config.yaml (not a self-play run)" in capsys.readouterr().err


def test_per_problem_verdicts_give_the_paired_error(tmp_path):
    """With the verdicts logged, MCTS - majority is paired per problem over the runs'
    problems pooled; a run without them leaves the paired error out, not made up."""
    def flagged(path, mcts_flags, majority_flags):
        run = _run(path, [sum(mcts_flags) / 4], [sum(majority_flags) / 4], problems=4)
        row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        row.update(mcts_flags=mcts_flags, majority_flags=majority_flags)
        (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
        return run

    a = flagged(tmp_path / "a-s0", [1, 1, 0, 1], [1, 0, 0, 0])
    b = flagged(tmp_path / "a-s1", [0, 1, 1, 1], [0, 1, 1, 0])
    diffs = [0, 1, 0, 1, 0, 0, 0, 1]
    mean = sum(diffs) / 8
    expected = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 7 / 8)
    (entry,) = search_vs_sampling.table([a, b], 4)
    assert entry["diff"] == pytest.approx(mean) and entry["paired_se"] == pytest.approx(expected)
    old = _run(tmp_path / "old-s2", [0.5], [0.25], problems=4)
    (entry,) = search_vs_sampling.table([a, old], 4)
    assert entry["paired_se"] is None
    assert search_vs_sampling.markdown([entry], 2).splitlines()[-1].endswith("| - |")
    short = flagged(tmp_path / "c-s0", [1, 1, 0, 1], [1, 0, 0, 0])
    row = json.loads((short / "metrics.jsonl").read_text())
    row["majority_flags"] = [1, 0]
    (short / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="different numbers of problems"):
        search_vs_sampling.table([short], 4)

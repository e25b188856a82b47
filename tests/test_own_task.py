"""A task defined outside the repository (the README's "Your own task" example, written to a
temporary directory) passes the conformance kit and runs through pretraining, decoding
and self-play by ``module:factory``, as a user would run them."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from treesearch.tasks import get_task
from treesearch.tasks.testing import check_task

ROOT = Path(__file__).resolve().parent.parent
SPEC = "my_task:SignedSum"


def readme_task_code() -> str:
    """The python block of the README's "Your own task" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own task", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README section shows one task"
    return blocks[0]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A directory outside the repository holding the user's ``my_task.py``."""
    path = tmp_path_factory.mktemp("user")
    (path / "my_task.py").write_text(readme_task_code(), encoding="utf-8")
    assert not str(path).startswith(str(ROOT))
    return path


def run(user_dir, *argv, timeout=300):
    """``python -m ...`` from the user's directory (where ``my_task`` is importable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=user_dir, env=env, text=True,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def test_the_readme_task_passes_the_kit(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    task = get_task(SPEC)
    assert task.name == "signed_sum" and task.writes_traces
    report = check_task(task)
    assert report.ok and "traces" in report.passed and not report.skipped, report
    # negative operands: no slip on a correct step, one on a wrong one
    assert task.step_slips("-7+-12=-19\n") == 0 and task.step_slips("-7+12=5\n") == 0
    assert task.step_slips("-7+12=19\n") == 1


def test_unknown_task_args_of_a_user_task_are_refused_by_name(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    with pytest.raises(ValueError, match="digits"):
        get_task(SPEC, digits=3)


@pytest.mark.slow
def test_pretrain_decode_and_selfplay_by_module_factory(user_dir):
    """Pretraining writes a prior of the user's task, decoding and one self-play round run
    on it, each by ``--task my_task:SignedSum`` / ``task=my_task:SignedSum``."""
    run(user_dir, "policies.pretrain", "--task", SPEC, "--hidden", "32", "--layers", "1",
        "--heads", "2", "--steps", "40", "--batch-size", "16", "--lr", "0.01",
        "--train-problems", "200", "--eval-problems", "4", "--eval-samples", "2",
        "--eval-max-steps", "3", "--eval-max-step-tokens", "14", "--max-positions", "64",
        "--no-progress", "--out", "prior")
    metrics = json.loads((user_dir / "prior" / "metrics.json").read_text())
    assert metrics["task"] == "signed_sum" and metrics["config"]["task"] == SPEC
    assert metrics["eval"]["n_problems"] == 4

    run(user_dir, "treesearch.decode", "--task", SPEC, "--model", "prior", "--strategies",
        "greedy", "majority", "--budgets", "56", "--problems", "3", "--out", "decode",
        "search.max_step_tokens=14", "search.max_depth=3")
    rows = json.loads((user_dir / "decode" / "decode.json").read_text())["rows"]
    assert {r["strategy"] for r in rows} == {"greedy", "majority"}
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["tokens"] > 0 for r in rows)

    run(user_dir, "treesearch.selfplay", f"task={SPEC}", "policy.model=prior", "rounds=1",
        "train_problems=4", "eval.problems=4", "eval.samples=2", "eval.sample_problems=2",
        "eval.mcts_problems=1", "eval.mcts_budget=56", "search.simulations=4",
        "search.max_step_tokens=14", "search.max_depth=3", "critics.epochs=1",
        "progress=false", "out=run")
    metrics = (user_dir / "run" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in metrics.splitlines()]
    assert [r["round"] for r in rows if r["stage"] == "eval"] == [0, 1]

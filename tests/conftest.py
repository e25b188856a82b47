import os
import sys

# tests import their shared helpers (random_evaluator) by module name
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def policy():
    """The shipped default 4-number prior behind HFPolicy (seed 0, one thread), one per
    test module; modules that need another policy define their own ``policy``."""
    import torch

    from policies.hf import HFPolicy
    from policies.zoo import resolve

    torch.set_num_threads(1)
    return HFPolicy(resolve("tiny-countdown"), temperature=1.0, seed=0)


@pytest.fixture(scope="module")
def task():
    """4-number countdown (modules may override)."""
    from treesearch.tasks import get_task

    return get_task("countdown")


@pytest.fixture(scope="module")
def prior_dir():
    """The shipped 3-number prior's directory (the optimizer tests train copies of it)."""
    from policies.zoo import resolve

    return resolve("tiny-countdown3")


@pytest.fixture()
def problems(task):
    """Four training problems of the module's ``task``."""
    return task.problems("train", 4, seed=0)


# a one-round self-play run small enough to make in seconds (tiny-countdown3)
TINY_RUN = ["rounds=1", "train_problems=6", "eval.problems=6", "eval.samples=2",
            "eval.sample_problems=4", "eval.mcts_problems=2", "eval.mcts_budget=96",
            "search.simulations=10", "critics.epochs=1", "progress=false"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real self-play run of one round (``TINY_RUN``), made once per session: the
    viewer's tests and the CLI fuzz read it (tests that change a run copy it first)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    proc = subprocess.run([sys.executable, "-m", "treesearch.selfplay", *TINY_RUN, f"out={out}"],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out

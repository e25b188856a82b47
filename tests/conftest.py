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

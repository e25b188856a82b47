"""The generic engine on a non-LLM problem whose best action is known exactly."""

import numpy as np
import pytest

from treesearch.engine.forest import MCTSParams
from treesearch.engine.toy import RewardTree, solve


def clear_instances(n, branching, depth, margin):
    """Instances whose best first action beats the runner-up by at least ``margin``."""
    envs, seed = [], 0
    while len(envs) < n:
        env = RewardTree(branching, depth, seed=seed)
        values = np.sort(env.action_values(0))
        if values[-1] - values[-2] >= margin:
            envs.append(env)
        seed += 1
    return envs


def test_exact_optimum_by_enumeration():
    env = RewardTree(branching=3, depth=3, seed=4)
    best = max(
        (env.edge_reward(0, a) + env.edge_reward(env.child_code(0, a), b)
         + env.edge_reward(env.child_code(env.child_code(0, a), b), c), a)
        for a in range(3) for b in range(3) for c in range(3))
    assert env.optimal_return(0) == pytest.approx(best[0])
    assert env.best_action == best[1]


@pytest.mark.parametrize("leaves_per_tree, rounds", [(1, 3000), (4, 1500)])
def test_most_visited_root_action_converges_to_the_best(leaves_per_tree, rounds):
    envs = clear_instances(24, branching=3, depth=4, margin=0.05)
    # the greedy prior must be wrong somewhere, or the test shows nothing about search
    assert any(e.greedy_action != e.best_action for e in envs)
    params = MCTSParams(c_explore=1.0, first_play=1.0, leaves_per_tree=leaves_per_tree)
    forest, chosen = solve(envs, params, rounds)
    assert chosen.tolist() == [e.best_action for e in envs]
    assert forest.check_invariants() == []


def test_search_beats_its_prior_on_harder_instances():
    envs = [RewardTree(4, 5, seed=s) for s in range(32)]
    _, chosen = solve(envs, MCTSParams(c_explore=1.0, first_play=1.0, leaves_per_tree=4), 400)
    best = np.array([e.best_action for e in envs])
    greedy = np.array([e.greedy_action for e in envs])
    assert np.mean(chosen == best) >= np.mean(greedy == best) + 0.1

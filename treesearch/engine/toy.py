"""A toy environment whose best action is known, and a demo: ``python -m treesearch.engine.toy``.

``RewardTree``: a deterministic decision tree of fixed ``branching`` and ``depth``. Every
edge carries a reward drawn (by hash) from [0, 1); the episode ends at ``depth``. The
optimal return and the best first action are computed exactly by dynamic programming, so a
search can be checked against the truth. The evaluator hands the engine a *greedy* prior
(softmax of the immediate edge rewards) and a zero score, so the prior can point the wrong
way and only search finds the best action.

A node's payload encodes its action path: ``code(path + [a]) = code(path) * (A + 1) + a + 1``.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from treesearch.engine.forest import Forest, MCTSParams
from treesearch.engine.interfaces import Expansion
from treesearch.engine.loop import run_rounds

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class RewardTree:
    """Deterministic tree game with hashed edge rewards in [0, 1).

    Args:
        branching: actions per state (A).
        depth: steps per episode (D); A ** D terminal states in all.
        seed: which instance.
        prior_temperature: temperature of the greedy prior over immediate rewards.
    """

    def __init__(self, branching: int = 3, depth: int = 4, seed: int = 0,
                 prior_temperature: float = 0.25):
        if branching < 2 or depth < 1:
            raise ValueError(f"RewardTree needs branching >= 2 and depth >= 1, got "
                             f"{branching}, {depth}")
        self.branching = branching
        self.depth = depth
        self.seed = seed
        self.prior_temperature = prior_temperature

    def child_code(self, code: int, action: int) -> int:
        return code * (self.branching + 1) + action + 1

    def code_depth(self, code: int) -> int:
        depth = 0
        while code:
            code //= self.branching + 1
            depth += 1
        return depth

    def edge_reward(self, code: int, action: int) -> float:
        """Reward of taking ``action`` in the state encoded by ``code``, in [0, 1)."""
        h = _splitmix64(_splitmix64(self.seed) ^ self.child_code(code, action))
        return (h >> 11) / float(1 << 53)

    @functools.lru_cache(maxsize=None)
    def optimal_return(self, code: int = 0) -> float:
        """Best total reward from the state ``code`` to the end."""
        if self.code_depth(code) == self.depth:
            return 0.0
        return max(self.edge_reward(code, a) + self.optimal_return(self.child_code(code, a))
                   for a in range(self.branching))

    def action_values(self, code: int = 0) -> np.ndarray:
        """Optimal return after each first action from ``code``, float64 [A]."""
        return np.array([self.edge_reward(code, a) + self.optimal_return(self.child_code(code, a))
                         for a in range(self.branching)])

    @property
    def best_action(self) -> int:
        return int(np.argmax(self.action_values(0)))

    @property
    def greedy_action(self) -> int:
        return int(np.argmax([self.edge_reward(0, a) for a in range(self.branching)]))

    def children(self, code: int) -> list[tuple[float, float, float, bool, int]]:
        """(prior, reward, score, terminal, payload) of each child of state ``code``."""
        depth = self.code_depth(code)
        rewards = np.array([self.edge_reward(code, a) for a in range(self.branching)])
        logits = rewards / self.prior_temperature
        prior = np.exp(logits - logits.max())
        prior /= prior.sum()
        last = depth + 1 == self.depth
        score = 0.0 if last else 0.5 * (self.depth - depth - 1)  # random play's mean return
        return [(float(prior[a]), float(rewards[a]), score, last, self.child_code(code, a))
                for a in range(self.branching)]


class RewardTreeEvaluator:
    """Evaluator over one ``RewardTree`` instance per tree of the forest."""

    def __init__(self, envs: list[RewardTree]):
        self.envs = envs

    def __call__(self, forest: Forest, leaf_tree: np.ndarray, leaf_node: np.ndarray) -> Expansion:
        per_leaf = []
        for b, n in zip(leaf_tree.tolist(), leaf_node.tolist()):
            if forest.terminal[b, n]:
                per_leaf.append([])
            else:
                per_leaf.append(self.envs[b].children(int(forest.payload[b, n])))
        return Expansion.from_children(per_leaf)


def solve(envs: list[RewardTree], params: MCTSParams, rounds: int, progress: bool = False):
    """Search every instance at once; returns (forest, most visited root action per tree)."""
    forest = Forest(len(envs), capacity=64, root_payloads=[0] * len(envs))
    run_rounds(forest, RewardTreeEvaluator(envs), params, rounds, progress=progress)
    _, _, _, _, best = forest.root_stats(params.gamma)
    return forest, best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--branching", type=int, default=4)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--leaves-per-tree", type=int, default=4)
    parser.add_argument("--c-explore", type=float, default=1.0)
    args = parser.parse_args(argv)
    envs = [RewardTree(args.branching, args.depth, seed=s) for s in range(args.instances)]
    params = MCTSParams(c_explore=args.c_explore, leaves_per_tree=args.leaves_per_tree,
                        first_play=1.0)
    forest, chosen = solve(envs, params, args.rounds, progress=True)
    best = np.array([e.best_action for e in envs])
    greedy = np.array([e.greedy_action for e in envs])
    print(f"{'tree':>4} {'best':>4} {'greedy':>6} {'search':>6} {'root visits':>11} {'nodes':>6}")
    for b, env in enumerate(envs):
        print(f"{b:>4} {best[b]:>4} {greedy[b]:>6} {chosen[b]:>6} "
              f"{int(forest.visits[b, 0]):>11} {int(forest.n_nodes[b]):>6}")
    print(f"best first action found: search {np.mean(chosen == best):.0%}, "
          f"greedy prior {np.mean(greedy == best):.0%} of {len(envs)} instances "
          f"({args.branching}^{args.depth} leaves each, {args.rounds} rounds x "
          f"{args.leaves_per_tree} leaves)")


if __name__ == "__main__":
    main()

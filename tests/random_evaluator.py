"""A random but deterministic evaluator shared by the kernel tests.

Children depend only on (seed, tree, node index), so two engines that build the same tree
get the same children. Scores are drawn on a coarse grid so that ties in Q, priors and
selection scores are common: tie-breaking is exercised, not just the happy path.
"""

from __future__ import annotations

import numpy as np

from treesearch.engine.interfaces import Expansion


def random_children(seed: int, tree: int, node: int, max_children: int, p_terminal: float,
                    p_dead_end: float = 0.05) -> list[tuple]:
    """(prior, reward, score, terminal, payload) tuples for one leaf."""
    rng = np.random.default_rng([seed, tree, node])
    if rng.random() < p_dead_end:
        return []
    count = int(rng.integers(1, max_children + 1))
    prior = rng.integers(1, 5, count).astype(np.float64)
    prior /= prior.sum()
    reward = rng.integers(-2, 3, count) * 0.25
    score = rng.integers(-4, 5, count) * 0.25
    terminal = rng.random(count) < p_terminal
    payload = rng.integers(0, 1000, count)
    return [(float(prior[k]), float(reward[k]), float(score[k]), bool(terminal[k]),
             int(payload[k])) for k in range(count)]


class RandomEvaluator:
    """Evaluator for ``Forest`` (arrays) or ``ReferenceForest`` (objects).

    tree_ids maps the forest's tree index to the key used for drawing (so a forest holding
    one tree can reproduce tree 3 of a larger forest).
    """

    def __init__(self, seed: int, max_children: int = 4, p_terminal: float = 0.15,
                 tree_ids=None):
        self.seed = seed
        self.max_children = max_children
        self.p_terminal = p_terminal
        self.tree_ids = tree_ids

    def __call__(self, terminal_of, leaf_tree, leaf_node) -> Expansion:
        """terminal_of(b, n) -> bool; returns the CSR children of the leaves."""
        per_leaf = []
        for b, n in zip(list(leaf_tree), list(leaf_node)):
            if terminal_of(int(b), int(n)):
                per_leaf.append([])
                continue
            key = int(b) if self.tree_ids is None else self.tree_ids[int(b)]
            per_leaf.append(random_children(self.seed, key, int(n), self.max_children,
                                            self.p_terminal))
        return Expansion.from_children(per_leaf)

    def for_forest(self, forest):
        return lambda lt, ln: self(lambda b, n: bool(forest.terminal[b, n]), lt, ln)

    def for_reference(self, ref):
        return lambda lt, ln: self(lambda b, n: ref.trees[b].nodes[n].terminal, lt, ln)

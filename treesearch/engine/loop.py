"""The generic MCTS round loop: select -> evaluate -> expand + backup, over a forest.

``run_rounds`` drives any ``Evaluator`` (a toy environment, or anything that answers a batch
of leaves with CSR children) with one jitted call to select and one to expand-and-backup
per round, so all trees and all their leaves move together.

The search over reasoning steps (a policy proposes, critics score) is
``treesearch.search.StepSearch``, a layer above this one.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from treesearch.engine.forest import Forest, MCTSParams
from treesearch.engine.interfaces import Evaluator


def run_rounds(forest: Forest, evaluator: Evaluator, params: MCTSParams, rounds: int, *,
               progress: bool = False) -> np.ndarray:
    """Run ``rounds`` search rounds on every tree of ``forest``.

    Each round selects up to params.leaves_per_tree leaves per tree, asks the evaluator
    for their children in one call, then expands and backs up in one kernel call.

    Returns:
        int64 [B], collisions per tree over these rounds.
    """
    collisions = np.zeros(forest.n_trees, np.int64)
    for _ in tqdm(range(rounds), desc="search rounds", disable=not progress, leave=False):
        leaf_tree, leaf_node, hit = forest.select(params)
        collisions += hit
        expansion = evaluator(forest, leaf_tree, leaf_node)
        forest.expand_and_backup(leaf_tree, leaf_node, expansion.offsets, expansion.prior,
                                 expansion.reward, expansion.score, expansion.terminal,
                                 expansion.payload, params.gamma)
    return collisions

"""Progressive widening and cancelled selections keep the forest sound."""

import numpy as np
import pytest

from treesearch.engine.export import to_networkx
from treesearch.engine.forest import ExpansionError, Forest, MCTSParams
from treesearch.engine.interfaces import Expansion
from treesearch.engine.loop import run_rounds


def _grow_some(forest, rounds=12, seed=0):
    rng = np.random.default_rng(seed)

    def evaluator(forest, leaf_tree, leaf_node):
        per_leaf = []
        for b, n in zip(leaf_tree, leaf_node):
            if forest.terminal[b, n] or forest.depth[b, n] >= 3:
                per_leaf.append([])
                continue
            per_leaf.append([(1 / 3, 0.0, float(rng.random()), 0, 7) for _ in range(3)])
        return Expansion.from_children(per_leaf)

    run_rounds(forest, evaluator, MCTSParams(leaves_per_tree=2), rounds)


def test_widen_moves_the_block_and_keeps_statistics():
    forest = Forest(2, capacity=8, extra_fields=("tag",))
    _grow_some(forest)
    forest.extra("tag")[:, :] = np.arange(forest.capacity)[None, :]
    before = [to_networkx(forest, b) for b in range(2)]
    root_children = [forest.children(b, 0).copy() for b in range(2)]
    old_stats = [(forest.visits[b, c].copy(), forest.value_sum[b, c].copy(),
                  forest.extra("tag")[b, c].copy()) for b, c in enumerate(root_children)]
    forest.widen([0, 1], [0, 0], [0, 2, 3], [0.1, 0.2, 0.3], [0.0] * 3, [0.5, 0.6, 0.7],
                 [0, 1, 0], [11, 12, 13])
    assert forest.check_invariants() == []
    for b, extra_children in ((0, 2), (1, 1)):
        kids = forest.children(b, 0)
        n_old = len(root_children[b])
        assert len(kids) == n_old + extra_children
        visits, value_sum, tag = old_stats[b]
        np.testing.assert_array_equal(forest.visits[b, kids[:n_old]], visits)
        np.testing.assert_array_equal(forest.value_sum[b, kids[:n_old]], value_sum)
        np.testing.assert_array_equal(forest.extra("tag")[b, kids[:n_old]], tag)
        assert np.all(forest.visits[b, kids[n_old:]] == 0)
        for new, old in zip(kids[:n_old], root_children[b]):
            grandkids = forest.children(b, new)
            assert np.all(forest.parent[b, grandkids] == new)
            assert forest.depth[b, old] < 0  # the old row is detached
        graph = to_networkx(forest, b)
        assert graph.number_of_nodes() == before[b].number_of_nodes() + extra_children
        assert all(graph.nodes[n]["depth"] >= 0 for n in graph.nodes)
    assert forest.terminal[0, forest.children(0, 0)[-1]] == 1
    assert forest.terminal[1, forest.children(1, 0)[-1]] == 0
    # searching on after widening keeps the invariants
    _grow_some(forest, rounds=6, seed=1)
    assert forest.check_invariants() == []


def test_widen_rejects_bad_nodes_without_writing():
    forest = Forest(1, capacity=8)
    _grow_some(forest, rounds=2)
    leaf = int(np.nonzero((forest.n_children[0, :forest.n_nodes[0]] == 0))[0][0])
    snapshot = forest.ints.copy()
    with pytest.raises(ExpansionError, match="expanded"):
        forest.widen([0], [leaf], [0, 1], [1.0], [0.0], [0.0], [0], [0])
    with pytest.raises(ExpansionError, match="twice"):
        forest.widen([0, 0], [0, 0], [0, 1, 2], [1.0, 1.0], [0.0] * 2, [0.0] * 2, [0, 0], [0, 0])
    with pytest.raises(ExpansionError, match="finite"):
        forest.widen([0], [0], [0, 1], [float("nan")], [0.0], [0.0], [0], [0])
    np.testing.assert_array_equal(forest.ints, snapshot)


def test_cancel_removes_virtual_loss_only():
    forest = Forest(3, capacity=16)
    _grow_some(forest, rounds=4)
    visits = forest.visits.copy()
    leaf_tree, leaf_node, _ = forest.select(MCTSParams(leaves_per_tree=3))
    assert forest.vloss.sum() > 0
    forest.cancel(leaf_tree, leaf_node)
    assert forest.vloss.sum() == 0
    np.testing.assert_array_equal(forest.visits, visits)
    assert forest.check_invariants() == []

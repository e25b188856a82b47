"""Kernels against the plain-Python reference, invariants, and bad input.

These tests also run with NUMBA_DISABLE_JIT=1 (see test_nojit.py), so the kernels are
checked both compiled and as plain Python.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from random_evaluator import RandomEvaluator

from treesearch.engine import kernels
from treesearch.engine.forest import CapacityError, ExpansionError, Forest, MCTSParams
from treesearch.engine.reference import ReferenceForest

params_strategy = st.builds(
    MCTSParams,
    rule=st.sampled_from(["puct", "uct"]),
    c_explore=st.sampled_from([0.0, 0.5, 1.25, 3.0]),
    first_play=st.sampled_from([0.0, 0.5, 1.0]),
    first_play_mode=st.sampled_from(["constant", "critic"]),
    gamma=st.sampled_from([1.0, 0.9]),
    leaves_per_tree=st.integers(1, 5),
)


def run_both(seed, n_trees, params, rounds, max_children, capacity=2):
    """Drive Forest and ReferenceForest with one evaluator; compare every round."""
    forest = Forest(n_trees, capacity=capacity, root_scores=np.arange(n_trees) * 0.25)
    ref = ReferenceForest(n_trees, root_scores=np.arange(n_trees) * 0.25)
    evaluator = RandomEvaluator(seed, max_children=max_children)
    eval_forest, eval_ref = evaluator.for_forest(forest), evaluator.for_reference(ref)
    for r in range(rounds):
        lt, ln, collisions = forest.select(params)
        rlt, rln, rcollisions = ref.select(params)
        assert (lt.tolist(), ln.tolist()) == (rlt, rln), f"round {r}: selected leaves differ"
        assert collisions.tolist() == rcollisions
        e = eval_forest(lt, ln)
        forest.expand_and_backup(lt, ln, e.offsets, e.prior, e.reward, e.score, e.terminal,
                                 e.payload, params.gamma)
        e = eval_ref(rlt, rln)
        ref.expand_and_backup(rlt, rln, e.offsets, e.prior, e.reward, e.score, e.terminal,
                              e.payload, params.gamma)
        assert forest.check_invariants() == [], f"round {r}"
    return forest, ref


def assert_same_trees(forest: Forest, ref: ReferenceForest):
    for b, tree in enumerate(ref.trees):
        assert forest.n_nodes[b] == len(tree.nodes)
        for node in tree.nodes:
            n = node.index
            assert forest.visits[b, n] == node.visits
            assert forest.value_sum[b, n] == node.value_sum  # float64, same order of sums
            assert forest.vloss[b, n] == node.vloss == 0
            assert forest.terminal[b, n] == node.terminal
            assert forest.depth[b, n] == node.depth
            assert forest.parent[b, n] == (node.parent.index if node.parent else -1)
            assert forest.children(b, n).tolist() == [c.index for c in node.children]
            assert forest.prior[b, n] == node.prior
        assert forest.qbounds[0, b] == tree.qmin and forest.qbounds[1, b] == tree.qmax


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_trees=st.integers(1, 4), params=params_strategy,
       rounds=st.integers(1, 25), max_children=st.integers(1, 5))
def test_kernels_match_reference(seed, n_trees, params, rounds, max_children):
    forest, ref = run_both(seed, n_trees, params, rounds, max_children)
    assert_same_trees(forest, ref)


def test_virtual_loss_spreads_leaves_and_counts_collisions():
    # one root with 4 children: K = 4 must pick 4 distinct children, no collision
    forest = Forest(1)
    forest.expand(np.array([0]), np.array([0]), np.array([0, 4]), np.full(4, 0.25),
                  np.zeros(4), np.zeros(4), np.zeros(4), np.arange(4))
    forest.backup(np.array([0]), np.array([0]))
    lt, ln, collisions = forest.select(MCTSParams(leaves_per_tree=4))
    assert sorted(ln.tolist()) == [1, 2, 3, 4] and collisions.tolist() == [0]
    forest.backup(lt, ln)
    # a tree whose only leaf is the root: K = 3 gives one leaf and two collisions
    fresh = Forest(2)
    lt, ln, collisions = fresh.select(MCTSParams(leaves_per_tree=3))
    assert lt.tolist() == [0, 1] and ln.tolist() == [0, 0] and collisions.tolist() == [2, 2]
    assert fresh.vloss[:, 0].tolist() == [3, 3]
    fresh.backup(lt, ln)
    assert fresh.vloss[:, 0].tolist() == [0, 0] and fresh.visits[:, 0].tolist() == [1, 1]


def test_batch_independence():
    params = MCTSParams(leaves_per_tree=3, first_play_mode="critic")
    together, _ = run_both(seed=7, n_trees=4, params=params, rounds=15, max_children=4)
    for b in range(4):
        alone = Forest(1, capacity=2, root_scores=[b * 0.25])
        evaluator = RandomEvaluator(7, max_children=4, tree_ids=[b]).for_forest(alone)
        for _ in range(15):
            lt, ln, _ = alone.select(params)
            e = evaluator(lt, ln)
            alone.expand_and_backup(lt, ln, e.offsets, e.prior, e.reward, e.score, e.terminal,
                                    e.payload, params.gamma)
        n = together.n_nodes[b]
        assert alone.n_nodes[0] == n
        np.testing.assert_array_equal(alone.ints[0, :n], together.ints[b, :n])
        np.testing.assert_array_equal(alone.floats[0, :n], together.floats[b, :n])


def test_puct_formula_by_hand():
    """Three children with known stats; the winner follows the formula, not the prior alone."""
    forest = Forest(1)
    forest.expand([0], [0], [0, 3], [0.5, 0.3, 0.2], [0.0, 0.0, 0.0], [0.0, 1.0, 0.5],
                  [0, 0, 0], [-1, -1, -1])
    forest.backup([0], [0])  # root visited once
    params = MCTSParams(c_explore=1.0, first_play=0.0, first_play_mode="critic")
    # Q bounds empty -> every normalised Q is 0.5; PUCT = 0.5 + c * P * sqrt(1) / 1
    lt, ln, _ = forest.select(params)
    assert ln.tolist() == [1]  # highest prior
    forest.expand_and_backup(lt, ln, [0, 0], [], [], [], [], [])  # dead end, backs up 0.0
    # now bounds are [0, 0] (empty range) -> 0.5 again for visited; child 2 via critic: 0.5
    # scores: c1 = 0.5 + 0.5*sqrt(2)/2, c2 = 0.5 + 0.3*sqrt(2), c3 = 0.5 + 0.2*sqrt(2)
    lt, ln, _ = forest.select(params)
    scores = [0.5 + 0.5 * math.sqrt(2) / 2, 0.5 + 0.3 * math.sqrt(2), 0.5 + 0.2 * math.sqrt(2)]
    assert ln.tolist() == [1 + int(np.argmax(scores))]
    forest.backup(lt, ln)


def test_uct_visits_unvisited_children_first_in_index_order():
    forest = Forest(1)
    forest.expand([0], [0], [0, 3], [0.1, 0.1, 0.8], [0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 2])
    forest.backup([0], [0])
    seen = []
    for _ in range(3):
        lt, ln, _ = forest.select(MCTSParams(rule="uct"))
        seen.append(int(ln[0]))
        forest.backup(lt, ln)
    assert seen == [1, 2, 3]


def test_backup_discounts_edge_rewards():
    forest = Forest(1)
    forest.expand([0], [0], [0, 1], [1.0], [0.5], [2.0], [0], [-1])
    forest.backup([0], [0], gamma=0.5)
    forest.expand([0], [1], [0, 1], [1.0], [1.0], [4.0], [1], [-1])
    forest.backup([0], [1], gamma=0.5)
    forest.backup([0], [2], gamma=0.5)  # terminal leaf selected: its outcome backs up again
    # leaf 2: G = 4 at node 2; node 1 gets 1 + .5*4 = 3; root gets .5 + .5*3 = 2
    assert forest.value_sum[0, 2] == 4.0
    assert forest.value_sum[0, 1] == 2.0 + 3.0  # own value at its expansion, then via leaf 2
    assert forest.value_sum[0, 0] == 0.0 + (0.5 + 0.5 * 2.0) + 2.0
    assert forest.visits[0, :3].tolist() == [3, 2, 1]
    q1 = 0.5 + 0.5 * 5.0 / 2
    q2 = 1.0 + 0.5 * 4.0
    assert forest.qbounds[:, 0].tolist() == [min(q1, q2, 0.5 + 0.5 * 2.0), max(q1, q2)]


def _snapshot(forest):
    return (forest.ints.copy(), forest.floats.copy(), forest.n_nodes.copy(),
            forest.qbounds.copy())


def _assert_unchanged(forest, snap):
    for before, after in zip(snap, _snapshot(forest)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("field", ["prior", "reward", "score"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_tree_and_node_and_writes_nothing(field, bad):
    forest = Forest(3)
    forest.expand([0, 1, 2], [0, 0, 0], [0, 2, 4, 6], np.full(6, 0.5), np.zeros(6), np.zeros(6),
                  np.zeros(6), np.full(6, -1))
    forest.backup([0, 1, 2], [0, 0, 0])
    lt, ln, _ = forest.select(MCTSParams(leaves_per_tree=2))
    assert len(lt) == 6 and not forest.terminal[lt, ln].any()
    cols = {"prior": np.full(2 * len(lt), 0.5), "reward": np.zeros(2 * len(lt)),
            "score": np.zeros(2 * len(lt))}
    cols[field][-1] = bad
    snap = _snapshot(forest)
    with pytest.raises(ExpansionError, match=rf"child 1 of node {ln[-1]} in tree {lt[-1]}"):
        forest.expand_and_backup(lt, ln, np.arange(len(lt) + 1) * 2, cols["prior"],
                                 cols["reward"], cols["score"], np.zeros(2 * len(lt)),
                                 np.full(2 * len(lt), -1))
    _assert_unchanged(forest, snap)


def test_other_bad_expansions_write_nothing():
    forest = Forest(2)
    forest.expand([0], [0], [0, 2], [0.5, 0.5], [0, 0], [0, 0], [0, 1], [-1, -1])
    snap = _snapshot(forest)
    cases = [
        (dict(leaf_tree=[0], leaf_node=[0]), "already has children"),
        (dict(leaf_tree=[0], leaf_node=[2]), "is terminal"),
        (dict(leaf_tree=[5], leaf_node=[0]), "does not exist"),
        (dict(leaf_tree=[0], leaf_node=[7]), "does not exist"),
        (dict(leaf_tree=[1, 1], leaf_node=[0, 0], offsets=[0, 1, 2]), "children twice"),
        (dict(leaf_tree=[1], leaf_node=[0], offsets=[0, 3]), "offsets"),
        (dict(leaf_tree=[1], leaf_node=[0], prior=[-0.5, 1.5]), "negative prior"),
    ]
    for override, message in cases:
        args = dict(leaf_tree=[1], leaf_node=[0], offsets=[0, 2], prior=[0.5, 0.5],
                    reward=[0, 0], score=[0, 0], terminal=[0, 0], payload=[-1, -1])
        args.update(override)
        with pytest.raises(ExpansionError, match=message):
            forest.expand(**args)
        _assert_unchanged(forest, snap)


def test_capacity_grows_or_fails_cleanly():
    grow = Forest(2, capacity=2)
    grow.expand([0, 1], [0, 0], [0, 3, 8], np.full(8, 0.2), np.zeros(8), np.zeros(8),
                np.zeros(8), np.arange(8))
    assert grow.capacity == 8 and grow.n_nodes.tolist() == [4, 6]
    assert grow.payload[1, 1:6].tolist() == [3, 4, 5, 6, 7]
    fixed = Forest(2, capacity=4, growable=False)
    snap = _snapshot(fixed)
    with pytest.raises(CapacityError, match="tree 1 needs 6 nodes but capacity is 4"):
        fixed.expand([0, 1], [0, 0], [0, 3, 8], np.full(8, 0.2), np.zeros(8), np.zeros(8),
                     np.zeros(8), np.arange(8))
    _assert_unchanged(fixed, snap)


def test_dead_end_becomes_terminal_and_is_backed_up_again():
    forest = Forest(1, root_scores=[0.75])
    lt, ln, _ = forest.select(MCTSParams())
    forest.expand_and_backup(lt, ln, [0, 0], [], [], [], [], [])
    assert forest.terminal[0, 0] == 1
    for _ in range(3):
        lt, ln, _ = forest.select(MCTSParams())
        forest.expand_and_backup(lt, ln, [0, 0], [], [], [], [], [])
    assert forest.visits[0, 0] == 4 and forest.value_sum[0, 0] == 3.0
    assert forest.check_invariants() == []


def test_priors_from_logprobs_softmax_per_group():
    logp = np.array([-1.0, -2.0, -3.0, -0.5, -700.0, -1e3])
    offsets = np.array([0, 3, 3, 6])
    for t in (0.5, 1.0, 2.0):
        p = kernels.priors_from_logprobs(logp, offsets, t)
        for a, b in ((0, 3), (3, 6)):
            z = np.exp(logp[a:b] / t - np.max(logp[a:b] / t))
            np.testing.assert_allclose(p[a:b], z / z.sum(), rtol=1e-12)
        assert np.all(np.isfinite(p))


def test_ranked_paths_and_sibling_pairs_by_brute_force():
    params = MCTSParams(leaves_per_tree=2, gamma=0.9)
    forest, ref = run_both(seed=11, n_trees=3, params=params, rounds=20, max_children=3)
    paths, lengths, scores = forest.ranked_paths(top_k=5, gamma=0.9)
    for b, tree in enumerate(ref.trees):
        cands = []
        for node in tree.nodes:
            if node.children or node.visits == 0:
                continue
            g = node.value_sum / node.visits
            walk = node
            while walk.parent is not None:
                g = walk.reward + 0.9 * g
                walk = walk.parent
            cands.append((-g, node.index))
        cands.sort()
        for k, (neg_g, idx) in enumerate(cands[:5]):
            assert scores[b, k] == pytest.approx(-neg_g, abs=1e-12)
            path = paths[b, k, : lengths[b, k]].tolist()
            assert path[0] == 0 and path[-1] == idx
            assert all(forest.parent[b, c] == p for p, c in zip(path, path[1:]))
        assert np.all(lengths[b, len(cands):] == 0)
    pairs, q = forest.sibling_pairs(margin=0.2, gamma=0.9)
    expected = set()
    for b, tree in enumerate(ref.trees):
        for node in tree.nodes:
            qs = {c.index: c.reward + 0.9 * c.value_sum / c.visits
                  for c in node.children if c.visits}
            expected |= {(b, node.index, a, r) for a in qs for r in qs if qs[a] - qs[r] >= 0.2}
    assert set(map(tuple, pairs.tolist())) == expected and len(pairs) == len(expected)
    assert np.all(q[:, 0] - q[:, 1] >= 0.2)


def test_reroot_keeps_the_subtree_and_search_goes_on():
    params = MCTSParams(leaves_per_tree=2)
    forest, _ = run_both(seed=5, n_trees=3, params=params, rounds=20, max_children=3)
    before = {f: getattr(forest, f).copy()
              for f in ("visits", "value_sum", "payload", "prior", "terminal")}
    old_parent = forest.parent.copy()
    old_n = forest.n_nodes.copy()
    child, _, _, _, best = forest.root_stats()
    new_root = np.array([child[0, best[0]], 0, child[2, best[2]]])
    remap = forest.reroot(new_root)
    assert forest.check_invariants() == []
    assert forest.n_nodes[1] == old_n[1]
    for b in (0, 2):
        kept = np.nonzero(remap[b] >= 0)[0]
        assert remap[b, new_root[b]] == 0 and forest.parent[b, 0] == -1
        assert forest.depth[b, 0] == 0 and forest.reward[b, 0] == 0.0
        assert len(kept) == forest.n_nodes[b]
        for f, arr in before.items():
            np.testing.assert_array_equal(getattr(forest, f)[b, remap[b, kept]], arr[b, kept])
        # the old parent links map onto the new ones
        for old in kept:
            if old != new_root[b]:
                assert forest.parent[b, remap[b, old]] == remap[b, old_parent[b, old]]
    evaluator = RandomEvaluator(99).for_forest(forest)
    for _ in range(5):
        lt, ln, _ = forest.select(params)
        e = evaluator(lt, ln)
        forest.expand_and_backup(lt, ln, e.offsets, e.prior, e.reward, e.score, e.terminal,
                                 e.payload)
        assert forest.check_invariants() == []


def test_params_reject_bad_values():
    with pytest.raises(ValueError, match="rule"):
        MCTSParams(rule="ucb2")
    with pytest.raises(ValueError, match="first_play"):
        MCTSParams(first_play=2.0)
    with pytest.raises(ValueError, match="leaves_per_tree"):
        MCTSParams(leaves_per_tree=0)


def test_kernels_take_no_default_arguments():
    """Callers pass every argument: an omitted array argument (a numpy default) sends each
    call through numba's slow dispatch path (about 85 us for ``select`` on empty work)."""
    for name, obj in vars(kernels).items():
        fn = getattr(obj, "py_func", obj)
        if not inspect.isfunction(fn) or fn.__module__ != kernels.__name__:
            continue
        defaults = [p.name for p in inspect.signature(fn).parameters.values()
                    if p.default is not inspect.Parameter.empty]
        assert defaults == [], f"kernels.{name} has default arguments {defaults}"

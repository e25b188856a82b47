"""Kernel benchmark: our numba forest vs the plain-Python reference vs DeepMind's mctx.

All engines search B trees with 8 children per expansion and 256 simulations per tree, fed by
one cheap synthetic evaluator that gives the same priors and values for the same action path:

- a node is identified by a 32-bit path hash (``lowbias32``, computed identically in numba
  int64-with-mask arithmetic, plain Python and JAX uint32), the root of tree b by
  ``hash32(b + 1)`` and the child reached by action a by ``hash32(parent * 9 + a + 1)``;
- the children's prior logits are ``2 * hash32(child ^ SALT_PRIOR) / 2**32`` (softmax over
  the 8 children), a node's value ``2 * hash32(node ^ SALT_VALUE) / 2**32 - 1``; reward 0,
  no terminals, gamma 1.

Engines:

- ours (the headline): the loop an LLM search runs, in Python, one round at a time, through
  the path the search uses: ``Forest.select`` -> the evaluator (one numba function reading
  leaf payloads) -> ``Forest.expand_and_backup``, three jitted calls per round, capacity
  pre-sized so nothing grows in the timed loop. Selection gets the widening arguments the
  step search passes (``widen_c = 1``, ``widen_alpha = 0.5``, the forest's ``child_cap``
  field), with ``max_children = 8`` = the children of every expansion, so no node is ever
  due another child and the search stays the one the reference and mctx run (the widening
  test is still paid at every step of every descent). ``k`` = leaves per tree per round:
  k = 1 (256 rounds) and k = 8 (32 rounds, collided descents do not count as simulations);
  also the same loop calling the kernels directly (every argument explicit), to show the
  ``Forest`` wrapper overhead;
- the plain-Python object-tree reference (``treesearch.engine.reference``), same maths;
- mctx ``muzero_policy`` under ``jax.jit`` on CPU, the evaluator jitted into the search
  (optional: the ``bench`` extra; null when jax or mctx is missing).

The comparable unit is one 8-child evaluation per simulation: ours gets the children's values
when a leaf is expanded, mctx evaluates a node's value when it is first visited.

Timing: every throughput is the best (minimum wall time) of a few repetitions, each on a fresh
forest, in one process, so ratios compare numbers measured in the same run. The 512-leaf round
is the median over many repetitions, each on a fresh copy of a forest grown by 16 rounds.

Usage: ``PYTHONPATH=. python benchmarks/bench_kernels.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np
from numba import njit

from treesearch.engine import kernels
from treesearch.engine.forest import Forest, MCTSParams
from treesearch.engine.reference import ReferenceForest

WIDTH = 8  # children per expansion
MASK32 = 0xFFFFFFFF
SALT_PRIOR = 0x5BD1E995
SALT_VALUE = 0x27D4EB2F
INV_2_32 = 1.0 / 4294967296.0
# PUCT, c = 1.25, first play 0, gamma 1, and widening as the step search passes it (its
# SearchConfig defaults), capped at the WIDTH children every expansion gives, so widening
# never fires; leaves_per_tree set per call
SEARCH_PARAMS = MCTSParams(widen_c=1.0, widen_alpha=0.5, max_children=WIDTH)
EXTRA_FIELDS = ("child_cap",)  # the one extra field of a step-search forest select reads


# -- the synthetic evaluator, three times ---------------------------------------------------

@njit(cache=True, inline="always")
def _hash32_nb(x):
    """lowbias32 of an int64 in [0, 2**32); products wrap mod 2**64, low 32 bits are exact."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


@njit(cache=True)
def synthetic_eval_nb(ints, leaf_tree, leaf_node):
    """Children of the selected leaves, from the path hash in each leaf's payload.

    Args:
        ints: int64 [B, capacity, N_INT_FIELDS], the forest's integer block.
        leaf_tree, leaf_node: int64 [L], the leaves from ``kernels.select``.

    Returns:
        offsets int64 [L + 1], prior float64 [C], reward float64 [C], value float64 [C],
        terminal int64 [C], payload int64 [C] (the children's path hashes), C = 8 L.
    """
    n_leaves = leaf_tree.shape[0]
    n_child = n_leaves * WIDTH
    offsets = np.empty(n_leaves + 1, np.int64)
    prior = np.empty(n_child)
    reward = np.zeros(n_child)
    value = np.empty(n_child)
    terminal = np.zeros(n_child, np.int64)
    payload = np.empty(n_child, np.int64)
    logits = np.empty(WIDTH)
    offsets[0] = 0
    for i in range(n_leaves):
        h = ints[leaf_tree[i], leaf_node[i], kernels.PAYLOAD]
        start = i * WIDTH
        top = -np.inf
        for a in range(WIDTH):
            child = _hash32_nb((h * 9 + a + 1) & MASK32)
            payload[start + a] = child
            logits[a] = 2.0 * _hash32_nb(child ^ SALT_PRIOR) * INV_2_32
            value[start + a] = 2.0 * _hash32_nb(child ^ SALT_VALUE) * INV_2_32 - 1.0
            if logits[a] > top:
                top = logits[a]
        total = 0.0
        for a in range(WIDTH):
            logits[a] = np.exp(logits[a] - top)
            total += logits[a]
        for a in range(WIDTH):
            prior[start + a] = logits[a] / total
        offsets[i + 1] = start + WIDTH
    return offsets, prior, reward, value, terminal, payload


def hash32_py(x: int) -> int:
    """lowbias32 in plain Python (x in [0, 2**32))."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


def root_hashes(n_trees: int) -> np.ndarray:
    """Path hash of each root, int64 [B]."""
    return np.array([hash32_py(b + 1) for b in range(n_trees)], np.int64)


def node_value_py(h: int) -> float:
    return 2.0 * hash32_py(h ^ SALT_VALUE) * INV_2_32 - 1.0


def children_py(h: int) -> tuple[list[float], list[float], list[int]]:
    """(priors, values, child hashes) of the 8 children of the node with path hash h."""
    kids = [hash32_py((h * 9 + a + 1) & MASK32) for a in range(WIDTH)]
    logits = [2.0 * hash32_py(c ^ SALT_PRIOR) * INV_2_32 for c in kids]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = 0.0
    for e in exps:
        total += e
    return [e / total for e in exps], [node_value_py(c) for c in kids], kids


def synthetic_eval_py(ref: ReferenceForest, leaf_tree: list[int], leaf_node: list[int]):
    """The evaluator in plain Python for the reference engine: CSR lists, as above."""
    offsets, prior, value, payload = [0], [], [], []
    for b, n in zip(leaf_tree, leaf_node):
        p, v, kids = children_py(ref.trees[b].nodes[n].payload)
        prior += p
        value += v
        payload += kids
        offsets.append(len(prior))
    zeros = [0] * len(prior)
    return offsets, prior, [0.0] * len(prior), value, zeros, payload


def root_values(hashes: np.ndarray) -> np.ndarray:
    """Critic value of each root, float64 [B] (the same formula as any node's value)."""
    return np.array([node_value_py(int(h)) for h in hashes])


def make_jax_fns():
    """(root_fn, recurrent_fn, hash32) for mctx in JAX uint32 arithmetic (wraps mod 2**32)."""
    import jax.numpy as jnp
    import mctx

    u32 = jnp.uint32

    def hash32(x):
        x = x ^ (x >> u32(16))
        x = x * u32(0x7FEB352D)
        x = x ^ (x >> u32(15))
        x = x * u32(0x846CA68B)
        return x ^ (x >> u32(16))

    def unit(x):  # uint32 -> [0, 1) float32
        return x.astype(jnp.float32) * jnp.float32(INV_2_32)

    def node_value(h):
        return 2.0 * unit(hash32(h ^ u32(SALT_VALUE))) - 1.0

    def child_logits(h):  # h uint32 [B] -> logits float32 [B, 8] of h's children
        actions = jnp.arange(WIDTH, dtype=jnp.uint32)
        kids = hash32(h[:, None] * u32(9) + actions[None, :] + u32(1))
        return 2.0 * unit(hash32(kids ^ u32(SALT_PRIOR)))

    def root_fn(h):
        return mctx.RootFnOutput(prior_logits=child_logits(h), value=node_value(h), embedding=h)

    def recurrent_fn(params, rng, action, h):
        del params, rng
        child = hash32(h * u32(9) + action.astype(jnp.uint32) + u32(1))
        out = mctx.RecurrentFnOutput(reward=jnp.zeros(h.shape, jnp.float32),
                                     discount=jnp.ones(h.shape, jnp.float32),
                                     prior_logits=child_logits(child), value=node_value(child))
        return out, child

    return root_fn, recurrent_fn, hash32


# -- our engine ---------------------------------------------------------------------------

def search_params(k: int) -> MCTSParams:
    """The step search's selection arguments with ``k`` leaves per tree per round."""
    return dataclasses.replace(SEARCH_PARAMS, leaves_per_tree=k)


def new_forest(n_trees: int, sims_per_tree: int) -> Forest:
    """A forest sized for the whole search (no growth while timed), roots carry their hash,
    with the ``child_cap`` field a step-search forest has (all 0: no node capped)."""
    hashes = root_hashes(n_trees)
    return Forest(n_trees, capacity=sims_per_tree * WIDTH + 1, growable=False,
                  root_scores=root_values(hashes), root_payloads=hashes,
                  extra_fields=EXTRA_FIELDS)


def run_forest(forest: Forest, rounds: int, k: int) -> tuple[int, int]:
    """The search loop the step search runs: ``Forest.select`` (widening arguments and
    ``child_cap`` passed) -> evaluator -> ``Forest.expand_and_backup``; 3 jitted calls a
    round. Returns (simulations = leaves expanded, collisions)."""
    params = search_params(k)
    sims = 0
    hits = []
    for _ in range(rounds):
        lt, ln, col = forest.select(params)
        off, pr, rw, va, te, pl = synthetic_eval_nb(forest.ints, lt, ln)
        forest.expand_and_backup(lt, ln, off, pr, rw, va, te, pl, params.gamma)
        sims += lt.shape[0]
        hits.append(col)
    return sims, int(np.sum(hits))


def run_kernels(forest: Forest, rounds: int, k: int) -> tuple[int, int]:
    """The same loop calling the kernels directly, every argument explicit (no wrappers)."""
    ints, floats, n_nodes, qbounds = forest.ints, forest.floats, forest.n_nodes, forest.qbounds
    p = search_params(k)
    cap = forest.extra("child_cap")
    sims = 0
    hits = []
    for _ in range(rounds):
        lt, ln, col = kernels.select(ints, floats, n_nodes, qbounds, k, p.rule_code,
                                     p.c_explore, p.first_play, p.first_play_code, p.gamma,
                                     p.widen_c, p.widen_alpha, p.max_children, cap)
        off, pr, rw, va, te, pl = synthetic_eval_nb(ints, lt, ln)
        status = kernels.expand_and_backup(ints, floats, n_nodes, qbounds, lt, ln, off, pr, rw,
                                           va, te, pl, p.gamma)
        if status[0] != kernels.OK:
            raise RuntimeError(f"expand_and_backup failed: status {status.tolist()}")
        sims += lt.shape[0]
        hits.append(col)
    return sims, int(np.sum(hits))


def run_reference(ref: ReferenceForest, rounds: int, k: int) -> tuple[int, int]:
    """The same loop on the plain-Python reference engine (it has no widening)."""
    params = MCTSParams(leaves_per_tree=k)
    sims = 0
    hits = 0
    for _ in range(rounds):
        lt, ln, col = ref.select(params)
        ref.expand_and_backup(lt, ln, *synthetic_eval_py(ref, lt, ln), params.gamma)
        sims += len(lt)
        hits += sum(col)
    return sims, hits


def new_reference(n_trees: int) -> ReferenceForest:
    hashes = root_hashes(n_trees)
    return ReferenceForest(n_trees, root_scores=root_values(hashes),
                           root_payloads=hashes.tolist())


# -- checks -------------------------------------------------------------------------------

def check_same_search(n_trees: int = 4, sims: int = 64) -> None:
    """Assert both our loops and the reference run the same search (k = 1 and k = 8).

    Every node's visit count must match exactly (node numbering is shared: creation order),
    value sums to float64 round-off.
    """
    for k in (1, 8):
        ref = new_reference(n_trees)
        run_reference(ref, sims // k, k)
        for runner in (run_forest, run_kernels):
            forest = new_forest(n_trees, sims)
            runner(forest, sims // k, k)
            _assert_same_trees(forest, ref, f"{runner.__name__}, k={k}")


def _assert_same_trees(forest: Forest, ref: ReferenceForest, what: str) -> None:
    for b, tree in enumerate(ref.trees):
        n = len(tree.nodes)
        assert forest.n_nodes[b] == n, (what, b, int(forest.n_nodes[b]), n)
        ref_visits = np.array([node.visits for node in tree.nodes])
        ref_sums = np.array([node.value_sum for node in tree.nodes])
        assert np.array_equal(forest.visits[b, :n], ref_visits), \
            f"{what} tree {b}: node visit counts differ"
        assert np.allclose(forest.value_sum[b, :n], ref_sums, rtol=1e-12, atol=1e-12), \
            f"{what} tree {b}: value sums differ"
        assert np.array_equal(forest.payload[b, :n], [node.payload for node in tree.nodes])


def check_evaluators_agree(jax_fns) -> None:
    """Assert the numba, Python (and JAX, if given) evaluators give the same numbers."""
    forest = new_forest(3, 1)
    lt = np.arange(3, dtype=np.int64)
    ln = np.zeros(3, np.int64)
    off, pr, _, va, _, pl = synthetic_eval_nb(forest.ints, lt, ln)
    for b, h in enumerate(root_hashes(3).tolist()):
        p, v, kids = children_py(h)
        sl = slice(off[b], off[b + 1])
        assert pl[sl].tolist() == kids and pr[sl].tolist() == p and va[sl].tolist() == v
    if jax_fns is None:
        return
    import jax
    import jax.numpy as jnp

    root_fn, recurrent_fn, _ = jax_fns
    h = jnp.asarray(root_hashes(3).astype(np.uint32))
    root = root_fn(h)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(root.prior_logits)),
                               pr.reshape(3, WIDTH), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(root.value), forest.score[:, 0], atol=1e-6)
    out, child = recurrent_fn(None, None, jnp.full(3, 5, jnp.int32), h)
    assert np.asarray(child).astype(np.int64).tolist() == pl.reshape(3, WIDTH)[:, 5].tolist()
    np.testing.assert_allclose(np.asarray(out.value), va.reshape(3, WIDTH)[:, 5], atol=1e-6)
    grand = synthetic_eval_nb(np.asarray(child).astype(np.int64).reshape(1, 3, 1)
                              .repeat(kernels.N_INT_FIELDS, 2), np.zeros(3, np.int64),
                              np.arange(3, dtype=np.int64))
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(out.prior_logits)),
                               grand[1].reshape(3, WIDTH), rtol=1e-5)


# -- timings ------------------------------------------------------------------------------

def best_of(repeats: int, setup, run) -> tuple[float, tuple, object]:
    """Minimum wall time of ``run(setup())`` over ``repeats`` runs.

    Returns (seconds, result of the last run, state of the last run).
    """
    best = math.inf
    result = state = None
    for _ in range(repeats):
        state = setup()
        t0 = time.perf_counter()
        result = run(state)
        best = min(best, time.perf_counter() - t0)
    return best, result, state


def depth_stats(depth: np.ndarray) -> dict:
    """Mean and max depth of the evaluated nodes (depth: int [n], root = 0)."""
    return {"mean_depth": float(depth.mean()), "max_depth": int(depth.max())}


def bench_ours(n_trees: int, sims: int, k: int, repeats: int, runner=run_forest) -> dict:
    runner(new_forest(n_trees, sims), 4, k)  # compile / load the cache
    seconds, (done, hits), forest = best_of(repeats, lambda: new_forest(n_trees, sims),
                                            lambda f: runner(f, sims // k, k))
    return {"trees": n_trees, "k": k, "sims": done, "collisions": hits, "seconds": seconds,
            "sims_per_s": done / seconds, **depth_stats(forest.depth[forest.visits > 0])}


def bench_reference(n_trees: int, sims: int, repeats: int) -> dict:
    seconds, (done, _), ref = best_of(repeats, lambda: new_reference(n_trees),
                                      lambda r: run_reference(r, sims, 1))
    depth = np.array([n.depth for t in ref.trees for n in t.nodes if n.visits > 0])
    return {"trees": n_trees, "k": 1, "sims": done, "collisions": 0, "seconds": seconds,
            "sims_per_s": done / seconds, **depth_stats(depth)}


def bench_mctx(jax_fns, n_trees: int, sims: int, repeats: int) -> dict:
    """muzero_policy, everything under one jax.jit; the first (compiling) call is not timed."""
    import jax
    import mctx

    root_fn, recurrent_fn, _ = jax_fns

    @jax.jit
    def search(rng, hashes):
        return mctx.muzero_policy(params=(), rng_key=rng, root=root_fn(hashes),
                                  recurrent_fn=recurrent_fn, num_simulations=sims,
                                  dirichlet_fraction=0.0)

    hashes = jax.numpy.asarray(root_hashes(n_trees).astype(np.uint32))
    rng = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    out = jax.block_until_ready(search(rng, hashes))
    compile_s = time.perf_counter() - t0
    visits = np.asarray(out.search_tree.node_visits[:, 0])
    assert np.all(visits == sims + 1), visits  # root: its own evaluation + one per simulation
    seconds, _, _ = best_of(repeats, lambda: None,
                            lambda _: jax.block_until_ready(search(rng, hashes)))
    parents = np.asarray(out.search_tree.parents)  # [B, sims + 1], parents before children
    depth = np.zeros(parents.shape, np.int64)
    rows = np.arange(n_trees)
    for i in range(1, parents.shape[1]):
        depth[:, i] = depth[rows, parents[:, i]] + 1
    return {"trees": n_trees, "k": 1, "sims": n_trees * sims, "collisions": 0,
            "seconds": seconds, "sims_per_s": n_trees * sims / seconds, **depth_stats(depth),
            "compile_s": compile_s, "jax": jax.__version__, "mctx": mctx.__version__,
            "device": str(jax.devices()[0])}


def bench_round(n_trees: int, k: int, warm_rounds: int, repeats: int) -> dict:
    """One round on the search path (``Forest.select`` + evaluator +
    ``Forest.expand_and_backup``, 3 jitted calls), k leaves per tree.

    The forest is grown by ``warm_rounds`` rounds first; each repetition copies it (not
    timed) and times one round. Returns the median and best milliseconds and the leaves.
    """
    base = new_forest(n_trees, (warm_rounds + 1) * k)
    run_forest(base, warm_rounds, k)
    params = search_params(k)
    times, leaves, hits = [], 0, 0
    for _ in range(repeats):
        forest = copy.deepcopy(base)
        t0 = time.perf_counter()
        lt, ln, col = forest.select(params)
        off, pr, rw, va, te, pl = synthetic_eval_nb(forest.ints, lt, ln)
        forest.expand_and_backup(lt, ln, off, pr, rw, va, te, pl, params.gamma)
        times.append(time.perf_counter() - t0)
        leaves, hits = lt.shape[0], int(col.sum())
    return {"median_ms": 1e3 * float(np.median(times)), "best_ms": 1e3 * min(times),
            "leaves": leaves, "collisions": hits, "warm_rounds": warm_rounds,
            "mean_depth_before": float(base.depth[:, : int(base.n_nodes.min())].mean())}


@njit(cache=True)
def _noop14(a, b, c, d, e, f, g, h, i, j, k, l, m, n):  # noqa: E741
    return 0


def bench_dispatch(n_trees: int, sims: int, repeats: int = 2000) -> dict:
    """Microseconds per call of each kernel on empty work (dispatch + allocation + checks),
    every argument passed as the search passes it."""
    forest = new_forest(n_trees, sims)
    run_forest(forest, 8, 1)
    ints, floats, n_nodes, qbounds = forest.ints, forest.floats, forest.n_nodes, forest.qbounds
    cap = forest.extra("child_cap")
    p = SEARCH_PARAMS
    e_i, e_f, off0 = np.empty(0, np.int64), np.empty(0), np.zeros(1, np.int64)
    calls = {
        "noop_14_args": lambda: _noop14(ints, floats, n_nodes, qbounds, e_i, e_i, off0, e_f,
                                        e_f, e_f, e_i, e_i, 1.0, cap),
        "select_k0": lambda: kernels.select(ints, floats, n_nodes, qbounds, 0, p.rule_code,
                                            p.c_explore, p.first_play, p.first_play_code,
                                            p.gamma, p.widen_c, p.widen_alpha, p.max_children,
                                            cap),
        "evaluator_0_leaves": lambda: synthetic_eval_nb(ints, e_i, e_i),
        "expand_and_backup_0_leaves": lambda: kernels.expand_and_backup(
            ints, floats, n_nodes, qbounds, e_i, e_i, off0, e_f, e_f, e_f, e_i, e_i, 1.0),
    }
    out = {}
    for name, call in calls.items():
        call()
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(repeats):
                call()
            best = min(best, (time.perf_counter() - t0) / repeats)
        out[name + "_us"] = 1e6 * best
    return out


# -- driver -------------------------------------------------------------------------------

def load_jax():
    """The JAX evaluator functions, or None when jax or mctx is not installed."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        import jax  # noqa: F401
        import mctx  # noqa: F401
    except ImportError as exc:
        print(f"mctx comparison skipped: {exc}", file=sys.stderr)
        return None
    return make_jax_fns()


def write_json_atomic(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bench_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


ROWS = (("ours: Forest methods (search path), k=1", "ours"),
        ("ours: Forest methods (search path), k=8", "ours_k8"),
        ("ours: kernel calls (no wrappers), k=1", "ours_kernels"),
        ("reference (plain Python), k=1", "reference"),
        ("mctx muzero_policy (jit, CPU)", "mctx"))


def print_table(runs: dict) -> None:
    """One row per engine; "ours x" = the headline's sims/s over the row's."""
    ours = runs["ours"]["sims_per_s"]
    print(f"{'engine':<41} {'trees':>5} {'k':>2} {'sims':>7} {'coll':>5} {'best s':>8} "
          f"{'sims/s':>11} {'ours x':>8} {'depth':>9}")
    for name, key in ROWS:
        r = runs[key]
        if r is None:
            print(f"{name:<41} {'(not installed)':>40}")
            continue
        print(f"{name:<41} {r['trees']:>5} {r['k']:>2} {r['sims']:>7} {r['collisions']:>5} "
              f"{r['seconds']:>8.4f} {r['sims_per_s']:>11,.0f} {ours / r['sims_per_s']:>8.1f} "
              f"{r['mean_depth']:>5.2f}/{r['max_depth']:<3}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; under 60 s")
    parser.add_argument("--json", metavar="PATH", help="write the results here (atomically)")
    parser.add_argument("--no-mctx", action="store_true", help="skip the mctx comparison")
    return parser.parse_args(argv)


def run_all(jax_fns, n_trees: int, sims: int, quick: bool) -> dict:
    """Every measurement, in one process: the engines, one 512-leaf round, dispatch costs."""
    repeats = 3 if quick else 7
    return {
        "ours": bench_ours(n_trees, sims, 1, repeats),
        "ours_k8": bench_ours(n_trees, sims, 8, repeats),
        "ours_kernels": bench_ours(n_trees, sims, 1, repeats, runner=run_kernels),
        "reference": bench_reference(n_trees, sims, 1 if quick else 3),
        "mctx": bench_mctx(jax_fns, n_trees, sims, repeats) if jax_fns is not None else None,
        "round": bench_round(n_trees, 8, 16, 200 if quick else 1000),
        "dispatch": bench_dispatch(n_trees, sims),
    }


def summarise(runs: dict, n_trees: int, sims: int, quick: bool) -> dict:
    """The JSON result: headline figures, ratios, targets, every run's details."""
    rate = runs["ours"]["sims_per_s"]
    mc = runs["mctx"]
    vs_ref = rate / runs["reference"]["sims_per_s"]
    vs_mctx = rate / mc["sims_per_s"] if mc else None
    return {
        "numba_sims_per_s": rate,
        "reference_sims_per_s": runs["reference"]["sims_per_s"],
        "mctx_sims_per_s": mc["sims_per_s"] if mc else None,
        "round_512_leaves_ms": runs["round"]["median_ms"],
        "numba_k8_sims_per_s": runs["ours_k8"]["sims_per_s"],
        "numba_kernel_calls_sims_per_s": runs["ours_kernels"]["sims_per_s"],
        "ratio_vs_reference": vs_ref,
        "ratio_vs_mctx": vs_mctx,
        "targets_met": {"vs_reference_50x": vs_ref >= 50,
                        "vs_mctx_30x": None if vs_mctx is None else vs_mctx >= 30,
                        "round_512_le_1ms": runs["round"]["median_ms"] <= 1.0},
        "details": {"ours_k1": runs["ours"], "ours_k8": runs["ours_k8"],
                    "ours_kernel_calls": runs["ours_kernels"], "reference": runs["reference"],
                    "mctx": mc, "round": runs["round"], "dispatch": runs["dispatch"]},
        "method": ("headline (numba_sims_per_s, round): the search path, Forest.select with "
                   "the step search's widening arguments and child_cap field, then "
                   "Forest.expand_and_backup; throughputs: best (min wall time) of repeats "
                   "on fresh forests, Python's garbage collector on; round: median over "
                   "repetitions on fresh copies of a forest grown 16 rounds; depth: mean/max "
                   "depth of evaluated nodes"),
        "config": {"trees": n_trees, "children": WIDTH, "sims_per_tree": sims,
                   "widen_c": SEARCH_PARAMS.widen_c, "widen_alpha": SEARCH_PARAMS.widen_alpha,
                   "max_children": SEARCH_PARAMS.max_children, "quick": quick,
                   "repeats": 3 if quick else 7, "python": platform.python_version(),
                   "cpu_count": os.cpu_count()},
    }


def report(runs: dict, result: dict) -> None:
    n_trees = result["config"]["trees"]
    rnd = runs["round"]
    print_table(runs)
    print(f"one round, B={n_trees} k=8 after 16 rounds (Forest methods): median "
          f"{rnd['median_ms']:.3f} ms, best {rnd['best_ms']:.3f} ms, {rnd['leaves']} leaves "
          f"({rnd['collisions']} collided)")
    print("per-call overhead on empty work (us): "
          + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in runs["dispatch"].items()))
    headline = {k: result[k] for k in ("numba_sims_per_s", "reference_sims_per_s",
                                       "mctx_sims_per_s", "round_512_leaves_ms")}
    print(json.dumps(headline, indent=2))
    vs_mctx = result["ratio_vs_mctx"]
    print(f"ours / reference = {result['ratio_vs_reference']:.1f}x (target 50x), ours / mctx = "
          + (f"{vs_mctx:.1f}x" if vs_mctx else "n/a") + " (target 30x); "
          f"total {result['wall_s']:.1f} s")


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    n_trees, sims = 64, 256
    jax_fns = None if args.no_mctx else load_jax()
    check_evaluators_agree(jax_fns)
    check_same_search()
    runs = run_all(jax_fns, n_trees, sims, args.quick)
    result = summarise(runs, n_trees, sims, args.quick)
    result["wall_s"] = time.perf_counter() - t_start
    report(runs, result)
    if args.json:
        write_json_atomic(args.json, result)
    return result


if __name__ == "__main__":
    main()

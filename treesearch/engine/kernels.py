"""Numba kernels over array-based forests: select, expand, backup, statistics, paths.

Every kernel works on many trees at once. The forest is passed as four packed blocks
(few arguments keep numba's per-call dispatch cheap; the glue between calls is where
time goes in a Python-driven search loop). Fields are last, so one node's fields share a
cache line or two: expansion writes and backup's walk up the parents touch few lines.

- ``ints``   int64   [B, capacity, N_INT_FIELDS]: the integer node fields, indexed by
  ``PARENT``, ``FIRST_CHILD``, ... below;
- ``floats`` float64 [B, capacity, N_FLOAT_FIELDS]: ``PRIOR``, ``VALUE_SUM``, ``REWARD``,
  ``SCORE``;
- ``n_nodes`` int64 [B]: nodes in use per tree (bump allocator; node 0 is the root);
- ``qbounds`` float64 [2, B]: per-tree min and max of the Q values seen in backups, used to
  min-max normalise Q during selection (``+inf, -inf`` while empty).

Semantics (the spec shared with ``treesearch/engine/reference.py``):

- Q(s, a) of a visited child c is ``reward[c] + gamma * value_sum[c] / visits[c]``; its
  normalised value is ``(Q - qmin) * scale`` clipped to [0, 1], with
  ``scale = 1 / (qmax - qmin)`` fixed per tree for the round, or 0.5 while the tree has
  seen fewer than two distinct Q values (or a range too narrow to invert). An unvisited
  child gets the first-play value: the constant ``first_play`` (already in normalised
  units) in mode 0, or its own estimate ``reward[c] + gamma * score[c]`` normalised
  the same way in mode 1.
- Virtual loss: a child with ``vloss`` pending selections counts them as extra visits of
  normalised value 0: ``Qn_eff = Qn * visits / (visits + vloss)``, ``N(s,a) = visits + vloss``.
  The parent's count is ``N(s) = visits[s] + vloss[s]``, read before this descent adds to it.
- PUCT: ``Qn_eff + (c * sqrt(N(s))) * prior / (1 + N(s,a))``.
  UCT: ``Qn_eff + c * sqrt(log(max(N(s), 1)) / N(s,a))``, +inf when ``N(s,a) == 0``.
  Ties go to the lowest child index.
- A descent stops at a node without children or at a terminal node. Every node on the path,
  leaf included, gets ``vloss += 1``. A leaf whose vloss was already positive was reached
  earlier in the same round: a collision, counted and not returned again.
- Backup of leaf L: ``m = vloss[L]`` (its selections this round); ``G = score[L]``; for each
  node n from L up to the root: ``visits += 1``, ``value_sum += G``, ``vloss -= m``, the
  tree's Q bounds take ``Q(n)`` (non-root nodes), then ``G = reward[n] + gamma * G``.
- Expansion input is CSR over the selected leaves: ``offsets`` int64 [L + 1], children
  fields flat [C]. A leaf given zero children that is not terminal is a dead end and becomes
  terminal. Validation runs before any write: on error the forest is unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# integer node fields, ints[tree, node, FIELD]
PARENT = 0
FIRST_CHILD = 1
N_CHILDREN = 2
VISITS = 3
VLOSS = 4
TERMINAL = 5
DEPTH = 6
PAYLOAD = 7
N_INT_FIELDS = 8

# float node fields, floats[tree, node, FIELD]
PRIOR = 0
VALUE_SUM = 1
REWARD = 2
SCORE = 3
N_FLOAT_FIELDS = 4

RULE_PUCT = 0
RULE_UCT = 1
FIRST_PLAY_CONSTANT = 0
FIRST_PLAY_CRITIC = 1

# status codes returned by expand (status[0]); status[1:4] locate the problem
OK = 0
ERR_CAPACITY = 1  # status[1] = tree, status[2] = capacity it needs
ERR_NOT_FINITE = 2  # status[1] = tree, status[2] = parent leaf, status[3] = child slot
ERR_BAD_PRIOR = 3  # negative prior; same location fields
ERR_EXPANDED = 4  # leaf already has children; status[1] = tree, status[2] = node
ERR_TERMINAL = 5  # children given to a terminal leaf
ERR_BAD_LEAF = 6  # tree or node index out of range
ERR_DUPLICATE = 7  # the same leaf given children twice in one call
ERR_BAD_OFFSETS = 8  # offsets not non-decreasing or not matching the children arrays


@njit(cache=True, inline="always")
def _normalise(q, lo, scale):
    if scale > 0.0:
        x = (q - lo) * scale
        if x < 0.0:
            return 0.0
        if x > 1.0:
            return 1.0
        return x
    return 0.5


@njit(cache=True)
def _inverse_range(lo, hi):
    """1 / (hi - lo) for min-max normalisation; 0.0 (meaning "no range yet") when the range
    is empty or so narrow that its inverse is not finite."""
    if hi > lo:
        scale = 1.0 / (hi - lo)
        if np.isfinite(scale):
            return scale
    return 0.0


@njit(cache=True, inline="always")
def _best_child(ints, floats, b, s, lo, scale, rule, c_explore, first_play, first_play_mode, gamma):
    """Index of the child of node s (tree b) with the highest selection score."""
    first = ints[b, s, FIRST_CHILD]
    n = ints[b, s, N_CHILDREN]
    n_parent = ints[b, s, VISITS] + ints[b, s, VLOSS]
    c_sqrt_parent = c_explore * np.sqrt(np.float64(n_parent))
    log_parent = np.log(np.float64(max(n_parent, 1))) if rule == RULE_UCT else 0.0
    best = first
    best_score = -np.inf
    for c in range(first, first + n):
        visits = ints[b, c, VISITS]
        n_eff = visits + ints[b, c, VLOSS]
        if visits > 0:
            q = floats[b, c, REWARD] + gamma * floats[b, c, VALUE_SUM] / visits
            qn = _normalise(q, lo, scale)
        elif first_play_mode == FIRST_PLAY_CRITIC:
            qn = _normalise(floats[b, c, REWARD] + gamma * floats[b, c, SCORE], lo, scale)
        else:
            qn = first_play
        if n_eff > visits:
            qn = qn * visits / n_eff
        if rule == RULE_PUCT:
            score = qn + c_sqrt_parent * floats[b, c, PRIOR] / (1.0 + n_eff)
        elif n_eff == 0:
            score = np.inf
        else:
            score = qn + c_explore * np.sqrt(log_parent / n_eff)
        if score > best_score:
            best_score = score
            best = c
    return best


@njit(cache=True, inline="always")
def _may_widen(ints, b, s, widen_c, widen_alpha, max_children, child_cap):
    """Whether node s (expanded, not terminal) may take another child now."""
    n = ints[b, s, VISITS] + ints[b, s, VLOSS]
    allowed = max(1, int(np.floor(widen_c * np.float64(n) ** widen_alpha)))
    cap = max_children
    if child_cap.shape[0] > 0 and child_cap[b, s] > 0.0:
        cap = int(child_cap[b, s])
    if cap < allowed:
        allowed = cap
    return ints[b, s, N_CHILDREN] < allowed


@njit(cache=True)
def select(ints, floats, n_nodes, qbounds, leaves_per_tree, rule, c_explore, first_play,
           first_play_mode, gamma, widen_c, widen_alpha, max_children, child_cap):
    """Select up to ``leaves_per_tree`` leaves in every tree, with virtual loss.

    Progressive widening (off while ``widen_c <= 0``): a descent also stops at a
    non-terminal node s that may take another child, i.e. whose children number fewer than
    ``min(max(1, floor(widen_c * N(s) ** widen_alpha)), cap(s))`` with N(s) = visits +
    vloss and cap(s) = ``child_cap[b, s]`` where that is > 0, else ``max_children``. Such a
    node is returned like a leaf; the caller gives it new children (``widen``).
    child_cap: float64 [B, capacity], or float64 [0, 0] when the forest has no caps.

    Every argument is required: no defaults, so numba's dispatcher never has to type an
    omitted argument (an array default cost about 85 us per call, more than the work).

    Returns:
        leaf_tree: int64 [L], tree of each selected leaf, L <= B * leaves_per_tree,
            grouped by tree.
        leaf_node: int64 [L], node index of each selected leaf.
        collisions: int64 [B], descents per tree that reached an already selected leaf.
    """
    n_trees = n_nodes.shape[0]
    leaf_tree = np.empty(n_trees * leaves_per_tree, np.int64)
    leaf_node = np.empty(n_trees * leaves_per_tree, np.int64)
    collisions = np.zeros(n_trees, np.int64)
    n_leaves = 0
    for b in range(n_trees):
        lo = qbounds[0, b]
        scale = _inverse_range(lo, qbounds[1, b])
        for _ in range(leaves_per_tree):
            node = 0
            while ints[b, node, N_CHILDREN] > 0 and ints[b, node, TERMINAL] == 0:
                if widen_c > 0.0 and _may_widen(ints, b, node, widen_c, widen_alpha,
                                                max_children, child_cap):
                    break
                child = _best_child(ints, floats, b, node, lo, scale, rule, c_explore,
                                    first_play, first_play_mode, gamma)
                ints[b, node, VLOSS] += 1
                node = child
            ints[b, node, VLOSS] += 1
            if ints[b, node, VLOSS] > 1:
                collisions[b] += 1
            else:
                leaf_tree[n_leaves] = b
                leaf_node[n_leaves] = node
                n_leaves += 1
    return leaf_tree[:n_leaves], leaf_node[:n_leaves], collisions


@njit(cache=True)
def _validate_expand(ints, n_nodes, leaf_tree, leaf_node, offsets, prior, reward, score, status):
    """Check an expansion without changing the forest; fills status, returns True if valid."""
    n_trees = n_nodes.shape[0]
    capacity = ints.shape[1]
    n_leaves = leaf_tree.shape[0]
    if offsets.shape[0] != n_leaves + 1 or offsets[0] != 0 or offsets[n_leaves] != prior.shape[0]:
        status[0] = ERR_BAD_OFFSETS
        return False
    need = np.zeros(n_trees, np.int64)
    for i in range(n_leaves):
        b = leaf_tree[i]
        node = leaf_node[i]
        count = offsets[i + 1] - offsets[i]
        if count < 0:
            status[0] = ERR_BAD_OFFSETS
            status[3] = i
            return False
        if b < 0 or b >= n_trees or node < 0 or node >= n_nodes[b]:
            status[0] = ERR_BAD_LEAF
            status[1] = b
            status[2] = node
            return False
        if count == 0:
            continue
        if ints[b, node, TERMINAL] != 0:
            status[0] = ERR_TERMINAL
            status[1] = b
            status[2] = node
            return False
        if ints[b, node, N_CHILDREN] != 0:
            status[0] = ERR_EXPANDED
            status[1] = b
            status[2] = node
            return False
        for j in range(offsets[i], offsets[i + 1]):
            if not (np.isfinite(prior[j]) and np.isfinite(reward[j]) and np.isfinite(score[j])):
                status[0] = ERR_NOT_FINITE
                status[1] = b
                status[2] = node
                status[3] = j - offsets[i]
                return False
            if prior[j] < 0.0:
                status[0] = ERR_BAD_PRIOR
                status[1] = b
                status[2] = node
                status[3] = j - offsets[i]
                return False
        need[b] += count
    for b in range(n_trees):
        if n_nodes[b] + need[b] > capacity:
            status[0] = ERR_CAPACITY
            status[1] = b
            status[2] = n_nodes[b] + need[b]
            return False
    # A leaf listed twice with children: mark each with -1 children, then undo the marks.
    duplicate = -1
    marked = 0
    for i in range(n_leaves):
        if offsets[i + 1] == offsets[i]:
            continue
        b = leaf_tree[i]
        node = leaf_node[i]
        if ints[b, node, N_CHILDREN] == -1:
            duplicate = i
            break
        ints[b, node, N_CHILDREN] = -1
        marked = i + 1
    for i in range(marked):
        if offsets[i + 1] != offsets[i]:
            ints[leaf_tree[i], leaf_node[i], N_CHILDREN] = 0
    if duplicate >= 0:
        status[0] = ERR_DUPLICATE
        status[1] = leaf_tree[duplicate]
        status[2] = leaf_node[duplicate]
        return False
    return True


@njit(cache=True)
def expand(ints, floats, n_nodes, leaf_tree, leaf_node, offsets, prior, reward, score,
           terminal, payload):
    """Attach children to the selected leaves (CSR input), all trees at once.

    Args:
        leaf_tree, leaf_node: int64 [L], the leaves (as returned by ``select``).
        offsets: int64 [L + 1], children of leaf i are entries offsets[i]:offsets[i+1].
        prior, reward, score: float64 [C], per child: selection prior, edge reward into the
            child, and score: the evaluator's estimate of the node, in the units backup uses;
            backup starts from it at a leaf (for a terminal child: its outcome score).
        terminal: int64 [C], 1 where the child ends the episode.
        payload: int64 [C], caller's handle for the child's content (token-store span id).

    Returns:
        status: int64 [4], ``status[0] == OK`` on success, else an error code (module
        constants) with its location; on error the forest is unchanged.
    """
    status = np.zeros(4, np.int64)
    if not _validate_expand(ints, n_nodes, leaf_tree, leaf_node, offsets, prior, reward, score,
                            status):
        return status
    for i in range(leaf_tree.shape[0]):
        b = leaf_tree[i]
        node = leaf_node[i]
        start = offsets[i]
        count = offsets[i + 1] - start
        if count == 0:
            ints[b, node, TERMINAL] = 1  # dead end (or already terminal)
            continue
        first = n_nodes[b]
        ints[b, node, FIRST_CHILD] = first
        ints[b, node, N_CHILDREN] = count
        depth = ints[b, node, DEPTH] + 1
        for j in range(count):
            c = first + j
            src = start + j
            ints[b, c, PARENT] = node
            ints[b, c, FIRST_CHILD] = -1
            ints[b, c, N_CHILDREN] = 0
            ints[b, c, VISITS] = 0
            ints[b, c, VLOSS] = 0
            ints[b, c, TERMINAL] = 1 if terminal[src] != 0 else 0
            ints[b, c, DEPTH] = depth
            ints[b, c, PAYLOAD] = payload[src]
            floats[b, c, PRIOR] = prior[src]
            floats[b, c, VALUE_SUM] = 0.0
            floats[b, c, REWARD] = reward[src]
            floats[b, c, SCORE] = score[src]
        n_nodes[b] = first + count
    return status


@njit(cache=True)
def backup(ints, floats, qbounds, leaf_tree, leaf_node, gamma):
    """Back each leaf's score up to its root, removing the round's virtual loss.

    Args:
        leaf_tree, leaf_node: int64 [L], the leaves selected this round (each once).
        gamma: discount per step.
    """
    for i in range(leaf_tree.shape[0]):
        b = leaf_tree[i]
        node = leaf_node[i]
        pending = ints[b, node, VLOSS]
        g = floats[b, node, SCORE]
        while node >= 0:
            visits = ints[b, node, VISITS] + 1
            ints[b, node, VISITS] = visits
            floats[b, node, VALUE_SUM] += g
            ints[b, node, VLOSS] -= pending
            parent = ints[b, node, PARENT]
            reward = floats[b, node, REWARD]
            if parent >= 0:
                q = reward + gamma * floats[b, node, VALUE_SUM] / visits
                if q < qbounds[0, b]:
                    qbounds[0, b] = q
                if q > qbounds[1, b]:
                    qbounds[1, b] = q
            g = reward + gamma * g
            node = parent


@njit(cache=True)
def expand_and_backup(ints, floats, n_nodes, qbounds, leaf_tree, leaf_node, offsets, prior,
                      reward, score, terminal, payload, gamma):
    """``expand`` then, if it succeeded, ``backup`` of the same leaves: one call per round."""
    status = expand(ints, floats, n_nodes, leaf_tree, leaf_node, offsets, prior, reward, score,
                    terminal, payload)
    if status[0] == OK:
        backup(ints, floats, qbounds, leaf_tree, leaf_node, gamma)
    return status


@njit(cache=True)
def priors_from_logprobs(logprob, offsets, temperature):
    """Softmax of step log-probabilities within each CSR group, at a temperature.

    Args:
        logprob: float64 [C], summed log-probability of each proposed step.
        offsets: int64 [L + 1], group boundaries (children of one leaf).
        temperature: > 0; higher flattens the priors.

    Returns:
        float64 [C], priors summing to 1 within each non-empty group.
    """
    out = np.empty(logprob.shape[0], np.float64)
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        end = offsets[i + 1]
        if end == start:
            continue
        top = -np.inf
        for j in range(start, end):
            if logprob[j] / temperature > top:
                top = logprob[j] / temperature
        total = 0.0
        for j in range(start, end):
            out[j] = np.exp(logprob[j] / temperature - top)
            total += out[j]
        for j in range(start, end):
            out[j] /= total
    return out


@njit(cache=True)
def node_q(ints, floats, n_nodes, gamma):
    """Q of every node: ``reward + gamma * value_sum / visits``; NaN where unvisited.

    Returns float64 [B, capacity].
    """
    n_trees = ints.shape[0]
    capacity = ints.shape[1]
    q = np.full((n_trees, capacity), np.nan)
    for b in range(n_trees):
        for n in range(n_nodes[b]):
            v = ints[b, n, VISITS]
            if v > 0:
                q[b, n] = floats[b, n, REWARD] + gamma * floats[b, n, VALUE_SUM] / v
    return q


@njit(cache=True)
def root_stats(ints, floats, gamma, width):
    """Per tree, the root's children: node index, visits, Q and prior, padded to ``width``.

    Returns:
        child: int64 [B, width] (-1 padding), visits: int64 [B, width],
        q: float64 [B, width] (NaN for unvisited or padding), prior: float64 [B, width],
        best: int64 [B], slot of the most visited child (ties: lowest slot; -1 if none).
    """
    n_trees = ints.shape[0]
    child = np.full((n_trees, width), -1, np.int64)
    visits = np.zeros((n_trees, width), np.int64)
    q = np.full((n_trees, width), np.nan)
    prior = np.zeros((n_trees, width))
    best = np.full(n_trees, -1, np.int64)
    for b in range(n_trees):
        first = ints[b, 0, FIRST_CHILD]
        n = min(ints[b, 0, N_CHILDREN], width)
        most = -1
        for k in range(n):
            c = first + k
            v = ints[b, c, VISITS]
            child[b, k] = c
            visits[b, k] = v
            prior[b, k] = floats[b, c, PRIOR]
            if v > 0:
                q[b, k] = floats[b, c, REWARD] + gamma * floats[b, c, VALUE_SUM] / v
            if v > most:
                most = v
                best[b] = k
    return child, visits, q, prior, best


@njit(cache=True)
def ranked_paths(ints, floats, n_nodes, gamma, top_k, terminal_only, min_visits):
    """Best root-to-leaf paths of every tree, by discounted path return.

    A candidate is a node without children (terminal only, if asked) with at least
    ``min_visits`` visits. Its score is ``sum_i gamma^(i-1) r_i + gamma^d * value_sum/visits``
    over the d edges from the root. Ties go to the lower node index.

    Returns:
        paths: int64 [B, top_k, max_depth + 1], node indices root first, -1 padded.
        lengths: int64 [B, top_k], nodes on each path (0 where the tree has fewer paths).
        scores: float64 [B, top_k], NaN padded.
    """
    n_trees = ints.shape[0]
    max_depth = 0
    for b in range(n_trees):
        for n in range(n_nodes[b]):
            if ints[b, n, DEPTH] > max_depth:
                max_depth = ints[b, n, DEPTH]
    paths = np.full((n_trees, top_k, max_depth + 1), -1, np.int64)
    lengths = np.zeros((n_trees, top_k), np.int64)
    scores = np.full((n_trees, top_k), np.nan)
    for b in range(n_trees):
        count = n_nodes[b]
        cand = np.empty(count, np.int64)
        cand_score = np.empty(count)
        m = 0
        for n in range(count):
            v = ints[b, n, VISITS]
            if ints[b, n, N_CHILDREN] > 0 or v < min_visits or v == 0:
                continue
            if terminal_only and ints[b, n, TERMINAL] == 0:
                continue
            g = floats[b, n, VALUE_SUM] / v
            node = n
            while ints[b, node, PARENT] >= 0:
                g = floats[b, node, REWARD] + gamma * g
                node = ints[b, node, PARENT]
            cand[m] = n
            cand_score[m] = g
            m += 1
        order = np.argsort(-cand_score[:m], kind="mergesort")
        for k in range(min(top_k, m)):
            n = cand[order[k]]
            depth = ints[b, n, DEPTH]
            lengths[b, k] = depth + 1
            scores[b, k] = cand_score[order[k]]
            node = n
            for d in range(depth, -1, -1):
                paths[b, k, d] = node
                node = ints[b, node, PARENT]
    return paths, lengths, scores


@njit(cache=True)
def _sibling_pairs_pass(ints, floats, n_nodes, gamma, margin, min_visits, out_int, out_q, fill):
    count = 0
    for b in range(n_nodes.shape[0]):
        for s in range(n_nodes[b]):
            first = ints[b, s, FIRST_CHILD]
            n = ints[b, s, N_CHILDREN]
            for a in range(first, first + n):
                va = ints[b, a, VISITS]
                if va < min_visits or va == 0:
                    continue
                qa = floats[b, a, REWARD] + gamma * floats[b, a, VALUE_SUM] / va
                for r in range(first, first + n):
                    vr = ints[b, r, VISITS]
                    if r == a or vr < min_visits or vr == 0:
                        continue
                    qr = floats[b, r, REWARD] + gamma * floats[b, r, VALUE_SUM] / vr
                    if qa - qr >= margin:
                        if fill:
                            out_int[count, 0] = b
                            out_int[count, 1] = s
                            out_int[count, 2] = a
                            out_int[count, 3] = r
                            out_q[count, 0] = qa
                            out_q[count, 1] = qr
                        count += 1
    return count


@njit(cache=True)
def sibling_pairs(ints, floats, n_nodes, gamma, margin, min_visits):
    """Ordered pairs of visited siblings whose Q differ by at least ``margin`` (> 0).

    Returns:
        pairs: int64 [P, 4] rows of (tree, parent, chosen child, rejected child).
        q: float64 [P, 2] rows of (Q chosen, Q rejected).
    """
    dummy_int = np.empty((0, 4), np.int64)
    dummy_q = np.empty((0, 2))
    count = _sibling_pairs_pass(ints, floats, n_nodes, gamma, margin, min_visits, dummy_int,
                                dummy_q, False)
    pairs = np.empty((count, 4), np.int64)
    q = np.empty((count, 2))
    _sibling_pairs_pass(ints, floats, n_nodes, gamma, margin, min_visits, pairs, q, True)
    return pairs, q


@njit(cache=True)
def reroot(ints, floats, n_nodes, qbounds, new_root, gamma):
    """Keep only the subtree under ``new_root[b]`` in each tree, compacted from index 0.

    Used after a step is committed: the chosen child becomes the root and its statistics
    are reused. ``new_root[b] <= 0`` leaves tree b as it is. Children stay in contiguous
    blocks (breadth-first renumbering); depths are rebased; the new root's edge reward is
    zeroed; the tree's Q bounds are recomputed from the kept nodes.

    Returns:
        remap: int64 [B, capacity], new index of each old node (-1 if dropped); identity
        for trees left as they were.
    """
    n_trees = ints.shape[0]
    capacity = ints.shape[1]
    remap = np.full((n_trees, capacity), -1, np.int64)
    order = np.empty(capacity, np.int64)
    tmp_int = np.empty((ints.shape[2], capacity), np.int64)
    tmp_float = np.empty((floats.shape[2], capacity))
    for b in range(n_trees):
        r = new_root[b]
        if r <= 0:
            for n in range(n_nodes[b]):
                remap[b, n] = n
            continue
        # breadth-first: order[new] = old; children blocks get consecutive new indices
        order[0] = r
        remap[b, r] = 0
        size = 1
        head = 0
        while head < size:
            old = order[head]
            head += 1
            first = ints[b, old, FIRST_CHILD]
            for k in range(ints[b, old, N_CHILDREN]):
                order[size] = first + k
                remap[b, first + k] = size
                size += 1
        base_depth = ints[b, r, DEPTH]
        for new in range(size):
            old = order[new]
            for f in range(ints.shape[2]):
                tmp_int[f, new] = ints[b, old, f]
            for f in range(floats.shape[2]):
                tmp_float[f, new] = floats[b, old, f]
            parent = ints[b, old, PARENT]
            tmp_int[PARENT, new] = remap[b, parent] if new > 0 else -1
            if ints[b, old, N_CHILDREN] > 0:
                tmp_int[FIRST_CHILD, new] = remap[b, ints[b, old, FIRST_CHILD]]
            tmp_int[DEPTH, new] = ints[b, old, DEPTH] - base_depth
        tmp_float[REWARD, 0] = 0.0
        lo = np.inf
        hi = -np.inf
        for new in range(size):
            for f in range(ints.shape[2]):
                ints[b, new, f] = tmp_int[f, new]
            for f in range(floats.shape[2]):
                floats[b, new, f] = tmp_float[f, new]
            v = tmp_int[VISITS, new]
            if new > 0 and v > 0:
                q = tmp_float[REWARD, new] + gamma * tmp_float[VALUE_SUM, new] / v
                lo = min(lo, q)
                hi = max(hi, q)
        for n in range(size, n_nodes[b]):
            _clear_node(ints, floats, b, n)
        qbounds[0, b] = lo
        qbounds[1, b] = hi
        n_nodes[b] = size
    return remap


@njit(cache=True)
def _clear_node(ints, floats, b, n):
    for f in range(ints.shape[2]):
        ints[b, n, f] = 0
    ints[b, n, PARENT] = -1
    ints[b, n, FIRST_CHILD] = -1
    ints[b, n, PAYLOAD] = -1
    for f in range(floats.shape[2]):
        floats[b, n, f] = 0.0


@njit(cache=True)
def widen(ints, floats, extras, n_nodes, node_tree, node_node, offsets, prior, reward, score,
          terminal, payload):
    """Give already expanded nodes more children (progressive widening), all trees at once.

    A node's children must stay one contiguous block, so each widened node's block moves
    to the end of its tree: old children are copied there (every field, the extra fields
    too, and their own children are re-parented), the new children follow, and the old
    rows are detached (``PARENT = -1``, ``DEPTH = -1``, no visits: nothing reaches them).
    New children are unvisited; priors of the whole block are the caller's to renormalise.

    Args:
        extras: float64 [E, B, capacity], the forest's extra fields (E may be 0).
        node_tree, node_node: int64 [W], the nodes to widen (expanded, not terminal, each
            once); the caller validates them and the capacity (old + new children).
        offsets: int64 [W + 1], new children of node i are entries offsets[i]:offsets[i+1].
        prior, reward, score: float64 [C]; terminal, payload: int64 [C], as in ``expand``.
    """
    for i in range(node_tree.shape[0]):
        b = node_tree[i]
        node = node_node[i]
        old_first = ints[b, node, FIRST_CHILD]
        old_n = ints[b, node, N_CHILDREN]
        start = offsets[i]
        count = offsets[i + 1] - start
        if count == 0:
            continue
        first = n_nodes[b]
        for j in range(old_n):
            src = old_first + j
            dst = first + j
            for f in range(ints.shape[2]):
                ints[b, dst, f] = ints[b, src, f]
            for f in range(floats.shape[2]):
                floats[b, dst, f] = floats[b, src, f]
            for e in range(extras.shape[0]):
                extras[e, b, dst] = extras[e, b, src]
                extras[e, b, src] = 0.0
            g0 = ints[b, src, FIRST_CHILD]
            for g in range(g0, g0 + ints[b, src, N_CHILDREN]):
                ints[b, g, PARENT] = dst
            _clear_node(ints, floats, b, src)
            ints[b, src, DEPTH] = -1
        depth = ints[b, node, DEPTH] + 1
        for j in range(count):
            c = first + old_n + j
            s = start + j
            _clear_node(ints, floats, b, c)
            for e in range(extras.shape[0]):
                extras[e, b, c] = 0.0
            ints[b, c, PARENT] = node
            ints[b, c, TERMINAL] = 1 if terminal[s] != 0 else 0
            ints[b, c, DEPTH] = depth
            ints[b, c, PAYLOAD] = payload[s]
            floats[b, c, PRIOR] = prior[s]
            floats[b, c, REWARD] = reward[s]
            floats[b, c, SCORE] = score[s]
        ints[b, node, FIRST_CHILD] = first
        ints[b, node, N_CHILDREN] = old_n + count
        n_nodes[b] = first + old_n + count


@njit(cache=True)
def cancel_selection(ints, leaf_tree, leaf_node):
    """Withdraw selected leaves without evaluating them: remove the virtual loss their
    descents added on the way up (``vloss -= pending`` from leaf to root); no visits,
    no values. Used when a tree stops early and its leaves of the round are dropped.

    Args:
        leaf_tree, leaf_node: int64 [L], leaves returned by ``select`` this round.
    """
    for i in range(leaf_tree.shape[0]):
        b = leaf_tree[i]
        node = leaf_node[i]
        pending = ints[b, node, VLOSS]
        while node >= 0:
            ints[b, node, VLOSS] -= pending
            node = ints[b, node, PARENT]

"""Forest: B search trees stored as struct-of-arrays, and the token store for node payloads.

Node fields are views into two packed blocks (``ints`` int64 [B, capacity, 8] and
``floats`` float64 [B, capacity, 4], see ``treesearch.engine.kernels``), so the kernels take few
arguments while callers read ``forest.visits[b, n]`` and friends by name. Node 0 of every
tree is its root; children of a node sit in one contiguous, bump-allocated block.

Capacity grows by doubling between kernel calls (never inside one). Optional extra float
fields (for example per-critic reward contributions) ride along, grow with the forest and
are exported with the trees, but the kernels never read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from treesearch.engine import kernels

INT_FIELDS = ("parent", "first_child", "n_children", "visits", "vloss", "terminal", "depth",
              "payload")
FLOAT_FIELDS = ("prior", "value_sum", "reward", "score")


class CapacityError(RuntimeError):
    """A tree needs more nodes than the forest may hold."""


class ExpansionError(ValueError):
    """Expansion input rejected before anything was written."""


@dataclass(frozen=True)
class MCTSParams:
    """Selection and backup options, one group for all kernels.

    rule: "puct" or "uct".
    c_explore: exploration constant (c_puct or the UCT constant).
    first_play: normalised Q in [0, 1] of an unvisited child (mode "constant").
    first_play_mode: "constant", or "critic" to use the child's own r + gamma * V estimate.
    gamma: discount per step in backup and in Q.
    leaves_per_tree: leaves selected per tree per round (virtual loss spreads them).
    widen_c, widen_alpha, max_children: progressive widening (off while widen_c is 0): a
        descent stops at a node with fewer than min(max(1, floor(widen_c * N^widen_alpha)),
        cap) children, cap = the forest's ``child_cap`` field where set, else max_children.
    """

    rule: str = "puct"
    c_explore: float = 1.25
    first_play: float = 0.0
    first_play_mode: str = "constant"
    gamma: float = 1.0
    leaves_per_tree: int = 1
    widen_c: float = 0.0
    widen_alpha: float = 0.5
    max_children: int = 0

    def __post_init__(self):
        if self.rule not in ("puct", "uct"):
            raise ValueError(f"MCTSParams.rule must be 'puct' or 'uct', got {self.rule!r}")
        if self.first_play_mode not in ("constant", "critic"):
            raise ValueError("MCTSParams.first_play_mode must be 'constant' or 'critic', "
                             f"got {self.first_play_mode!r}")
        if not 0.0 <= self.first_play <= 1.0:
            raise ValueError(f"MCTSParams.first_play must lie in [0, 1], got {self.first_play}")
        if not np.isfinite(self.c_explore) or self.c_explore < 0:
            raise ValueError(f"MCTSParams.c_explore must be finite and >= 0, got {self.c_explore}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"MCTSParams.gamma must lie in [0, 1], got {self.gamma}")
        if self.leaves_per_tree < 1:
            raise ValueError(f"MCTSParams.leaves_per_tree must be >= 1, got {self.leaves_per_tree}")
        if not (np.isfinite(self.widen_c) and self.widen_c >= 0):
            raise ValueError(f"MCTSParams.widen_c must be finite and >= 0, got {self.widen_c}")
        if not 0.0 <= self.widen_alpha <= 1.0:
            raise ValueError(f"MCTSParams.widen_alpha must lie in [0, 1], got {self.widen_alpha}")
        if self.widen_c > 0 and self.max_children < 1:
            raise ValueError("MCTSParams.max_children must be >= 1 when widening (widen_c > 0)")

    @property
    def rule_code(self) -> int:
        return kernels.RULE_PUCT if self.rule == "puct" else kernels.RULE_UCT

    @property
    def first_play_code(self) -> int:
        return (kernels.FIRST_PLAY_CONSTANT if self.first_play_mode == "constant"
                else kernels.FIRST_PLAY_CRITIC)


class TokenStore:
    """Append-only store of token-id spans; a node's ``payload`` is a span id.

    Spans live in one growable int32 buffer with int64 offsets, so a million short steps
    cost two arrays, not a million Python lists.
    """

    def __init__(self, initial_tokens: int = 1024):
        self._buffer = np.empty(max(initial_tokens, 1), np.int32)
        self._offsets = [0]

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def add(self, tokens: Sequence[int]) -> int:
        """Store one span; returns its id."""
        return self.add_many([tokens])[0]

    def add_many(self, spans: Sequence[Sequence[int]]) -> list[int]:
        """Store several spans; returns their ids in order."""
        first_id = len(self)
        total = self._offsets[-1] + sum(len(s) for s in spans)
        if total > self._buffer.shape[0]:
            grown = np.empty(max(total, 2 * self._buffer.shape[0]), np.int32)
            grown[: self._offsets[-1]] = self._buffer[: self._offsets[-1]]
            self._buffer = grown
        for span in spans:
            start = self._offsets[-1]
            self._buffer[start: start + len(span)] = span
            self._offsets.append(start + len(span))
        return list(range(first_id, first_id + len(spans)))

    def get(self, span_id: int) -> np.ndarray:
        """The tokens of one span (int32 [length]); a copy, safe to keep."""
        if not 0 <= span_id < len(self):
            raise IndexError(f"token span {span_id} not in store of {len(self)} spans")
        return self._buffer[self._offsets[span_id]: self._offsets[span_id + 1]].copy()


class Forest:
    """B trees as struct-of-arrays [B, capacity], with the kernels as methods.

    Args:
        n_trees: B.
        capacity: initial nodes per tree (>= 1).
        growable: double capacity when an expansion needs more; if False, such an
            expansion raises ``CapacityError`` and writes nothing.
        root_scores: float [B], score of each root (default 0): the evaluator's estimate of
            the node, in the units backup uses.
        root_payloads: int [B], payload of each root (default -1).
        extra_fields: names of extra float64 [B, capacity] fields (default none).
    """

    def __init__(self, n_trees: int, capacity: int = 64, *, growable: bool = True,
                 root_scores=None, root_payloads=None, extra_fields: Sequence[str] = ()):
        if n_trees < 1:
            raise ValueError(f"Forest needs n_trees >= 1, got {n_trees}")
        if capacity < 1:
            raise ValueError(f"Forest needs capacity >= 1, got {capacity}")
        self.n_trees = int(n_trees)
        self.growable = growable
        self.tokens = TokenStore()
        self.extra_names = tuple(extra_fields)
        self.ints = _empty_ints(n_trees, capacity)
        self.floats = np.zeros((n_trees, capacity, kernels.N_FLOAT_FIELDS), np.float64)
        self.extras = np.zeros((len(self.extra_names), n_trees, capacity), np.float64)
        self.n_nodes = np.ones(n_trees, np.int64)
        self.qbounds = np.empty((2, n_trees), np.float64)
        self.qbounds[0] = np.inf
        self.qbounds[1] = -np.inf
        self.collisions = np.zeros(n_trees, np.int64)  # total over all rounds
        if root_scores is not None:
            scores = np.asarray(root_scores, np.float64)
            if scores.shape != (n_trees,) or not np.all(np.isfinite(scores)):
                raise ValueError(f"root_scores must be {n_trees} finite floats, got {scores!r}")
            self.score[:, 0] = scores
        if root_payloads is not None:
            self.payload[:, 0] = np.asarray(root_payloads, np.int64)

    # -- named views -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.ints.shape[1]

    parent = property(lambda self: self.ints[:, :, kernels.PARENT])
    first_child = property(lambda self: self.ints[:, :, kernels.FIRST_CHILD])
    n_children = property(lambda self: self.ints[:, :, kernels.N_CHILDREN])
    visits = property(lambda self: self.ints[:, :, kernels.VISITS])
    vloss = property(lambda self: self.ints[:, :, kernels.VLOSS])
    terminal = property(lambda self: self.ints[:, :, kernels.TERMINAL])
    depth = property(lambda self: self.ints[:, :, kernels.DEPTH])
    payload = property(lambda self: self.ints[:, :, kernels.PAYLOAD])
    prior = property(lambda self: self.floats[:, :, kernels.PRIOR])
    value_sum = property(lambda self: self.floats[:, :, kernels.VALUE_SUM])
    reward = property(lambda self: self.floats[:, :, kernels.REWARD])
    score = property(lambda self: self.floats[:, :, kernels.SCORE])

    def extra(self, name: str) -> np.ndarray:
        """View of an extra float field, [B, capacity]."""
        try:
            return self.extras[self.extra_names.index(name)]
        except ValueError:
            raise KeyError(f"no extra field {name!r}; this forest has {self.extra_names}") from None

    def children(self, tree: int, node: int) -> np.ndarray:
        """Node indices of a node's children (int64 [n_children])."""
        first = self.first_child[tree, node]
        return np.arange(first, first + self.n_children[tree, node])

    def q(self, gamma: float = 1.0) -> np.ndarray:
        """Q of every node, float64 [B, capacity], NaN where unvisited or unused."""
        return kernels.node_q(self.ints, self.floats, self.n_nodes, gamma)

    # -- growth ----------------------------------------------------------------------
    def grow(self, capacity: int) -> None:
        """Enlarge every tree to ``capacity`` nodes (no-op if already that large)."""
        old = self.capacity
        if capacity <= old:
            return
        ints = _empty_ints(self.n_trees, capacity)
        ints[:, :old] = self.ints
        floats = np.zeros((self.n_trees, capacity, kernels.N_FLOAT_FIELDS), np.float64)
        floats[:, :old] = self.floats
        extras = np.zeros((len(self.extra_names), self.n_trees, capacity), np.float64)
        extras[:, :, :old] = self.extras
        self.ints, self.floats, self.extras = ints, floats, extras

    # -- the search round --------------------------------------------------------------
    def select(self, params: MCTSParams):
        """Select up to ``params.leaves_per_tree`` leaves per tree (see ``kernels.select``);
        with widening on, a returned node may be an expanded one that is due another child.
        Every kernel argument is passed explicitly (the kernel has no defaults).

        Returns (leaf_tree int64 [L], leaf_node int64 [L], collisions int64 [B]).
        """
        cap = self.extra("child_cap") if "child_cap" in self.extra_names else _NO_CAP
        leaf_tree, leaf_node, collisions = kernels.select(
            self.ints, self.floats, self.n_nodes, self.qbounds, params.leaves_per_tree,
            params.rule_code, params.c_explore, params.first_play, params.first_play_code,
            params.gamma, params.widen_c, params.widen_alpha, params.max_children, cap)
        self.collisions += collisions
        return leaf_tree, leaf_node, collisions

    def expand(self, leaf_tree, leaf_node, offsets, prior, reward, score, terminal, payload):
        """Attach CSR children to leaves (see ``kernels.expand``); raises on bad input."""
        args = self._expansion_args(leaf_tree, leaf_node, offsets, prior, reward, score,
                                    terminal, payload)
        while True:
            status = kernels.expand(self.ints, self.floats, self.n_nodes, *args)
            if not self._retry_after(status, args):
                return

    def backup(self, leaf_tree, leaf_node, gamma: float = 1.0) -> None:
        """Back up the leaves' scores and clear their virtual loss (see ``kernels.backup``)."""
        kernels.backup(self.ints, self.floats, self.qbounds, np.asarray(leaf_tree, np.int64),
                       np.asarray(leaf_node, np.int64), gamma)

    def expand_and_backup(self, leaf_tree, leaf_node, offsets, prior, reward, score, terminal,
                          payload, gamma: float = 1.0) -> None:
        """``expand`` then ``backup`` in one kernel call (the end of every search round)."""
        args = self._expansion_args(leaf_tree, leaf_node, offsets, prior, reward, score,
                                    terminal, payload)
        while True:
            status = kernels.expand_and_backup(self.ints, self.floats, self.n_nodes,
                                               self.qbounds, *args, gamma)
            if not self._retry_after(status, args):
                return

    def widen(self, node_tree, node_node, offsets, prior, reward, score, terminal,
              payload) -> None:
        """Append new children to expanded nodes (progressive widening; see ``kernels.widen``).

        node_tree, node_node: int [W], expanded non-terminal nodes, each at most once;
        offsets: int [W + 1] CSR over the new children; the child fields as in ``expand``.
        The widened nodes' child blocks move to the end of their trees, so node indices of
        their old children change; priors of each block are left as given (renormalise
        them). Raises ExpansionError (nothing written) on bad input; grows as needed.
        """
        tree, node, offsets, prior, reward, score, terminal, payload = self._expansion_args(
            node_tree, node_node, offsets, prior, reward, score, terminal, payload)
        w = tree.shape[0]
        if offsets.shape != (w + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
                or any(a.shape != (offsets[-1],)
                       for a in (prior, reward, score, terminal, payload)):
            raise ExpansionError("widen: offsets must be a CSR over the new children arrays")
        if w == 0:
            return
        if np.any((tree < 0) | (tree >= self.n_trees)) \
                or np.any((node < 0) | (node >= self.n_nodes[tree])):
            raise ExpansionError("widen: a (tree, node) is not in the forest")
        if np.any(self.n_children[tree, node] <= 0) or np.any(self.terminal[tree, node] != 0):
            raise ExpansionError("widen: every node must be expanded and not terminal")
        if np.unique(tree * self.capacity + node).size != w:
            raise ExpansionError("widen: a node is listed twice")
        if not (np.all(np.isfinite(prior)) and np.all(np.isfinite(reward))
                and np.all(np.isfinite(score))) or np.any(prior < 0):
            raise ExpansionError("widen: priors, rewards and scores must be finite, priors >= 0")
        need = self.n_nodes.copy()
        np.add.at(need, tree, self.n_children[tree, node] + np.diff(offsets))
        if need.max() > self.capacity:
            if not self.growable:
                raise CapacityError(f"widen needs {int(need.max())} nodes but capacity is "
                                    f"{self.capacity} and growth is disabled; nothing was written")
            capacity = self.capacity
            while capacity < need.max():
                capacity *= 2
            self.grow(capacity)
        kernels.widen(self.ints, self.floats, self.extras, self.n_nodes, tree, node, offsets,
                      prior, reward, score, terminal, payload)

    def cancel(self, leaf_tree, leaf_node) -> None:
        """Drop leaves selected this round without evaluating them (virtual loss removed)."""
        kernels.cancel_selection(self.ints, np.asarray(leaf_tree, np.int64),
                                 np.asarray(leaf_node, np.int64))

    @staticmethod
    def _expansion_args(leaf_tree, leaf_node, offsets, prior, reward, score, terminal, payload):
        f8, i8 = np.float64, np.int64
        return (np.asarray(leaf_tree, i8), np.asarray(leaf_node, i8), np.asarray(offsets, i8),
                np.asarray(prior, f8), np.asarray(reward, f8), np.asarray(score, f8),
                np.asarray(terminal, i8), np.asarray(payload, i8))

    def _retry_after(self, status, args) -> bool:
        """Grow and ask for a retry after a capacity error; raise on any other error."""
        code, tree, where, slot = (int(x) for x in status)
        if code == kernels.OK:
            return False
        if code == kernels.ERR_CAPACITY:
            if not self.growable:
                raise CapacityError(
                    f"tree {tree} needs {where} nodes but capacity is {self.capacity} and "
                    "growth is disabled (Forest(growable=False)); nothing was written")
            new_capacity = self.capacity
            while new_capacity < where:
                new_capacity *= 2
            self.grow(new_capacity)
            return True
        raise ExpansionError(_expansion_message(code, tree, where, slot, args))

    # -- outputs ---------------------------------------------------------------------
    def root_stats(self, gamma: float = 1.0):
        """Root children per tree: (child, visits, q, prior, best), see ``kernels.root_stats``."""
        width = max(int(self.n_children[:, 0].max()), 1)
        return kernels.root_stats(self.ints, self.floats, gamma, width)

    def ranked_paths(self, top_k: int = 4, gamma: float = 1.0, terminal_only: bool = False,
                     min_visits: int = 1):
        """Best root-to-leaf paths per tree: (paths, lengths, scores), see the kernel."""
        return kernels.ranked_paths(self.ints, self.floats, self.n_nodes, gamma, top_k,
                                    terminal_only, min_visits)

    def sibling_pairs(self, margin: float, gamma: float = 1.0, min_visits: int = 1):
        """(pairs [P, 4] of tree, parent, chosen, rejected; q [P, 2]), see the kernel."""
        if not margin > 0:
            raise ValueError(f"sibling_pairs margin must be > 0, got {margin}")
        return kernels.sibling_pairs(self.ints, self.floats, self.n_nodes, gamma, margin,
                                     min_visits)

    def reroot(self, new_root, gamma: float = 1.0) -> np.ndarray:
        """Make ``new_root[b]`` the root of tree b (<= 0: unchanged); returns the remap."""
        new_root = np.asarray(new_root, np.int64)
        if new_root.shape != (self.n_trees,):
            raise ValueError(f"reroot needs one node per tree ({self.n_trees}), got "
                             f"{new_root.shape}")
        bad = np.nonzero(new_root >= self.n_nodes)[0]
        if bad.size:
            b = int(bad[0])
            raise ValueError(f"reroot: node {int(new_root[b])} is not in tree {b} "
                             f"({int(self.n_nodes[b])} nodes)")
        if np.any(self.vloss != 0):
            raise RuntimeError("reroot during a round: back up the selected leaves first")
        remap = kernels.reroot(self.ints, self.floats, self.n_nodes, self.qbounds, new_root, gamma)
        for e in range(len(self.extra_names)):
            self.extras[e] = _remap_field(self.extras[e], remap, self.n_nodes)
        return remap

    def check_invariants(self, strict_visits: bool = True) -> list[str]:
        """Problems with the forest between rounds (empty list when sound).

        strict_visits: the classic round (select, expand, back up the leaf) leaves every
        expanded node with exactly one evaluation of its own and unexpanded non-terminal
        nodes with none; searches that back up from the new nodes instead (the step search)
        only keep ``visits >= children's visits``: pass False for them.
        """
        problems = []
        for b in range(self.n_trees):
            n = int(self.n_nodes[b])
            if n > self.capacity:
                problems.append(f"tree {b}: {n} nodes > capacity {self.capacity}")
                continue
            if np.any(self.vloss[b, :n] != 0):
                problems.append(f"tree {b}: virtual loss left at nodes "
                                f"{np.nonzero(self.vloss[b, :n])[0].tolist()}")
            child_visits = np.zeros(n, np.int64)
            np.add.at(child_visits, self.parent[b, 1:n], self.visits[b, 1:n])
            own = self.visits[b, :n] - child_visits
            expanded = self.n_children[b, :n] > 0
            terminal = self.terminal[b, :n] != 0
            if np.any(expanded & terminal):
                problems.append(f"tree {b}: terminal nodes with children")
            if strict_visits:
                bad = (expanded & (own != 1)) | (~expanded & ~terminal & (own != 0)) | (own < 0)
            else:
                bad = own < 0
            wrong = np.nonzero(bad & (self.depth[b, :n] >= 0))[0]
            if wrong.size:
                problems.append(f"tree {b}: visits != children's visits + own evaluations at "
                                f"nodes {wrong.tolist()}")
        return problems


_NO_CAP = np.zeros((0, 0), np.float64)  # child_cap for kernels.select when a forest has none


def _empty_ints(n_trees: int, capacity: int) -> np.ndarray:
    ints = np.zeros((n_trees, capacity, kernels.N_INT_FIELDS), np.int64)
    ints[:, :, kernels.PARENT] = -1
    ints[:, :, kernels.FIRST_CHILD] = -1
    ints[:, :, kernels.PAYLOAD] = -1
    return ints


def _remap_field(field: np.ndarray, remap: np.ndarray, n_nodes: np.ndarray) -> np.ndarray:
    out = np.zeros_like(field)
    for b in range(field.shape[0]):
        kept = np.nonzero(remap[b] >= 0)[0]
        out[b, remap[b, kept]] = field[b, kept]
    return out


def _expansion_message(code, tree, node, slot, args) -> str:
    what = {
        kernels.ERR_NOT_FINITE: f"child {slot} of node {node} in tree {tree} has a NaN or "
                                "infinite prior, reward or score",
        kernels.ERR_BAD_PRIOR: f"child {slot} of node {node} in tree {tree} has a negative prior",
        kernels.ERR_EXPANDED: f"node {node} in tree {tree} already has children",
        kernels.ERR_TERMINAL: f"node {node} in tree {tree} is terminal and cannot be expanded",
        kernels.ERR_BAD_LEAF: f"leaf (tree {tree}, node {node}) does not exist",
        kernels.ERR_DUPLICATE: f"node {node} in tree {tree} is given children twice in "
                               "one expansion",
        kernels.ERR_BAD_OFFSETS: f"offsets must be non-decreasing, start at 0, have one entry "
                                 f"per leaf plus one ({len(args[0]) + 1}) and end at the number "
                                 f"of children ({len(args[3])})",
    }.get(code, f"unknown expansion error {code}")
    return f"expansion rejected, nothing was written: {what}"

"""Plain-Python MCTS over object trees, with the same maths as ``treesearch.engine.kernels``.

This is the executable spec for differential tests, and the "Python objects" engine of the
kernel benchmark. Each tree is a list of ``Node`` objects linked by parent and children
references, walked one node at a time, the way most LLM tree-search projects do it. The
formulas, their evaluation order and the tie-breaking are those of the kernels (see the
docstring of ``treesearch.engine.kernels``), so both engines select the same leaves and reach the
same float64 sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from treesearch.engine.forest import MCTSParams


@dataclass(eq=False)
class Node:
    """One search node. ``index`` is its position in its tree (the forest's node index)."""

    index: int
    parent: "Node | None"
    prior: float = 0.0
    reward: float = 0.0
    score: float = 0.0
    terminal: bool = False
    depth: int = 0
    payload: int = -1
    visits: int = 0
    value_sum: float = 0.0
    vloss: int = 0
    children: list["Node"] = field(default_factory=list)


class ReferenceTree:
    """One tree: its nodes in creation order and its running Q bounds."""

    def __init__(self, root_score: float = 0.0, root_payload: int = -1):
        self.root = Node(0, None, score=root_score, payload=root_payload)
        self.nodes = [self.root]
        self.qmin = math.inf
        self.qmax = -math.inf

    def inverse_range(self) -> float:
        """1 / (qmax - qmin), or 0.0 while the range is empty (or its inverse not finite)."""
        if self.qmax > self.qmin:
            scale = 1.0 / (self.qmax - self.qmin)
            if math.isfinite(scale):
                return scale
        return 0.0

    def normalise(self, q: float, scale: float) -> float:
        if scale > 0.0:
            x = (q - self.qmin) * scale
            return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
        return 0.5

    def best_child(self, node: Node, p: MCTSParams, scale: float) -> Node:
        n_parent = node.visits + node.vloss
        c_sqrt_parent = p.c_explore * math.sqrt(float(n_parent))
        log_parent = math.log(float(max(n_parent, 1)))
        best, best_score = node.children[0], -math.inf
        for child in node.children:
            n_eff = child.visits + child.vloss
            if child.visits > 0:
                qn = self.normalise(child.reward + p.gamma * child.value_sum / child.visits, scale)
            elif p.first_play_mode == "critic":
                qn = self.normalise(child.reward + p.gamma * child.score, scale)
            else:
                qn = p.first_play
            if n_eff > child.visits:
                qn = qn * child.visits / n_eff
            if p.rule == "puct":
                score = qn + c_sqrt_parent * child.prior / (1.0 + n_eff)
            elif n_eff == 0:
                score = math.inf
            else:
                score = qn + p.c_explore * math.sqrt(log_parent / n_eff)
            if score > best_score:
                best, best_score = child, score
        return best

    def select_one(self, p: MCTSParams) -> tuple[Node, bool]:
        """One descent with virtual loss; returns (leaf, collided)."""
        node = self.root
        scale = self.inverse_range()
        while node.children and not node.terminal:
            child = self.best_child(node, p, scale)
            node.vloss += 1
            node = child
        node.vloss += 1
        return node, node.vloss > 1

    def expand(self, leaf: Node, children: list[tuple[float, float, float, bool, int]]) -> None:
        """Attach children given as (prior, reward, score, terminal, payload) tuples."""
        if not children:
            leaf.terminal = True  # dead end
            return
        if leaf.terminal or leaf.children:
            raise ValueError(f"node {leaf.index} cannot be expanded")
        for prior, reward, score, terminal, payload in children:
            child = Node(len(self.nodes), leaf, prior=prior, reward=reward, score=score,
                         terminal=bool(terminal), depth=leaf.depth + 1, payload=payload)
            leaf.children.append(child)
            self.nodes.append(child)

    def backup(self, leaf: Node, gamma: float) -> None:
        pending = leaf.vloss
        g = leaf.score
        node = leaf
        while node is not None:
            node.visits += 1
            node.value_sum += g
            node.vloss -= pending
            if node.parent is not None:
                q = node.reward + gamma * node.value_sum / node.visits
                self.qmin = min(self.qmin, q)
                self.qmax = max(self.qmax, q)
            g = node.reward + gamma * g
            node = node.parent


class ReferenceForest:
    """B reference trees driven with the same round API as ``Forest``."""

    def __init__(self, n_trees: int, root_scores=None, root_payloads=None):
        scores = [0.0] * n_trees if root_scores is None else [float(v) for v in root_scores]
        payloads = [-1] * n_trees if root_payloads is None else [int(x) for x in root_payloads]
        self.trees = [ReferenceTree(v, x) for v, x in zip(scores, payloads)]

    def select(self, p: MCTSParams) -> tuple[list[int], list[int], list[int]]:
        """Up to ``p.leaves_per_tree`` leaves per tree: (leaf_tree, leaf_node, collisions
        per tree). No progressive widening: the reference ignores ``widen_c``."""
        leaf_tree, leaf_node, collisions = [], [], []
        for b, tree in enumerate(self.trees):
            hits = 0
            for _ in range(p.leaves_per_tree):
                leaf, collided = tree.select_one(p)
                if collided:
                    hits += 1
                else:
                    leaf_tree.append(b)
                    leaf_node.append(leaf.index)
            collisions.append(hits)
        return leaf_tree, leaf_node, collisions

    def expand_and_backup(self, leaf_tree, leaf_node, offsets, prior, reward, score, terminal,
                          payload, gamma: float = 1.0) -> None:
        """Same CSR input as ``Forest.expand_and_backup``."""
        for i, (b, n) in enumerate(zip(leaf_tree, leaf_node)):
            rows = range(int(offsets[i]), int(offsets[i + 1]))
            children = [(float(prior[j]), float(reward[j]), float(score[j]), bool(terminal[j]),
                         int(payload[j])) for j in rows]
            self.trees[b].expand(self.trees[b].nodes[n], children)
        for b, n in zip(leaf_tree, leaf_node):
            self.trees[b].backup(self.trees[b].nodes[n], gamma)

"""State merge: sampled continuations become new nodes only where they leave the tree.

A continuation walks down the existing nodes (and this round's new ones) while its steps
match them, steps equal up to whitespace being one node (AlphaLLM's state merge); only its
new remainder is created. With ``SearchConfig.merge`` off every sampled step is a new node.
Functions take the ``StepSearch`` they serve (``search``) for its config and task and its
public step methods (``step_text``, ``merge_key``, ``node_text``, ``ends_episode``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NewNode:
    """A node to create this round: its parent is an existing node (``parent``) or another
    new node (``parent_new``, index into the round's list)."""

    tree: int
    parent: int
    parent_new: int
    tokens: list[int]
    logprob: float
    text: str
    depth: int
    answer: bool
    terminal: bool


def merge_continuations(search, forest, tree, node, paths):
    """Walk each continuation down the existing nodes and this round's new ones while
    its steps match; the rest becomes new nodes. Returns (new nodes in creation order,
    indices of the new nodes where continuations end (with ``repeat_visits`` a terminal
    one once per continuation that reached it: each is one visit), repeats: (tree, node) of existing
    terminal nodes a continuation repeated, fruitless: (tree, node) of widened nodes
    that got nothing new)."""
    new: list[NewNode] = []
    ends: list[int] = []
    repeats: list[tuple[int, int]] = []
    fruitless = []
    made: dict[tuple, int] = {}  # (tree, existing parent, new parent, key) -> new index
    merging = search.config.merge
    for i, per in enumerate(paths):
        t, s = int(tree[i]), int(node[i])
        before = len(new)
        for path in per:
            parent, parent_new, depth = s, -1, int(forest.depth[t, s])
            last, repeated = -1, False
            for tokens, logprob, finished in path:
                depth += 1
                text = search.step_text(tokens)
                key = search.merge_key(text)
                if parent_new < 0 and merging:
                    hit = existing_child(search, forest, t, parent, key)
                    if hit >= 0:
                        if forest.terminal[t, hit]:
                            repeats.append((t, hit))  # sampled again: one more visit
                            break
                        parent = hit
                        continue
                slot = (t, parent, parent_new, key)
                if merging and slot in made:
                    parent_new = made[slot]
                    last = parent_new
                    if new[parent_new].terminal:
                        repeated = search.config.repeat_visits
                        break
                    continue
                is_answer = search.task.is_answer_step(text)
                ends_here = search.ends_episode((tokens, logprob, finished), depth)
                new.append(NewNode(t, parent, parent_new, tokens, logprob, text, depth,
                                is_answer, ends_here))
                made[slot] = parent_new = last = len(new) - 1
                if ends_here:
                    break
            if last >= 0 and (repeated or last not in ends):
                ends.append(last)
        if len(new) == before and forest.n_children[t, s] > 0:
            fruitless.append((t, s))
    return new, ends, repeats, fruitless


def existing_child(search, forest, tree, node, key) -> int:
    """The child of ``node`` whose step has merge key ``key``, or -1."""
    for kid in forest.children(tree, node):
        if search.merge_key(search.node_text(forest, tree, int(kid))) == key:
            return int(kid)
    return -1

"""The answer rule: which node each tree answers with (``SearchConfig.answer``)."""

from __future__ import annotations

import numpy as np

from treesearch.engine.forest import Forest


def choose_answers(search, forest: Forest) -> np.ndarray:
    """The node each tree answers with (``SearchConfig.answer``), int64 [B]; the end of
    the most visited descent when a tree holds no answer at all. ``search``: the
    ``StepSearch`` served (its ``config``, ``task``, ``is_answer`` and ``node_text``)."""
    out = np.zeros(forest.n_trees, np.int64)
    for b in range(forest.n_trees):
        descent = most_visited_descent(forest, b)
        if search.config.answer == "visits" and search.is_answer(forest, b, descent):
            out[b] = descent
            continue
        n = int(forest.n_nodes[b])
        live = np.flatnonzero((forest.terminal[b, :n] == 1) & (forest.depth[b, :n] > 0)
                              & (forest.visits[b, :n] > 0))
        answers = [int(c) for c in live if search.is_answer(forest, b, int(c))]
        if not answers:
            out[b] = descent
            continue
        if search.config.answer == "vote":
            groups: dict = {}
            for c in answers:
                text = search.node_text(forest, b, c)
                claim = search.task.answer_key(search.task.extract_answer(text))
                groups.setdefault(claim, []).append(c)
            weight = {k: sum(forest.visits[b, c] * max(forest.score[b, c], 1e-6) for c in cs)
                      for k, cs in groups.items()}
            answers = groups[max(weight, key=weight.get)]  # ties: the earliest group
        out[b] = max(answers, key=lambda c: (forest.score[b, c], forest.visits[b, c], -c))
    return out


def most_visited_descent(forest, tree: int) -> int:
    node = 0
    while forest.n_children[tree, node] > 0:
        kids = forest.children(tree, node)
        node = int(kids[np.argmax(forest.visits[tree, kids])])
    return node

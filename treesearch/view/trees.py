"""One search tree as the viewer's columns: the live nodes (rows ``Forest.widen`` detached
are left out), their statistics and critic parts, step texts, answer marks and the chosen
answer.

Node fields shown (those the trees file carries): ``visits``; ``q`` (reward + gamma x mean
backed-up value, None when unvisited); ``prior``; ``reward``; ``score`` (the composed
score the search ranks with); the critics' parts ``c_value`` (value critic), ``c_process``
(PRM), ``c_outcome`` (ORM, or the rule verifier in labelled training searches),
``prm_agg`` (the running PRM aggregate) and ``logprob`` (the step's log-probability). The
root is no scored step: its critic parts are None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from treesearch.engine.forest import Forest
from treesearch.search.answer import choose_answers, most_visited_descent
from treesearch.search.config import SearchConfig
from treesearch.search.result import node_path

# node fields the page can colour by, with their names on the page (a field is offered
# only where the trees carry a finite value of it)
PARTS = (("q", "Q"), ("score", "composed score"), ("c_value", "value critic"),
         ("c_process", "PRM"), ("c_outcome", "ORM"), ("prm_agg", "PRM aggregate"),
         ("prior", "prior"), ("reward", "reward"), ("logprob", "log-prob"))
CRITIC_EXTRAS = ("c_value", "c_process", "c_outcome", "prm_agg", "logprob")
# kinds of node: an inner step, an answer line, a terminal step that is no answer (cut at
# max_step_tokens, or at max_depth without an answer)
INNER, ANSWER, DEAD_END = 0, 1, 2


def step_texts(forest: Forest, decode: Callable[[list[list[int]]], list[str]] | None
               ) -> list[list[str]]:
    """The text of every row's step, per tree (the root's is ""); ``decode`` turns a batch
    of token-id lists into texts (None: the ids themselves, as ``[12 7 9]``). Each span is
    decoded once."""
    used = sorted({int(p) for b in range(forest.n_trees)
                   for p in forest.payload[b, :forest.n_nodes[b]]
                   if 0 <= p < len(forest.tokens)})
    spans = [forest.tokens.get(p).tolist() for p in used]
    if decode is None:
        texts = ["[" + " ".join(map(str, s)) + "]" for s in spans]
    else:
        texts = list(decode(spans)) if spans else []
    by_payload = dict(zip(used, texts))
    return [[by_payload.get(int(p), "") if node > 0 else ""
             for node, p in enumerate(forest.payload[b, :forest.n_nodes[b]])]
            for b in range(forest.n_trees)]


class _AnswerRule:
    """What ``treesearch.search.answer.choose_answers`` reads of a search: its config,
    task, ``node_text`` and ``is_answer`` (``StepSearch``'s public names), here from
    decoded texts instead of a live search."""

    def __init__(self, config: SearchConfig, task, texts: list[list[str]]):
        self.config, self.task, self.texts = config, task, texts

    def node_text(self, forest, tree, node) -> str:
        return self.texts[tree][node]

    def is_answer(self, forest, tree, node) -> bool:
        if node <= 0 or forest.terminal[tree, node] == 0:
            return False
        return self.task.is_answer_step(self.texts[tree][node])


def chosen_nodes(forest: Forest, texts: list[list[str]], task,
                 config: SearchConfig) -> np.ndarray:
    """The node each tree answered with, by the search's own rule (``config.answer``);
    without a task (nothing says which steps are answers) the end of the most visited
    descent."""
    if task is None:
        return np.array([most_visited_descent(forest, b) for b in range(forest.n_trees)],
                        np.int64)
    return choose_answers(_AnswerRule(config, task, texts), forest)


def node_kinds(forest: Forest, tree: int, texts: list[str], task) -> np.ndarray:
    """INNER / ANSWER / DEAD_END per row of ``tree`` (without a task every terminal step
    counts as an answer)."""
    n = int(forest.n_nodes[tree])
    kinds = np.full(n, INNER, np.int8)
    for node in np.flatnonzero(forest.terminal[tree, :n]):
        if node == 0:
            continue
        is_answer = task is None or task.is_answer_step(texts[node])
        kinds[node] = ANSWER if is_answer else DEAD_END
    return kinds


def path_text(forest: Forest, tree: int, node: int, texts: Sequence[str]) -> str:
    """The solution text from the root to ``node``: its steps' texts joined, as the search
    joins them into its answer."""
    return "".join(texts[n] for n in node_path(forest, tree, node)[1:])


def _column(values: np.ndarray, digits: int = 4) -> list:
    """Floats rounded for the page; NaN and infinities as None (null in JSON)."""
    out = np.round(values.astype(np.float64), digits).tolist()
    return [x if math.isfinite(x) else None for x in out]


def tree_record(forest: Forest, tree: int, texts: list[str], *, task, problem=None,
                chosen: int, gamma: float = 1.0, q: np.ndarray | None = None) -> dict:
    """One tree as the page's columns plus its summary.

    Columns (one entry per live node, in row order): ``node`` (the row in the trees
    file), ``parent`` (index into these columns, -1 for the root), ``depth``, ``visits``,
    each carried field of ``PARTS``, ``kind`` (INNER / ANSWER / DEAD_END), ``correct``
    (1 / 0 for answer nodes when ``problem`` carries a label, else None) and ``text``.
    Summary: ``chosen`` (column index of the chosen node), ``answer`` (what the chosen
    solution answers, None when it has no answer line), ``solved`` (None without a
    label), ``tokens`` (tokens of every step in the tree) and ``n`` (live nodes).
    ``q``: ``forest.q(gamma)`` when the caller has it (computed here otherwise).
    """
    n = int(forest.n_nodes[tree])
    live = np.flatnonzero(forest.depth[tree, :n] >= 0)
    index = np.full(n, -1, np.int64)
    index[live] = np.arange(live.size)
    parents = forest.parent[tree, live]
    q = (forest.q(gamma) if q is None else q)[tree, live]
    kinds = node_kinds(forest, tree, texts, task)
    labelled = problem is not None and problem.label is not None and task is not None
    correct = [None] * live.size
    for i, node in enumerate(live):
        if labelled and kinds[node] == ANSWER:
            correct[i] = int(task.check_solution(problem, path_text(forest, tree, node, texts)))
    cols = {
        "node": live.tolist(),
        "parent": [int(index[p]) if p >= 0 else -1 for p in parents],
        "depth": forest.depth[tree, live].tolist(),
        "visits": forest.visits[tree, live].tolist(),
        "q": _column(q),
        "prior": _column(forest.prior[tree, live]),
        "reward": _column(forest.reward[tree, live]),
        "score": _column(forest.score[tree, live]),
    }
    for name in CRITIC_EXTRAS:
        if name in forest.extra_names:
            values = forest.extra(name)[tree, live].astype(np.float64)
            values[live == 0] = np.nan  # the root is no scored step
            cols[name] = _column(values)
    cols["kind"] = kinds[live].tolist()
    cols["correct"] = correct
    cols["text"] = [texts[node] for node in live]
    solution = path_text(forest, tree, int(chosen), texts)
    answer = task.extract_answer(solution) if task is not None else None
    tokens = sum(len(forest.tokens.get(int(p))) for p in forest.payload[tree, live[1:]]
                 if 0 <= p < len(forest.tokens))
    return {"columns": cols, "chosen": int(index[chosen]), "answer": answer,
            "solved": bool(task.check_solution(problem, solution)) if labelled else None,
            "tokens": int(tokens), "n": int(live.size)}


def carried_parts(records: list[dict]) -> list[str]:
    """The ``PARTS`` keys with a finite value at some non-root node of ``records``."""
    out = []
    for key, _ in PARTS:
        for rec in records:
            values = rec["columns"].get(key)
            if values is not None and any(v is not None for v in values[1:]):
                out.append(key)
                break
    return out

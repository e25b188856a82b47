"""Sampling a round's continuations: ``branching`` next steps of every open node, each
continued for up to ``horizon`` steps, within each tree's token budget, and the charging of
what the policy generated and processed to the problems it served.

Functions take the ``StepSearch`` they serve (``search``) and read its ``config``,
``policy`` and the methods ``prefix``, ``room`` and ``ends_episode``.
"""

from __future__ import annotations

import time

import numpy as np

from treesearch.search.budget import affordable_steps


def sample_continuations(search, forest, stats, tree, node):
    """``branching`` sampled continuations of each open node, each of up to ``horizon``
    steps (stopping at a terminal step). Returns per open node a list of paths, each a
    list of (tokens, logprob, finished).

    With a token budget (``max_tokens``) no call asks for more steps of a tree than its
    remaining budget can pay at ``max_step_tokens`` each (fewer branches, fewer
    continued rows), so a tree overshoots its budget by less than one step."""
    cfg = search.config
    t0 = time.perf_counter()
    prefixes = [search.prefix(forest, int(t), int(n)) for t, n in zip(tree, node)]
    depth = forest.depth[tree, node]
    paths = [[] for _ in prefixes]
    for n, group in _affordable_branches(search, stats, tree):
        before = search.policy.counts.processed
        props = search.policy.propose([prefixes[i] for i in group], n, cfg.max_step_tokens)
        _charge(search, stats, tree[group], [sum(p.n_tokens for p in per) for per in props],
                before)
        for i, per in zip(group, props):
            paths[i] = [[(list(map(int, p.tokens)), float(p.logprob), bool(p.finished))]
                        for p in per]
    rows = [(i, j) for i in range(len(paths)) for j in range(len(paths[i]))]
    for _ in range(cfg.horizon - 1):
        room = search.room()
        live = [(i, j) for i, j in rows
                if not search.ends_episode(paths[i][j][-1], int(depth[i]) + len(paths[i][j]))
                and len(prefixes[i]) + sum(len(st[0]) for st in paths[i][j]) <= room]
        live = _affordable_rows(search, stats, tree, live)
        if not live:
            break
        pre = [prefixes[i] + [t for step in paths[i][j] for t in step[0]] for i, j in live]
        before = search.policy.counts.processed
        more = search.policy.propose(pre, 1, cfg.max_step_tokens)
        _charge(search, stats, tree[[i for i, _ in live]], [m[0].n_tokens for m in more], before)
        for (i, j), m in zip(live, more):
            paths[i][j].append((list(map(int, m[0].tokens)), float(m[0].logprob),
                                bool(m[0].finished)))
    stats.seconds["propose"] += time.perf_counter() - t0
    return paths


def _affordable_branches(search, stats, tree) -> list[tuple[int, list[int]]]:
    """(branches, open-node indices) groups for the first step of this round: every
    open node gets ``branching`` samples while its tree's allowance lasts, then fewer,
    then none. One group (one policy call) unless a budget is nearly spent."""
    allowance = affordable_steps(search.config.max_tokens, stats.generated,
                                 search.config.max_step_tokens)
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tree.tolist()):
        n = min(search.config.branching, int(allowance[t]))
        allowance[t] -= n
        if n:
            groups.setdefault(n, []).append(i)
    return sorted(groups.items(), reverse=True)


def _affordable_rows(search, stats, tree, live):
    """The rows of ``live`` ((open node, branch) pairs) whose trees can pay one more step."""
    allowance = affordable_steps(search.config.max_tokens, stats.generated,
                                 search.config.max_step_tokens)
    out = []
    for i, j in live:
        t = int(tree[i])
        if allowance[t] > 0:
            allowance[t] -= 1
            out.append((i, j))
    return out


def _charge(search, stats, trees, generated_per_request, processed_before) -> None:
    """Add a policy call's tokens to the problems it served."""
    gen = np.asarray(generated_per_request, np.float64)
    if gen.size == 0:
        return
    np.add.at(stats.generated, trees, gen.astype(np.int64))
    processed = search.policy.counts.processed - processed_before
    share = gen / gen.sum() if gen.sum() else np.full(gen.size, 1 / gen.size)
    np.add.at(stats.processed, trees, np.round(processed * share).astype(np.int64))

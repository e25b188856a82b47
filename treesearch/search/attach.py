"""Attach a round's new nodes to the forest: expand leaves, widen expanded nodes, write
the critics' scores and parts and renormalise the priors of every touched family."""

from __future__ import annotations

import numpy as np

from treesearch.engine import kernels


def attach_nodes(search, forest, new, raw, answer, terminal) -> list[int]:
    """Create the new nodes level by level (children of existing nodes first, by expand
    or widen), writing scores, parts and priors. Returns each new node's index."""
    cfg = search.config
    payload = forest.tokens.add_many([x.tokens for x in new])
    index = [-1] * len(new)
    agg = np.full(len(new), np.nan)
    level = [i for i, x in enumerate(new) if x.parent_new < 0]
    while level:
        groups: dict[tuple[int, int], list[int]] = {}
        for i in level:
            x = new[i]
            parent = x.parent if x.parent_new < 0 else index[x.parent_new]
            groups.setdefault((x.tree, parent), []).append(i)
        rows = np.array([i for g in groups.values() for i in g], np.int64)
        parent_agg = np.array([forest.extra("prm_agg")[new[i].tree, p] if new[i].parent_new < 0
                               else agg[new[i].parent_new]
                               for (_, p), g in groups.items() for i in g])
        scored = search.scorer.compose_raw(raw, rows, answer[rows], terminal[rows], parent_agg,
                                         np.array([new[i].depth for i in rows]))
        agg[rows] = scored.prm_agg
        at = {int(r): k for k, r in enumerate(rows)}
        fresh = [(t, p) for (t, p) in groups if forest.n_children[t, p] == 0]
        grown = [(t, p) for (t, p) in groups if forest.n_children[t, p] > 0]
        # widen deepest first: a node moved by its parent's widening keeps its block
        grown.sort(key=lambda key: -forest.depth[key])
        for keys, attach in ((fresh, forest.expand), (grown, forest.widen)):
            if keys:
                order = [i for key in keys for i in groups[key]]
                offsets = np.zeros(len(keys) + 1, np.int64)
                np.cumsum([len(groups[key]) for key in keys], out=offsets[1:])
                zeros = np.zeros(len(order))
                attach(np.array([t for t, _ in keys], np.int64),
                       np.array([p for _, p in keys], np.int64), offsets, zeros, zeros,
                       scored.score[[at[i] for i in order]], terminal[order].astype(np.int64),
                       np.array([payload[i] for i in order], np.int64))
        # new nodes are found by their payloads (widening moves blocks)
        for t in {new[i].tree for i in level}:
            mine = [i for i in level if new[i].tree == t]
            n = int(forest.n_nodes[t])
            found = np.flatnonzero(np.isin(forest.payload[t, :n], [payload[i] for i in mine])
                                   & (forest.depth[t, :n] >= 0))
            where = dict(zip(forest.payload[t, found].tolist(), found.tolist()))
            for i in mine:
                index[i] = where[payload[i]]
        for (t, p), g in groups.items():
            p_now = forest.parent[t, index[g[0]]]
            nodes = np.array([index[i] for i in g], np.int64)
            for name, values in scored.parts.items():
                forest.extra(name)[t, nodes] = values[[at[i] for i in g]]
            forest.extra("prm_agg")[t, nodes] = scored.prm_agg[[at[i] for i in g]]
            forest.extra("logprob")[t, nodes] = [new[i].logprob for i in g]
            kids = forest.children(t, int(p_now))
            forest.prior[t, kids] = kernels.priors_from_logprobs(
                forest.extra("logprob")[t, kids], np.array([0, len(kids)], np.int64),
                cfg.prior_temperature)
        placed = set(level)
        level = [i for i, x in enumerate(new) if x.parent_new in placed]
    return index

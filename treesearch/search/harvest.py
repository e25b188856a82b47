"""What training takes from a searched forest: ranked correct paths and sibling pairs.

Used by self-play and by the study's tree-based optimizers (MCTS + SFT, DPO on siblings):

    nodes = best_correct(result, tree, verifier, k=4, clean_steps=False)
    examples = sft_examples(result, verifier, k=4, clean_steps=False)
    pairs = sibling_preference_pairs(result, margin=0.3)

``result`` is a ``treesearch.search.stepsearch.SearchResult`` (forest + prompts); ``verifier`` a
``critics.verifier.RuleVerifier`` over the forest's LABELLED TRAINING problems.
"""

from __future__ import annotations

import numpy as np

from policies.distill import PreferencePair, sft_example
from treesearch.engine.export import read_jsonl
from treesearch.search.result import SearchResult, SearchStats
from treesearch.utils.runs import RunError


def load_result(path, prompts):
    """A ``SearchResult`` rebuilt from trees saved with ``export.write_jsonl`` (forest and
    prompts; answers and per-tree stats are not stored and come back empty). ``prompts``:
    the token ids of each tree's prompt, in tree order. A missing or corrupt file raises
    ``treesearch.utils.runs.RunError`` naming it."""
    try:
        forest = read_jsonl(path)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the search trees ({exc})") from exc
    zeros = np.zeros(forest.n_trees, np.int64)
    return SearchResult(forest, list(prompts), [""] * forest.n_trees, zeros,
                        SearchStats(zeros, zeros, zeros, zeros, zeros, zeros))


def best_correct(result, tree: int, verifier, k: int, clean_steps: bool = False) -> list[int]:
    """Up to ``k`` verified-correct answer nodes of ``tree``, best first (composed score,
    then visits, then node index); with ``clean_steps`` only those whose steps hold no
    arithmetic slip (a right answer reached through "23*7=151" teaches the slip)."""
    f = result.forest
    scored = []
    for c in range(1, int(f.n_nodes[tree])):
        if not (f.terminal[tree, c] and f.depth[tree, c] > 0):
            continue
        state = (result.prompts[tree], [s.tolist() for s in result.steps(tree, c)])
        if verifier.correct(state, clean_steps=clean_steps):
            scored.append((-f.score[tree, c], -f.visits[tree, c], c))
    return [c for *_, c in sorted(scored)[:k]]


def sft_examples(result, tokenizer, verifier, k: int, clean_steps: bool = False) -> list:
    """``policies.distill.SFTExample`` for the ``best_correct`` paths of every tree."""
    out = []
    for b in range(result.forest.n_trees):
        for node in best_correct(result, b, verifier, k, clean_steps):
            steps = [s.tolist() for s in result.steps(b, node)]
            out.append(sft_example(tokenizer, result.prompts[b], steps))
    return out


def sibling_preference_pairs(result, margin: float) -> list:
    """``policies.distill.PreferencePair`` for every pair of sibling steps whose Q differ
    by at least ``margin`` (the better one chosen), prefix = prompt + earlier steps."""
    forest = result.forest
    pairs, _ = forest.sibling_pairs(margin)
    out = []
    for tree, parent, chosen, rejected in pairs.tolist():
        prefix = list(result.prompts[tree]) + [t for s in result.steps(tree, parent)
                                               for t in s.tolist()]
        step = lambda node: forest.tokens.get(int(forest.payload[tree, node])).tolist()  # noqa: E731
        out.append(PreferencePair(prefix, step(chosen), step(rejected)))
    return out

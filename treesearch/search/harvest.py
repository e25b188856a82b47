"""What training takes from a searched forest: ranked correct paths and sibling pairs.

Used by self-play and by the study's tree-based optimizers (MCTS + SFT, DPO on siblings):

    nodes = best_correct(result, tree, verifier, k=4, clean_steps=False)
    examples = sft_examples(result, verifier, k=4, clean_steps=False)
    pairs = sibling_preference_pairs(result, margin=0.3)
    negatives = failing_siblings(result, margin=0.3)        # PGExample, advantage -1

Diversity options (self-play's ``distill.distinct`` / ``distill.unlikeliness``):
``sft_examples(..., key=lambda steps: solution_key(task, text_of(steps)))`` keeps one path
per distinct solution, and ``unlikeliness > 0`` weights a problem's rarer paths up.

``result`` is a ``treesearch.search.stepsearch.SearchResult`` (forest + prompts); ``verifier`` a
``critics.verifier.RuleVerifier`` over the forest's LABELLED TRAINING problems.
``HarvestConfig`` holds the two knobs both apps read (self-play's ``distill`` section and
the study's ``tree`` section embed it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from policies.distill import PGExample, PreferencePair, sft_example
from treesearch.engine.export import read_jsonl
from treesearch.search.result import SearchResult, SearchStats
from treesearch.utils.runs import RunError


@dataclass
class HarvestConfig:
    """What distillation takes from one search's trees.

    paths_per_problem: the best verified paths imitated per problem (``sft_examples``' k).
    dpo_margin: the Q margin that makes two sibling steps a pair (``sibling_preference_pairs``;
        ``failing_siblings``' rejected steps).
    """

    paths_per_problem: int = 4
    dpo_margin: float = 0.3


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


def best_correct(result, tree: int, verifier, k: int, clean_steps: bool = False,
                 key: Callable[[list], Hashable] | None = None) -> list[int]:
    """Up to ``k`` verified-correct answer nodes of ``tree``, best first (composed score,
    then visits, then node index); with ``clean_steps`` only those whose steps hold no
    arithmetic slip (a right answer reached through "23*7=151" teaches the slip). With
    ``key`` (the path's steps as lists of token ids -> what identifies the solution) a
    path whose key an earlier (better) path has is skipped: distinct solutions only."""
    f = result.forest
    scored = []
    for c in range(1, int(f.n_nodes[tree])):
        if not (f.terminal[tree, c] and f.depth[tree, c] > 0):
            continue
        state = (result.prompts[tree], [s.tolist() for s in result.steps(tree, c)])
        if verifier.correct(state, clean_steps=clean_steps):
            scored.append((-f.score[tree, c], -f.visits[tree, c], c))
    if key is None:
        return [c for *_, c in sorted(scored)[:k]]
    out, seen = [], set()
    for *_, c in sorted(scored):
        if len(out) == k:
            break
        what = key([s.tolist() for s in result.steps(tree, c)])
        if what not in seen:
            seen.add(what)
            out.append(c)
    return out


def solution_key(task, text: str) -> str:
    """What a solution does, for deduplication: its answer without whitespace when the
    answer is an expression (countdown: ``(25*4)+7``), else the whole text without
    whitespace (a bare number says nothing about how it was reached)."""
    answer = task.extract_answer(text)
    if answer is not None and re.search(r"[-+*/()]", answer.strip().lstrip("-")):
        return "".join(answer.split())
    return "".join(text.split())


def path_logprior(forest, tree: int, node: int) -> float:
    """Sum of the log step priors (the policy's temperature-normalised step probabilities
    among siblings) on the path to ``node``: how likely the search found the path a priori."""
    total = 0.0
    while node > 0:
        total += float(np.log(max(float(forest.prior[tree, node]), 1e-12)))
        node = int(forest.parent[tree, node])
    return total


def unlikeliness_weights(logpriors, strength: float) -> np.ndarray:
    """float64 [m]: 1 + strength * rank / (m - 1), rank 0 for the most likely of the m
    paths (ties: the earlier one counts as more likely); all ones for m < 2 or strength 0."""
    lp = np.asarray(logpriors, np.float64)
    m = len(lp)
    if m < 2 or strength == 0:
        return np.ones(m)
    rank = np.empty(m)
    rank[np.argsort(-lp, kind="stable")] = np.arange(m)
    return 1.0 + strength * rank / (m - 1)


def passk_tree_weights(forest, k: int) -> np.ndarray:
    """float64 [B]: (1 - q)^(k - 1) per tree, q its root Q clipped to [0, 1] (0 when the
    root is unvisited): the chance that k - 1 more tries at the search's success rate all
    fail, so problems already solved reliably weigh little. All ones for k <= 1."""
    if k <= 1:
        return np.ones(forest.n_trees)
    q = np.nan_to_num(forest.q()[:, 0], nan=0.0).clip(0.0, 1.0)
    return (1.0 - q) ** (k - 1)


def sft_examples(result, tokenizer, verifier, k: int, clean_steps: bool = False,
                 key: Callable[[list], Hashable] | None = None,
                 unlikeliness: float = 0.0, tree_weights=None) -> list:
    """``policies.distill.SFTExample`` for the ``best_correct`` paths of every tree (``key``:
    distinct solutions only); with ``unlikeliness`` > 0 each tree's paths are weighted by
    ``unlikeliness_weights`` of their ``path_logprior`` (weight 1 otherwise), times
    ``tree_weights[b]`` (float [B], e.g. ``passk_tree_weights``) where given; a path of
    weight 0 is left out."""
    out = []
    for b in range(result.forest.n_trees):
        nodes = best_correct(result, b, verifier, k, clean_steps, key)
        weights = unlikeliness_weights([path_logprior(result.forest, b, c) for c in nodes],
                                       unlikeliness)
        if tree_weights is not None:
            weights = weights * float(tree_weights[b])
        for node, w in zip(nodes, weights):
            if w <= 0:
                continue
            steps = [s.tolist() for s in result.steps(b, node)]
            out.append(sft_example(tokenizer, result.prompts[b], steps, weight=float(w)))
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


def failing_siblings(result, margin: float, advantage: float = -1.0) -> list:
    """``policies.distill.PGExample`` (advantage ``advantage``) for every distinct rejected
    step of ``sibling_preference_pairs``: a sibling whose Q is at least ``margin`` below
    another's, to push down (W-REINFORCE's negatives, from the tree)."""
    out, seen = [], set()
    for pair in sibling_preference_pairs(result, margin):
        what = (tuple(pair.prompt_ids), tuple(pair.rejected_ids))
        if what in seen or not pair.rejected_ids:
            continue
        seen.add(what)
        out.append(PGExample(list(pair.prompt_ids), list(pair.rejected_ids), advantage))
    return out

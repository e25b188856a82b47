"""What an optimizer trains on, taken from one finished search over LABELLED TRAINING
problems: ``harvest`` fills the ``TrainData`` fields an entry of ``stages.train.OPTIMIZERS``
needs (``Optimizer.needs``), so self-play's distill stage (once per round's trees) and the
study's tree optimizers (the (prior, seed) search) harvest the same way; ``prior_examples``
samples the keep-the-prior term from the starting model instead, and ``own_samples`` the
states the own-KL term holds from the learner."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from critics.verifier import RuleVerifier
from policies.distill import SFTExample
from policies.rl import tree_examples
from policies.rollout import generate_solutions
from treesearch.search import SearchResult
from treesearch.search.harvest import (
    HarvestConfig,
    failing_siblings,
    passk_tree_weights,
    sft_examples,
    sibling_preference_pairs,
    solution_key,
)
from treesearch.stages.train import TrainData
from treesearch.tasks import prompt_ids
from treesearch.utils.knobs import TREE_BASELINES

__all__ = ["harvest", "own_samples", "prior_examples", "unit_mean_weight"]


def harvest(needs: frozenset, result: SearchResult, problems: Sequence, task, tokenizer,
            config: HarvestConfig, *, clean_steps: bool = False, distinct: bool = False,
            unlikeliness: float = 0.0, passk_weight: int = 0,
            tree_baseline: str = TREE_BASELINES[0]) -> TrainData:
    """``TrainData`` from one search's ``result`` over ``problems`` (P trees, in order),
    with the fields ``needs`` names:

    paths: ``examples``, the best ``config.paths_per_problem`` verified paths per tree
        (rule verifier; ``clean_steps``: slip-free steps only; ``distinct``: one path per
        distinct solution; ``unlikeliness`` > 0 weights rare paths up; ``passk_weight`` K > 0
        weights a tree's paths by (1 - root Q)^(K - 1)).
    pairs: ``pairs``, sibling steps whose Q differ by ``config.dpo_margin``.
    siblings: ``pg``, the failing side of those pairs, pushed down.
    tree_steps: ``pg``, every visited step with its advantage from the tree
        (``tree_baseline``).
    Other needs (on-policy problems, a search) are not the trees' to fill.
    """
    data = TrainData()
    if "tree_steps" in needs:
        data.pg += tree_examples(result.forest, result.prompts, tree_baseline)
    if "paths" in needs:
        key = None
        if distinct:
            def key(steps):
                return solution_key(task, tokenizer.decode([t for s in steps for t in s],
                                                           skip_special_tokens=True))
        verifier = RuleVerifier(task, tokenizer, problems)
        weights = passk_tree_weights(result.forest, passk_weight) if passk_weight else None
        data.examples = sft_examples(result, tokenizer, verifier, config.paths_per_problem,
                                     clean_steps=clean_steps, key=key,
                                     unlikeliness=unlikeliness, tree_weights=weights)
    if "siblings" in needs:
        data.pg += failing_siblings(result, config.dpo_margin)
    if "pairs" in needs:
        data.pairs = sibling_preference_pairs(result, config.dpo_margin)
    return data


def prior_examples(start, task, problems: Sequence, n: int, weight: float, *,
                   temperature: float, max_steps: int, max_step_tokens: int) -> list:
    """The keep-the-prior term: ``n`` samples per problem from the STARTING model ``start``
    (right or wrong, exact sampled token ids; labels never read), as ``SFTExample``s of
    ``weight``."""
    problems = [p.without_label() for p in problems]
    _, tokens = generate_solutions(start, start.tokenizer, task, problems, n=n,
                                   temperature=temperature, max_steps=max_steps,
                                   max_step_tokens=max_step_tokens, return_tokens=True)
    out = []
    for p, per in zip(problems, tokens):
        prompt = prompt_ids(start.tokenizer, task, p)
        out += [SFTExample(list(prompt), list(t), float(weight)) for t in per if t]
    return out


def own_samples(learner, task, problems: Sequence, n: int, *, temperature: float,
                max_steps: int, max_step_tokens: int) -> list:
    """The own-KL term's states (``policies.offpath``): ``n`` samples per problem from the
    ``learner`` as training starts (a policy over the model the trainer starts from, its
    sampler seeded by the caller; right or wrong, exact sampled token ids, labels never
    read), as (prompt ids, completion ids) pairs, empty samples left out."""
    return [(e.prompt_ids, e.completion_ids)
            for e in prior_examples(learner, task, problems, n, 1.0, temperature=temperature,
                                    max_steps=max_steps, max_step_tokens=max_step_tokens)]


def unit_mean_weight(examples: list) -> list:
    """``examples`` (SFTExamples) rescaled to a mean weight of 1, so that reweighting them
    keeps the step size (an empty list stays empty)."""
    if not examples:
        return examples
    scale = len(examples) / sum(e.weight for e in examples)
    return [dataclasses.replace(e, weight=e.weight * scale) for e in examples]

"""Held-out evaluation of one policy: greedy accuracy, sampled pass@k, MCTS decoding at a
token budget, and what shrinks (pass@k curve, distinct correct solutions, token entropy,
format and strategy shares). Labels are read only after decoding, to judge the texts
(``judge``). Self-play's eval stage (each shard's part) and its diversity measurement run
here, and the study's ``measure`` takes its pass@k from the same ``pass_at_k`` and its
verdicts from the same ``judge``, so both report one estimator over one kind of count."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policies.diversity import format_share, strategy_share, token_entropy
from policies.rollout import generate_solutions
from treesearch.search.strategies import decode
from treesearch.tasks import prompt_ids
from treesearch.utils.estimators import default_ks, distinct_correct, pass_at_k_curve
from treesearch.utils.estimators import pass_at_k as pass_at_k_each

__all__ = ["decoded_correct", "diversity", "greedy_correct", "judge", "pass_at_k",
           "passk_fell", "powers_of_two", "sampled_counts"]


def judge(task, problems: Sequence, texts: Sequence[Sequence[str]]):
    """Verdicts of sampled solutions: ``texts`` holds P lists of solution texts (one list
    per problem). Returns (correct: P lists of bools, counts: int64 [P] correct per
    problem)."""
    correct = [[task.check_solution(p, t) for t in ts] for p, ts in zip(problems, texts)]
    return correct, np.array([sum(c) for c in correct], np.int64)


def powers_of_two(n: int) -> list[int]:
    """``[1, 2, 4, ...]`` up to ``n`` (``n`` itself only when a power of two): the k of
    self-play's per-round pass@k columns."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def pass_at_k(counts, n: int, ks: Sequence[int] | None = None) -> dict[str, float]:
    """{str(k): pass@k} over problems: ``counts`` int [P] correct of ``n`` samples per
    problem, the unbiased estimator (``treesearch.utils.estimators.pass_at_k_curve``)
    averaged over problems, for k in ``ks`` (None: ``default_ks(n)``, 1, 2, 4, ..., n)."""
    ks = default_ks(n) if ks is None else list(ks)
    return {str(k): float(v) for k, v in zip(ks, pass_at_k_curve(counts, n, ks))}


def greedy_correct(policy, task, problems: Sequence, *, max_steps: int,
                   max_step_tokens: int) -> list[bool]:
    """[P] whether the greedy (temperature 0) solution of each problem is correct."""
    greedy = generate_solutions(policy, policy.tokenizer, task, problems, n=1, temperature=0.0,
                                max_steps=max_steps, max_step_tokens=max_step_tokens)
    return [bool(task.check_solution(p, g[0])) for p, g in zip(problems, greedy)]


def sampled_counts(policy, task, problems: Sequence, n: int, *, temperature: float,
                   max_steps: int, max_step_tokens: int) -> list[int]:
    """[P] correct solutions among ``n`` sampled per problem (the input of pass@k)."""
    samples = generate_solutions(policy, policy.tokenizer, task, problems, n=n,
                                 temperature=temperature, max_steps=max_steps,
                                 max_step_tokens=max_step_tokens)
    return [int(sum(task.check_solution(p, x) for x in xs)) for p, xs in zip(problems, samples)]


def decoded_correct(policy, scorer, task, problems: Sequence, strategy: str, budget: int, *,
                    temperature: float, search, progress: bool = False):
    """``decode``'s ``strategy`` (MCTS; or majority vote, the sampling it must beat at equal
    tokens) at ``budget`` tokens per problem with a label-free ``scorer`` (None: a strategy
    that needs no critic). Returns ([P] correct flags, int64 [P] tokens spent)."""
    out = decode(policy, scorer, problems, strategy, budget, task=task, temperature=temperature,
                 search=search, progress=progress)
    return ([bool(task.check_solution(p, a)) for p, a in zip(problems, out.answers)],
            np.asarray(out.tokens))


def diversity(policy, task, problems: Sequence, n: int, *, temperature: float, max_steps: int,
              max_step_tokens: int, entropy_samples: int) -> dict:
    """What shrinks, on ``problems`` (labels read only after decoding): ``n`` samples each
    at ``temperature``; pass@k for k = 1, 2, 4, ..., n, distinct correct solutions per
    problem (whitespace-insensitive text), mean token entropy in nats over the first
    ``entropy_samples`` samples of each problem (nan without a transformers model), format
    shares of all samples and strategy shares of the correct ones; ``passk_counts``, the
    correct samples of each problem (P ints), keeps what ``passk_fell`` compares."""
    blind = [p.without_label() for p in problems]
    texts, tokens = generate_solutions(policy, policy.tokenizer, task, blind, n=n,
                                       temperature=temperature, max_steps=max_steps,
                                       max_step_tokens=max_step_tokens, return_tokens=True)
    correct, counts = judge(task, problems, texts)
    entropy = float("nan")
    if entropy_samples and hasattr(policy, "model"):
        pairs = [(prompt_ids(policy.tokenizer, task, p), tokens[i][j])
                 for i, p in enumerate(blind) for j in range(min(n, entropy_samples))
                 if tokens[i][j]]
        entropy = token_entropy(policy.model, pairs, temperature=temperature)
    right = [t for ts, cs in zip(texts, correct) for t, c in zip(ts, cs) if c]
    return {"passk": pass_at_k(counts, n),
            "passk_problems": len(problems), "passk_samples": n,
            "passk_counts": [int(c) for c in counts],
            "distinct_correct": float(np.mean([distinct_correct(ts, cs)
                                               for ts, cs in zip(texts, correct)])),
            "entropy": entropy,
            "format_share": format_share(task, [t for ts in texts for t in ts]),
            "strategy_share": strategy_share(task, right)}


def passk_fell(first_counts: Sequence[int], counts: Sequence[int], n: int) -> float:
    """Share of problems whose pass@n estimate fell from ``first_counts`` to ``counts``
    (each int [P], correct samples of n per problem, the same problems in the same order;
    e.g. round 0's and round r's ``passk_counts``): per problem, the unbiased pass@n of
    ``counts`` below that of ``first_counts``. At k = n the estimate is 1 with a correct
    sample and 0 without, so a problem falls when it was solved in some sample before and
    in none now. nan for no problems; ValueError for counts of different lengths."""
    first, now = np.asarray(first_counts, np.int64), np.asarray(counts, np.int64)
    if first.shape != now.shape or first.ndim != 1:
        raise ValueError(f"passk_fell: counts of {first.shape} and {now.shape} problems; "
                         "need the same problems")
    if not len(first):
        return float("nan")
    samples = np.full(first.shape, int(n))
    before, after = pass_at_k_each(samples, first, n), pass_at_k_each(samples, now, n)
    return float(np.mean(after < before))

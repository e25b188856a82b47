"""Whole-solution decoding with a step policy, and pass@k.

``generate_solutions`` writes full solutions step by step: the prompt's token ids go to
``policy.propose`` once (the n samples of a problem share its prefill), then every
unfinished sample asks for one more step, all samples of all problems in one batch per
round, until each has written an answer line, hit EOS, run out of steps, or filled the
model's context. It needs only the Policy protocol (``propose`` over token ids, plus a
``temperature`` attribute it sets for the call), so any backend can decode with it.

    solutions = generate_solutions(policy, tokenizer, task, problems, n=8, temperature=1.0)
    correct = [[task.check_solution(p, s) for s in sols] for p, sols in zip(problems, solutions)]
    pass_at_k(n=8, c=sum(correct[0]), k=4)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from treesearch.tasks import prompt_ids
from treesearch.utils.estimators import pass_at_k as estimate


def generate_solutions(policy, tokenizer, task, problems: Sequence, n: int = 1,
                       temperature: float = 0.0, max_steps: int = 8,
                       max_step_tokens: int = 48, batch_rows: int = 1024,
                       max_positions: int | None = None, return_counts: bool = False,
                       return_tokens: bool = False):
    """n solution texts (without the prompt) per problem, decoded step by step.

    policy: has ``propose(prefixes, n, max_step_tokens)`` and a ``temperature`` attribute
        (0 = greedy), which is set to ``temperature`` during the call and restored after.
    task: gives the prompt and decides which step is an answer line (``is_answer_step``).
    problems: the problems to solve; labels are never read (pass ``without_label()``
        copies if you like).
    max_steps: steps per solution, the answer line included.
    batch_rows: problems are decoded in chunks of about this many rows (problems x n).
    max_positions: the model's context length (default: ``policy.max_positions``); a sample
        stops when its text fills it.
    Returns ``len(problems)`` lists of n strings, each the concatenated steps (special
    tokens dropped), ending with the answer line when one was written; with
    ``return_counts``, also int64 [len(problems), n]: tokens generated for each solution.
    With ``return_tokens``, also (after the counts when both are asked for)
    ``len(problems)`` lists of n lists of int: the exact token ids each solution sampled,
    in order, special tokens (EOS) included, never re-tokenised from the text
    (``len(tokens[i][j]) == counts[i, j]``).
    """
    if n < 1 or max_steps < 1 or max_step_tokens < 1 or batch_rows < 1:
        raise ValueError(f"generate_solutions: need n, max_steps, max_step_tokens, batch_rows "
                         f">= 1, got {n}, {max_steps}, {max_step_tokens}, {batch_rows}")
    if max_positions is None:
        max_positions = getattr(policy, "max_positions", None)
    room = max_positions if max_positions is not None else 1 << 62
    old = policy.temperature
    policy.temperature = float(temperature)
    try:
        out: list[list[str]] = []
        counts: list[list[int]] = []
        tokens: list[list[list[int]]] = []
        per_chunk = max(1, batch_rows // n)
        for lo in range(0, len(problems), per_chunk):
            chunk = problems[lo:lo + per_chunk]
            texts, used, toks = _decode_chunk(policy, tokenizer, task, chunk, n, max_steps,
                                              max_step_tokens, room)
            out.extend(texts)
            counts.extend(used)
            tokens.extend(toks)
        if not (return_counts or return_tokens):
            return out
        result: tuple = (out,)
        if return_counts:
            result += (np.asarray(counts, np.int64).reshape(len(problems), n),)
        if return_tokens:
            result += (tokens,)
        return result
    finally:
        policy.temperature = old


def _decode_chunk(policy, tokenizer, task, problems, n, max_steps, max_step_tokens, room):
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    rows = [list(ids) for ids in prompts for _ in range(n)]   # full token sequences
    steps: list[list[str]] = [[] for _ in rows]                # decoded steps per row
    done = [len(r) >= room for r in rows]

    def take(r: int, proposal) -> None:
        toks = [int(t) for t in proposal.tokens]
        rows[r].extend(toks)
        text = tokenizer.decode(toks, skip_special_tokens=True)
        steps[r].append(text)
        if (proposal.finished or task.is_answer_step(text) or len(steps[r]) >= max_steps
                or len(rows[r]) >= room):
            done[r] = True

    # round 0: one prefill per problem, n samples each
    live = [i for i in range(len(prompts)) if not done[i * n]]
    if live:
        props = policy.propose([prompts[i] for i in live], n, max_step_tokens)
        for i, per in zip(live, props):
            for j, proposal in enumerate(per):
                take(i * n + j, proposal)
    for _ in range(max_steps - 1):
        active = [r for r in range(len(rows)) if not done[r]]
        if not active:
            break
        props = policy.propose([rows[r] for r in active], 1, max_step_tokens)
        for r, per in zip(active, props):
            take(r, per[0])
    texts = [["".join(steps[i * n + j]) for j in range(n)] for i in range(len(problems))]
    used = [[len(rows[i * n + j]) - len(prompts[i]) for j in range(n)]
            for i in range(len(problems))]
    toks = [[rows[i * n + j][len(prompts[i]):] for j in range(n)] for i in range(len(problems))]
    return texts, used, toks


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c,k)/C(n,k).
    (``treesearch.utils.estimators.pass_at_k``, also vectorised, for scalars.)"""
    return estimate(int(n), int(c), int(k))

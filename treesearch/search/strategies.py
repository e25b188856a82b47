"""Decoding strategies under one token budget: greedy, sample, best-of-N, majority vote,
step-level beam search and MCTS.

    result = decode(policy, critics, problems, "mcts", budget=512, task=task)
    result.answers        # one solution text per problem
    result.tokens         # int64 [P]: tokens generated for each problem

``budget`` is the number of tokens the policy may GENERATE per problem. Sampling
strategies draw whole solutions in rounds until a problem's budget is spent (the last
solution may overrun it by one solution); beam search and MCTS stop expanding a problem
once its budget is spent. Every strategy reports the tokens it really used, so a table can
show whether budgets were matched.

Labels never reach a strategy: ``decode`` strips them before anything runs, and the
critics it is given must be learned ones (a rule verifier refuses held-out problems by
itself). ``evaluate`` scores strategies at several budgets on labelled problems (after
decoding); ``python -m treesearch.decode`` is its command line.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from policies.rollout import generate_solutions
from treesearch.search.config import SearchConfig
from treesearch.search.stepsearch import StepSearch
from treesearch.tasks import prompt_ids
from treesearch.utils.plots import line_plot

STRATEGIES = ("greedy", "sample", "best_of_n", "majority", "beam", "mcts")
NEEDS = {"best_of_n": ("outcome",), "beam": ("process", "value"), "mcts": ("value", "process", "outcome")}


@dataclass
class DecodeResult:
    """answers: P solution texts; tokens: int64 [P] generated tokens per problem;
    samples: int64 [P] whole solutions or expansions drawn; seconds: wall time."""

    strategy: str
    answers: list[str]
    tokens: np.ndarray
    samples: np.ndarray
    seconds: float


def check_request(strategy: str, critics, problems: Sequence, budget: int, max_step_tokens: int):
    """Refuse what cannot run, before any model work: unknown strategy, empty problem
    list, a budget too small for one step, a critic set lacking what the strategy needs."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not problems:
        raise ValueError("decode: empty problem list")
    if not isinstance(budget, (int, np.integer)) or budget < max_step_tokens:
        raise ValueError(f"decode: budget {budget!r} tokens per problem is too small for one "
                         f"step of up to {max_step_tokens} tokens")
    need = NEEDS.get(strategy, ())
    if need and not any(critics.has(k) for k in need):
        raise ValueError(f"decode: strategy {strategy!r} needs a {' or '.join(need)} critic, "
                         "and none was given")


def decode(policy, critics, problems: Sequence, strategy: str, budget: int, *, task,
           tokenizer=None, n_chunk: int = 4, temperature: float = 1.0, max_steps: int = 6,
           max_step_tokens: int = 32, beam_width: int = 4, search: SearchConfig | None = None,
           progress: bool = False) -> DecodeResult:
    """Decode every problem with one strategy under a generated-token budget per problem.

    policy: Policy protocol with ``temperature`` (and ``tokenizer`` unless given);
    critics: ``critics.compose.StepScorer`` (may hold no critic for greedy/sample/majority);
    problems: labelled or not (labels are stripped here); task: prompts and answers.
    n_chunk: solutions drawn per problem per round by sampling strategies;
    beam_width: beams kept per problem; search: MCTS options (its max_tokens is set to
    ``budget``).
    """
    check_request(strategy, critics, problems, budget, max_step_tokens)
    tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
    problems = [p.without_label() for p in problems]
    start = time.perf_counter()
    if strategy in ("greedy", "sample"):
        texts, used = _solutions(policy, tokenizer, task, problems, 1,
                                 0.0 if strategy == "greedy" else temperature, max_steps,
                                 max_step_tokens)
        answers, tokens, samples = [t[0] for t in texts], used[:, 0], np.ones(len(problems), np.int64)
    elif strategy in ("best_of_n", "majority"):
        pools, tokens = _sample_until(policy, tokenizer, task, problems, budget, n_chunk,
                                      temperature, max_steps, max_step_tokens)
        pick = _pick_by_orm if strategy == "best_of_n" else _pick_by_vote
        answers = pick(pools, problems, task, tokenizer, critics)
        samples = np.array([len(p) for p in pools], np.int64)
    elif strategy == "beam":
        answers, tokens, samples = _beam(policy, tokenizer, task, problems, critics, budget,
                                         beam_width, n_chunk, max_steps, max_step_tokens)
    else:
        config = replace(search or SearchConfig(max_depth=max_steps, max_step_tokens=max_step_tokens),
                         max_tokens=int(budget))
        old = policy.temperature
        policy.temperature = temperature
        try:
            result = StepSearch(policy, critics, task, tokenizer, config).run(problems, progress=progress)
        finally:
            policy.temperature = old
        answers, tokens = result.answers, result.stats.generated.copy()
        samples = result.stats.rounds.copy()
    return DecodeResult(strategy, answers, np.asarray(tokens, np.int64), samples,
                        time.perf_counter() - start)


# -- sampling strategies --------------------------------------------------------------------

def _solutions(policy, tokenizer, task, problems, n, temperature, max_steps, max_step_tokens):
    return generate_solutions(policy, tokenizer, task, problems, n=n, temperature=temperature,
                              max_steps=max_steps, max_step_tokens=max_step_tokens,
                              return_counts=True)


def _sample_until(policy, tokenizer, task, problems, budget, n_chunk, temperature, max_steps,
                  max_step_tokens):
    """Draw whole solutions, n_chunk per problem per round, for the problems whose budget
    is not yet spent. Returns (pools: P lists of texts, tokens int64 [P])."""
    pools: list[list[str]] = [[] for _ in problems]
    tokens = np.zeros(len(problems), np.int64)
    while True:
        live = np.flatnonzero(tokens < budget)
        if live.size == 0:
            return pools, tokens
        texts, used = _solutions(policy, tokenizer, task, [problems[i] for i in live], n_chunk,
                                 temperature, max_steps, max_step_tokens)
        for row, i in enumerate(live):
            for j in range(n_chunk):  # keep solutions while the budget lasts (the one
                if tokens[i] >= budget:  # that crosses it is kept and counted)
                    break
                pools[i].append(texts[row][j])
                tokens[i] += used[row, j]


def _state(tokenizer, task, problem, text):
    """(prompt ids, step spans) of a solution text, in the policy's tokenizer."""
    steps = [line + task.step_delimiter for line in text.split(task.step_delimiter) if line]
    return (prompt_ids(tokenizer, task, problem),
            [list(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in steps])


def _pick_by_orm(pools, problems, task, tokenizer, critics) -> list[str]:
    flat = [(i, text) for i, pool in enumerate(pools) for text in pool]
    states = [_state(tokenizer, task, problems[i], text) for i, text in flat]
    scores = critics.run("outcome", states)
    has_answer = np.array([task.extract_answer(t) is not None for _, t in flat])
    scores = np.where(has_answer, scores, -1.0)  # a solution without an answer never wins
    best: dict[int, tuple[float, str]] = {}
    for (i, text), s in zip(flat, scores):
        if i not in best or s > best[i][0]:
            best[i] = (float(s), text)
    return [best.get(i, (0.0, ""))[1] for i in range(len(pools))]


def _pick_by_vote(pools, problems, task, tokenizer, critics) -> list[str]:
    out = []
    for pool in pools:
        keys = [task.answer_key(task.extract_answer(t)) for t in pool]
        votes = Counter(k for k in keys if k is not None)
        if not votes:
            out.append(pool[0] if pool else "")
            continue
        winner = max(votes, key=lambda k: (votes[k], -keys.index(k)))  # ties: earliest
        out.append(pool[keys.index(winner)])
    return out


# -- step-level beam search -----------------------------------------------------------------

def _beam(policy, tokenizer, task, problems, critics, budget, width, n_chunk, max_steps,
          max_step_tokens):
    """Keep ``width`` partial solutions per problem; expand each with ``n_chunk`` sampled
    steps, score the children with the PRM (else the value critic), keep the best ``width``;
    finished beams stay. Stops per problem when all beams finished or the budget is spent.
    The answer: the finished beam with the best ORM score if there is an ORM, else the
    best critic score."""
    kind = "process" if critics.has("process") else "value"
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    beams = [[([], 1.0, False)] for _ in problems]  # (steps, score, finished)
    tokens = np.zeros(len(problems), np.int64)
    expansions = np.zeros(len(problems), np.int64)
    for _ in range(max_steps):
        rows = [(i, b) for i in range(len(problems)) if tokens[i] < budget
                for b, beam in enumerate(beams[i]) if not beam[2]]
        if not rows:
            break
        prefixes = [prompts[i] + [t for s in beams[i][b][0] for t in s] for i, b in rows]
        props = policy.propose(prefixes, n_chunk, max_step_tokens)
        cands: dict[int, list] = {i: [bm for bm in beams[i] if bm[2]] for i in range(len(problems))}
        new = []
        for (i, b), per in zip(rows, props):
            expansions[i] += 1
            seen = set()
            for p in per:
                tokens[i] += p.n_tokens
                step = [int(t) for t in p.tokens]
                if tuple(step) in seen:
                    continue
                seen.add(tuple(step))
                text = tokenizer.decode(step, skip_special_tokens=True)
                steps = beams[i][b][0] + [step]
                done = (p.finished or task.is_answer_step(text) or len(steps) >= max_steps)
                new.append((i, steps, done))
        scores = critics.run(kind, [(prompts[i], steps) for i, steps, _ in new])
        for (i, steps, done), s in zip(new, scores):
            cands[i].append((steps, float(s), done))
        for i in {i for i, _ in rows}:  # problems expanded this round
            beams[i] = sorted(cands[i], key=lambda c: -c[1])[:width]
    answers = []
    for i in range(len(problems)):
        finished = [bm for bm in beams[i] if bm[2]] or beams[i]
        if critics.has("outcome"):
            s = critics.run("outcome", [(prompts[i], bm[0]) for bm in finished])
            best = finished[int(np.argmax(s))]
        else:
            best = max(finished, key=lambda c: c[1])
        answers.append("".join(tokenizer.decode(st, skip_special_tokens=True) for st in best[0]))
    return answers, tokens, expansions


# -- command line ---------------------------------------------------------------------------

def evaluate(policy, critics, task, problems, strategies, budgets, *, progress=True, **kw):
    """Accuracy of each strategy at each budget on labelled problems (scored after
    decoding, with labels the strategies never saw). Returns a list of row dicts."""
    rows = []
    jobs = [(s, b) for b in budgets for s in strategies]
    for strategy, budget in tqdm(jobs, desc="decode", disable=not progress):
        if strategy in ("greedy", "sample") and any(r["strategy"] == strategy for r in rows):
            continue  # one solution whatever the budget: measured once
        out = decode(policy, critics, problems, strategy, budget, task=task, **kw)
        correct = [task.check_solution(p, a) for p, a in zip(problems, out.answers)]
        rows.append({"strategy": strategy, "budget": int(budget),
                     "accuracy": float(np.mean(correct)), "tokens": float(out.tokens.mean()),
                     "samples": float(out.samples.mean()), "seconds": round(out.seconds, 2)})
    return rows


def format_table(rows) -> str:
    lines = [f"{'strategy':<10} {'budget':>7} {'accuracy':>8} {'tokens':>8} {'samples':>8} {'wall s':>7}"]
    for r in rows:
        lines.append(f"{r['strategy']:<10} {r['budget']:>7} {r['accuracy']:>8.3f} "
                     f"{r['tokens']:>8.0f} {r['samples']:>8.1f} {r['seconds']:>7.1f}")
    return "\n".join(lines)


def plot(rows, path, title: str) -> None:
    """Accuracy vs tokens generated per problem, one line per strategy (PNG, atomic)."""
    series = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        pts = sorted((r["tokens"], r["accuracy"]) for r in rows if r["strategy"] == strategy)
        series[strategy] = ([p[0] for p in pts], [p[1] for p in pts])
    line_plot(series, path, xlabel="tokens generated per problem", ylabel="accuracy",
              title=title, xscale="log")

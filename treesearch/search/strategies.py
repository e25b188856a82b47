"""Decoding strategies under one token budget: greedy, sample, best-of-N, ORM-weighted
best-of-N, majority vote, step-level beam search and MCTS.

    result = decode(policy, critics, problems, "mcts", budget=512, task=task, search=config)
    result.answers        # one solution text per problem
    result.tokens         # int64 [P]: policy tokens generated for each problem

One currency: ``budget`` is the number of tokens the policy may GENERATE per problem, and
every strategy stops at it. No policy call asks for more steps of a problem than its
remaining budget pays at ``max_step_tokens`` each (a sampled solution still running when the
budget is spent is cut there and counted), so a problem overshoots by less than one step.
Greedy and single sampling draw one solution whatever the budget: they are shown as
one-sample references. Critic work is counted too (``critic_calls``, ``critic_tokens``:
the model tokens the critics processed), so a table can show total model tokens.

``search`` (a ``SearchConfig``, the same dataclass self-play uses) sets the MCTS options
and, for every strategy, the solution limits ``max_depth`` (steps, the answer line
included) and ``max_step_tokens``: beam search goes as deep as MCTS does.

Labels never reach a strategy: ``decode`` strips them before anything runs, and the
critics it is given must be learned ones or label-free checkers (a rule verifier refuses
held-out problems by itself). ``evaluate`` scores strategies at several budgets on labelled
problems (after decoding); ``python -m treesearch.decode`` is its command line.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from policies.rollout import generate_solutions
from treesearch.search.budget import affordable_steps, charge_critics
from treesearch.search.config import SearchConfig
from treesearch.search.stepsearch import StepSearch
from treesearch.tasks import prompt_ids
from treesearch.tasks.base import stable_hash
from treesearch.utils.estimators import standard_error
from treesearch.utils.plots import line_plot

STRATEGIES = ("greedy", "sample", "best_of_n", "weighted_bon", "majority", "beam", "mcts")
REFERENCES = ("greedy", "sample")  # one solution whatever the budget
NEEDS = {"best_of_n": ("outcome",), "weighted_bon": ("outcome",), "beam": ("process", "value"),
         "mcts": ("value", "process", "outcome")}


@dataclass
class DecodeResult:
    """What one strategy did, per problem ([P] arrays).

    answers: P solution texts; tokens: int64 [P], policy tokens generated; samples: int64
    [P], whole solutions drawn (sampling), expansions (beam) or rounds (MCTS);
    critic_calls: int64 [P], critic evaluations; critic_tokens: int64 [P], model tokens the
    critics processed; seconds: wall time of the whole call.
    """

    strategy: str
    answers: list[str]
    tokens: np.ndarray
    samples: np.ndarray
    critic_calls: np.ndarray
    critic_tokens: np.ndarray
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


class _Ledger:
    """Per-problem costs of one decode call: int64 [P] arrays."""

    def __init__(self, n: int):
        self.tokens = np.zeros(n, np.int64)
        self.critic_calls = np.zeros(n, np.int64)
        self.critic_tokens = np.zeros(n, np.int64)

    def charge_critics(self, critics, problem_of_state) -> None:
        """Book the scorer's latest call on the problems of its states (one index each)."""
        charge_critics(self.critic_calls, self.critic_tokens, critics, problem_of_state)


def decode(policy, critics, problems: Sequence, strategy: str, budget: int, *, task,
           search: SearchConfig | None = None, tokenizer=None, temperature: float = 1.0,
           streams: int = 1, n_chunk: int | None = None, beam_width: int | None = None,
           simulations: int | None = None, progress: bool = False) -> DecodeResult:
    """Decode every problem with one strategy under a generated-token budget per problem.

    policy: Policy protocol with ``temperature`` (and ``tokenizer`` unless given);
    critics: ``critics.compose.StepScorer`` (may hold no critic for greedy/sample/majority);
    problems: labelled or not (labels are stripped here); task: prompts and answers;
    search: MCTS options and every strategy's solution limits (default ``SearchConfig()``;
    its max_tokens is set to ``budget``); simulations: MCTS's rounds, at most (None: its
    simulations raised to ``budget``, so MCTS runs until the budget is spent or its trees
    idle); streams: solutions sampled side by side per problem by the sampling strategies
    (each restarts when it finishes, while the budget lasts); n_chunk: next-step samples
    per beam; beam_width: beams kept per problem (both None: sized to the budget,
    ``beam_size``).
    """
    search = search if search is not None else SearchConfig()
    max_steps, max_step_tokens = search.max_depth, search.max_step_tokens
    check_request(strategy, critics, problems, budget, max_step_tokens)
    tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
    problems = [p.without_label() for p in problems]
    ledger = _Ledger(len(problems))
    start = time.perf_counter()
    if strategy in REFERENCES:
        texts, used = generate_solutions(policy, tokenizer, task, problems, n=1,
                                         temperature=0.0 if strategy == "greedy" else temperature,
                                         max_steps=max_steps, max_step_tokens=max_step_tokens,
                                         return_counts=True)
        answers, samples = [t[0] for t in texts], np.ones(len(problems), np.int64)
        ledger.tokens += used[:, 0]
    elif strategy in ("best_of_n", "weighted_bon", "majority"):
        pools = _sample_until(policy, tokenizer, task, problems, budget, streams, temperature,
                              max_steps, max_step_tokens, ledger)
        pick = {"best_of_n": _pick_by_orm, "weighted_bon": _pick_by_weighted_vote,
                "majority": _pick_by_vote}[strategy]
        answers = pick(pools, problems, task, tokenizer, critics, ledger)
        samples = np.array([len(p) for p in pools], np.int64)
    elif strategy == "beam":
        answers, samples = _beam(policy, tokenizer, task, problems, critics, budget,
                                 beam_width, n_chunk, max_steps, max_step_tokens, ledger)
    else:
        old = policy.temperature
        policy.temperature = temperature
        try:
            # without a given count the budget, not the simulation count, ends the search:
            # every round costs at least one token until a tree idles (StepSearch's IDLE_ROUNDS)
            rounds = max(search.simulations, int(budget)) if simulations is None else simulations
            sized = replace(search, max_tokens=int(budget), simulations=int(rounds))
            mcts = StepSearch(policy, critics, task, tokenizer, sized)
            result = mcts.run(problems, progress=progress)
        finally:
            policy.temperature = old
        answers, samples = result.answers, result.stats.rounds.copy()
        ledger.tokens += result.stats.generated
        ledger.critic_calls += result.stats.critic_calls
        ledger.critic_tokens += result.stats.critic_tokens
    return DecodeResult(strategy, answers, ledger.tokens, samples, ledger.critic_calls,
                        ledger.critic_tokens, time.perf_counter() - start)


# -- sampling strategies --------------------------------------------------------------------

def _sample_until(policy, tokenizer, task, problems, budget, streams, temperature, max_steps,
                  max_step_tokens, ledger) -> list[list[str]]:
    """Sample whole solutions step by step, ``streams`` side by side per problem, every
    stream starting a new solution when one finishes, until the problem's budget is spent.
    A step is asked for only while the budget can pay it at ``max_step_tokens``; a solution
    still running then is cut (its tokens counted, the text dropped). Returns P lists of
    finished solution texts; generated tokens go to ``ledger.tokens``."""
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    room = getattr(policy, "max_positions", None) or 1 << 62
    pools: list[list[str]] = [[] for _ in problems]
    rows = [(i, list(prompts[i]), []) for i in range(len(problems)) for _ in range(streams)]
    old = policy.temperature
    policy.temperature = float(temperature)
    try:
        while rows:
            allowance = affordable_steps(budget, ledger.tokens, max_step_tokens)
            live = []
            for row in rows:
                if allowance[row[0]] > 0:
                    allowance[row[0]] -= 1
                    live.append(row)
            if not live:
                break
            props = policy.propose([seq for _, seq, _ in live], 1, max_step_tokens)
            rows = []
            for (i, seq, steps), per in zip(live, props):
                step = per[0]
                ledger.tokens[i] += step.n_tokens
                seq.extend(int(t) for t in step.tokens)
                steps.append(tokenizer.decode([int(t) for t in step.tokens],
                                              skip_special_tokens=True))
                if (step.finished or task.is_answer_step(steps[-1]) or len(steps) >= max_steps
                        or len(seq) >= room):
                    pools[i].append("".join(steps))
                    rows.append((i, list(prompts[i]), []))  # start the next solution
                else:
                    rows.append((i, seq, steps))
    finally:
        policy.temperature = old
    return pools


def _state(tokenizer, task, problem, text):
    """(prompt ids, step spans) of a solution text, in the policy's tokenizer."""
    steps = [line + task.step_delimiter for line in text.split(task.step_delimiter) if line]
    return (prompt_ids(tokenizer, task, problem),
            [list(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in steps])


def _orm_scores(pools, problems, task, tokenizer, critics, ledger):
    """ORM score of every pooled solution that has an answer: (flat list of (problem,
    text), float64 scores; -1 for solutions without an answer, which are not scored)."""
    flat = [(i, text) for i, pool in enumerate(pools) for text in pool]
    scored = [k for k, (_, t) in enumerate(flat) if task.extract_answer(t) is not None]
    scores = np.full(len(flat), -1.0)
    if scored:
        states = [_state(tokenizer, task, problems[flat[k][0]], flat[k][1]) for k in scored]
        scores[scored] = critics.run("outcome", states)
        ledger.charge_critics(critics, [flat[k][0] for k in scored])
    return flat, scores


def _pick_by_orm(pools, problems, task, tokenizer, critics, ledger) -> list[str]:
    """Best-of-N: the solution the ORM scores highest (one without an answer never wins)."""
    flat, scores = _orm_scores(pools, problems, task, tokenizer, critics, ledger)
    best: dict[int, tuple[float, str]] = {}
    for (i, text), s in zip(flat, scores):
        if i not in best or s > best[i][0]:
            best[i] = (float(s), text)
    return [best.get(i, (0.0, ""))[1] for i in range(len(pools))]


def _pick_by_weighted_vote(pools, problems, task, tokenizer, critics, ledger) -> list[str]:
    """ORM-weighted majority (search-and-learn's weighted best-of-N): answers grouped by
    what they claim (``task.answer_key``), each group weighted by the sum of its ORM
    scores; the heaviest group's best-scored solution (ties: the earliest group)."""
    flat, scores = _orm_scores(pools, problems, task, tokenizer, critics, ledger)
    weight: list[dict] = [{} for _ in pools]  # per problem: answer key -> summed score
    best: list[dict] = [{} for _ in pools]    # per problem: answer key -> (score, text)
    for (i, text), s in zip(flat, scores):
        key = task.answer_key(task.extract_answer(text))
        if key is None:
            continue
        weight[i][key] = weight[i].get(key, 0.0) + s
        if key not in best[i] or s > best[i][key][0]:
            best[i][key] = (s, text)
    return [best[i][max(w, key=w.get)][1] if w else (pool[0] if pool else "")
            for i, (w, pool) in enumerate(zip(weight, pools))]


def _pick_by_vote(pools, problems, task, tokenizer, critics, ledger=None) -> list[str]:
    """Majority vote over what the answers claim (``task.answer_key``; ties: earliest)."""
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

def beam_size(budget: int, max_steps: int, max_step_tokens: int) -> tuple[int, int]:
    """(width, samples per step) of a beam search sized to ``budget`` tokens per problem:
    one pass expands ``width`` beams by ``samples`` steps each, for up to ``max_steps``
    steps of about half of ``max_step_tokens``, so a pass costs about k * k * max_steps *
    max_step_tokens / 2 with k = width = samples; k is the largest that fits, 2 to 16."""
    per_path = max_steps * max(1, max_step_tokens // 2)
    k = int(np.sqrt(max(budget, 0) / per_path))
    return min(max(k, 2), 16), min(max(k, 2), 16)


def _beam(policy, tokenizer, task, problems, critics, budget, width, n_chunk, max_steps,
          max_step_tokens, ledger):
    """Step-level beam search, in passes until the budget is spent: each pass keeps
    ``width`` partial solutions per problem and expands each with up to ``n_chunk`` sampled
    steps (fewer when the budget cannot pay them at ``max_step_tokens`` each), scores the
    children with the PRM (else the value critic) and keeps the best ``width``; finished
    beams stay, and a pass ends when all are finished or ``max_steps`` deep. A problem whose
    pass ends with budget left starts another (so the search spends what it is given, as
    the sampling strategies do). The answer: among the finished beams of every pass, the
    best by the ORM if there is one, else by the critic score. ``width`` / ``n_chunk``
    None: ``beam_size``. Returns (answers, expansions int64 [P])."""
    auto_width, auto_chunk = beam_size(budget, max_steps, max_step_tokens)
    width, n_chunk = width or auto_width, n_chunk or auto_chunk
    kind = "process" if critics.has("process") else "value"
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    pool: list[list] = [[] for _ in problems]  # the beams of every finished pass
    expansions = np.zeros(len(problems), np.int64)
    while True:
        beams, expanded = _beam_pass(policy, tokenizer, task, prompts, critics, kind, budget,
                                     width, n_chunk, max_steps, max_step_tokens, ledger)
        if not expanded.any():
            break
        expansions += expanded
        for i in np.flatnonzero(expanded):
            pool[i].extend(beams[i])
    answers = []
    for i in range(len(problems)):
        finished = [bm for bm in pool[i] if bm[2]] or pool[i]
        if not finished:
            answers.append("")
            continue
        if critics.has("outcome"):
            s = critics.run("outcome", [(prompts[i], bm[0]) for bm in finished])
            ledger.charge_critics(critics, [i] * len(finished))
            best = finished[int(np.argmax(s))]
        else:
            best = max(finished, key=lambda c: c[1])
        answers.append("".join(tokenizer.decode(st, skip_special_tokens=True) for st in best[0]))
    return answers, expansions


def _beam_pass(policy, tokenizer, task, prompts, critics, kind, budget, width, n_chunk,
               max_steps, max_step_tokens, ledger):
    """One beam-search pass over every problem that can still pay a step. Returns (beams:
    per problem a list of (steps, score, finished), expansions int64 [P] of this pass)."""
    beams = [[([], 1.0, False)] for _ in prompts]  # (steps, score, finished)
    expansions = np.zeros(len(prompts), np.int64)
    for _ in range(max_steps):
        allowance = affordable_steps(budget, ledger.tokens, max_step_tokens)
        rows = []  # (problem, beam, samples)
        for i in range(len(prompts)):
            for b, beam in enumerate(beams[i]):
                n = min(n_chunk, int(allowance[i]))
                if not beam[2] and n > 0:
                    allowance[i] -= n
                    rows.append((i, b, n))
        if not rows:
            break
        cands: dict[int, list] = {i: [bm for bm in beams[i] if bm[2]] for i in range(len(prompts))}
        new = []
        for n in sorted({n for _, _, n in rows}, reverse=True):
            group = [(i, b) for i, b, m in rows if m == n]
            prefixes = [prompts[i] + [t for s in beams[i][b][0] for t in s] for i, b in group]
            for (i, b), per in zip(group, policy.propose(prefixes, n, max_step_tokens)):
                expansions[i] += 1
                seen = set()
                for p in per:
                    ledger.tokens[i] += p.n_tokens
                    step = [int(t) for t in p.tokens]
                    if tuple(step) in seen:
                        continue
                    seen.add(tuple(step))
                    text = tokenizer.decode(step, skip_special_tokens=True)
                    steps = beams[i][b][0] + [step]
                    done = (p.finished or task.is_answer_step(text) or len(steps) >= max_steps)
                    new.append((i, steps, done))
        scores = critics.run(kind, [(prompts[i], steps) for i, steps, _ in new])
        ledger.charge_critics(critics, [i for i, _, _ in new])
        for (i, steps, done), s in zip(new, scores):
            cands[i].append((steps, float(s), done))
        for i in {i for i, _, _ in rows}:  # problems expanded this round
            beams[i] = sorted(cands[i], key=lambda c: -c[1])[:width]
    return beams, expansions


# -- tables ---------------------------------------------------------------------------------

def restart(policy, seed: int, critics=None) -> None:
    """Start a job afresh: every prefix cache emptied (the policy's and, given ``critics``
    (``Critics``), each critic's: a PRM's cached prefixes would otherwise carry one job's
    work into the next and undercount its critic tokens), and the policy's sampling
    generator restarted at ``seed`` where it has one (``HFPolicy``; a vLLM engine is seeded
    once when built). So a job's samples and costs do not depend on what ran before it."""
    models = [policy, *(critics.critics.values() if critics is not None else ())]
    for model in models:
        if hasattr(model, "reset_cache"):
            model.reset_cache()
    generator = getattr(policy, "generator", None)
    if generator is not None:
        generator.manual_seed(int(seed))


def evaluate(policy, critics, task, problems, strategies, budgets, *, seed: int = 0,
             progress=True, **kw):
    """Accuracy (with its standard error) of each strategy at each budget on labelled
    problems, scored after decoding with labels the strategies never saw. Each (strategy,
    budget) starts from empty prefix caches and a sampling seed of its own (``restart``),
    so its result and costs do not depend on the order the jobs run in. The references
    (greedy, sample) run once, whatever the budget. Returns a list of row dicts; tokens
    are means per problem."""
    rows = []
    jobs = [(s, b) for b in budgets for s in strategies]
    for strategy, budget in tqdm(jobs, desc="decode", disable=not progress):
        if strategy in REFERENCES and any(r["strategy"] == strategy for r in rows):
            continue
        restart(policy, stable_hash("decode", seed, strategy, budget) % 2**31, critics)
        out = decode(policy, critics, problems, strategy, budget, task=task, **kw)
        rows.append(result_row(task, problems, budget, out))
    return rows


def result_row(task, problems, budget, out: DecodeResult) -> dict:
    """``evaluate``'s row of one strategy's result on labelled ``problems`` (scored here,
    after decoding): accuracy with its standard error, mean costs per problem, and for a
    task that grades its problems the accuracy per difficulty bin (``by_difficulty``)."""
    correct = np.array([task.check_solution(p, a) for p, a in zip(problems, out.answers)], float)
    return {**by_difficulty(task, problems, correct), "strategy": out.strategy,
            "budget": None if out.strategy in REFERENCES else int(budget),
            "accuracy": float(correct.mean()), "se": standard_error(correct),
            "tokens": float(out.tokens.mean()), "max_tokens": int(out.tokens.max()),
            "critic_tokens": float(out.critic_tokens.mean()),
            "model_tokens": float((out.tokens + out.critic_tokens).mean()),
            "critic_calls": float(out.critic_calls.mean()),
            "samples": float(out.samples.mean()), "seconds": round(out.seconds, 2)}


def by_difficulty(task, problems, correct: np.ndarray) -> dict:
    """{"by_difficulty": {bin: {"n", "accuracy", "se"}}} over ``Task.difficulty``'s bins
    (``correct``: float [P], 1 for a solved problem); {} when the task has no bins."""
    bins = [task.difficulty(p) for p in problems]
    if all(b is None for b in bins):
        return {}
    out = {}
    for name in dict.fromkeys(bins):
        hits = correct[[b == name for b in bins]]
        out[str(name)] = {"n": int(hits.size), "accuracy": float(hits.mean()),
                          "se": standard_error(hits)}
    # bins named by their range ("1-2", "12+") sort by their first number
    order = sorted(out, key=lambda name: (int(m[0]) if (m := re.match(r"\d+", name)) else 0, name))
    return {"by_difficulty": {name: out[name] for name in order}}


def concat_results(parts: Sequence[DecodeResult]) -> DecodeResult:
    """One strategy's results on consecutive shards of problems as one result (problems
    in shard order; seconds: the shards' sum)."""
    return DecodeResult(parts[0].strategy, [a for p in parts for a in p.answers],
                        *(np.concatenate([getattr(p, k) for p in parts])
                          for k in ("tokens", "samples", "critic_calls", "critic_tokens")),
                        sum(p.seconds for p in parts))


def format_table(rows) -> str:
    """Accuracy +- standard error and the costs per problem: generated policy tokens (mean,
    max), critic tokens, model tokens (policy + critics), samples, wall seconds."""
    lines = [f"{'strategy':<12} {'budget':>6} {'accuracy':>14} {'tokens':>7} {'max':>6} "
             f"{'critic tok':>10} {'model tok':>9} {'samples':>7} {'wall s':>7}"]
    for r in rows:
        budget = "ref" if r["budget"] is None else str(r["budget"])
        lines.append(f"{r['strategy']:<12} {budget:>6} {r['accuracy']:>7.3f} +- {r['se']:.3f} "
                     f"{r['tokens']:>7.0f} {r['max_tokens']:>6} {r['critic_tokens']:>10.0f} "
                     f"{r['model_tokens']:>9.0f} {r['samples']:>7.1f} {r['seconds']:>7.1f}")
    return "\n".join(lines)


def plot(rows, path, title: str) -> None:
    """Accuracy vs policy tokens generated per problem, one line per strategy (PNG, atomic)."""
    series = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        pts = sorted((r["tokens"], r["accuracy"]) for r in rows if r["strategy"] == strategy)
        series[strategy] = ([p[0] for p in pts], [p[1] for p in pts])
    line_plot(series, path, xlabel="tokens generated per problem", ylabel="accuracy",
              title=title, xscale="log")

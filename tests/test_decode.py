"""Decoding strategies: refusals before model work, budgets, votes, labels kept out."""

import dataclasses

import numpy as np
import pytest

from critics.compose import StepScorer
from policies.rollout import generate_solutions
from treesearch.search import SearchConfig, StepSearch
from treesearch.search.strategies import (
    STRATEGIES,
    _Ledger,
    _pick_by_vote,
    _pick_by_weighted_vote,
    decode,
)

SENTINEL = "LEAK-SENTINEL-8801"


class _NoModel:
    """A policy that must not be called: refusals happen before any model work."""

    tokenizer = None
    temperature = 1.0

    def propose(self, *a, **k):
        raise AssertionError("model work started before the request was checked")


class _Recorder:
    def __init__(self, kind, value=0.5):
        self.kind, self.value, self.name, self.seen = kind, value, f"rec-{kind}", []

    def score(self, states):
        self.seen.extend(states)
        if not len(states):
            return np.zeros(0, np.float32)
        return np.linspace(0.1, 0.9, len(states)).astype(np.float32)


def test_bad_requests_fail_before_model_work(task):
    problems = task.problems("test", 2, seed=0)
    none = StepScorer()
    with pytest.raises(ValueError, match="outcome"):
        decode(_NoModel(), none, problems, "best_of_n", 256, task=task)
    with pytest.raises(ValueError, match="outcome"):
        decode(_NoModel(), none, problems, "weighted_bon", 256, task=task)
    with pytest.raises(ValueError, match="process or value"):
        decode(_NoModel(), none, problems, "beam", 256, task=task)
    with pytest.raises(ValueError, match="empty problem list"):
        decode(_NoModel(), none, [], "greedy", 256, task=task)
    with pytest.raises(ValueError, match="too small"):
        decode(_NoModel(), none, problems, "majority", 8, task=task)
    with pytest.raises(ValueError, match="known"):
        decode(_NoModel(), none, problems, "nucleus", 256, task=task)


def test_greedy_matches_step_by_step_greedy_decoding(policy, task):
    problems = task.problems("test", 3, seed=0)
    out = decode(policy, StepScorer(), problems, "greedy", 256, task=task,
                 search=SearchConfig(max_depth=6, max_step_tokens=32))
    expected = generate_solutions(policy, policy.tokenizer, task, problems, n=1, temperature=0.0,
                                  max_steps=6, max_step_tokens=32)
    assert out.answers == [e[0] for e in expected]
    assert np.all(out.tokens == [len(policy.tokenizer(a[0])["input_ids"]) for a in expected])


def test_majority_vote_groups_equivalent_answers(task):
    pools = [["5*4=20\nA:5*4\n", "A:4*5\n", "A:20+0\n"]]
    # 5*4 and 4*5 claim the same value with the same numbers: they outvote 20+0
    assert _pick_by_vote(pools, None, task, None, None) == ["5*4=20\nA:5*4\n"]


def test_weighted_vote_sums_orm_scores_per_claim(task):
    class _Scores:
        last_cost = (np.zeros(0, np.int64), np.zeros(0))

        def run(self, kind, states):
            self.last_cost = (np.ones(len(states), np.int64), np.zeros(len(states)))
            return np.array([0.3, 0.3, 0.9][:len(states)])

        def has(self, kind):
            return True

    class _Tok:
        bos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    problem = task.problems("test", 1, seed=0)[0]
    pools = [["A:5*4\n", "A:4*5\n", "A:20+1\n", "no answer\n"]]
    # 5*4 and 4*5 claim the same (0.3 + 0.3 = 0.6) but 20+1 alone weighs 0.9; the answerless
    # text is never scored
    ledger = _Ledger(1)
    assert _pick_by_weighted_vote(pools, [problem], task, _Tok(), _Scores(), ledger) == ["A:20+1\n"]
    assert ledger.critic_calls.tolist() == [3]


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "greedy"])
def test_every_strategy_stops_at_its_budget_without_labels(policy, task, strategy):
    """No problem overshoots its budget by a whole step (max_step_tokens) or more."""
    problems = [dataclasses.replace(p, label=SENTINEL) for p in task.problems("test", 2, seed=3)]
    critics = StepScorer(value=_Recorder("value"), process=_Recorder("process"),
                         outcome=_Recorder("outcome"))
    budget = 96
    search = SearchConfig(simulations=50, branching=2, horizon=6, max_step_tokens=32)
    out = decode(policy, critics, problems, strategy, budget, task=task, search=search)
    assert len(out.answers) == 2 and out.tokens.shape == (2,)
    if strategy != "sample":
        assert np.all(out.tokens >= min(budget, 20)), out.tokens
        assert np.all(out.tokens < budget + search.max_step_tokens), out.tokens
    if strategy in ("best_of_n", "weighted_bon", "beam", "mcts"):
        assert np.all(out.critic_calls > 0)
    seen = [s for c in critics.critics.values() for s in c.seen]
    texts = [policy.tokenizer.decode([t for s in steps for t in s]) for _, steps in seen]
    assert not any(SENTINEL in t for t in texts)


def test_mcts_is_sized_by_its_budget_not_by_simulations(policy, task):
    """Two simulations would spend far less than the budget; decode keeps searching."""
    problems = task.problems("test", 2, seed=3)
    critics = StepScorer(value=_Recorder("value"))
    search = SearchConfig(simulations=2, branching=1, horizon=1, max_step_tokens=24)
    small = StepSearch(policy, critics, task, policy.tokenizer,
                       dataclasses.replace(search, max_tokens=400)).run(problems)
    out = decode(policy, critics, problems, "mcts", 400, task=task, search=search)
    assert np.all(small.stats.generated < 100)
    assert np.all(out.samples > 2) and np.all(out.tokens > 3 * small.stats.generated)
    assert np.all(out.tokens < 400 + search.max_step_tokens)


def test_beam_is_sized_by_its_budget_and_spends_it(policy, task):
    """A large budget buys wider beams and more passes: beam spends all but its last step."""
    from treesearch.search.strategies import beam_size

    assert beam_size(128, 6, 24) == (2, 2) and beam_size(4096, 6, 24) == (7, 7)
    assert beam_size(10**9, 6, 24) == (16, 16)
    problems = task.problems("test", 2, seed=3)
    critics = StepScorer(process=_Recorder("process"))
    search = SearchConfig(max_step_tokens=24, max_depth=6)
    for budget in (200, 800):
        out = decode(policy, critics, problems, "beam", budget, task=task, search=search)
        assert np.all(out.tokens > budget - search.max_step_tokens), (budget, out.tokens)
        assert np.all(out.tokens < budget + search.max_step_tokens), (budget, out.tokens)


def test_mcts_with_a_given_simulation_count_runs_that_many_rounds_at_most(policy, task):
    """``simulations`` (decode's ``search.simulations=N``) caps the rounds; the budget
    still caps the tokens."""
    problems = task.problems("test", 2, seed=3)
    critics = StepScorer(value=_Recorder("value"))
    search = SearchConfig(simulations=24, branching=1, horizon=1, max_step_tokens=24)
    out = decode(policy, critics, problems, "mcts", 400, task=task, search=search,
                 simulations=2)
    assert np.all(out.samples <= 2) and np.all(out.tokens < 100)
    few = decode(policy, critics, problems, "mcts", 30, task=task, search=search,
                 simulations=50)
    assert np.all(few.tokens < 30 + search.max_step_tokens)


def test_a_strategys_result_does_not_depend_on_what_ran_before(policy, task):
    from treesearch.search.strategies import evaluate

    problems = task.problems("test", 6, seed=5)
    kw = dict(search=SearchConfig(max_step_tokens=32), progress=False)
    one = evaluate(policy, StepScorer(), task, problems, ["sample", "majority"], [96], **kw)
    two = evaluate(policy, StepScorer(), task, problems, ["majority", "sample"], [96], **kw)
    assert {r["strategy"]: r["tokens"] for r in one} == {r["strategy"]: r["tokens"] for r in two}
    assert ({r["strategy"]: r["accuracy"] for r in one}
            == {r["strategy"]: r["accuracy"] for r in two})

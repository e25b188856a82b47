"""The dense step reward, checked exactly on hand-made numbers, and the StepScorer door."""

import numpy as np
import pytest

from critics.base import CriticError, check_scores
from critics.compose import RewardWeights, StepScorer, aggregate_prm, compose


def test_compose_on_hand_made_numbers():
    w = RewardWeights(value=1.0, process=2.0, outcome=1.0, prm_aggregation="min")
    nan = np.nan
    out = compose(w, answer=[False, True, False], terminal=[False, True, True],
                  value=[0.6, nan, nan], process=[0.8, 0.5, 0.0], outcome=[nan, 0.9, nan],
                  parent_agg=[nan, 0.8, 0.7], depth=[1, 2, 2])
    # A: (1 * 0.6 + 2 * 0.8) / 3; B: (2 * min(0.8, 0.5) + 1 * 0.9) / 3; C: a dead end
    np.testing.assert_allclose(out.score, [2.2 / 3, 1.9 / 3, 0.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.prm_agg, [0.8, 0.5, 0.0])
    np.testing.assert_allclose(out.parts["c_value"], [0.6, nan, nan])
    np.testing.assert_allclose(out.parts["c_outcome"], [nan, 0.9, nan])


def test_prm_aggregations():
    parent = np.array([np.nan, 0.8, 0.8])
    step = np.array([0.3, 0.4, 0.9])
    depth = np.array([1, 2, 2])
    np.testing.assert_allclose(aggregate_prm(parent, step, depth, "min"), [0.3, 0.4, 0.8])
    np.testing.assert_allclose(aggregate_prm(parent, step, depth, "mean"), [0.3, 0.6, 0.85])
    np.testing.assert_allclose(aggregate_prm(parent, step, depth, "last"), step)
    with pytest.raises(ValueError, match="max"):
        aggregate_prm(parent, step, depth, "max")


def test_weights_are_validated():
    with pytest.raises(ValueError, match="process"):
        RewardWeights(process=-1.0)
    with pytest.raises(ValueError, match="prm_aggregation"):
        RewardWeights(prm_aggregation="median")


def test_missing_critics_fall_back_to_the_ones_present():
    w = RewardWeights(value=1.0, process=0.0, outcome=3.0)
    out = compose(w, answer=[False], terminal=[False], value=[0.25], process=None,
                  outcome=None, parent_agg=[np.nan], depth=[1])
    np.testing.assert_allclose(out.score, [0.25])


class _Const:
    def __init__(self, kind, value, name="const"):
        self.kind, self.value, self.name = kind, value, name

    def score(self, states):
        return np.full(len(states), self.value, np.float32)


def test_scorer_routes_states_to_the_critics_that_apply():
    scorer = StepScorer(value=_Const("value", 0.2), outcome=_Const("outcome", 1.0))
    states = [([1], [[5]]), ([1], [[6]]), ([1], [[7]])]
    out = scorer.score(states, answer=[False, True, False], terminal=[False, True, True],
                       parent_agg=np.full(3, np.nan), depth=[1, 1, 1])
    np.testing.assert_allclose(out.score, [0.2, 1.0, 0.0])
    assert scorer.calls == {"value": 1, "process": 0, "outcome": 1}


def test_nan_from_a_critic_names_it():
    scorer = StepScorer(value=_Const("value", np.nan, name="broken-value-head"))
    with pytest.raises(CriticError, match="broken-value-head"):
        scorer.score([([1], [[5]])], [False], [False], [np.nan], [1])
    with pytest.raises(CriticError, match="outside"):
        check_scores("c", [1.5], 1)
    with pytest.raises(CriticError, match="shape"):
        check_scores("c", [[0.5]], 1)


def test_a_critic_in_the_wrong_slot_is_refused():
    with pytest.raises(CriticError, match="outcome slot"):
        StepScorer(outcome=_Const("value", 0.5))


class _Counting:
    """A model-like critic: processes every token of every state it scores."""

    def __init__(self, kind):
        from treesearch.engine.interfaces import TokenCounts

        self.kind, self.name, self.counts = kind, f"counting-{kind}", TokenCounts()

    def score(self, states):
        self.counts.processed += sum(len(p) + sum(len(s) for s in steps) for p, steps in states)
        return np.full(len(states), 0.5, np.float32)


def test_scorer_accounts_calls_and_tokens_per_state():
    scorer = StepScorer(value=_Counting("value"), outcome=_Counting("outcome"))
    states = [([1, 2], [[3]]), ([1, 2], [[3], [4, 5]]), ([1], [[9]])]
    scorer.raw(states, answer=[False, True, False], terminal=[False, True, False])
    calls, tokens = scorer.last_cost
    # value scores the two open states, outcome the answer: one evaluation each
    assert calls.tolist() == [1, 1, 1]
    np.testing.assert_allclose(tokens, [3, 5, 2])
    assert scorer.tokens == {"value": 5, "process": 0, "outcome": 5}

"""The dense step reward: one score per new node from the value, process and outcome critics.

As in AlphaLLM, each node of the search gets a reward built from every critic present,
each weighted (``RewardWeights``). For a node s reached by step a_t (depth t):

    value part    V(s)                                   non-terminal nodes only
    process part  agg(PRM(a_1), ..., PRM(a_t))           agg: "min", "last" or "mean"
    outcome part  ORM(s)                                 answer nodes only
    score(s) = sum_k w_k * part_k / sum_k w_k            over the parts present at s

Every part lies in [0, 1] (see ``critics.base``), so the score does too. A terminal node
that is not an answer (malformed step, context full, too deep) is simply wrong: its parts
are skipped and its score is 0. The search stores the score as the node's ``score`` (where
its backup starts) and keeps each part per node, so exported trees show which critic said
what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from critics.base import KINDS, CriticError, check_scores

AGGREGATIONS = ("min", "last", "mean")
PARTS = tuple(f"c_{kind}" for kind in KINDS)  # the forest's extra fields, one per critic


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the three parts (>= 0) and how PRM scores aggregate along a path."""

    value: float = 1.0
    process: float = 1.0
    outcome: float = 1.0
    prm_aggregation: str = "min"

    def __post_init__(self):
        for kind in KINDS:
            w = getattr(self, kind)
            if not np.isfinite(w) or w < 0:
                raise ValueError(f"RewardWeights.{kind} must be finite and >= 0, got {w}")
        if self.prm_aggregation not in AGGREGATIONS:
            raise ValueError(f"RewardWeights.prm_aggregation must be one of {AGGREGATIONS}, "
                             f"got {self.prm_aggregation!r}")


@dataclass
class ComposedScores:
    """Scores of N new nodes.

    score: float64 [N] in [0, 1], the composed reward (the node's ``score`` in the search).
    parts: name in ``PARTS`` -> float64 [N], each critic's contribution before weighting
        (NaN where that critic did not score the node).
    prm_agg: float64 [N], the aggregated PRM score of the path up to each node (NaN
        without a process critic); a child's aggregate continues from its parent's.
    """

    score: np.ndarray
    parts: dict[str, np.ndarray]
    prm_agg: np.ndarray


def aggregate_prm(parent_agg: np.ndarray, step_score: np.ndarray, depth: np.ndarray,
                  how: str) -> np.ndarray:
    """Aggregated PRM of each path after one more step.

    parent_agg: float64 [N], the parent's aggregate (NaN at the root: no step yet);
    step_score: float64 [N], PRM of the new step; depth: int [N], steps on the path
    including the new one (>= 1). Returns float64 [N].
    """
    first = np.isnan(parent_agg)
    if how == "last":
        return step_score.copy()
    if how == "min":
        return np.where(first, step_score, np.fmin(parent_agg, step_score))
    if how == "mean":
        d = np.asarray(depth, np.float64)
        return np.where(first, step_score, (np.nan_to_num(parent_agg) * (d - 1) + step_score) / d)
    raise ValueError(f"unknown PRM aggregation {how!r}; known: {AGGREGATIONS}")


def compose(weights: RewardWeights, answer: np.ndarray, terminal: np.ndarray,
            value: np.ndarray | None, process: np.ndarray | None, outcome: np.ndarray | None,
            parent_agg: np.ndarray, depth: np.ndarray) -> ComposedScores:
    """Combine critic outputs into one score per node (pure arithmetic, no models).

    answer: bool [N], the node's step is an answer line; terminal: bool [N], the node ends
    the episode (answers, malformed steps, depth limit). value / process / outcome: float
    [N] in [0, 1] or None when that critic is absent; entries not scored are NaN (value at
    terminal nodes, outcome at non-answer nodes). parent_agg, depth: see ``aggregate_prm``.
    A node with no part present (of weight > 0) scores 0.5; a dead end scores 0.
    """
    answer = np.asarray(answer, bool)
    terminal = np.asarray(terminal, bool)
    n = answer.shape[0]
    nan = np.full(n, np.nan)
    parts = {name: nan.copy() for name in PARTS}
    prm_agg = nan.copy()
    if value is not None:
        parts["c_value"] = np.where(terminal, np.nan, np.asarray(value, np.float64))
    if process is not None:
        prm_agg = aggregate_prm(np.asarray(parent_agg, np.float64),
                                np.asarray(process, np.float64), depth, weights.prm_aggregation)
        parts["c_process"] = prm_agg
    if outcome is not None:
        out = np.asarray(outcome, np.float64)
        parts["c_outcome"] = np.where(terminal & ~answer, np.nan, out)
    total = np.zeros(n)
    weight = np.zeros(n)
    for kind, name in zip(KINDS, PARTS):
        w = getattr(weights, kind)
        present = ~np.isnan(parts[name]) & (w > 0)
        total += np.where(present, w * np.nan_to_num(parts[name]), 0.0)
        weight += np.where(present, w, 0.0)
    dead = terminal & ~answer
    score = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), 0.5)
    score = np.where(dead, 0.0, score)
    return ComposedScores(score, parts, prm_agg)


class StepScorer:
    """Runs the critics present on new nodes (one batched call each) and composes scores.

    value, process, outcome: objects with ``kind`` and ``score(states) -> float32 [N]``
    (the Critic protocol), or None. weights: ``RewardWeights``.

    Budget accounting: ``calls`` counts states sent to each critic, ``tokens`` the model
    tokens each critic processed (its ``counts.processed``; 0 for critics that run no
    model: the rule verifier and the checkers). ``last_cost`` holds the latest ``run`` or
    ``raw`` call's cost per state: (calls int64 [N], tokens float64 [N]), a critic's
    tokens shared over its states in proportion to their lengths.
    """

    def __init__(self, value=None, process=None, outcome=None,
                 weights: RewardWeights = RewardWeights()):
        self.critics = {"value": value, "process": process, "outcome": outcome}
        for kind, critic in self.critics.items():
            if critic is not None and getattr(critic, "kind", None) != kind:
                raise CriticError(f"the {kind} slot holds a critic of kind "
                                  f"{getattr(critic, 'kind', None)!r} ({_name(critic)})")
        self.weights = weights
        self.calls = {kind: 0 for kind in KINDS}
        self.tokens = {kind: 0 for kind in KINDS}
        self.last_cost = (np.zeros(0, np.int64), np.zeros(0))

    def has(self, kind: str) -> bool:
        return self.critics.get(kind) is not None

    def __bool__(self) -> bool:
        return any(c is not None for c in self.critics.values())

    def run(self, kind: str, states: Sequence) -> np.ndarray | None:
        """One critic on some states: float64 [len(states)], or None if it is absent."""
        critic = self.critics[kind]
        if critic is None:
            return None
        if not states:
            self.last_cost = (np.zeros(0, np.int64), np.zeros(0))
            return np.zeros(0)
        self.calls[kind] += len(states)
        counts = getattr(critic, "counts", None)
        before = counts.processed if counts is not None else 0
        scores = check_scores(_name(critic), critic.score(states), len(states)).astype(np.float64)
        spent = (counts.processed - before) if counts is not None else 0
        self.tokens[kind] += spent
        lengths = np.array([len(s[0]) + sum(len(step) for step in s[1]) for s in states],
                           np.float64)
        share = lengths / lengths.sum() if lengths.sum() else np.full(len(states), 1 / len(states))
        self.last_cost = (np.ones(len(states), np.int64), spent * share)
        return scores

    def raw(self, states: Sequence, answer, terminal) -> dict[str, np.ndarray | None]:
        """Each critic present on the states it applies to, one batched call each:
        kind -> float64 [N] (NaN where not applicable) or None when absent. Value: non-
        terminal states; process: every state but dead ends (their step scores 0);
        outcome: answers."""
        answer = np.asarray(answer, bool)
        terminal = np.asarray(terminal, bool)
        n = len(states)
        masks = {"value": ~terminal, "process": ~terminal | answer, "outcome": answer}
        out: dict[str, np.ndarray | None] = {}
        calls, tokens = np.zeros(n, np.int64), np.zeros(n)
        for kind in KINDS:
            if not self.has(kind):
                out[kind] = None
                continue
            scores = np.full(n, np.nan)
            idx = np.flatnonzero(masks[kind])
            scores[idx] = self.run(kind, [states[i] for i in idx])
            calls[idx] += self.last_cost[0]
            tokens[idx] += self.last_cost[1]
            if kind == "process":
                scores = np.where(np.isnan(scores), 0.0, scores)
            out[kind] = scores
        self.last_cost = (calls, tokens)
        return out

    def compose_raw(self, raw, rows, answer, terminal, parent_agg, depth) -> ComposedScores:
        """``compose`` on the rows ``rows`` of ``raw`` (from ``raw``); answer, terminal,
        parent_agg, depth are given for those rows only."""
        pick = {k: (None if v is None else v[rows]) for k, v in raw.items()}
        return compose(self.weights, answer, terminal, pick["value"], pick["process"],
                       pick["outcome"], parent_agg, depth)

    def score(self, states: Sequence, answer, terminal, parent_agg, depth) -> ComposedScores:
        """Score N new nodes: ``raw`` then ``compose``. states: (prompt ids, step spans) per
        node; answer, terminal: bool [N]; parent_agg: float64 [N]; depth: int [N]."""
        raw = self.raw(states, answer, terminal)
        return compose(self.weights, answer, terminal, raw["value"], raw["process"],
                       raw["outcome"], parent_agg, depth)


def _name(critic) -> str:
    return getattr(critic, "name", None) or type(critic).__name__

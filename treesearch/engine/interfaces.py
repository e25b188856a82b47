"""Protocols and dataclasses at the doors between the engine and what drives it.

The engine (forest, kernels, search loop) imports no model code. Whatever proposes and
scores children, an LLM policy with critics or a toy environment, reaches it through
``Evaluator``, which answers a batch of selected leaves with one CSR ``Expansion``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass
class Expansion:
    """Children for L selected leaves, in CSR layout (C children in all).

    offsets: int64 [L + 1], children of leaf i are rows offsets[i]:offsets[i + 1];
        a leaf with no rows is a dead end (it becomes terminal).
    prior: float64 [C], selection prior of each child (>= 0, usually summing to 1 per leaf).
    reward: float64 [C], edge reward into each child.
    score: float64 [C], score of each child: the evaluator's estimate of the node, in the
        units backup uses; backup starts from it at a leaf (terminal child: its outcome score).
    terminal: int64 [C], 1 where the child ends the episode.
    payload: int64 [C], caller's handle for the child's content (e.g. a token-span id).
    """

    offsets: np.ndarray
    prior: np.ndarray
    reward: np.ndarray
    score: np.ndarray
    terminal: np.ndarray
    payload: np.ndarray

    @classmethod
    def from_children(cls, per_leaf: Sequence[Sequence[tuple]]) -> "Expansion":
        """Build from per-leaf lists of (prior, reward, score, terminal, payload) tuples."""
        counts = [len(children) for children in per_leaf]
        offsets = np.zeros(len(per_leaf) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = [child for children in per_leaf for child in children]
        cols = list(zip(*rows)) if rows else [(), (), (), (), ()]
        return cls(offsets, np.asarray(cols[0], np.float64), np.asarray(cols[1], np.float64),
                   np.asarray(cols[2], np.float64), np.asarray(cols[3], np.int64),
                   np.asarray(cols[4], np.int64))

    @property
    def n_children(self) -> int:
        return int(self.offsets[-1])


class Evaluator(Protocol):
    """Proposes and scores the children of selected leaves, all trees in one call."""

    def __call__(self, forest, leaf_tree: np.ndarray, leaf_node: np.ndarray) -> Expansion:
        """leaf_tree, leaf_node: int64 [L] from ``Forest.select``; returns their children.

        Terminal leaves (``forest.terminal[leaf_tree, leaf_node] == 1``) must get no children.
        """
        ...


@dataclass(frozen=True)
class StepProposal:
    """One proposed reasoning step.

    tokens: int32 [n_tokens], the step's token ids, delimiter (or EOS) included when the
        step ended on it.
    logprob: summed log-probability of those tokens under the sampling distribution's
        model (natural log, before temperature).
    n_tokens: len(tokens).
    finished: True when the step ended the sequence (EOS), False when it ended at the step
        delimiter or at max_step_tokens.
    """

    tokens: np.ndarray
    logprob: float
    n_tokens: int
    finished: bool


@dataclass
class TokenCounts:
    """Work a policy or critic has done, for budgets and cache-efficiency figures.

    processed: tokens run through the model (prompt tokens not served from a cache, plus
        generated tokens fed back); generated: tokens sampled.
    """

    processed: int = 0
    generated: int = 0


class Policy(Protocol):
    """Proposes next steps for many prefixes in one call (token ids cross the door)."""

    counts: TokenCounts

    def propose(self, prefixes: Sequence[Sequence[int]], n: int,
                max_step_tokens: int) -> list[list[StepProposal]]:
        """For each prefix (prompt + earlier steps, token ids), n proposals of the next step."""
        ...

    def describe(self) -> str:
        """Backend, model, device and dtype, for the run log."""
        ...


class Critic(Protocol):
    """Scores states; ``kind`` is "value", "process" or "outcome"."""

    kind: str

    def score(self, states: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]]) -> np.ndarray:
        """states: (prompt ids, step id spans) each; returns float32 [len(states)], finite."""
        ...

"""The step oracle: a perfect (or deliberately noisy) label-free step critic, for benchmarks.

It answers what a step critic should know: can this partial solution still succeed? Every
step so far valid and the target still reachable from what is left, by the task's exact
solver (``Task.step_oracle``); an answer line must check out. It reads only the problem's
public inputs, never its label, but it is not a critic anyone has: it exists to draw the
oracle curve (how much a search gains as its step critic goes from perfect to noise), so
only ``benchmarks/bench_decode.py --step-oracle`` builds it, never self-play or decode,
and its figures are reported apart.

Each verdict is flipped with probability ``flip`` (0: perfect, AUROC 1 against the exact
verdict; 0.5: noise), decided by a hash of the state and ``seed``, so a state always gets
the same verdict. The same verdict serves every kind: value (will a continuation succeed),
process (does the last step lie on a way to success) and outcome (is the answer right).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from critics.base import CriticError, State, check_kind
from critics.checker import Checker
from treesearch.tasks.base import stable_hash


class StepOracle(Checker):
    """The step oracle of ``kind`` over ``task``, with verdicts flipped at rate ``flip``.

    Raises CriticError before any model work when the task has no exact solver or the flip
    rate is outside [0, 1]."""

    def __init__(self, task, tokenizer, problems: Sequence, kind: str = "process",
                 flip: float = 0.0, seed: int = 0):
        check_kind(kind, "StepOracle")
        if not task.has_step_oracle:
            raise CriticError(f"StepOracle: task {task.name!r} has no exact solver, so it has "
                              "no step oracle")
        if not (isinstance(flip, (int, float)) and 0.0 <= flip <= 1.0):
            raise CriticError(f"StepOracle: the flip rate must be in [0, 1], got {flip!r}")
        # the Checker refuses a value kind (no checker judges success); the oracle can, so it
        # borrows the Checker's prompt index as a process critic and sets its own kind after
        super().__init__(task, tokenizer, problems, kind="process",
                         name=f"oracle:{task.name}:{kind}(flip={flip:g})")
        self.kind, self.flip, self.seed = kind, float(flip), seed

    def exact(self, state: State) -> bool:
        """The unflipped verdict on one state."""
        return self.task.step_oracle(self._inputs_of(state), self._steps(state))

    def score(self, states: Sequence[State]) -> np.ndarray:
        """float32 [N] in {0, 1}: the verdict, flipped at rate ``flip``."""
        self.calls += len(states)
        out = np.zeros(len(states), np.float32)
        for i, state in enumerate(states):
            verdict = self.exact(state)
            if self.flip:
                key = stable_hash(self.seed, tuple(int(t) for t in state[0]),
                                  tuple(tuple(int(t) for t in span) for span in state[1]))
                verdict ^= (key % 1_000_000) / 1_000_000 < self.flip
            out[i] = float(verdict)
        return out

    def describe(self) -> str:
        return f"{self.name} problems={len(self._inputs)} (benchmark only, label-free)"

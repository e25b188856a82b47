"""The budget currency shared by the step search and the decoding strategies.

Generated policy tokens pay for steps; a caller asks only for the steps a problem's
remaining budget can pay at ``max_step_tokens`` each, so no problem overshoots by a whole
step. Critic work is booked per problem from ``StepScorer.last_cost``.
"""

from __future__ import annotations

import numpy as np


def affordable_steps(budget: int | None, spent: np.ndarray, max_step_tokens: int) -> np.ndarray:
    """Steps each problem may still ask for: its remaining budget in units of
    ``max_step_tokens``, rounded up (int64 [P]; unbounded without a budget).

    spent: int64 [P], tokens generated so far."""
    if budget is None:
        return np.full(len(spent), 1 << 62, np.int64)
    left = np.maximum(0, budget - np.asarray(spent, np.int64))
    return -(-left // max_step_tokens)


def charge_critics(critic_calls: np.ndarray, critic_tokens: np.ndarray, scorer,
                   owners) -> None:
    """Add the scorer's latest call (``StepScorer.last_cost``: calls and tokens per state)
    to the problems that own its states (``owners``: one problem index per state), in
    place on the int64 [P] arrays ``critic_calls`` and ``critic_tokens``."""
    calls, tokens = scorer.last_cost
    np.add.at(critic_calls, owners, calls)
    np.add.at(critic_tokens, owners, np.round(tokens).astype(np.int64))

"""Label-free checker critics: steps and answers checked from the problem's own text.

A checker reads only what the policy reads (the problem's public inputs, never its label),
the way a code interpreter would check arithmetic: rStar-Math verifies steps by executing
them. So, unlike the rule verifier, a checker may guide search on held-out problems.

    process  1.0 when the state's last step is valid on its face (``Task.check_step``:
             true arithmetic, numbers the step may use; an answer line must check out),
             else 0.0
    outcome  1.0 when the finished solution's answer checks out from the inputs alone
             (``Task.verify_answer``; only for tasks with ``can_verify_answers``), else 0.0

Results with checkers are reported apart from results with learned critics: on countdown
the outcome checker is exact, so it answers a different question (how many tokens search
needs to find a verifiable solution) than a learned critic does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from critics.base import CriticError, State, check_kind
from treesearch.tasks import prompt_ids


class Checker:
    """A label-free critic of ``kind`` "process" or "outcome" over ``task``.

    tokenizer: the policy's tokenizer (states are its token ids); problems: the problems
    whose states it will score -- their labels are dropped here, so held-out problems are
    fine. Raises CriticError naming the task when it cannot check (an outcome checker on a
    task whose answers need labels, or a value checker).
    """

    def __init__(self, task, tokenizer, problems: Sequence, kind: str = "process",
                 name: str | None = None):
        self.kind = check_kind(kind, "Checker")
        if kind == "value":
            raise CriticError("Checker: there is no label-free value checker (a checker "
                              "judges steps or answers, not the chance of success)")
        if kind == "outcome" and not task.can_verify_answers:
            raise CriticError(f"Checker: task {task.name!r} cannot verify answers from the "
                              "problem's text alone, so it has no outcome checker")
        self.task, self.tokenizer = task, tokenizer
        self.name = name or f"checker:{task.name}:{kind}"
        self.calls = 0
        self._inputs = {tuple(prompt_ids(tokenizer, task, p.without_label())): p.inputs
                        for p in problems}

    def _inputs_of(self, state: State):
        inputs = self._inputs.get(tuple(int(t) for t in state[0]))
        if inputs is None:
            text = self.tokenizer.decode([int(t) for t in state[0]], skip_special_tokens=True)
            raise CriticError(f"{self.name}: no problem it was given has the prompt {text!r}")
        return inputs

    def _steps(self, state: State) -> list[str]:
        d = self.task.step_delimiter
        return [self.tokenizer.decode([int(t) for t in span], skip_special_tokens=True)
                .removesuffix(d) for span in state[1]]

    def score(self, states: Sequence[State]) -> np.ndarray:
        """float32 [N] in {0, 1}: see the module docstring."""
        self.calls += len(states)
        out = np.zeros(len(states), np.float32)
        for i, state in enumerate(states):
            inputs, steps = self._inputs_of(state), self._steps(state)
            if self.kind == "outcome":
                answer = self.task.extract_answer(self.task.step_delimiter.join(steps))
                ok = self.task.verify_answer(inputs, answer)
            else:
                ok = bool(steps) and self.task.check_step(inputs, steps[:-1], steps[-1])
            out[i] = 1.0 if ok else 0.0
        return out

    def describe(self) -> str:
        return f"{self.name} kind={self.kind} problems={len(self._inputs)} (label-free)"

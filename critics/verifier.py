"""A rule verifier from a task's labels: it makes TRAINING targets, nothing else.

``RuleVerifier`` scores finished solutions 1.0 (the extracted answer passes
``task.check``) or 0.0, for labelled TRAINING problems only. It refuses, with a
``CriticError``, to be built over a held-out problem or a problem without its label, and
to score a state whose prompt belongs to no problem it was given: a search on held-out
problems can never be guided by ground truth through it.

States are matched to problems by their prompt token ids, so the verifier needs the
policy's tokenizer (the one that wrote the states).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from critics.base import CriticError, State, check_kind, flatten_state
from treesearch.tasks import prompt_ids


class RuleVerifier:
    """Scores finished solutions of labelled training problems by the task's own check.

    task: the task (prompt, answer extraction, check); tokenizer: the policy's tokenizer;
    problems: labelled training problems whose states it will be asked about;
    kind: "outcome" (default); "value" or "process" are accepted for building targets of
    those critics from finished solutions (the score is still the outcome).
    clean_steps: ``score`` also requires steps free of false arithmetic (so a search it
    guides keeps looking for solutions worth learning from).
    """

    def __init__(self, task, tokenizer, problems: Sequence, kind: str = "outcome",
                 name: str | None = None, clean_steps: bool = False):
        self.kind = check_kind(kind, "RuleVerifier")
        self.task, self.tokenizer = task, tokenizer
        self.name = name or f"verifier:{task.name}"
        self.calls = 0
        self.clean_steps = clean_steps
        self._by_prompt = {}
        for p in problems:
            self._refuse(p)
            self._by_prompt[tuple(prompt_ids(tokenizer, task, p))] = p

    def _refuse(self, problem) -> None:
        if getattr(problem, "held_out", False):
            raise CriticError(f"{self.name}: problem {problem.id!r} is held out; the rule "
                              "verifier makes training targets only and never sees held-out (val "
                              "or test) problems")
        if problem.label is None:
            raise CriticError(f"{self.name}: problem {problem.id!r} has no label")

    def problem_of(self, state: State):
        """The labelled problem a state belongs to (CriticError if none)."""
        key = tuple(int(t) for t in state[0])
        problem = self._by_prompt.get(key)
        if problem is None:
            text = self.tokenizer.decode(list(key), skip_special_tokens=True)
            raise CriticError(f"{self.name}: no labelled training problem has the prompt "
                              f"{text!r}; the verifier only scores problems it was given")
        return problem

    def correct(self, state: State, *, clean_steps: bool = False) -> bool:
        """Whether the state's solution text ends in an answer that passes the check; with
        ``clean_steps``, also that no step states false arithmetic (``task.step_slips``)."""
        problem = self.problem_of(state)
        text = self.tokenizer.decode(flatten_state(([], state[1])), skip_special_tokens=True)
        ok = self.task.check_solution(problem, text)
        return ok and not (clean_steps and self.task.step_slips(text))

    def score(self, states: Sequence[State]) -> np.ndarray:
        """float32 [N]: 1.0 where the state's answer is correct, else 0.0."""
        self.calls += len(states)
        return np.array([1.0 if self.correct(s, clean_steps=self.clean_steps) else 0.0
                         for s in states], np.float32)

    def describe(self) -> str:
        return (f"{self.name} kind={self.kind} problems={len(self._by_prompt)} "
                "(training targets only)")

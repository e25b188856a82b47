"""Whether a policy's steps are reasoning: the share of its steps that are valid on their face.

A step critic can only steer a search whose steps carry what it judges. Before reading a
search or critic figure, measure on the same samples:

- ``valid_step_share``: of all step lines written before an answer line, the share that
  ``Task.check_step`` accepts (true arithmetic on numbers still available, for countdown);
- ``first_step_valid_share``: of the samples with a step, the share whose first is valid;
- ``all_valid_share``: of the samples with a step, the share whose every step is valid;
- ``correct_through_valid_share``: of the correct samples, the share with at least one step
  and every step valid (an answer reached through a false step, or through none, is a
  guess, not the steps' result).

Everything here reads only the problem's public inputs and the sampled text; correctness
comes from the caller (``Task.check_solution``, after the samples are written).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from .base import Task


def step_verdicts(task: Task, inputs: Mapping, text: str) -> list[bool]:
    """``check_step`` of each step line of a solution text (answer line and anything after
    it excluded; blank lines skipped), each judged after the lines before it."""
    steps: list[str] = []
    verdicts: list[bool] = []
    for line in text.split(task.step_delimiter):
        if not line.strip():
            continue
        if task.is_answer_step(line):
            break
        verdicts.append(bool(task.check_step(inputs, steps, line)))
        steps.append(line)
    return verdicts


@dataclass(frozen=True)
class StepValidity:
    """The shares of the module docstring, with the counts behind them."""

    steps: int
    valid_step_share: float | None
    samples_with_steps: int
    first_step_valid_share: float | None
    all_valid_share: float | None
    correct: int
    correct_through_valid_share: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def step_validity(task: Task, inputs: Sequence[Mapping], samples: Sequence[Sequence[str]],
                  correct: Sequence[Sequence[bool]]) -> StepValidity:
    """The validity shares over ``samples`` (one list of solution texts per problem, without
    the prompt) of the problems whose public ``inputs`` are given; ``correct`` says which
    samples are right, in the same layout. A share with nothing to count is None (JSON's
    null, so a recorded metrics file reads back equal)."""
    if not (len(inputs) == len(samples) == len(correct)):
        raise ValueError(f"step_validity: {len(inputs)} inputs, {len(samples)} sample lists and "
                         f"{len(correct)} verdict lists; they must match")
    n_steps = n_valid = with_steps = first_ok = all_ok = n_correct = correct_ok = 0
    for problem_inputs, texts, oks in zip(inputs, samples, correct):
        if len(texts) != len(oks):
            raise ValueError(f"step_validity: {len(texts)} samples but {len(oks)} verdicts")
        for text, ok in zip(texts, oks):
            verdicts = step_verdicts(task, problem_inputs, text)
            n_steps += len(verdicts)
            n_valid += sum(verdicts)
            if verdicts:
                with_steps += 1
                first_ok += verdicts[0]
                all_ok += all(verdicts)
            if ok:
                n_correct += 1
                correct_ok += bool(verdicts) and all(verdicts)
    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return StepValidity(n_steps, share(n_valid, n_steps), with_steps, share(first_ok, with_steps),
                        share(all_ok, with_steps), n_correct, share(correct_ok, n_correct))

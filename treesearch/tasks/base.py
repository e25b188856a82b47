"""The Task contract and the Problem record that every task produces.

A task knows four things and nothing else in the engine does: how to generate (or load)
problems, how to turn a problem into the text a policy is conditioned on, where one step
ends (``step_delimiter``) and how a finished solution is read and checked
(``answer_prefix``, ``extract_answer``, ``check``). It also writes synthetic step-by-step
solution traces, correct or deliberately flawed, to pretrain tiny priors.

Labels never reach evaluation: ``Problem.label`` (and ``Problem.reference``) hold the
ground truth. Search on held-out problems must use ``problem.without_label()``; ``check``
refuses a problem without its label, so a leak shows up as an error, not as a silently
inflated score.

Splits: every task has "train", "val" and "test" (``SPLITS``), disjoint by a hash of each
problem's content. Train on "train", tune (checkpoints, hyperparameters, search settings)
on "val", and report on "test" only. "val" and "test" are both held out
(``Problem.held_out``): their labels must not be used for search or training targets.

This module imports nothing from torch, ``policies/`` or ``critics/``.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from .answers import read_answer, states_answer
from .options import TaskOptions
from .slips import count_arithmetic_slips

SPLITS = ("train", "val", "test")
HELD_OUT_SPLITS = ("val", "test")


@dataclass(frozen=True)
class Problem:
    """One problem of a task.

    id: stable identifier, unique within a task (derived from the problem's content, so the
        same problem gets the same id whatever seed or split request produced it).
    question: the problem in plain words (for people and for logs).
    inputs: the structured, public inputs the prompt is built from (e.g. countdown's
        ``numbers`` and ``target``). Everything here may be shown to the policy.
    label: THE GROUND-TRUTH ANSWER, as text. Evaluation-time search must never read it:
        it exists to make training targets (rule verifier, solution traces) and to score
        finished answers after the search is done. ``None`` once stripped by
        ``without_label``.
    reference: ground-truth solution steps when the source has them (GSM answers), else
        empty. Same rule as ``label``.
    split: "train", "val" or "test".
    held_out: True for "val" and "test" (computed, not passed): both are held out from
        training, so their labels must not be used for search or training targets (a
        ``RuleVerifier`` refuses held-out problems). Tune on "val", report on "test".
    source: provenance (generator, seed, index or file and line), never ground truth.
    """

    id: str
    question: str
    inputs: Mapping[str, Any]
    label: str | None
    split: str
    reference: tuple[str, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    held_out: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"problem {self.id!r}: split must be one of {SPLITS}, got "
                             f"{self.split!r}")
        object.__setattr__(self, "held_out", self.split in HELD_OUT_SPLITS)

    def without_label(self) -> "Problem":
        """A copy with the ground truth (``label`` and ``reference``) removed, for search."""
        return dataclasses.replace(self, label=None, reference=())


class Task(abc.ABC):
    """Base class of all tasks. Subclasses set ``name`` and ``n_styles`` and implement
    ``problems``, ``prompt`` and ``_check``, and ``solution_trace`` when they have a solver.

    Text conventions shared by every task: a solution is a sequence of steps, each ended by
    ``step_delimiter``; the last step is the answer line, which starts with
    ``answer_prefix``. ``prompt(p) + solution_trace(p, ...)`` is a complete solution text.
    """

    name: str = "task"
    step_delimiter: str = "\n"
    answer_prefix: str = "A:"
    # how the task talks to a model (prompt style, delimiter, answer formats); ``configure``
    options: TaskOptions = TaskOptions()
    # the answer formats read under the chat and fewshot styles (``treesearch.tasks.answers``)
    chat_answer_formats: tuple[str, ...] = ("line", "boxed", "answer_is")
    # what a step and the answer look like, for the chat instruction (``conventions``)
    step_example: str = ""
    answer_hint: str = "<answer>"
    n_styles: int = 1
    strategies: tuple[str, ...] = ()
    # whether ``verify_answer`` can tell a right answer from the public inputs alone
    can_verify_answers: bool = False
    # whether ``step_slips`` means something for this task's texts (arithmetic steps); a
    # task that sets False has ``step_slips`` raise, and ``clean_steps`` refuses it by name
    counts_slips: bool = True

    def configure(self, options: TaskOptions) -> Task:
        """Use ``options`` (prompt style, step delimiter, answer formats); returns self."""
        if not isinstance(options, TaskOptions):
            raise TypeError(f"{self.name}: options must be a TaskOptions, got "
                            f"{type(options).__name__}")
        if options.shots and not self.writes_traces:
            raise ValueError(f"task {self.name!r}: shots = {options.shots} needs worked examples, "
                             "and this task has no solver (it writes no solution "
                             "traces); use shots=0")
        self.options = options
        self.step_delimiter = options.step_delimiter
        return self

    @property
    def writes_traces(self) -> bool:
        """Whether ``solution_trace`` can write solutions (a solver): pretraining a tiny
        prior, worked examples (shots) and the kit's trace checks need it. Default: the
        subclass overrides ``solution_trace``."""
        return type(self).solution_trace is not Task.solution_trace

    @property
    def answer_formats(self) -> tuple[str, ...]:
        """The answer formats in force: ``options.answer_formats``, else the style's default
        (plain: the ``A:`` line only; chat and fewshot: ``chat_answer_formats``)."""
        if self.options.answer_formats:
            return tuple(self.options.answer_formats)
        return ("line",) if self.options.prompt_style == "plain" else self.chat_answer_formats

    def conventions(self) -> str:
        """The instruction a chat prompt gives: how steps are laid out and how the final
        answer is written (``step_delimiter``, ``step_example``, ``answer_prefix``)."""
        layout = ("one step per line" if self.step_delimiter == "\n"
                  else "separating the steps by a blank line")
        example = f", each step like '{self.step_example}'" if self.step_example else ""
        return (f"Work it out step by step, {layout}{example}. Then give the final answer "
                f"on its own line as '{self.answer_prefix} {self.answer_hint}'.")

    @abc.abstractmethod
    def problems(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``n`` problems of ``split`` ("train", "val" or "test"), deterministic for ``seed``.

        The three splits are disjoint for every pair of seeds: a problem's split is a
        function of its content, not of the seed. Train on "train", tune on "val", report
        on "test". A task built with ``val_fraction=0`` has no "val" split and raises
        ValueError when asked for one (``_check_split``).
        """

    def problems_once(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``problems(split, n, seed)``, drawn once per task object: asked again, the same
        list comes back (self-play reads each round's training problems in several stages,
        and some generators take seconds). The list is shared: callers copy before changing
        it."""
        memo = vars(self).setdefault("_problems_memo", {})
        key = (split, n, seed)
        if key not in memo:
            memo[key] = self.problems(split, n, seed=seed)
        return memo[key]

    def __getstate__(self) -> dict:
        """A pickled task (sent to a worker) leaves its drawn problem sets behind."""
        state = dict(vars(self))
        state.pop("_problems_memo", None)
        return state

    @abc.abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The text the policy is conditioned on; it ends with ``step_delimiter``, so the
        first step follows directly. Built from ``problem.inputs`` only (never the label)."""

    # ---- answers --------------------------------------------------------------------
    def is_answer_step(self, step: str) -> bool:
        """True if ``step`` states the final answer in one of ``answer_formats``, i.e. is a
        terminal step. Plain: a line that starts with ``answer_prefix``."""
        return states_answer(step, self.answer_formats, self.answer_prefix)

    def extract_answer(self, text: str) -> str | None:
        """The answer from a full solution text (with or without the prompt); the first of
        ``read_answer``. Plain: the rest of the first line that starts (after leading
        blanks) with ``answer_prefix`` (an answer line ends the episode, so anything after
        it is not part of the solution); ``None`` when there is no answer line or it is
        empty."""
        return self.read_answer(text)[0]

    def read_answer(self, text: str) -> tuple[str | None, str | None]:
        """(answer, rule): the answer of a solution text and the rule that gave it ("line",
        "boxed", "answer_is", or "last_number" with ``options.last_number_fallback``);
        (None, None) when no rule finds one (``treesearch.tasks.answers.read_answer``)."""
        return read_answer(text, self.answer_formats, self.answer_prefix,
                           fallback=self.options.last_number_fallback)

    def answer_key(self, answer_text: str | None) -> str | None:
        """The key majority voting groups answers by (no label needed): answers with equal
        keys say the same thing. Default: the answer with all whitespace removed."""
        if answer_text is None or not answer_text.strip():
            return None
        return "".join(answer_text.split())

    def step_slips(self, text: str) -> int:
        """How many steps of a solution text state arithmetic that is false on its face
        ("23*7=151"). Needs no label: it checks the steps against themselves, not against
        the answer. A right answer reached through slipped steps is a bad example to learn
        from. Default: every equation whose two sides are arithmetic expressions (signed,
        multi-digit and decimal numbers, + - * /, parentheses; ``treesearch.tasks.slips``)
        and evaluate to different values. A task with ``counts_slips = False`` raises
        ValueError naming it."""
        if not self.counts_slips:
            raise ValueError(f"task {self.name!r} does not count arithmetic slips "
                             "(counts_slips = False): clean_steps cannot be used with it")
        return count_arithmetic_slips(text)

    # ---- label-free checks (what a code interpreter could tell from the problem's text) ----
    def check_step(self, inputs: Mapping[str, Any], steps: list[str], step: str) -> bool:
        """Whether ``step`` (one line, without the delimiter), written after ``steps``, is
        valid on its face, judged from the problem's public ``inputs`` alone (never the
        label). Default: it states no false ``a op b = c`` arithmetic. Tasks add their own
        rules (countdown: only numbers still available may be used)."""
        return count_arithmetic_slips(step) == 0

    def verify_answer(self, inputs: Mapping[str, Any], answer_text: str | None) -> bool:
        """Whether an extracted answer is right, judged from the public ``inputs`` alone,
        for tasks whose prompt determines a checkable answer (``can_verify_answers``;
        countdown: the numbers and the target are in the prompt). Other tasks raise
        ValueError naming the task: their answers need the label."""
        raise ValueError(f"task {self.name!r} cannot verify answers without their labels "
                         "(no label-free outcome checker)")

    def difficulty(self, problem_or_inputs) -> str | None:
        """The problem's difficulty bin (a short label; boards report accuracy per bin), from
        its public inputs; None for a task that does not grade its problems (the default)."""
        return None

    def step_oracle(self, inputs: Mapping[str, Any], steps: list[str]) -> bool:
        """Whether a partial solution (its step lines so far) can still succeed, by an exact
        solver that reads only the public ``inputs``: the step oracle of the benchmarks
        (``critics.oracle``), never a critic of self-play. Tasks with a solver override it
        (``has_step_oracle``); the default raises ValueError naming the task."""
        raise ValueError(f"task {self.name!r} has no exact solver, so it has no step oracle")

    @property
    def has_step_oracle(self) -> bool:
        """Whether ``step_oracle`` is implemented (the task has an exact solver)."""
        return type(self).step_oracle is not Task.step_oracle

    def uses_strategy(self, text: str, strategy: str) -> bool:
        """True if a solution text uses ``strategy`` (one of ``self.strategies``: named
        ways of solving, e.g. countdown's "division"). Pretraining can hold one out
        entirely, and the study measures whether training discovers it."""
        raise ValueError(f"{self.name}: unknown strategy {strategy!r}; this task has "
                         f"{list(self.strategies) or 'none'}")

    def style_of(self, text: str) -> int | None:
        """Which of the ``n_styles`` solution formats a solution text is written in (the
        ``style`` of ``solution_trace``), from its first step line; ``None`` when it has
        no step before the answer or matches no format. Default: style 0 for any text
        with a step (one-format tasks)."""
        steps = [line for line in text.split(self.step_delimiter)
                 if line.strip() and not self.is_answer_step(line)]
        return 0 if steps else None

    def check(self, problem: Problem, answer_text: str | None) -> bool:
        """Whether ``answer_text`` (an extracted answer, not a whole solution) is correct.

        Uses the ground truth: for training targets and for scoring finished answers only.
        Raises ValueError on a problem whose label was stripped.
        """
        if problem.label is None:
            raise ValueError(
                f"{self.name}: problem {problem.id!r} has no label; check() is for training "
                "targets and scoring, not for search on held-out problems")
        if answer_text is None or not isinstance(answer_text, str) or not answer_text.strip():
            return False
        return self._check(problem, answer_text.strip())

    @abc.abstractmethod
    def _check(self, problem: Problem, answer: str) -> bool:
        """Task-specific check of a non-empty, stripped answer against a labelled problem."""

    def check_solution(self, problem: Problem, text: str) -> bool:
        """``check`` applied to the answer extracted from a full solution text."""
        return self.check(problem, self.extract_answer(text))

    # ---- synthetic traces -----------------------------------------------------------
    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        """A synthetic solution: steps one per line, then the answer line, each ended by
        ``step_delimiter``. ``flawed=True`` gives a plausible-looking trace whose answer
        fails ``check``. ``style`` in ``range(n_styles)`` picks the solution format.
        Optional: a task without a solver leaves it out (``writes_traces`` is then False)
        and this raises ValueError naming the task."""
        raise ValueError(f"task {self.name!r} has no solver: it writes no solution traces")

    def format_trace(self, steps: list[str], answer: str) -> str:
        """Join steps and the answer line, every line ended by the step delimiter."""
        d = self.step_delimiter
        return "".join(s + d for s in steps) + f"{self.answer_prefix}{answer}{d}"

    def _check_style(self, style: int) -> int:
        if not isinstance(style, int) or not 0 <= style < self.n_styles:
            raise ValueError(f"{self.name}: style must be an int in [0, {self.n_styles}), "
                             f"got {style!r}")
        return style

    def _check_split(self, split: str) -> str:
        """Validate a split name for this task: one of ``SPLITS``, and "val" only when the
        task has a val split (``val_fraction > 0``)."""
        check_split(split)
        if split == "val" and getattr(self, "val_fraction", None) == 0:
            raise ValueError(f"task {self.name!r} has no val split (val_fraction=0)")
        return split

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# ---- helpers shared by the tasks --------------------------------------------------------

def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def check_fractions(name: str, test_fraction: float, val_fraction: float) -> None:
    """Validate a task's split fractions: ``0 < test_fraction < 1``, ``val_fraction >= 0``
    and ``test_fraction + val_fraction < 1`` (something must be left for train)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"{name}: test_fraction must be in (0, 1), got {test_fraction}")
    if not val_fraction >= 0.0:
        raise ValueError(f"{name}: val_fraction must be >= 0, got {val_fraction}")
    if not test_fraction + val_fraction < 1.0:
        raise ValueError(f"{name}: test_fraction + val_fraction must be < 1, got "
                         f"{test_fraction} + {val_fraction}")


def split_of(key: str, test_fraction: float, val_fraction: float = 0.0) -> str:
    """The split a problem with content key ``key`` belongs to: a pure function of the
    content, so no two splits ever share a problem, whatever seeds are asked for.

    With ``u`` a 64-bit hash of the key scaled to [0, 1): "test" if ``u < test_fraction``
    (the rule from before "val" existed, so the test split does not depend on
    ``val_fraction``), "val" if ``u < test_fraction + val_fraction``, else "train".
    """
    check_fractions("split_of", test_fraction, val_fraction)
    u = stable_hash("split", key) / 2.0**64
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"

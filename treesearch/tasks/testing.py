"""The conformance kit: what every task must do, checked on any task object.

    from treesearch.tasks.testing import check_task
    report = check_task(get_task("my_package.tasks:make_task"))   # raises TaskCheckError
    print(report)                                                 # what passed, what was skipped

Usable from a user's own tests (it needs nothing but the task). Checks, each by name:

- ``splits``: every split gives the problems asked for, in that split (``held_out`` for
  val and test), ids unique; no id, question or input shared between splits, over two
  seeds; a task with ``val_fraction=0`` has no val split;
- ``deterministic``: the same call twice gives the same problems in the same order, and
  another seed others; two problems with one id (from two calls) accept each other's label;
- ``prompts``: every prompt ends with the step delimiter (also with the other delimiter);
- ``labels``: a prompt does not change when the label and reference are stripped; the
  label is not written in the prompts (as a whole token, in at most ``max_label_share``
  of them: a small answer may appear by chance); ``check`` refuses a stripped problem;
- ``checker``: the label checks as correct, a wrong answer (the label plus one, or
  altered) as wrong;
- ``traces`` (tasks with a solver, ``writes_traces``): every style's correct trace ends
  with the delimiter and an answer step, reads back as its style, checks as correct,
  and (``counts_slips``) has no arithmetic slip; the flawed trace checks as wrong;
- ``answer_keys``: the label has a key; answers that differ only in blanks share it; two
  answers with the same key get the same verdict from ``check``.

A failing check raises ``TaskCheckError`` listing every failure (check name, problem,
what was wrong); an upstream label bug shows up as correct traces that check as wrong.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

from .base import SPLITS, Problem, Task

CHECKS = ("splits", "deterministic", "prompts", "labels", "checker", "traces", "answer_keys")


class TaskCheckError(AssertionError):
    """A task failed the kit; the message lists each failure."""


@dataclass
class TaskReport:
    """What ``check_task`` found: ``passed`` and ``skipped`` check names (with why), and
    ``failures`` as (check, message)."""

    task: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"task {self.task}: {'ok' if self.ok else f'{len(self.failures)} failure(s)'}"]
        lines += [f"  passed  {name}" for name in self.passed]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"  FAILED  {name}: {msg}" for name, msg in self.failures]
        return "\n".join(lines)


def check_task(task: Task, n: int = 20, seed: int = 0, max_label_share: float = 0.5,
               raise_on_failure: bool = True, max_failures_per_check: int = 3) -> TaskReport:
    """Run the kit on ``task`` with ``n`` problems per split; returns the report, or
    raises ``TaskCheckError`` with it when a check fails (``raise_on_failure``)."""
    if not isinstance(task, Task):
        raise TypeError(f"check_task needs a treesearch.tasks.Task, got {type(task).__name__}")
    report = TaskReport(task.name)
    kit = _Kit(task, n, seed, max_label_share)
    for name in CHECKS:
        try:
            found = getattr(kit, name)()
        except Exception as exc:  # a check that crashes is a failure of the task, named
            found = [f"raised {type(exc).__name__}: {exc}"]
        if isinstance(found, str):
            report.skipped[name] = found
        elif found:
            shown = found[:max_failures_per_check]
            more = f" (and {len(found) - len(shown)} more)" if len(found) > len(shown) else ""
            report.failures.append((name, "; ".join(shown) + more))
        else:
            report.passed.append(name)
    if raise_on_failure and not report.ok:
        raise TaskCheckError(str(report))
    return report


def _splits_of(task: Task) -> tuple[str, ...]:
    return tuple(s for s in SPLITS if not (s == "val" and getattr(task, "val_fraction", None) == 0))


class _Kit:
    """One method per check; each returns a list of failures, or a string: why skipped."""

    def __init__(self, task: Task, n: int, seed: int, max_label_share: float):
        self.task, self.n, self.seed, self.max_label_share = task, n, seed, max_label_share
        self._cache: dict = {}

    def problems(self, split: str, seed: int) -> list[Problem]:
        key = (split, seed)
        if key not in self._cache:
            self._cache[key] = self.task.problems(split, self.n, seed=seed)
        return self._cache[key]

    def all_problems(self) -> list[Problem]:
        return [p for s in _splits_of(self.task) for p in self.problems(s, self.seed)]

    # ---- checks ----
    def splits(self) -> list[str]:
        out = []
        by_split = {}
        for split in _splits_of(self.task):
            got = self.problems(split, self.seed) + self.problems(split, self.seed + 1)
            first = self.problems(split, self.seed)
            if len(first) != self.n:
                out.append(f"{split}: asked for {self.n} problems, got {len(first)}")
            wrong = [p.id for p in got if p.split != split or p.held_out != (split != "train")]
            if wrong:
                out.append(f"{split}: problems marked with another split or held_out: {wrong[:3]}")
            if len({p.id for p in first}) != len(first):
                out.append(f"{split}: an id appears twice in one call")
            by_split[split] = got
        names = list(by_split)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for what, key in (("id", lambda p: p.id), ("question", lambda p: p.question),
                                  ("inputs", lambda p: repr(sorted(p.inputs.items())))):
                    shared = {key(p) for p in by_split[a]} & {key(p) for p in by_split[b]}
                    if shared:
                        out.append(f"{a} and {b} share a problem {what}: {sorted(shared)[0]!r}")
        return out

    def deterministic(self) -> list[str]:
        out = []
        for split in _splits_of(self.task):
            first = self.problems(split, self.seed)
            again = self.task.problems(split, self.n, seed=self.seed)
            if [p.id for p in again] != [p.id for p in first] or again != first:
                out.append(f"{split}: problems(seed={self.seed}) differs between two calls")
            other = self.problems(split, self.seed + 1)
            if self.n >= 3 and [p.id for p in other] == [p.id for p in first]:
                out.append(f"{split}: seeds {self.seed} and {self.seed + 1} give the same problems")
        ids: dict[str, Problem] = {}
        for p in self.all_problems() + [p for s in _splits_of(self.task)
                                        for p in self.problems(s, self.seed + 1)]:
            seen = ids.setdefault(p.id, p)
            if seen is not p and not (self.task.check(seen, p.label)
                                      and self.task.check(p, seen.label)):
                out.append(f"id {p.id!r} names two problems that do not accept each other's label")
        return out

    def prompts(self) -> list[str]:
        out = []
        other = "\n\n" if self.task.step_delimiter == "\n" else "\n"
        variants = [self.task]
        try:
            variants.append(copy.copy(self.task).configure(
                replace(self.task.options, step_delimiter=other)))
        except ValueError as exc:
            out.append(f"cannot use step delimiter {other!r}: {exc}")
        for task in variants:
            for p in self.all_problems():
                text = task.prompt(p)
                if not isinstance(text, str) or not text.endswith(task.step_delimiter):
                    out.append(f"prompt of {p.id!r} does not end with the step delimiter "
                               f"{task.step_delimiter!r}: {str(text)[-40:]!r}")
        return out

    def labels(self) -> list[str]:
        out = []
        problems = self.all_problems()
        shown = 0
        for p in problems:
            if p.label is None or not str(p.label).strip():
                out.append(f"problem {p.id!r} has no label")
                continue
            prompt = self.task.prompt(p)
            if self.task.prompt(p.without_label()) != prompt:
                out.append(f"the prompt of {p.id!r} changes when its label is stripped "
                           "(it is built from the label or reference)")
            poisoned = replace(p, label=p.label + "0",
                               reference=tuple(r + "0" for r in p.reference))
            if self.task.prompt(poisoned) != prompt:
                out.append(f"the prompt of {p.id!r} changes with its label")
            shown += _contains_token(prompt, p.label)
            try:
                self.task.check(p.without_label(), p.label)
                out.append(f"check() accepted problem {p.id!r} without its label")
            except ValueError:
                pass
        if problems and shown > self.max_label_share * len(problems):
            out.append(f"the label is written in {shown} of {len(problems)} prompts")
        return out

    def checker(self) -> list[str]:
        out = []
        for p in self.all_problems():
            if not self.task.check(p, p.label):
                out.append(f"problem {p.id!r}: its own label {p.label!r} checks as wrong")
            wrong = wrong_answer(p.label)
            if self.task.check(p, wrong):
                out.append(f"problem {p.id!r}: the wrong answer {wrong!r} checks as correct "
                           f"(label {p.label!r})")
            if self.task.check(p, "") or self.task.check(p, None):
                out.append(f"problem {p.id!r}: an empty answer checks as correct")
        return out

    def traces(self) -> list[str] | str:
        task = self.task
        if not task.writes_traces:
            return "no solver (writes_traces is False): no traces to check"
        out = []
        for i, p in enumerate(self.problems("train", self.seed)):
            for style in range(task.n_styles):
                rng = random.Random(f"kit:{i}:{style}")
                good = task.solution_trace(p, rng, style=style)
                where = f"problem {p.id!r} style {style}"
                out += self._trace_shape(good, where, style)
                if not task.check_solution(p, good):
                    out.append(f"{where}: the correct trace checks as wrong (answer "
                               f"{task.extract_answer(good)!r}, label {p.label!r})")
                if task.counts_slips and task.step_slips(good):
                    out.append(f"{where}: step_slips = {task.step_slips(good)} on the correct "
                               f"trace {good!r}")
                bad = task.solution_trace(p, rng, flawed=True, style=style)
                out += self._trace_shape(bad, where + " (flawed)", None)
                if task.check_solution(p, bad):
                    out.append(f"{where}: the flawed trace checks as correct: {bad!r}")
        return out

    def _trace_shape(self, trace: str, where: str, style: int | None) -> list[str]:
        task, d = self.task, self.task.step_delimiter
        if not trace.endswith(d):
            return [f"{where}: the trace does not end with the step delimiter: {trace[-40:]!r}"]
        steps = trace[:-len(d)].split(d)
        if not task.is_answer_step(steps[-1]):
            return [f"{where}: the last step is not an answer step: {steps[-1]!r}"]
        if any(task.is_answer_step(s) for s in steps[:-1]):
            return [f"{where}: an answer step before the last one: {trace!r}"]
        if style is not None and len(steps) > 1 and task.style_of(trace) not in (style, None):
            return [f"{where}: style_of reads style {task.style_of(trace)}"]
        return []

    def answer_keys(self) -> list[str]:
        out = []
        for p in self.all_problems():
            key = self.task.answer_key(p.label)
            if key is None:
                out.append(f"problem {p.id!r}: the label {p.label!r} has no answer key")
                continue
            candidates = [p.label, f"  {p.label} ", wrong_answer(p.label)]
            if self.task.writes_traces:
                rng = random.Random(f"kit-keys:{p.id}")
                for flawed in (False, True):
                    answer = self.task.extract_answer(self.task.solution_trace(p, rng,
                                                                               flawed=flawed))
                    if answer is not None:
                        candidates.append(answer)
            if self.task.answer_key(f"  {p.label} ") != key:
                out.append(f"problem {p.id!r}: {p.label!r} with blanks around gets another key")
            verdicts: dict[str, set[bool]] = {}
            for answer in candidates:
                k = self.task.answer_key(answer)
                if k is not None:
                    verdicts.setdefault(k, set()).add(self.task.check(p, answer))
            mixed = [k for k, v in verdicts.items() if len(v) > 1]
            if mixed:
                out.append(f"problem {p.id!r}: answers with the key {mixed[0]!r} are both "
                           "right and wrong")
        return out


def wrong_answer(label: str) -> str:
    """An answer that should check as wrong: a number plus one, else the label altered."""
    text = str(label).strip()
    try:
        return str(Decimal(text.replace(",", "")) + 1)
    except InvalidOperation:
        return text + "1" if not text.endswith("1") else text + "2"


def _contains_token(text: str, label: str) -> bool:
    label = str(label).strip()
    if not label:
        return False
    return re.search(rf"(?<![\w.]){re.escape(label)}(?![\w.])", text) is not None


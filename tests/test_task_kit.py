"""The conformance kit catches what a broken task gets wrong (each break made in a real
task), ``step_slips`` reads signed, multi-digit and decimal arithmetic with precedence,
and tasks are found by ``module:factory`` and by ``treesearch.tasks`` entry points."""

import random
import re
import textwrap

import pytest

from treesearch.tasks import (
    ArithmeticChain,
    Countdown,
    Problem,
    TaskArgsError,
    get_task,
    registered_tasks,
)
from treesearch.tasks.base import Task
from treesearch.tasks.slips import count_arithmetic_slips
from treesearch.tasks.testing import TaskCheckError, check_task


def failing_checks(task, n=10):
    report = check_task(task, n=n, raise_on_failure=False)
    return {name for name, _ in report.failures}, report


# ---- the kit catches broken tasks --------------------------------------------------------

class LeakyPrompt(ArithmeticChain):
    def prompt(self, problem):
        return f"Compute: {problem.label}{self.step_delimiter}"


class NoDelimiter(ArithmeticChain):
    def prompt(self, problem):
        return super().prompt(problem).rstrip("\n")


class SplitBySeed(ArithmeticChain):
    """Splits by seed instead of by content: train and test share problems."""

    def problems(self, split, n, seed=0):
        made = ArithmeticChain.problems(self, "train", n, seed=seed)
        return [Problem(p.id, p.question, p.inputs, p.label, split) for p in made]


class Nondeterministic(ArithmeticChain):
    def problems(self, split, n, seed=0):
        return super().problems(split, n, seed=random.randrange(10**6))


class WrongLabels(ArithmeticChain):
    """An upstream label bug: every label off by one; the traces compute the truth."""

    def problems(self, split, n, seed=0):
        return [Problem(p.id, p.question, p.inputs, str(int(p.label) + 1), split)
                for p in super().problems(split, n, seed)]

    def solution_trace(self, problem, rng, flawed=False, style=0):
        text = super().solution_trace(problem.__class__(problem.id, problem.question,
                                                        problem.inputs,
                                                        str(int(problem.label) - 1), problem.split),
                                      rng, flawed, style)
        return text


class FlawedTracesPass(ArithmeticChain):
    def solution_trace(self, problem, rng, flawed=False, style=0):
        return super().solution_trace(problem, rng, False, style)


class SloppyKeys(ArithmeticChain):
    """Groups every answer under one key: votes would mix right and wrong answers."""

    def answer_key(self, answer_text):
        return "same" if answer_text else None


class AcceptsAnything(ArithmeticChain):
    def _check(self, problem, answer):
        return True


@pytest.mark.parametrize("cls,check", [
    (LeakyPrompt, "labels"), (NoDelimiter, "prompts"), (SplitBySeed, "splits"),
    (Nondeterministic, "deterministic"), (WrongLabels, "traces"), (FlawedTracesPass, "traces"),
    (SloppyKeys, "answer_keys"), (AcceptsAnything, "checker"),
])
def test_the_kit_names_the_check_a_broken_task_fails(cls, check):
    failed, report = failing_checks(cls(name="broken"))
    assert check in failed, report
    with pytest.raises(TaskCheckError, match=f"FAILED  {check}"):
        check_task(cls(name="broken"), n=10)


def test_the_kit_passes_a_sound_task_and_says_what_it_checked():
    report = check_task(get_task("arithmetic"), n=10)
    assert report.ok and set(report.passed) == {"splits", "deterministic", "prompts", "labels",
                                                "checker", "traces", "answer_keys"}
    assert "task arithmetic: ok" in str(report)


def _old_slips(text):
    """The earlier step_slips: non-negative operands only."""
    slips = 0
    for m in re.finditer(r"(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(-?\d+)", text):
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        slips += ((b == 0 or a != b * c) if op == "/"
                  else {"+": a + b, "-": a - b, "*": a * b}[op] != c)
    return slips


def test_the_kit_catches_slips_miscounted_on_negative_operands(monkeypatch):
    """With the old pattern, correct traces of signed chains count as slips."""
    task = get_task("rg:chain_sum", allow_negation=True)
    assert check_task(task, n=10).ok
    monkeypatch.setattr("treesearch.tasks.base.count_arithmetic_slips", _old_slips)
    with pytest.raises(TaskCheckError, match="step_slips = [1-9]"):
        check_task(task, n=10)


# ---- step_slips ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,slips", [
    ("-7+5=-2", 0), ("-7-5=-12", 0), ("3*-4=-12", 0), ("5 - -3 = 8", 0), ("5 - -3 = 2", 1),
    ("12+7-3=16", 0), ("2+3*4=14", 0), ("2+3*4=20", 1), ("(2+3)*4=20", 0), ("-(5+2)*3=-21", 0),
    ("1234*5678=7006652", 0), ("1234*5678=7006651", 1), ("1.5+2=3.5", 0), ("0.1+0.2=0.4", 1),
    ("1,250 + 10 = 1,260", 0), ("10/3 = 3.33", 0), ("9/0=1", 1), ("7 / 2 = 3", 1),
    ("x - 3 = 5", 0), ("3x + 5 = 20", 0), ("e=-1274/-98=13", 0), ("e=-1274/-98=14", 1),
    ("She sold 48/2 = 24 clips.", 0), ("She sold 48/2 = 25 clips.", 1), ("0.2 x 50 = 11", 1),
    ("$5 + $3 = $8", 0), ("50% = 0.5", 0), ("f(3) = 7", 0), ("2^3 = 8", 0), ("3+4=7x", 0),
    ("25*4=100 (7 3 100)", 0), ("25*4=101 (7 3 101)", 1), ("A:25*4+7-3=104", 0),
    ("12+7=19\n19-5=15\n", 1), ("no arithmetic at all", 0), ("3 + 4 == 7", 0),
])
def test_step_slips_reads_signed_multidigit_and_precedence(text, slips):
    assert count_arithmetic_slips(text) == slips
    assert get_task("arithmetic").step_slips(text) == slips


def test_a_task_that_does_not_count_slips_says_so():
    class Prose(ArithmeticChain):
        counts_slips = False

    with pytest.raises(ValueError, match="'prose' does not count arithmetic slips"):
        Prose(name="prose").step_slips("1+1=3")


def test_built_in_traces_have_no_slips_and_flawed_ones_have():
    """Self-play's verifier reads step_slips on built-in tasks' texts: unchanged verdicts on
    their own traces (correct: none; flawed arithmetic: at least one)."""
    for name in ("countdown3", "arithmetic", "gsm"):
        task = get_task(name)
        problems = task.problems("train", 6 if name != "gsm" else 5, seed=0)
        rng = random.Random(0)
        for style in range(task.n_styles):
            assert all(task.step_slips(task.solution_trace(p, rng, style=style)) == 0
                       for p in problems)
    task = get_task("arithmetic")
    rng = random.Random(0)
    assert all(task.step_slips(task.solution_trace(p, rng, flawed=True)) >= 1
               for p in task.problems("train", 10, seed=0))


# ---- registry: module:factory and entry points --------------------------------------------

USER_TASK = '''
from treesearch.tasks import ArithmeticChain

class Chains(ArithmeticChain):
    pass

def make(terms=3, **kw):
    return Chains(min_terms=terms, max_terms=terms, name="user_chains", **kw)

def not_a_task():
    return 42
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_tasks.py").write_text(textwrap.dedent(USER_TASK))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_module_factory_with_task_args(user_module):
    task = get_task("user_tasks:make", terms=5)
    assert task.name == "user_chains" and task.min_terms == 5
    assert len(task.problems("train", 2)[0].inputs["terms"]) == 5
    assert get_task("user_tasks:Chains").name == "arithmetic"  # a class is a factory too


@pytest.mark.parametrize("spec,kwargs,exc,message", [
    ("user_tasks:nope", {}, ValueError, "has no 'nope'"),
    ("no_such_module:make", {}, ValueError, "cannot import module 'no_such_module'"),
    ("user_tasks:not_a_task", {}, TypeError, "returned int, not a treesearch.tasks.Task"),
    ("user_tasks:make", {"terms": 1}, ValueError, "min_terms"),
    ("countdown", {"colour": "red"}, TaskArgsError, r"unknown task_args \['colour'\]"),
    ("chess", {}, ValueError, "unknown task 'chess'"),
])
def test_registry_refusals_name_what_is_wrong(user_module, spec, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        get_task(spec, **kwargs)


def test_an_unknown_argument_of_a_factory_names_the_key(user_module):
    with pytest.raises(TaskArgsError) as info:
        get_task("countdown3", n_numbers=1)
    assert info.value.key == "n_numbers" and info.value.cli_flag == "task_args.n_numbers"


def test_entry_point_tasks_are_registered(user_module):
    """A distribution with a ``treesearch.tasks`` entry point (its metadata on sys.path,
    as pip installs it) adds a task by name; a built-in name cannot be taken over."""
    dist = user_module / "user_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[treesearch.tasks]\nuser_chains = user_tasks:make\ncountdown = user_tasks:not_a_task\n")
    with pytest.warns(UserWarning,
                      match="'countdown' .* has a built-in task's name and is ignored"):
        names = registered_tasks()
    assert "user_chains" in names and names.count("countdown") == 1
    with pytest.warns(UserWarning):
        assert get_task("user_chains", terms=2).name == "user_chains"
    assert isinstance(get_task("countdown"), Countdown)


def test_a_task_without_a_solver_writes_no_traces():
    class Bare(Task):
        name = "bare"

        def problems(self, split, n, seed=0):
            return []

        def prompt(self, problem):
            return "?\n"

        def _check(self, problem, answer):
            return False

    task = Bare()
    assert not task.writes_traces and get_task("arithmetic").writes_traces
    with pytest.raises(ValueError, match="'bare' has no solver"):
        task.solution_trace(None, random.Random(0))

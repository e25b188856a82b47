"""Tasks: problems, prompts, step delimiters, answer extraction and checking.

    from treesearch.tasks import get_task
    task = get_task("countdown")              # or countdown3, countdown5, countdown_wide, ...
    problems = task.problems("train", 100, seed=0)   # or "val" (tune on it), "test" (report)
    text = task.prompt(problems[0]) + task.solution_trace(problems[0], random.Random(0))
    task.check(problems[0], task.extract_answer(text))   # True

Every task has the splits ``SPLITS`` = ("train", "val", "test"), disjoint by a hash of each
problem's content; ``test_fraction`` and ``val_fraction`` (default 0.1; 0 means no val split)
set their shares, and the test split does not depend on ``val_fraction``. Val and test
problems are ``held_out``: tune on "val", report on "test".

Named presets live in ``TASKS``; keyword arguments to ``get_task`` override a preset's, and
``options`` (``TaskOptions``: prompt style, step delimiter, answer formats) say how the task
talks to a model; ``prompt_ids`` renders every prompt.
Nothing here imports torch, ``policies`` or ``critics``; reasoning-gym and math-verify are
imported only when problems are generated or GSM answers are checked.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from . import arithmetic, countdown
from .arithmetic import ArithmeticChain
from .base import SPLITS, Problem, Task
from .countdown import Countdown
from .gsm import GSMTask
from .options import TaskOptions
from .prompting import prompt_ids

TASKS: dict[str, Callable[..., Task]] = {
    **{name: partial(Countdown, name=name, **kw) for name, kw in countdown.PRESETS.items()},
    **{name: partial(ArithmeticChain, name=name, **kw) for name, kw in arithmetic.PRESETS.items()},
    "gsm": partial(GSMTask, name="gsm"),
}


def get_task(name: str, options: TaskOptions | None = None, **kwargs) -> Task:
    """The task called ``name``, built with its preset and ``kwargs`` on top, talking to
    models as ``options`` says (prompt style, step delimiter, answer formats; default:
    plain, the tiny priors' format)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    task = TASKS[name](**kwargs)
    return task.configure(options) if options is not None else task


__all__ = ["SPLITS", "TASKS", "ArithmeticChain", "Countdown", "GSMTask", "Problem", "Task", "TaskOptions",
           "get_task", "prompt_ids"]

"""Tasks: problems, prompts, step delimiters, answer extraction and checking.

    from treesearch.tasks import get_task
    task = get_task("countdown")              # or countdown3, game24, countdown_wide, ...
    problems = task.problems("train", 100, seed=0)   # or "val" (tune on it), "test" (report)
    text = task.prompt(problems[0]) + task.solution_trace(problems[0], random.Random(0))
    task.check(problems[0], task.extract_answer(text))   # True

Every task has the splits ``SPLITS`` = ("train", "val", "test"), disjoint by a hash of each
problem's content; ``test_fraction`` and ``val_fraction`` (default 0.1; 0 means no val split)
set their shares, and the test split does not depend on ``val_fraction``. Val and test
problems are ``held_out``: tune on "val", report on "test".

Named presets live in ``TASKS``; keyword arguments to ``get_task`` override a preset's, and
``options`` (``TaskOptions``: prompt style, step delimiter, answer formats) say how the task
talks to a model; ``prompt_ids`` renders every prompt. Beyond the presets, ``get_task``
takes ``rg:<dataset>`` (any reasoning-gym dataset, ``rg.RGTask``), the name of a
``treesearch.tasks`` entry point and ``package.module:factory`` (a task in the user's own
code; ``registry``). ``treesearch.tasks.testing.check_task`` is the conformance kit a task
should pass.

Nothing here imports torch, ``policies`` or ``critics``.
"""

from __future__ import annotations

from .arithmetic import ArithmeticChain
from .base import SPLITS, Problem, Task, split_of, stable_hash
from .countdown import Countdown
from .game24 import Game24
from .gsm import GSMTask
from .options import TaskOptions
from .prompting import prompt_ids
from .registry import ENTRY_POINT_GROUP, TASKS, get_task, registered_tasks
from .rg import RGTask, TaskArgsError

__all__ = ["ENTRY_POINT_GROUP", "SPLITS", "TASKS", "ArithmeticChain", "Countdown", "GSMTask",
           "Game24",
           "Problem", "RGTask", "Task", "TaskArgsError", "TaskOptions", "get_task", "prompt_ids",
           "registered_tasks", "split_of", "stable_hash"]

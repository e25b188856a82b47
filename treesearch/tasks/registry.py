"""Finding a task by name: built-in presets, reasoning-gym datasets, entry points, user code.

    get_task("countdown3")                            # a built-in preset (``TASKS``)
    get_task("rg:basic_arithmetic", operators=["+", "-", "*"])   # any reasoning-gym dataset
    get_task("my_package.tasks:make_task", digits=3)  # a factory in the user's own code
    get_task("sums")                                  # a ``treesearch.tasks`` entry point

The name is tried in that order of forms:

1. a built-in preset in ``TASKS``;
2. ``rg:<dataset>``: reasoning-gym's dataset (``treesearch.tasks.rg.RGTask``);
3. an installed distribution's entry point in the ``treesearch.tasks`` group (in its
   pyproject.toml: ``[project.entry-points."treesearch.tasks"] sums = "pkg.mod:factory"``);
4. ``package.module:factory``: the factory imported from the user's code (the module must
   be importable: installed, or on ``PYTHONPATH``, or in the directory the command runs
   from).

``code_path(name)`` is the directory a ``package.module:factory`` task is imported from:
what another process (a Ray worker) needs on its ``sys.path`` to build the same task.

A factory is any callable (a Task subclass itself will do) that returns a ``Task``; the
keyword arguments (a recipe's ``task_args``) go to it, checked against its signature, so
an unknown one is a ``TaskArgsError`` naming it, never silently dropped.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import warnings
from functools import partial
from importlib import metadata
from typing import Callable

from . import arithmetic, countdown, game24
from .arithmetic import ArithmeticChain
from .base import Task
from .countdown import Countdown
from .game24 import Game24
from .gsm import GSMTask
from .options import TaskOptions
from .rg import RGTask, TaskArgsError

ENTRY_POINT_GROUP = "treesearch.tasks"
RG_PREFIX = "rg:"

TASKS: dict[str, Callable[..., Task]] = {
    **{name: partial(Countdown, name=name, **kw) for name, kw in countdown.PRESETS.items()},
    **{name: partial(ArithmeticChain, name=name, **kw) for name, kw in arithmetic.PRESETS.items()},
    **{name: partial(Game24, name=name, **kw) for name, kw in game24.PRESETS.items()},
    "gsm": partial(GSMTask, name="gsm"),
}

FORMS = ("a built-in name", "rg:<reasoning-gym dataset>",
         f"an entry point of the {ENTRY_POINT_GROUP!r} group", "package.module:factory")


def entry_points() -> dict[str, metadata.EntryPoint]:
    """The ``treesearch.tasks`` entry points of the installed distributions, by name. One
    that has a built-in preset's name is ignored, with a warning (built-ins win)."""
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in TASKS:
            warnings.warn(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                          "has a built-in task's name and is ignored", stacklevel=2)
            continue
        found.setdefault(ep.name, ep)
    return found


def registered_tasks() -> list[str]:
    """The names ``get_task`` knows without a module path: built-ins and entry points."""
    return list(TASKS) + sorted(entry_points())


def get_task(name: str, options: TaskOptions | None = None, **kwargs) -> Task:
    """The task called ``name`` (any of the forms in this module's docstring), built with
    ``kwargs`` (a preset's keyword arguments on top of the preset; a reasoning-gym
    dataset's config keys; a factory's arguments), talking to models as ``options`` says
    (prompt style, step delimiter, answer formats; default: plain, the tiny priors')."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"task must be a non-empty name, got {name!r}")
    factory, where = resolve(name)
    task = build(factory, where, kwargs)
    return task.configure(options) if options is not None else task


def resolve(name: str) -> tuple[Callable[..., Task], str]:
    """(the factory, a description of it for errors) for a task name."""
    if name in TASKS:
        return TASKS[name], f"task {name!r}"
    if name.startswith(RG_PREFIX):
        dataset = name[len(RG_PREFIX):]
        return partial(RGTask, dataset), f"task {name!r}"
    eps = entry_points()
    if name in eps:
        try:
            return eps[name].load(), f"task {name!r} (entry point {eps[name].value})"
        except Exception as exc:  # a broken plugin: name it, whatever it raised
            raise ValueError(f"task {name!r}: entry point {eps[name].value} of group "
                             f"{ENTRY_POINT_GROUP!r} does not load "
                             f"({type(exc).__name__}: {exc})") from None
    if ":" in name:
        return load_factory(name), f"task {name!r}"
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(registered_tasks())} "
                     f"(or rg:<dataset>, or package.module:factory)")


def load_factory(spec: str) -> Callable[..., Task]:
    """The callable ``package.module:attr`` (``attr`` may be dotted) names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"task {spec!r}: expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"task {spec!r}: cannot import module {module_name!r} ({exc}); it must "
                         "be installed, on PYTHONPATH or in the current directory") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"task {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"task {spec!r}: {attr!r} is not callable (a task factory or class)")
    return obj


def code_path(name: str) -> str | None:
    """The directory the top-level module of a ``package.module:factory`` task is imported
    from in this process (a package's parent directory); None for a built-in, reasoning-gym
    or entry-point task, or a module that cannot be found."""
    if (not isinstance(name, str) or ":" not in name or name in TASKS
            or name.startswith(RG_PREFIX) or name in entry_points()):
        return None
    top = name.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: the directory holding it
        return os.path.dirname(os.path.realpath(list(spec.submodule_search_locations)[0]))
    if spec.origin and os.path.isfile(spec.origin):
        return os.path.dirname(os.path.realpath(spec.origin))
    return None


def code_paths(*names: str) -> list[str]:
    """The directories of ``code_path`` for each task name that has one, without repeats:
    what every Ray worker needs on its sys.path to build these tasks itself."""
    found = (code_path(name) for name in names)
    return list(dict.fromkeys(path for path in found if path))


def build(factory: Callable[..., Task], where: str, kwargs: dict) -> Task:
    """``factory(**kwargs)``, refusing arguments it does not take by name, and anything
    that is not a Task."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind_partial(**kwargs)
        except TypeError:
            takes = [p for p in signature.parameters.values()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
                bad = sorted(set(kwargs) - {p.name for p in takes})
                raise TaskArgsError(bad[0] if bad else next(iter(kwargs)),
                                    f"{where}: unknown task_args {bad}; it takes "
                                    f"{[p.name for p in takes]}") from None
    try:
        task = factory(**kwargs)
    except TaskArgsError:
        raise
    except ValueError as exc:  # a value the task refuses: name the argument it is about
        named = [k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", str(exc))]
        if named:
            raise TaskArgsError(named[0], str(exc)) from None
        raise
    if not isinstance(task, Task):
        raise TypeError(f"{where}: the factory returned {type(task).__name__}, not a "
                        "treesearch.tasks.Task")
    return task

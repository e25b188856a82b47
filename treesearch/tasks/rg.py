"""Any reasoning-gym dataset as a task: ``task=rg:<dataset>`` with its config as task_args.

    task = get_task("rg:basic_arithmetic", operators=["+", "-", "*"])   # task_args.operators=...
    problems = task.problems("train", 100, seed=0)
    task.check(problems[0], problems[0].label)                          # True

- Problems: the dataset's generator (reasoning-gym's own config keys, except ``seed`` and
  ``size``, which treesearch sets: a seed per ``problems(split, n, seed)`` call), one
  problem per distinct content; the split is a hash of the content (``split_of``): the
  question, or the expression of datasets that word it in several templates
  (``CONTENT_KEYS``).
- Checker: the dataset's own ``score_answer``; an answer is correct when it scores 1.0
  (partial credit, e.g. gcd's 0.2 for a number in the right form, is wrong).
- Prompt: the question, then the step delimiter; the answer is read per the prompt style
  (``options``: plain reads the ``A:`` line, chat and fewshot also ``\\boxed{}`` and "The
  answer is").
- Served or refused: a dataset that fails the conformance kit is refused when it is
  built, naming it and why (``rg_support.REFUSED``); a dataset that gives no answer but an
  example of a correct one takes it as its label (``rg_support.LABEL_FIELDS``), and an
  entry without a label (None or blank) is left out of the problems.
- Traces: only for datasets with a solver (``rg_traces.SOLVERS``); elsewhere
  ``writes_traces`` is False and pretraining says so by name.
- Label audit (datasets with a solver): a problem whose label the dataset's own scorer
  rejects against the solver's exact answer is an upstream label bug. Such problems are
  left out and reported (a warning, and ``label_disagreements``); more than
  ``MAX_BAD_LABELS`` of them is an error naming the dataset. ``audit_labels=False`` turns
  the audit off (the conformance kit then finds the bug: the task's own traces check as
  wrong).

The dataset's entry (its ``metadata`` may hold the solution) never reaches ``inputs``; the
checker regenerates it from ``source`` (seed, size, index), which is provenance only.
"""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from typing import Any

from reasoning_gym.factory import DATASETS

from .base import Problem, Task, check_fractions, split_of, stable_hash
from .rg_support import LABEL_FIELDS, refusal
from .rg_traces import SOLVERS

MAX_BAD_LABELS = 0.05  # share of audited problems whose labels may be left out
AUDIT_SIZE = 200       # entries the audit of a config reads when the task is built
OWN_KEYS = ("test_fraction", "val_fraction", "audit_labels")  # task_args treesearch reads
# the metadata field that says what a problem is, where the question wraps it in a template
CONTENT_KEYS = {"basic_arithmetic": "expression", "chain_sum": "expression",
                "products": "expression", "simple_equations": "equation"}


class TaskArgsError(ValueError):
    """A task argument that cannot be used; ``key`` names it (``task_args.<key>``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key

    @property
    def cli_flag(self) -> str:
        """How a command line names it (``treesearch.utils.cli.blame``)."""
        return f"task_args.{self.key}"


def dataset_names() -> list[str]:
    """Every reasoning-gym dataset name."""
    return sorted(DATASETS)


def _registry(dataset: str):
    if dataset not in DATASETS:
        raise ValueError(f"task 'rg:{dataset}': reasoning-gym has no dataset {dataset!r}; "
                         f"known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


class RGTask(Task):
    """A reasoning-gym dataset. ``config``: the dataset's own config keys."""

    n_styles = 2  # with a solver: 0 compact steps "12+7=19", 1 spaced "12 + 7 = 19"

    def __init__(self, dataset: str, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 audit_labels: bool = True, **config: Any):
        self.dataset = dataset
        self.name = f"rg:{dataset}"
        dataset_cls, config_cls = _registry(dataset)
        if refusal(dataset):  # fails the conformance kit (rg_support.REFUSED)
            raise ValueError(refusal(dataset))
        fields = {f.name for f in dataclasses.fields(config_cls)} - {"seed", "size"}
        for key in ("seed", "size"):
            if key in config:
                raise TaskArgsError(key, f"{self.name}: task_args.{key} is treesearch's to set "
                                    "(a reasoning-gym seed per problems(split, n, seed) call)")
        unknown = sorted(set(config) - fields)
        if unknown:
            raise TaskArgsError(unknown[0], f"{self.name}: unknown task_args {unknown}; valid: "
                                f"{sorted(fields) + list(OWN_KEYS)}")
        check_fractions(self.name, test_fraction, val_fraction)
        self.config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.audit_labels = bool(audit_labels)
        self._dataset_cls, self._config_cls = dataset_cls, config_cls
        self._datasets: dict[tuple[int, int], Any] = {}
        self._entries: dict[str, dict] = {}
        self.label_disagreements: list[dict] = []
        self._dataset(0, 1)  # the dataset's own validation of the config, now
        if not self.writes_traces:
            self.n_styles = 1
        elif self.audit_labels:
            self.audit()

    # ---- data ----
    def _dataset(self, seed: int, size: int):
        key = (seed, size)
        if key not in self._datasets:
            try:
                cfg = self._config_cls(**self.config, seed=seed, size=size)
                self._datasets[key] = self._dataset_cls(cfg)
            except (AssertionError, TypeError, ValueError) as exc:
                raise TaskArgsError(next(iter(self.config), "config"),
                                    f"{self.name}: reasoning-gym refuses the config "
                                    f"{self.config}: {exc}") from None
        return self._datasets[key]

    @property
    def writes_traces(self) -> bool:
        return self.dataset in SOLVERS

    def problems(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``n`` distinct problems of ``split``, deterministic for ``seed``; with a solver,
        problems with an upstream label bug are left out (``label_disagreements``)."""
        self._check_split(split)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int, got {n!r}")
        rg_seed = stable_hash(self.name, sorted(self.config.items()), "rg-seed", seed) % 2**31
        size = 50 * n + 1000
        dataset = self._dataset(rg_seed, size)
        out, seen, audited, bad, unlabelled = [], set(), 0, [], 0
        for idx in range(size):
            if len(out) == n:
                break
            try:
                entry = dataset[idx]
            except ValueError:  # a generator that gives up on an item (as countdown's does)
                continue
            question, key = entry["question"], self.content_key(entry)
            if key in seen or split_of(key, self.test_fraction, self.val_fraction) != split:
                continue
            seen.add(key)
            label = self.label_of(entry)
            if label is None:  # nothing to check an answer against: left out
                unlabelled += 1
                continue
            if self.audit_labels and self.writes_traces:
                audited += 1
                why = self._label_bug(dataset, entry)
                if why is not None:
                    bad.append(why)
                    continue
            problem = Problem(
                id=f"{self.name}:{stable_hash('rg-content', key):016x}",
                question=question.strip(), inputs={"question": question.strip()},
                label=label, split=split,
                source={"generator": f"reasoning_gym.{self.dataset}", "seed": rg_seed,
                        "size": size, "index": idx})
            self._entries[problem.id] = entry
            out.append(problem)
        self._report_labels(bad, audited)
        if len(out) < n:
            raise RuntimeError(f"{self.name}: found only {len(out)} distinct {split} problems in "
                               f"{size} draws ({unlabelled} left out without a label); widen "
                               "the dataset's config (task_args)")
        return out

    def label_of(self, entry: dict) -> str | None:
        """An entry's label: its answer, or for a dataset that gives none the example of a
        correct answer its metadata holds (``rg_support.LABEL_FIELDS``; a mapping or list
        as JSON); None when there is none or it is blank."""
        field_name = LABEL_FIELDS.get(self.dataset)
        value = entry["answer"]
        if field_name is not None:
            value = entry.get("metadata", {}).get(field_name)
            value = json.dumps(value) if isinstance(value, (dict, list)) else value
        text = None if value is None else str(value)
        return text if text and text.strip() else None

    def content_key(self, entry: dict) -> str:
        """What a problem is, for its split and id: the expression or equation of the
        datasets that word one in several templates ("What is 5 + 3?", "Compute 5 + 3."),
        so no template of it lands in another split; else the question."""
        field_name = CONTENT_KEYS.get(self.dataset)
        value = entry.get("metadata", {}).get(field_name) if field_name else None
        return " ".join(str(value).split()) if value is not None else entry["question"]

    def _label_bug(self, dataset, entry) -> dict | None:
        """None when the label agrees with the solver; else what disagrees."""
        try:
            _, exact = SOLVERS[self.dataset](entry, random.Random(0))
        except (ValueError, ZeroDivisionError, KeyError) as exc:
            return {"question": entry["question"], "label": entry["answer"],
                    "exact": f"unsolved ({exc})"}
        if dataset.score_answer(exact, entry) >= 1.0:
            return None
        return {"question": entry["question"], "label": entry["answer"], "exact": exact}

    def audit(self, n: int = AUDIT_SIZE) -> dict:
        """The label audit of ``n`` entries of this config (a fixed sample): how many
        labels disagree with the solver, and examples. More than ``MAX_BAD_LABELS`` of
        them is a TaskArgsError naming the dataset and its config."""
        dataset = self._dataset(
            stable_hash(self.name, sorted(self.config.items()), "audit") % 2**31, n)
        bad = [why for why in (self._label_bug(dataset, dataset[i]) for i in range(n)) if why]
        if len(bad) > MAX_BAD_LABELS * n:
            raise TaskArgsError(next(iter(self.config), "config"),
                                f"{self.name} with config {self.config}: {_describe(bad, n)}; an "
                                "upstream label bug, too frequent to leave out (use another "
                                "config)")
        return {"audited": n, "disagree": len(bad), "examples": bad[:3]}

    def _report_labels(self, bad: list[dict], audited: int) -> None:
        if bad:
            self.label_disagreements.extend(bad)
            warnings.warn(f"{self.name}: {_describe(bad, audited)}; those problems are left out",
                          stacklevel=3)

    def entry(self, problem: Problem) -> dict:
        """The reasoning-gym entry of a labelled problem (ground truth: for checking and
        traces only), regenerated from ``source`` when this task object did not make it."""
        if problem.label is None:
            raise ValueError(f"{self.name}: problem {problem.id!r} has no label")
        entry = self._entries.get(problem.id)
        if entry is None:
            src = problem.source
            entry = self._dataset(src["seed"], src["size"])[src["index"]]
            if entry["question"].strip() != problem.question \
                    or self.label_of(entry) != problem.label:
                raise ValueError(f"{self.name}: problem {problem.id!r} does not regenerate from "
                                 f"its source {dict(src)} (another reasoning-gym version?)")
            self._entries[problem.id] = entry
        return entry

    # ---- text ----
    def prompt(self, problem: Problem) -> str:
        return f"{problem.inputs['question']}{self.step_delimiter}"

    def _check(self, problem: Problem, answer: str) -> bool:
        entry = self.entry(problem)
        dataset = self._dataset(problem.source["seed"], problem.source["size"])
        return dataset.score_answer(answer, entry) >= 1.0

    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        """The solver's steps (style 0 compact, 1 spaced) and answer; flawed: one step's
        result off by a small amount, carried on to a wrong answer."""
        if not self.writes_traces:
            return super().solution_trace(problem, rng, flawed, style)
        self._check_style(style)
        steps, answer = SOLVERS[self.dataset](self.entry(problem), rng, flawed=flawed,
                                              spaced=style == 1)
        return self.format_trace(steps, answer)

    def style_of(self, text: str) -> int | None:
        """0 compact, 1 spaced (read off the first step line with an ``=``)."""
        for line in text.split(self.step_delimiter):
            if "=" in line and not self.is_answer_step(line):
                return 1 if " = " in line else 0
        return None


def _describe(bad: list[dict], audited: int) -> str:
    e = bad[0]
    return (f"{len(bad)} of {audited} reasoning-gym labels disagree with the exact answer "
            f"(e.g. {e['question']!r} labelled {e['label']}, exactly {e['exact']})")

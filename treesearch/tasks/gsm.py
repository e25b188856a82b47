"""GSM-style word problems from a JSONL file.

Each non-blank line is a JSON object with string fields ``question`` and ``answer``; the
answer is the worked solution, one step per line, ending with ``#### <final answer>``
(GSM8K's format; other keys are ignored). Steps are the answer's lines before ``####``,
with GSM8K's calculator annotations ``<<48/2=24>>`` removed. Answers are checked with
math-verify, so ``18``, ``18.0``, ``$18`` and ``1,250`` / ``1250`` compare as numbers.

The split is deterministic and independent of the file's line order: problems are ranked
by a hash of the question; the first ``test_fraction`` of them are the test split, the
next ``val_fraction`` the val split and the rest train (so the test split does not depend
on ``val_fraction``). Tune on "val", report on "test".

``data/gsm_sample.jsonl`` is a tiny synthetic sample written by hand for tests (not GSM8K,
which is not available offline).
"""

from __future__ import annotations

import json
import random
import re
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path

from math_verify import parse, verify

from .base import Problem, Task, check_fractions, stable_hash

SAMPLE_PATH = Path(__file__).parent / "data" / "gsm_sample.jsonl"
_CALC = re.compile(r"<<[^<>]*>>")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?(?!.*\d)")
MAX_ANSWER_CHARS = 100


def parse_record(record: object, where: str) -> tuple[str, list[str], str]:
    """(question, steps, final answer) from one decoded JSON line; ``where`` is
    ``file:line`` for errors."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("question", "answer"):
        if key not in record:
            raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(record[key], str) or not record[key].strip():
            raise ValueError(f"{where}: key {key!r} must be a non-empty string")
    answer = record["answer"]
    if "####" not in answer:
        raise ValueError(f"{where}: answer has no '#### <final answer>' line")
    body, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if not final:
        raise ValueError(f"{where}: nothing after '####'")
    steps = [_CALC.sub("", line).strip() for line in body.splitlines()]
    return " ".join(record["question"].split()), [s for s in steps if s], final


def load_jsonl(path: str | Path) -> list[tuple[int, str, list[str], str]]:
    """(line number, question, steps, final answer) for every non-blank line of ``path``.

    Raises ValueError naming the file and line on malformed JSON, a missing key, an answer
    without ``####`` or a question that appears twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GSM file not found: {path}")
    rows, first_seen = [], {}
    with path.open(encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: malformed JSON ({exc.msg} at column "
                                 f"{exc.colno})") from None
            question, steps, final = parse_record(record, where)
            if question in first_seen:
                raise ValueError(f"{where}: same question as line {first_seen[question]}")
            first_seen[question] = line_no
            rows.append((line_no, question, steps, final))
    if not rows:
        raise ValueError(f"{path}: no problems in file")
    return rows


def math_equal(gold: str, answer: str) -> bool:
    """math-verify's verdict on ``answer`` against ``gold``.

    math-verify times itself out with SIGALRM, which only works in the main thread; in
    other threads it runs without a timeout (answers are capped in length instead).
    """
    main = threading.current_thread() is threading.main_thread()
    limit = 5 if main else None
    gold_parsed = parse(gold, parsing_timeout=limit)
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    return bool(verify(gold_parsed, parse(answer, parsing_timeout=limit), timeout_seconds=limit))


class GSMTask(Task):
    """Word problems from a GSM-style JSONL file (default: the bundled synthetic sample).

    One style (``n_styles = 1``): the reference solution's lines, then ``A:<answer>``.
    """

    n_styles = 1
    answer_hint = "<number>"

    def __init__(self, path: str | Path | None = None, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, name: str = "gsm"):
        check_fractions(name, test_fraction, val_fraction)
        self.path = Path(path) if path is not None else SAMPLE_PATH
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.name = name
        self._splits: dict[str, list[Problem]] | None = None

    def _load(self) -> dict[str, list[Problem]]:
        if self._splits is None:
            rows = load_jsonl(self.path)
            ranked = sorted(rows, key=lambda r: stable_hash("gsm-split", r[1]))
            n_test = max(1, round(self.test_fraction * len(rows))) if len(rows) > 1 else 0
            # val comes after test in the ranking (test rows stay as they were before val
            # existed); it never takes the last row left for train
            n_val = min(round(self.val_fraction * len(rows)), max(0, len(rows) - n_test - 1))
            splits: dict[str, list[Problem]] = {"train": [], "val": [], "test": []}
            for rank, (line_no, question, steps, final) in enumerate(ranked):
                split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
                splits[split].append(Problem(
                    id=f"{self.name}:{stable_hash('gsm-id', question):016x}", question=question,
                    inputs={"question": question}, label=final, reference=tuple(steps),
                    split=split, source={"file": str(self.path), "line": line_no}))
            for problems in splits.values():
                problems.sort(key=lambda p: p.source["line"])
            self._splits = splits
        return self._splits

    def problems(self, split: str, n: int | None = None, seed: int = 0) -> list[Problem]:
        """``n`` problems of ``split`` ("train", "val" or "test"; all of them when ``n`` is
        None), in an order shuffled by ``seed``. A small file may have an empty val split
        (``val_fraction`` of its rows rounds to 0)."""
        self._check_split(split)
        pool = list(self._load()[split])
        random.Random(stable_hash(self.name, "order", seed)).shuffle(pool)
        if n is None:
            return pool
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int or None, got {n!r}")
        if n > len(pool):
            raise ValueError(f"{self.name}: asked for {n} {split} problems, {self.path} "
                             f"has {len(pool)}")
        return pool[:n]

    def prompt(self, problem: Problem) -> str:
        return f"Q: {problem.inputs['question']}{self.step_delimiter}"

    def _check(self, problem: Problem, answer: str) -> bool:
        if len(answer) > MAX_ANSWER_CHARS:
            return False
        return math_equal(problem.label, answer)

    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        """The reference steps and answer. Flawed: the last number of the last step and the
        answer are changed by a small amount (a slip in the final computation)."""
        self._check_style(style)
        if problem.label is None:
            raise ValueError(f"{self.name}: problem {problem.id!r} has no label "
                             "(reference) to trace")
        steps, answer = list(problem.reference), problem.label
        if flawed:
            try:
                value = Decimal(answer)
            except InvalidOperation:
                raise ValueError(f"{self.name}: cannot make a flawed trace of non-numeric "
                                 f"answer {answer!r}") from None
            wrong = value + rng.choice([-10, -2, -1, 1, 2, 10])
            answer = (format(wrong.normalize(), "f") if wrong != wrong.to_integral()
                      else str(int(wrong)))
            if steps:
                steps[-1] = _LAST_NUMBER.sub(answer, steps[-1], count=1)
        return self.format_trace(steps, answer)

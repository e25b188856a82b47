"""Arithmetic chains: left-to-right sums and differences such as ``12 + 7 - 5 + 30``.

Problems come from reasoning-gym's ``chain_sum`` generator; the answer is an integer.
Steps are the partial results, one per line::

    Compute: 12 + 7 - 5 + 30     <- prompt
    12+7=19
    19-5=14
    14+30=44
    A:44
"""

from __future__ import annotations

import random
import re
from decimal import Decimal, InvalidOperation

from reasoning_gym.arithmetic.chain_sum import ChainSumConfig, ChainSumDataset

from .base import Problem, Task, check_fractions, split_of, stable_hash

_TOKEN = re.compile(r"\s*([+-])\s*(\d+)")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_STYLES = (re.compile(r"-?\d+[-+]\d+=-?\d+"), re.compile(r"-?\d+"),
           re.compile(r"-?\d+ [-+] \d+ = -?\d+"))


def parse_chain(expression: str) -> tuple[list[int], list[str]]:
    """Terms and operators of ``a op b op c ...`` (ops + and -), as reasoning-gym writes it."""
    text = expression.strip()
    head = re.match(r"\d+", text)
    if head is None:
        raise ValueError(f"not an arithmetic chain: {expression!r}")
    terms, ops, pos = [int(head.group())], [], head.end()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"not an arithmetic chain: {expression!r}")
        ops.append(m.group(1))
        terms.append(int(m.group(2)))
        pos = m.end()
    return terms, ops


def parse_number(text: str) -> Decimal | None:
    """A number written with optional sign, thousands commas and trailing decimals."""
    text = text.strip().replace(",", "")
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


class ArithmeticChain(Task):
    """Chains of ``n_terms`` (a range) numbers of ``min_digits``..``max_digits`` digits.

    Styles (``n_styles = 3``), all ending in ``A:<number>``:
      0: ``12+7=19``       the operation and its partial result
      1: ``19``            the partial result only
      2: ``12 + 7 = 19``   spaced
    """

    n_styles = 3
    # no step example in the chat instruction: SmolLM2-135M copies one ("12 + 7 = 19") into
    # its answer; without it, 9 of 40 two-term val problems right instead of 0
    answer_hint = "<number>"

    def __init__(self, min_terms: int = 4, max_terms: int = 4, min_digits: int = 1,
                 max_digits: int = 2, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 name: str = "arithmetic"):
        if not 2 <= min_terms <= max_terms:
            raise ValueError(f"{name}: need 2 <= min_terms <= max_terms, got "
                             f"{min_terms}, {max_terms}")
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"{name}: need 1 <= min_digits <= max_digits, got {min_digits}, "
                             f"{max_digits}")
        check_fractions(name, test_fraction, val_fraction)
        self.min_terms, self.max_terms = min_terms, max_terms
        self.min_digits, self.max_digits = min_digits, max_digits
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.name = name

    def problems(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``n`` distinct problems of ``split`` ("train", "val" or "test"), split by a hash
        of the expression (``split_of``). Tune on "val", report on "test"."""
        self._check_split(split)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int, got {n!r}")
        rg_seed = stable_hash(self.name, "rg-seed", seed) % 2**31
        max_tries = 50 * n + 1000
        dataset = ChainSumDataset(ChainSumConfig(
            min_terms=self.min_terms, max_terms=self.max_terms, min_digits=self.min_digits,
            max_digits=self.max_digits, seed=rg_seed, size=max_tries))
        out: list[Problem] = []
        seen: set[str] = set()
        for idx in range(max_tries):
            if len(out) == n:
                break
            entry = dataset[idx]
            terms, ops = parse_chain(entry["metadata"]["expression"])
            key = str(terms[0]) + "".join(f"{op}{t}" for op, t in zip(ops, terms[1:]))
            if key in seen or split_of(key, self.test_fraction, self.val_fraction) != split:
                continue
            seen.add(key)
            out.append(Problem(
                id=f"{self.name}:{key}", question=f"What is {entry['metadata']['expression']}?",
                inputs={"terms": tuple(terms), "ops": tuple(ops)},
                label=str(entry["answer"]), split=split,
                source={"generator": "reasoning_gym.chain_sum", "seed": rg_seed, "index": idx}))
        if len(out) < n:
            raise RuntimeError(f"{self.name}: found only {len(out)} distinct {split} problems in "
                               f"{max_tries} draws; allow more terms or digits")
        return out

    def prompt(self, problem: Problem) -> str:
        terms, ops = problem.inputs["terms"], problem.inputs["ops"]
        expr = str(terms[0]) + "".join(f" {op} {t}" for op, t in zip(ops, terms[1:]))
        return f"Compute: {expr}{self.step_delimiter}"

    def _check(self, problem: Problem, answer: str) -> bool:
        value = parse_number(answer)
        return value is not None and value == Decimal(problem.label)

    def style_of(self, text: str) -> int | None:
        """0 ``12+7=19``, 1 ``19``, 2 ``12 + 7 = 19``, read off the first step line; None
        without a step line or when it fits none of them."""
        for line in text.split(self.step_delimiter):
            line = line.strip()
            if not line or self.is_answer_step(line):
                continue
            for style, pattern in enumerate(_STYLES):
                if pattern.fullmatch(line):
                    return style
            return None
        return None

    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        """Partial results line by line. Flawed: one step's result is off by a small amount
        and later steps carry the error on, so the answer is wrong."""
        self._check_style(style)
        terms, ops = list(problem.inputs["terms"]), list(problem.inputs["ops"])
        slip = rng.randrange(len(ops)) if flawed else -1
        total, lines = terms[0], []
        for k, (op, t) in enumerate(zip(ops, terms[1:])):
            new = total + t if op == "+" else total - t
            if k == slip:
                new += rng.choice([-10, -2, -1, 1, 2, 10])
            if style == 0:
                lines.append(f"{total}{op}{t}={new}")
            elif style == 1:
                lines.append(f"{new}")
            else:
                lines.append(f"{total} {op} {t} = {new}")
            total = new
        return self.format_trace(lines, str(total))


PRESETS = {
    "arithmetic": dict(min_terms=4, max_terms=4),
    # one operation ("What is 76 + 49?"): a task SmolLM2-135M-Instruct can partly do
    # (configs/smollm2.yaml)
    "arithmetic2": dict(min_terms=2, max_terms=2),
    "arithmetic_long": dict(min_terms=6, max_terms=6),
}

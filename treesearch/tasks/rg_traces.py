"""Solvers for some reasoning-gym datasets: exact answers and step-by-step traces.

    solver = SOLVERS["basic_arithmetic"]
    steps, answer = solver(entry, rng, flawed=False, spaced=False)

A solver reads a reasoning-gym entry (its question and ``metadata``; it may use the
ground truth: traces are training data) and returns the steps of a solution, one string
each, and the final answer as text, all in exact rational arithmetic. Two uses:

- traces for tiny-prior pretraining and worked examples (``RGTask.solution_trace``);
- a label audit: a label that disagrees with the solver's exact answer is an upstream
  label bug (``RGTask`` leaves such problems out and reports them).

``flawed=True`` makes one step's result off by a small amount and carries the error on,
so the answer is wrong (the step states false arithmetic on its face). Solvers:
``basic_arithmetic``, ``chain_sum``, ``products`` (an expression, evaluated innermost
first) and ``simple_equations`` (a linear equation in one variable).
"""

from __future__ import annotations

import ast
import random
from fractions import Fraction
from typing import Callable

DELTAS = (-10, -2, -1, 1, 2, 10)


def format_number(value: Fraction) -> str:
    """An integer as an integer, a terminating fraction as a decimal, else ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        text = f"{float(value):.12f}".rstrip("0").rstrip(".")
        if Fraction(text) == value:
            return text
    return f"{value.numerator}/{value.denominator}"


def _parse(expression: str, variable: str | None = None) -> ast.expr:
    """The AST of an arithmetic expression (numbers, + - * /, unary minus, parentheses and
    ``variable``); ValueError on anything else."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    for node in ast.walk(tree):
        ok = (isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
                                ast.USub, ast.UAdd, ast.Load))
              or isinstance(node, ast.Constant) and type(node.value) in (int, float)
              or isinstance(node, ast.Name) and node.id == variable)
        if not ok:
            raise ValueError(f"unsupported element {type(node).__name__} in {expression!r}")
    return tree


_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def apply(op: str, a: Fraction, b: Fraction) -> Fraction:
    """``a op b`` exactly (ZeroDivisionError for a division by zero)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b if op == "*" else a / b


class _Steps:
    """Innermost-first evaluation that writes each binary operation as a step; one step,
    ``slip`` (or none: -1), gets its result off by ``delta``."""

    def __init__(self, slip: int, delta: int, spaced: bool):
        self.slip, self.delta, self.spaced = slip, delta, spaced
        self.lines: list[str] = []
        self.count = 0

    def value(self, node: ast.expr) -> Fraction:
        if isinstance(node, ast.Constant):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp):
            inner = self.value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        a, b = self.value(node.left), self.value(node.right)
        op = _SYMBOL[type(node.op)]
        if op == "/" and b == 0:
            raise ValueError("division by zero")
        result = apply(op, a, b)
        if self.count == self.slip:
            result += self.delta
        self.count += 1
        sa, sb, sr = format_number(a), format_number(b), format_number(result)
        self.lines.append(f"{sa} {op} {sb} = {sr}" if self.spaced else f"{sa}{op}{sb}={sr}")
        return result


def count_operations(tree: ast.expr) -> int:
    return sum(isinstance(n, ast.BinOp) for n in ast.walk(tree))


def solve_expression(expression: str, rng: random.Random, flawed: bool = False,
                     spaced: bool = False) -> tuple[list[str], str]:
    """(steps, answer) of an arithmetic expression, standard precedence, exact values."""
    tree = _parse(expression)
    exact = _Steps(-1, 0, spaced)
    value = exact.value(tree)
    if not flawed or exact.count == 0:
        if flawed:  # a lone number: state a wrong one
            wrong = value + rng.choice(DELTAS)
            return [], format_number(wrong)
        return exact.lines, format_number(value)
    for _ in range(20):
        walk = _Steps(rng.randrange(exact.count), rng.choice(DELTAS), spaced)
        try:
            wrong = walk.value(tree)
        except ValueError:  # the slip made a divisor zero: slip elsewhere
            continue
        if wrong != value:
            return walk.lines, format_number(wrong)
    lines = exact.lines[:-1] + [exact.lines[-1].rsplit("=", 1)[0] + "=" + format_number(value + 1)]
    return lines, format_number(value + 1)


def _expression_solver(entry: dict, rng: random.Random, flawed: bool = False,
                       spaced: bool = False) -> tuple[list[str], str]:
    return solve_expression(entry["metadata"]["expression"], rng, flawed, spaced)


def _linear(side: str, variable: str) -> tuple[Fraction, Fraction]:
    """(a, b) with ``side`` = a * variable + b; ValueError when it is not linear."""
    tree = _parse(side, variable)

    def at(x: Fraction) -> Fraction:
        def ev(node):
            if isinstance(node, ast.Name):
                return x
            if isinstance(node, ast.Constant):
                return Fraction(str(node.value))
            if isinstance(node, ast.UnaryOp):
                return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
            a, b = ev(node.left), ev(node.right)
            return apply(_SYMBOL[type(node.op)], a, b)
        return ev(tree)

    b, a = at(Fraction(0)), at(Fraction(1)) - at(Fraction(0))
    if at(Fraction(2)) != 2 * a + b:
        raise ValueError(f"not linear in {variable}: {side!r}")
    return a, b


def _equation_solver(entry: dict, rng: random.Random, flawed: bool = False,
                     spaced: bool = False) -> tuple[list[str], str]:
    """``a*x + b = c*x + d`` -> ``(a-c)*x = d-b = k`` -> ``x = k/(a-c) = answer``."""
    meta = entry["metadata"]
    variable = meta["variable"]
    left, right = meta["equation"].split("=")
    a, b = _linear(left, variable)
    c, d = _linear(right, variable)
    coef, const = a - c, d - b
    if coef == 0:
        raise ValueError(f"no unique solution: {meta['equation']!r}")
    x = const / coef
    slip = rng.randrange(2) if flawed else -1
    delta = rng.choice(DELTAS) if flawed else 0
    k = const + (delta if slip == 0 else 0)
    answer = k / coef + (delta if slip == 1 else 0)
    if flawed and answer == x:
        answer += 1
    f = format_number
    eq = " = " if spaced else "="
    lines = [f"{f(coef)}*{variable}{eq}{f(d)}-{f(b)}{eq}{f(k)}" if b >= 0 else
             f"{f(coef)}*{variable}{eq}{f(d)}+{f(-b)}{eq}{f(k)}",
             f"{variable}{eq}{f(k)}/{f(coef)}{eq}{f(answer)}"]
    return lines, f(answer)


Solver = Callable[..., tuple[list[str], str]]
SOLVERS: dict[str, Solver] = {
    "basic_arithmetic": _expression_solver,
    "chain_sum": _expression_solver,
    "products": _expression_solver,
    "simple_equations": _equation_solver,
}

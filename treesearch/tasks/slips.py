"""Arithmetic slips: equations in a solution text that are false on their face.

    count_arithmetic_slips("-7+5=-2\\n3*-4=-12\\n12*4=50\\n")   # 1

Every ``=`` of a line is read as ``left = right`` where each side is an arithmetic
expression (integers or decimals, thousands commas, + - * / and the signs x, ×, ÷ between
numbers, unary minus, parentheses, any precedence); an equation is a slip when both sides
evaluate and differ. Exact rational arithmetic; a right side written with k decimals
may round or truncate the left side's value at 10^-k ("10/3 = 3.33" is no slip).

Conservative on purpose: a side that is not a whole arithmetic expression is not judged,
so prose and algebra do not count as slips. A side glued to a word or symbol ("2x - 3 =
5", "$5 + 3 = 8", "50% = 0.5", "f(3) = 7"), a left side that begins with a binary
operator after a word ("x - 3 = 5") and an equation with no operator on either side
("x = 5 = 5") are skipped. A step that states false arithmetic this way is a slip
whatever the task; tasks whose texts are not arithmetic set ``Task.counts_slips = False``.
"""

from __future__ import annotations

import re
from fractions import Fraction

_TOKEN = re.compile(r"""
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)?)
  | (?P<op>[-+*/×÷−])
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<eq>=)
  | (?P<sp>[ \t]+)
  | (?P<word>[A-Za-z_]+)
  | (?P<other>.)
""", re.VERBOSE)
_OPS = {"−": "-", "×": "*", "÷": "/", "x": "*", "X": "*"}
_EXPR_KINDS = ("num", "op", "lp", "rp", "sp")
# glued to a side, these do not make it part of something larger
_OPENERS = set(":;,[{\"'")
_CLOSERS = set(".,;:?)]}\"'")
MAX_TOKENS = 200


class _Unparsable(Exception):
    pass


def count_arithmetic_slips(text: str) -> int:
    """Number of equations in ``text`` whose two sides evaluate to different values."""
    if not isinstance(text, str):
        return 0
    return sum(_line_slips(line) for line in text.split("\n"))


def _tokens(line: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; a lone x / X between numbers is the multiplication sign."""
    toks = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(line)]
    for i, (kind, text) in enumerate(toks):
        if kind == "word" and text in ("x", "X"):
            left = _neighbour(toks, i, -1)
            right = _neighbour(toks, i, +1)
            if left in ("num", "rp") and right in ("num", "lp"):
                toks[i] = ("op", text)
    return toks


def _neighbour(toks, i, step) -> str | None:
    j = i + step
    while 0 <= j < len(toks) and toks[j][0] == "sp":
        j += step
    return toks[j][0] if 0 <= j < len(toks) else None


def _line_slips(line: str) -> int:
    if "=" not in line:
        return 0
    toks = _tokens(line)
    slips = 0
    for i, (kind, _) in enumerate(toks):
        if kind != "eq":
            continue
        left, right = _left_side(toks, i), _right_side(toks, i)
        if left is None or right is None or (left[1] == 0 and right[1] == 0):
            continue
        if left[0] is None or right[0] is None:  # division by zero claims a value: a slip
            slips += 1
        elif not _same(left[0], right[0], right[2]):
            slips += 1
    return slips


def _left_side(toks, i):
    """(value or None on division by zero, binary operators, decimals) of the expression
    ending at the ``=`` at ``i``, or None when it is not a whole expression."""
    j = i
    while j > 0 and toks[j - 1][0] in _EXPR_KINDS:
        j -= 1
    side = toks[j:i]
    stopper = toks[j - 1] if j > 0 else None
    glued = bool(side) and side[0][0] != "sp"
    if stopper is not None and stopper[0] != "eq":
        if glued and stopper[1] not in _OPENERS:
            return None  # "x2+3 =", "$5 + 3 ="
    # drop leading words of a longer run: the longest suffix after a space that parses
    for start in _starts(side):
        if start > 0 and _neighbour(side, start, -1) == "op":
            return None  # "1 + 2 3*4 =": not one expression
        body = [t for t in side[start:] if t[0] != "sp"]
        if not body:
            return None
        after_word = start > 0 or (stopper is not None and stopper[0] == "word")
        if body[0][0] == "op" and (body[0][1] != "-" and body[0][1] != "−" or after_word):
            return None  # "x - 3 = 5": the left side started before the word
        parsed = _evaluate(body)
        if parsed is not None:
            return parsed
    return None


def _starts(side) -> list[int]:
    """Where a left side may start: its beginning, then after each space, longest first."""
    return [0] + [k + 1 for k, t in enumerate(side) if t[0] == "sp" and k + 1 < len(side)]


def _right_side(toks, i):
    """Like ``_left_side`` for the expression that starts after the ``=`` at ``i``: the
    longest prefix that parses and ends at a space or at the end of the run."""
    j = i + 1
    while j < len(toks) and toks[j][0] in _EXPR_KINDS:
        j += 1
    side = toks[i + 1:j]
    stopper = toks[j] if j < len(toks) else None
    ends = [k for k, t in enumerate(side) if t[0] == "sp" and k > 0] + [len(side)]
    for end in sorted(set(ends), reverse=True):
        body = [t for t in side[:end] if t[0] != "sp"]
        if not body:
            return None
        if end == len(side):
            glued = side and side[-1][0] != "sp"
            if stopper is not None and stopper[0] != "eq" and glued and stopper[1] not in _CLOSERS:
                continue  # "= 7x", "= 3 + 4%"
        elif _neighbour(side, end - 1, +1) == "op":
            continue  # "= 3 + 4 x": the expression goes on
        parsed = _evaluate(body)
        if parsed is not None:
            return parsed
    return None


def _same(left: Fraction, right: Fraction, decimals: int) -> bool:
    if left == right:
        return True
    return decimals > 0 and abs(left - right) < Fraction(1, 10 ** decimals)


def _evaluate(body):
    """(value or None for a division by zero, binary operators, decimals of the last
    number) of a token list that is exactly one arithmetic expression; None otherwise."""
    if len(body) > MAX_TOKENS:
        return None
    parser = _Parser(body)
    try:
        value = parser.expression()
        if parser.pos != len(body):
            raise _Unparsable
    except _Unparsable:
        return None
    except ZeroDivisionError:
        value = None
    last = [t[1] for t in body if t[0] == "num"]
    decimals = len(last[-1].split(".")[1]) if last and "." in last[-1] else 0
    return value, parser.binary, decimals


class _Parser:
    """Recursive descent over num / op / lp / rp tokens: + - below * /, unary minus."""

    def __init__(self, body):
        self.body, self.pos, self.binary = body, 0, 0

    def _peek(self):
        return self.body[self.pos] if self.pos < len(self.body) else (None, None)

    def _op(self):
        kind, text = self._peek()
        return _OPS.get(text, text) if kind == "op" else None

    def expression(self) -> Fraction:
        value = self.term()
        while self._op() in ("+", "-"):
            op = self._op()
            self.pos += 1
            right = self.term()
            self.binary += 1
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self._op() in ("*", "/"):
            op = self._op()
            self.pos += 1
            right = self.unary()
            self.binary += 1
            value = value * right if op == "*" else value / right
        return value

    def unary(self) -> Fraction:
        if self._op() == "-":
            self.pos += 1
            return -self.unary()
        return self.atom()

    def atom(self) -> Fraction:
        kind, text = self._peek()
        if kind == "num":
            self.pos += 1
            return Fraction(text.replace(",", ""))
        if kind == "lp":
            self.pos += 1
            value = self.expression()
            if self._peek()[0] != "rp":
                raise _Unparsable
            self.pos += 1
            return value
        raise _Unparsable

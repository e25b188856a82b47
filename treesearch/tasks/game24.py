"""Game of 24: combine four numbers from 1-13 with + - * / into 24.

The canonical testbed of step-level search (Tree of Thoughts, 2305.10601): a step is one
checkable line of arithmetic on two numbers still available, and a failure is a dead end
that the exact solver can see. Every problem is one multiset of ``n_numbers`` numbers from
[min_value, max_value]; the problems are ALL such multisets that the solver can turn into
``target`` (not draws from a generator), each once, split by a hash of its content.

The rule is countdown's: every intermediate result is a non-negative integer and every
division is exact. Of the 1,820 multisets of four numbers from 1-13, 1,346 reach 24 under
it (1,362 if fractions were allowed in intermediate steps: the 16 left out, like
5 5 5 1 = 5*(5-1/5), need a fraction). Answers are checked exactly as countdown's are: an
expression that uses every number once and evaluates to the target.

Solution text: countdown's annotated style, each step followed by the numbers still
available, so a step never has to remember which numbers are left::

    Numbers: 4 6 8 13
    Target: 24
    13-8=5 (4 6 5)
    6-5=1 (4 1)
    4*1=4 ...

Difficulty comes from the exact solver: ``solution_count`` is the number of distinct
winning step sequences (a step is two available values, larger first, an operator and the
result; equal numbers are not told apart), and ``difficulty_bin`` groups the puzzles by it.
"""

from __future__ import annotations

import random
from functools import lru_cache
from itertools import combinations_with_replacement
from math import comb
from typing import Sequence

from .base import Problem, check_fractions, split_of, stable_hash
from .countdown import Countdown, _STYLE2, solve_items

# the most multisets a game24 task enumerates (C(13+4-1, 4) = 1820 for the default)
MAX_MULTISETS = 200_000
# difficulty bins by solution count, hardest first: (upper bound inclusive, name); about a
# quarter of the 1,346 puzzles of 1-13 -> 24 fall in each
DIFFICULTY_BINS = ((2, "1-2"), (5, "3-5"), (11, "6-11"), (10**18, "12+"))


def _moves(state: tuple[int, ...]) -> list[tuple[int, str, int, int, tuple[int, ...]]]:
    """Every distinct step from a multiset of values: (a, op, b, result, next state), with
    a >= b, non-negative results and exact division; pairs of equal values counted once."""
    out = []
    seen_pairs = set()
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            a, b = max(state[i], state[j]), min(state[i], state[j])
            if (a, b) in seen_pairs:
                continue
            seen_pairs.add((a, b))
            rest = state[:i] + state[i + 1:j] + state[j + 1:]
            results = [("+", a + b), ("*", a * b), ("-", a - b)]
            if b not in (0, 1) and a % b == 0:
                results.append(("/", a // b))
            for op, value in results:
                out.append((a, op, b, value, tuple(sorted(rest + (value,)))))
    return out


@lru_cache(maxsize=None)
def solution_count(state: tuple[int, ...], target: int) -> int:
    """Distinct winning step sequences from the sorted multiset ``state`` to ``target``
    (``_moves`` defines a step); 0 when the target cannot be reached."""
    if len(state) == 1:
        return int(state[0] == target)
    return sum(solution_count(nxt, target) for *_, nxt in _moves(state))


def difficulty_bin(count: int) -> str:
    """The difficulty bin of a puzzle with ``count`` solutions (``DIFFICULTY_BINS``)."""
    for upper, name in DIFFICULTY_BINS:
        if count <= upper:
            return name
    raise AssertionError("unreachable: the last bin has no upper bound")


class Game24(Countdown):
    """Game of 24 (and its relatives: other targets, more numbers, another range).

    n_numbers: numbers per puzzle (2-6); min_value, max_value: their range (1 <= min <=
    max <= 99); target: the number to make (0-10000). The problems are every multiset in
    that range that can reach the target (see the module docstring), split into train /
    val / test by ``split_of`` with ``test_fraction`` / ``val_fraction``.
    """

    n_styles = 1
    step_example = "13-8=5 (4 6 5)"

    def __init__(self, n_numbers: int = 4, min_value: int = 1, max_value: int = 13,
                 target: int = 24, test_fraction: float = 0.4, val_fraction: float = 0.15,
                 name: str = "game24"):
        for arg, value, lo, hi in (("n_numbers", n_numbers, 2, 6), ("min_value", min_value, 1, 99),
                                   ("max_value", max_value, 1, 99), ("target", target, 0, 10_000)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name}: {arg} must be an int in [{lo}, {hi}], got {value!r}")
        if min_value > max_value:
            raise ValueError(f"{name}: need min_value <= max_value, got {min_value}, {max_value}")
        size = comb(max_value - min_value + n_numbers, n_numbers)
        if size > MAX_MULTISETS:
            raise ValueError(f"{name}: n_numbers={n_numbers} over [{min_value}, {max_value}] gives "
                             f"{size} multisets, more than the {MAX_MULTISETS} it enumerates; "
                             "narrow the range or use fewer numbers")
        check_fractions(name, test_fraction, val_fraction)
        super().__init__(n_numbers=n_numbers, min_value=min_value, max_value=max_value,
                         min_target=max(target, 1), max_target=max(target, 1),
                         test_fraction=test_fraction, val_fraction=val_fraction, name=name)
        self.target = target
        self._by_split: dict[str, list[Problem]] | None = None

    # ---- problems ----
    def all_problems(self) -> dict[str, list[Problem]]:
        """Every solvable puzzle, by split, in enumeration order (sorted multisets)."""
        if self._by_split is None:
            by_split: dict[str, list[Problem]] = {"train": [], "val": [], "test": []}
            values = range(self.min_value, self.max_value + 1)
            for numbers in combinations_with_replacement(values, self.n_numbers):
                if not solution_count(numbers, self.target):
                    continue
                key = f"{','.join(map(str, numbers))}={self.target}"
                split = split_of(key, self.test_fraction, self.val_fraction)
                by_split[split].append(self._problem(numbers, key, split))
            self._by_split = by_split
        return self._by_split

    def _problem(self, numbers: tuple[int, ...], key: str, split: str) -> Problem:
        found = solve_items([(n, str(n)) for n in numbers], self.target)
        question = (f"Use each of the numbers {', '.join(map(str, numbers))} exactly once, "
                    f"with + - * / and parentheses, to make {self.target}.")
        return Problem(id=f"{self.name}:{key}", question=question,
                       inputs={"numbers": numbers, "target": self.target}, label=found[1],
                       split=split, source={"generator": "enumeration"})

    def problems(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``n`` distinct puzzles of ``split`` (all of them for ``n=None``), in an order
        shuffled by ``seed``; asking for more than the split holds is a ValueError that
        says how many it has."""
        self._check_split(split)
        pool = list(self.all_problems()[split])
        random.Random(stable_hash(self.name, "order", seed)).shuffle(pool)
        if n is None:
            return pool
        self._check_count(n)
        if n > len(pool):
            raise ValueError(f"{self.name}: the {split} split has {len(pool)} puzzles, "
                             f"{n} were asked for")
        return pool[:n]

    def _draw_problems(self, split: str, seed: int, max_tries: int):
        """The puzzles of ``split`` in ``problems``' order (``problems_needing`` filters them)."""
        yield from self.problems(split, None, seed)[:max_tries]

    # ---- difficulty ----
    def solution_count(self, problem_or_inputs) -> int:
        """Distinct winning step sequences of a puzzle (``solution_count``)."""
        inputs = getattr(problem_or_inputs, "inputs", problem_or_inputs)
        return solution_count(tuple(sorted(inputs["numbers"])), int(inputs["target"]))

    def difficulty(self, problem_or_inputs) -> str:
        """The puzzle's difficulty bin (``DIFFICULTY_BINS``, by ``solution_count``)."""
        return difficulty_bin(self.solution_count(problem_or_inputs))

    # ---- traces ----
    def render(self, numbers: Sequence[int], steps, answer: str, style: int) -> str:
        """Steps in the annotated style (countdown's style 2), then the answer line."""
        self._check_style(style)
        state, lines = list(numbers), []
        for a, op, b, c in steps:
            state.remove(a)
            state.remove(b)
            state.append(c)
            lines.append(f"{a}{op}{b}={c} ({' '.join(map(str, state))})")
        return self.format_trace(lines, answer)

    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        self._check_style(style)
        return super().solution_trace(problem, rng, flawed=flawed, style=0)

    def style_of(self, text: str) -> int | None:
        """0 when the first step line is written in the annotated style, else None."""
        for line in text.split(self.step_delimiter):
            line = line.strip()
            if line and not self.is_answer_step(line):
                return 0 if _STYLE2.fullmatch(line) else None
        return None


PRESETS = {
    "game24": {},
}

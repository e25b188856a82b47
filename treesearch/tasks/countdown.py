"""Countdown: combine the given numbers with + - * / to reach a target.

Problems come from reasoning-gym's countdown generator (``reasoning_gym.games.countdown``),
which builds a random expression over the numbers, so every problem is solvable. As in
reasoning-gym's scorer, an answer must use EVERY given number exactly once (the multiset of
integer literals in the answer equals the given numbers) and evaluate to the target.

Solution text (style 0): the prompt, then one step per line, each step combining two
available numbers into a new one, then the answer line::

    Numbers: 3 19 25
    Target: 478
    25*19=475
    475+3=478
    A:(25*19)+3

Intermediate results are non-negative integers and divisions are exact (the usual
countdown rules); the exact solver below finds such a solution by search over pairs, and
falls back to allowing negative intermediates for the rare problem that needs them.
"""

from __future__ import annotations

import ast
import random
import re
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

from reasoning_gym.games.countdown import CountdownConfig, CountdownDataset

from .base import Problem, Task, check_fractions, split_of, stable_hash

# a step as written: (left operand, operator, right operand, claimed result)
Step = tuple[int, str, int, int]
# a solver item: (value, expression over the original numbers)
Item = tuple[int, str]

OPS = ("+", "-", "*", "/")
# a random attempt (``walk_trace``) avoids results above this many times the largest of the
# target and the given numbers
WALK_CAP = 4
MAX_ANSWER_CHARS = 200


# ---- checking ---------------------------------------------------------------------------

def evaluate(expr: str) -> tuple[Fraction, list[int]]:
    """Exact value of an answer expression and the integer literals it uses.

    Only non-negative integer literals, binary + - * / and parentheses are allowed (no
    unary minus, no powers, no '=' sign). Raises ValueError on anything else, including
    division by zero.
    """
    if len(expr) > MAX_ANSWER_CHARS:
        raise ValueError(f"expression longer than {MAX_ANSWER_CHARS} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise ValueError(f"not an arithmetic expression: {expr!r}") from exc
    literals: list[int] = []

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                if right == 0:
                    raise ValueError("division by zero")
                return left / right
        raise ValueError(f"unsupported element {type(node).__name__} in {expr!r}")

    try:
        value = ev(tree.body)
    except RecursionError as exc:
        raise ValueError("expression nested too deeply") from exc
    return value, literals


def expression_solves(expr: str, numbers: Sequence[int], target: int) -> bool:
    """True iff ``expr`` uses each of ``numbers`` exactly once and evaluates to ``target``."""
    try:
        value, literals = evaluate(expr)
    except ValueError:
        return False
    return sorted(literals) == sorted(numbers) and value == target


# ---- exact solver -----------------------------------------------------------------------

def _wrap(expr: str) -> str:
    """Parenthesise a compound sub-expression."""
    return expr if expr.isdigit() else f"({expr})"


def _combine(x: Item, y: Item, allow_negative: bool,
             exclude_ops: frozenset[str] = frozenset()) -> list[tuple[Item, str, Item, int]]:
    """Candidate steps combining two items: (left, op, right, result), larger operand left;
    none with an operator in ``exclude_ops``."""
    a, b = (x, y) if x[0] >= y[0] else (y, x)
    out = [(a, "+", b, a[0] + b[0]), (a, "*", b, a[0] * b[0]), (a, "-", b, a[0] - b[0])]
    if allow_negative and a[0] != b[0]:
        out.append((b, "-", a, b[0] - a[0]))
    if b[0] not in (0, 1) and a[0] % b[0] == 0:
        out.append((a, "/", b, a[0] // b[0]))
    if allow_negative and a[0] not in (0, 1) and a[0] != b[0] and b[0] % a[0] == 0:
        out.append((b, "/", a, b[0] // a[0]))
    if exclude_ops:
        out = [step for step in out if step[1] not in exclude_ops]
    return out


def solve_items(items: Sequence[Item], target: int, rng: random.Random | None = None,
                allow_negative: bool = False, exclude_ops: Sequence[str] = (),
                ) -> tuple[list[Step], str] | None:
    """Steps that combine all ``items`` into ``target``, and the final expression.

    Depth-first over pairs and operators with a memo of dead multisets; with ``rng`` the
    pair and operator order is shuffled, so different seeds give different solutions.
    Returns None if no solution exists under the rules (non-negative intermediates unless
    ``allow_negative``; exact division always; no operator of ``exclude_ops``, e.g.
    ``("/",)`` for a solution without division).
    """
    unknown = set(exclude_ops) - set(OPS)
    if unknown:
        raise ValueError(f"solve_items: exclude_ops must be among {OPS}, got {sorted(unknown)}")
    excluded = frozenset(exclude_ops)
    dead: set[tuple[int, ...]] = set()

    def rec(state: list[Item]) -> tuple[list[Step], str] | None:
        if len(state) == 1:
            return ([], state[0][1]) if state[0][0] == target else None
        key = tuple(sorted(v for v, _ in state))
        if key in dead:
            return None
        pairs = [(i, j) for i in range(len(state)) for j in range(i + 1, len(state))]
        if rng is not None:
            rng.shuffle(pairs)
        for i, j in pairs:
            rest = [it for k, it in enumerate(state) if k != i and k != j]
            options = _combine(state[i], state[j], allow_negative, excluded)
            if rng is not None:
                rng.shuffle(options)
            for left, op, right, value in options:
                if value < 0 and not allow_negative:
                    continue
                new = (value, f"{_wrap(left[1])}{op}{_wrap(right[1])}")
                found = rec(rest + [new])
                if found is not None:
                    return [(left[0], op, right[0], value)] + found[0], found[1]
        dead.add(key)
        return None

    return rec(list(items))


def solve(numbers: Sequence[int], target: int, rng: random.Random | None = None,
          exclude_ops: Sequence[str] = ()) -> tuple[list[Step], str] | None:
    """Solve a countdown problem: non-negative intermediates first, then any integers;
    without the operators in ``exclude_ops`` (see ``solve_items``)."""
    items = [(n, str(n)) for n in numbers]
    return (solve_items(items, target, rng, exclude_ops=exclude_ops)
            or solve_items(items, target, rng, allow_negative=True, exclude_ops=exclude_ops))


@lru_cache(maxsize=200_000)
def _reachable(values: tuple[int, ...], target: int) -> bool:
    """Whether the sorted multiset ``values`` can still make ``target`` (``solve``'s rules)."""
    items = [(v, str(v)) for v in values]
    return (solve_items(items, target) is not None
            or solve_items(items, target, allow_negative=True) is not None)


def _apply(state: list[Item], step: Step) -> list[Item]:
    """The items after a written step; operands are found by value."""
    a, op, b, claimed = step
    rest = list(state)
    ia = next(k for k, it in enumerate(rest) if it[0] == a)
    left = rest.pop(ia)
    ib = next(k for k, it in enumerate(rest) if it[0] == b)
    right = rest.pop(ib)
    return rest + [(claimed, f"{_wrap(left[1])}{op}{_wrap(right[1])}")]


# ---- the task ---------------------------------------------------------------------------

class Countdown(Task):
    """Countdown with ``n_numbers`` numbers from [min_value, max_value] and a target in
    [min_target, max_target], generated by reasoning-gym.

    Styles (``n_styles = 3``), all ending in the same answer line ``A:<expression>``:
      0: ``25*4=100``           compact
      1: ``25 * 4 = 100``       spaced
      2: ``25*4=100 (7 3 100)`` compact, followed by the numbers still available
    """

    n_styles = 3
    step_example = "25*4=100"
    answer_hint = "<one expression using every number exactly once>"
    strategies = ("division", "subtraction")

    def __init__(self, n_numbers: int = 4, min_value: int = 1, max_value: int = 25,
                 min_target: int = 100, max_target: int = 999, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, name: str = "countdown"):
        if not isinstance(n_numbers, int) or n_numbers < 2:
            raise ValueError(f"countdown: n_numbers must be an int >= 2, got {n_numbers!r}")
        if not 1 <= min_value <= max_value:
            raise ValueError("countdown: need 1 <= min_value <= max_value, got "
                             f"{min_value}, {max_value}")
        if not 1 <= min_target <= max_target:
            raise ValueError(f"countdown: need 1 <= min_target <= max_target, got {min_target}, "
                             f"{max_target}")
        check_fractions("countdown", test_fraction, val_fraction)
        self.n_numbers, self.min_value, self.max_value = n_numbers, min_value, max_value
        self.min_target, self.max_target = min_target, max_target
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.name = name

    # ---- problems ----
    def _dataset(self, seed: int, size: int):
        config = CountdownConfig(
            min_numbers=self.n_numbers, max_numbers=self.n_numbers,
            min_value=self.min_value, max_value=self.max_value,
            min_target=self.min_target, max_target=self.max_target,
            seed=seed, size=size)
        return CountdownDataset(config)

    def problems(self, split: str, n: int | None, seed: int = 0) -> list[Problem]:
        """``n`` distinct solvable problems of ``split`` ("train", "val" or "test"); a
        problem's split is decided by a hash of its (sorted numbers, target)
        (``split_of``), so no seed can put a val or test problem in train. Tune on "val",
        report on "test"."""
        self._check_split(split)
        self._check_count(n)
        max_tries = 50 * n + 1000
        out = self._first_drawn(split, seed, n, max_tries)
        if len(out) < n:
            raise RuntimeError(f"{self.name}: found only {len(out)} distinct {split} problems in "
                               f"{max_tries} draws; widen the number or target range")
        return out

    def problems_needing(self, strategy: str, split: str, n: int, seed: int = 0,
                         max_draws: int | None = None) -> list[Problem]:
        """``n`` distinct problems of ``split`` that need ``strategy`` (``needs_strategy``:
        solvable, but not without it), drawn as ``problems`` draws (same generator, same
        content-hash split, so a test problem is never a train one) and filtered.
        ``max_draws`` (default ``200 * n + 20000``) bounds the generator draws; fewer
        than ``n`` found in them is a RuntimeError that says how many were found.

        Rare for small tasks: all of countdown3 (numbers 1-25, targets 100-999) has only
        23 test and 12 val problems that need division (of 3984 and 2040); the first 20000
        draws give 16 and 11 of them. countdown (4 numbers) gives ~7 per 1000 draws."""
        self._check_split(split)
        self._check_count(n)
        self._strategy_ops(strategy)
        max_draws = 200 * n + 20000 if max_draws is None else max_draws
        out = self._first_drawn(split, seed, n, max_draws,
                                keep=lambda problem: self.needs_strategy(problem, strategy))
        if len(out) < n:
            raise RuntimeError(f"{self.name}: found only {len(out)} distinct {split} problems "
                               f"that need {strategy!r} in {max_draws} draws; ask for fewer")
        return out

    def _first_drawn(self, split: str, seed: int, n: int, max_draws: int,
                     keep=lambda problem: True) -> list[Problem]:
        """The first ``n`` drawn problems of ``split`` that ``keep`` accepts (fewer when the
        ``max_draws`` draws run out)."""
        out: list[Problem] = []
        for problem in self._draw_problems(split, seed, max_draws) if n else ():
            if keep(problem):
                out.append(problem)
                if len(out) == n:
                    break
        return out

    def _check_count(self, n) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int (a generated task has no "
                             f"'all'), got {n!r}")

    def _draw_problems(self, split: str, seed: int, max_tries: int):
        """Yield the distinct solvable problems of ``split`` among the first ``max_tries``
        draws of the seeded reasoning-gym generator, in draw order."""
        # reasoning-gym seeds item idx with Random(seed + idx): derive a scattered seed so
        # that seeds 0 and 1 do not give shifted copies of the same sequence.
        rg_seed = stable_hash(self.name, "rg-seed", seed) % 2**31
        dataset = self._dataset(rg_seed, max_tries)
        seen: set[str] = set()
        for idx in range(max_tries):
            try:
                entry = dataset[idx]
            except ValueError:  # reasoning-gym gave up on a target in range
                continue
            numbers = [int(v) for v in entry["metadata"]["numbers"]]
            target = int(entry["metadata"]["target"])
            key = f"{','.join(map(str, sorted(numbers)))}={target}"
            if key in seen or split_of(key, self.test_fraction, self.val_fraction) != split:
                continue
            seen.add(key)
            found = solve(numbers, target)
            if found is None:  # never seen; kept as a guard
                continue
            # reasoning-gym's answer can start with a unary minus ("-7+(8*19-6)/1"), which
            # check() refuses: such a label is replaced by the solver's expression
            label = str(entry["answer"]).replace(" ", "")
            if not expression_solves(label, numbers, target):
                label = found[1]
            question = (f"Use each of the numbers {', '.join(map(str, numbers))} exactly once, "
                        f"with + - * / and parentheses, to make {target}.")
            yield Problem(
                id=f"{self.name}:{key}", question=question,
                inputs={"numbers": tuple(numbers), "target": target},
                label=label, split=split,
                source={"generator": "reasoning_gym.countdown", "seed": rg_seed, "index": idx})

    def needs_strategy(self, problem_or_inputs, strategy: str) -> bool:
        """True iff the problem (a ``Problem`` or its ``inputs``) is solvable at all but not
        without ``strategy`` ("division": no ``/``, "subtraction": no ``-``), by the exact
        solver under ``solve``'s rules (integer intermediates, negative ones allowed as a
        fallback, exact division). Without division every intermediate is an integer
        anyway, so "division" is exact for any answer ``check`` accepts; "subtraction"
        assumes exact divisions."""
        excluded = self._strategy_ops(strategy)
        inputs = getattr(problem_or_inputs, "inputs", problem_or_inputs)
        numbers, target = list(inputs["numbers"]), int(inputs["target"])
        return (solve(numbers, target, exclude_ops=excluded) is None
                and solve(numbers, target) is not None)

    def _strategy_ops(self, strategy: str) -> tuple[str, ...]:
        """The operators that make up ``strategy``; a ValueError for an unknown one."""
        if strategy not in _STRATEGY_OPERATORS:
            raise ValueError(f"{self.name}: unknown strategy {strategy!r}; known: "
                             f"{list(self.strategies)}")
        return _STRATEGY_OPERATORS[strategy]

    def prompt(self, problem: Problem) -> str:
        numbers = " ".join(map(str, problem.inputs["numbers"]))
        return (f"Numbers: {numbers}{self.step_delimiter}"
                f"Target: {problem.inputs['target']}{self.step_delimiter}")

    def answer_key(self, answer_text: str | None) -> str | None:
        """Different expressions can be equally right, so votes group by what an answer
        claims: its exact value and the multiset of numbers it uses (every correct answer
        of a problem shares one key). Unparseable answers keep their text as the key."""
        if answer_text is None or not answer_text.strip():
            return None
        try:
            value, literals = evaluate(answer_text)
        except ValueError:
            return "".join(answer_text.split())
        return f"{value}|{','.join(map(str, sorted(literals)))}"

    def _check(self, problem: Problem, answer: str) -> bool:
        return expression_solves(answer, problem.inputs["numbers"], problem.inputs["target"])

    # ---- label-free checks ----
    can_verify_answers = True

    def verify_answer(self, inputs, answer_text: str | None) -> bool:
        """The target and the numbers are in the prompt, so an answer checks out without a
        label: it uses every number once and evaluates to the target (as ``check`` does)."""
        if answer_text is None or not answer_text.strip():
            return False
        return expression_solves(answer_text.strip(), inputs["numbers"], inputs["target"])

    def check_step(self, inputs, steps: list[str], step: str) -> bool:
        """A step line ``a op b = c`` (any of the three styles) is valid when its arithmetic
        is true (division exact) and ``a`` and ``b`` are still available: given numbers
        and results of earlier steps, each used once. An answer line is valid when it checks
        out (``verify_answer``). Earlier steps that do not parse consume nothing."""
        if self.is_answer_step(step):
            return self.verify_answer(inputs, self.extract_answer(step))
        available = list(inputs["numbers"])
        for earlier in steps:
            parsed = _parse_step(earlier)
            if parsed is not None and _take(available, parsed[0], parsed[2]):
                available.append(parsed[3])
        parsed = _parse_step(step)
        if parsed is None:
            return False
        a, op, b, c = parsed
        exact = {"+": a + b, "-": a - b, "*": a * b}.get(op)
        if op == "/":
            if b == 0 or a % b:
                return False
            exact = a // b
        return exact == c and _take(available, a, b)

    # ---- the step oracle (benchmarks only: ``critics.oracle``) ----
    def step_oracle(self, inputs, steps: list[str]) -> bool:
        """Whether a partial solution can still succeed: every step valid (``check_step``,
        each after the ones before it) and the target still reachable from the numbers left,
        by the exact solver; a last step that is an answer line must check out
        (``verify_answer``). No steps: whether the puzzle is solvable at all."""
        available = list(inputs["numbers"])
        for k, step in enumerate(steps):
            if not self.check_step(inputs, steps[:k], step):
                return False
            if self.is_answer_step(step):
                return k == len(steps) - 1
            a, _, b, c = _parse_step(step)
            _take(available, a, b)
            available.append(c)
        return _reachable(tuple(sorted(available)), int(inputs["target"]))

    def uses_strategy(self, text: str, strategy: str) -> bool:
        """"division" / "subtraction": the operator appears between two operands in a
        step or the answer (a negative literal like ``-3`` alone does not count)."""
        if strategy not in _STRATEGY_OPS:
            return super().uses_strategy(text, strategy)
        lines = [_REMAINING.sub("", line) for line in text.split(self.step_delimiter)]
        return any(_STRATEGY_OPS[strategy].search(line) for line in lines)

    def style_of(self, text: str) -> int | None:
        """0 ``25*4=100``, 1 ``25 * 4 = 100``, 2 ``25*4=100 (7 3 100)``, read off the
        first step line; None without a step line or when it fits none of them."""
        for line in text.split(self.step_delimiter):
            line = line.strip()
            if not line or self.is_answer_step(line):
                continue
            if _STYLE2.fullmatch(line):
                return 2
            if _STYLE1.fullmatch(line):
                return 1
            if _STYLE0.fullmatch(line):
                return 0
            return None
        return None

    # ---- traces ----
    def render(self, numbers: Sequence[int], steps: Sequence[Step], answer: str, style: int) -> str:
        """Write steps and the answer line in the given style."""
        self._check_style(style)
        return self.format_trace(step_lines(numbers, steps, style), answer)

    def solution_trace(self, problem: Problem, rng: random.Random, flawed: bool = False,
                       style: int = 0) -> str:
        """A solver trace (random solution among those the shuffled search finds first).

        Flawed traces (answer always fails ``check``), one of:
          last_step: correct steps towards a nearby wrong target, the last step claiming
            the real target (an arithmetic slip);
          mid_step: an arithmetic slip in an earlier step, then correct steps from the wrong
            value to the target, so the answer expression misses it;
          answer: correct steps, then one operator of the answer expression changed.
        """
        self._check_style(style)
        numbers, target = list(problem.inputs["numbers"]), int(problem.inputs["target"])
        if not flawed:
            found = solve(numbers, target, rng)
            if found is None:
                raise ValueError(f"{self.name}: problem {problem.id!r} has no solution")
            return self.render(numbers, found[0], found[1], style)
        modes = ["last_step", "mid_step", "answer"]
        rng.shuffle(modes)
        for mode in modes:
            made = _FLAWS[mode](numbers, target, rng)
            if made is not None and not expression_solves(made[1], numbers, target):
                return self.render(numbers, made[0], made[1], style)
        # last resort, always wrong: one number too many
        steps, expr = solve(numbers, target, rng)
        return self.render(numbers, steps, f"({expr})+1", style)

    def walk_trace(self, problem: Problem, rng: random.Random, style: int = 0) -> str:
        """An honest attempt that may fail: every step a valid one drawn at random (a pair
        of available numbers, an operator with a non-negative result, exact division),
        until one number is left; the answer line is the expression of those steps, right
        only when the walk happened to reach the target. A prior trained on these beside
        solver traces learns that a step's result is its arithmetic, not the target it
        wants (a prior that sees only successful traces writes a false last step that
        claims the target whenever its plan fails). A step whose result would exceed
        ``WALK_CAP`` times the largest of the target and the numbers is drawn only when
        no other is left: an attempt does not wander into products no plan needs."""
        self._check_style(style)
        steps, expr = random_walk(problem.inputs["numbers"], int(problem.inputs["target"]), rng)
        return self.render(problem.inputs["numbers"], steps, expr, style)


def step_lines(numbers: Sequence[int], steps: Sequence[Step], style: int) -> list[str]:
    """The step lines of a trace in ``style`` (style 2 follows each step with the numbers
    still available)."""
    state = list(numbers)
    lines = []
    for a, op, b, c in steps:
        if style == 1:
            lines.append(f"{a} {op} {b} = {c}")
        else:
            line = f"{a}{op}{b}={c}"
            if style == 2:
                state.remove(a)
                state.remove(b)
                state.append(c)
                line += f" ({' '.join(map(str, state))})"
            lines.append(line)
    return lines


def random_walk(numbers: Sequence[int], target: int, rng: random.Random) -> tuple[list[Step], str]:
    """Random valid steps until one number is left (``Countdown.walk_trace``): (steps, the
    expression they build)."""
    cap = WALK_CAP * max(target, *numbers)
    state = [(n, str(n)) for n in numbers]
    steps: list[Step] = []
    while len(state) > 1:
        i, j = rng.sample(range(len(state)), 2)
        options = [c for c in _combine(state[i], state[j], allow_negative=False) if c[3] >= 0]
        left, op, right, value = rng.choice([c for c in options if c[3] <= cap] or options)
        step = (left[0], op, right[0], value)
        state = _apply(state, step)
        steps.append(step)
    return steps, state[0][1]


# ---- flawed traces (``Countdown.solution_trace``) ---------------------------------------

def _deltas(rng: random.Random) -> list[int]:
    deltas = [d for d in (-10, -3, -2, -1, 1, 2, 3, 10)]
    rng.shuffle(deltas)
    return deltas

def _flaw_last_step(numbers, target, rng):
    """Correct steps towards a nearby wrong target, the last one claiming the real target."""
    for d in _deltas(rng)[:4]:
        if target + d < 0:
            continue
        found = solve_items([(n, str(n)) for n in numbers], target + d, rng)
        if found is not None:
            steps, expr = found
            a, op, b, _ = steps[-1]
            return steps[:-1] + [(a, op, b, target)], expr
    return None

def _flaw_mid_step(numbers, target, rng):
    """A slip in an earlier step, then correct steps from the wrong value to the target."""
    steps, _ = solve(numbers, target, rng)
    if len(steps) < 2:
        return None
    k = rng.randrange(len(steps) - 1)
    state = [(n, str(n)) for n in numbers]
    for step in steps[:k]:
        state = _apply(state, step)
    for d in _deltas(rng)[:4]:
        a, op, b, c = steps[k]
        if c + d < 0:
            continue
        wrong = (a, op, b, c + d)
        after = _apply(state, wrong)
        found = solve_items(after, target, rng)
        if found is not None:
            return steps[:k] + [wrong] + found[0], found[1]
    return None

def _flaw_answer(numbers, target, rng):
    """Correct steps, then one operator of the answer expression changed."""
    steps, expr = solve(numbers, target, rng)
    positions = [i for i, ch in enumerate(expr) if ch in OPS]
    if not positions:
        return None
    i = rng.choice(positions)
    op = rng.choice([o for o in OPS if o != expr[i]])
    return steps, expr[:i] + op + expr[i + 1:]


_FLAWS = {"last_step": _flaw_last_step, "mid_step": _flaw_mid_step, "answer": _flaw_answer}


_STEP = re.compile(r"\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)(\s*\((?:-?\d++ ?)*+\))?\s*")


def _parse_step(line: str) -> Step | None:
    """(a, op, b, c) of a step line in any style, or None when it is not one."""
    m = _STEP.fullmatch(line)
    return None if m is None else (int(m[1]), m[2], int(m[3]), int(m[4]))


def _take(pool: list[int], *numbers: int) -> bool:
    """Remove each of ``numbers`` from ``pool`` (a multiset); False, leaving ``pool`` as it
    was, when one is missing."""
    left = list(pool)
    for n in numbers:
        if n not in left:
            return False
        left.remove(n)
    pool[:] = left
    return True


_STYLE0 = re.compile(r"-?\d+[-+*/]-?\d+=-?\d+")
_STYLE1 = re.compile(r"-?\d+ [-+*/] -?\d+ = -?\d+")
_STYLE2 = re.compile(r"-?\d+[-+*/]-?\d+=-?\d+ \((?:-?\d++ ?)*+\)")

# style 2's "(7 3 100)" annotation. The quantifiers are possessive: "(-?\d+ ?)*" splits a
# run of L digits in 2^(L-1) ways, and a sample with " (" and a long digit run (a sampled
# policy writes those) took the regex hours to reject
_REMAINING = re.compile(r"\s\((?:-?\d++ ?)*+\)\s*$")
# the solver's operators of each strategy (``needs_strategy``)
_STRATEGY_OPERATORS = {"division": ("/",), "subtraction": ("-",)}
_STRATEGY_OPS = {"division": re.compile(r"[\d)]\s*/\s*[-\d(]"),
                 "subtraction": re.compile(r"[\d)]\s*-\s*[-\d(]")}

PRESETS = {
    "countdown2": dict(n_numbers=2, min_target=10),  # two numbers cannot reach 100-999 often enough
    "countdown": dict(n_numbers=4),
    "countdown3": dict(n_numbers=3),
    # reachable OOD for a countdown3 prior (trained on targets 100-999): two-digit targets.
    # tiny-countdown3 on 30 val problems x 256 samples: pass@1 0.013, pass@256 0.73 (in
    # distribution 0.091 and 0.97); targets 1000-1999 gave 0.022 / 1.00 (pass@256 saturated),
    # numbers 26-50 0.0004 / 0.03 (out of reach)
    "countdown3_small_targets": dict(n_numbers=3, min_target=10, max_target=99),
    "countdown5": dict(n_numbers=5),
    "countdown_wide": dict(n_numbers=4, min_target=10, max_target=9999),
}

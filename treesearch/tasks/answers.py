"""Reading the final answer out of a solution text, and which convention gave it.

    answer, rule = read_answer(text, ("line", "boxed"), answer_prefix="A:")
    # ("44", "line"), ("44", "boxed"), ... or (None, None)

Rules, tried in the order the caller lists them (``TaskOptions.answer_formats``):

- ``line``: the first line that starts (after blanks) with ``answer_prefix``; the answer is
  the rest of that line. An answer line ends the episode, so a later line cannot override
  it; an empty answer line gives ``None`` (the tiny priors' convention, unchanged).
- ``boxed``: the last ``\\boxed{...}`` (braces balanced), as math models write it.
- ``answer_is``: the last "the (final) answer is X" (any case), X up to the end of its
  sentence; markdown bold, ``$`` and an answer prefix ("The answer is: A: 6") around X are
  dropped.
- ``last_number`` (``fallback=True`` only, after every listed rule failed): the last
  number in the text. Off unless chosen: it finds an "answer" in almost any text.

Texts are split into lines on "\\n" whatever the step delimiter, so a step made of several
lines ("\\n\\n" delimiter) is read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ANSWER_IS = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\s*:?\s*(.+)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def line_answer(text: str, prefix: str) -> tuple[bool, str | None]:
    """(whether a line starts with ``prefix``, the rest of the first such line or None if
    empty)."""
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith(prefix):
            return True, line[len(prefix):].strip() or None
    return False, None


def boxed_answer(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}``, or None."""
    start = text.rfind("\\boxed{")
    while start >= 0:
        depth = 0
        for pos in range(start + len("\\boxed"), len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                content = text[start + len("\\boxed{"):pos].strip()
                return content or None
        start = text.rfind("\\boxed{", 0, start)  # unclosed: try an earlier one
    return None


def answer_is(text: str, answer_prefix: str = "A:") -> str | None:
    """X of the last "the answer is X" (X ends at the end of its sentence; an answer
    prefix in front of it, as in "The answer is: A: 6", is dropped), or None."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = matches[-1].group(1)
    end = _SENTENCE_END.search(rest)
    answer = rest[:end.start()] if end else rest
    answer = answer.strip().strip("*").strip()
    if answer_prefix and answer.startswith(answer_prefix):
        answer = answer[len(answer_prefix):]
    answer = answer.strip().strip("$").strip().rstrip(".").strip()
    boxed = boxed_answer(answer)
    return boxed if boxed is not None else (answer or None)


def last_number(text: str) -> str | None:
    """The last integer or decimal in ``text`` (thousands commas removed), or None."""
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def read_answer(text: str, formats: Sequence[str], answer_prefix: str = "A:",
                fallback: bool = False) -> tuple[str | None, str | None]:
    """(answer, rule) from a solution text: the first of ``formats`` that yields an answer
    (rule = its name), else the last number when ``fallback`` (rule "last_number"), else
    (None, None). A ``line`` rule that finds an empty answer line stops the search: the
    episode ended there without an answer."""
    if not isinstance(text, str):
        return None, None
    for rule in formats:
        if rule == "line":
            found, answer = line_answer(text, answer_prefix)
            if found:
                return (answer, "line") if answer is not None else (None, None)
        elif rule == "boxed":
            answer = boxed_answer(text)
            if answer is not None:
                return answer, "boxed"
        elif rule == "answer_is":
            answer = answer_is(text, answer_prefix)
            if answer is not None:
                return answer, "answer_is"
        else:
            raise ValueError(f"unknown answer format {rule!r}")
    if fallback:
        answer = last_number(text)
        if answer is not None:
            return answer, "last_number"
    return None, None


def states_answer(step: str, formats: Sequence[str], answer_prefix: str = "A:") -> bool:
    """Whether one step (its text, delimiter included or not) is an answer step, i.e. a
    terminal step, under ``formats``: a line starting with ``answer_prefix`` (even an
    empty one), a complete ``\\boxed{...}`` or a "the answer is X". The last-number
    fallback never makes a step terminal."""
    for rule in formats:
        if rule == "line" and line_answer(step, answer_prefix)[0]:
            return True
        if rule == "boxed" and boxed_answer(step) is not None:
            return True
        if rule == "answer_is" and answer_is(step, answer_prefix) is not None:
            return True
    return False

"""Stated confidence: the line a policy writes after its answer, and the reward it earns.

The prompt-free convention of calibration training (RLCR, Damani et al. 2025, "Beyond
Binary Rewards: Training LMs to Reason About Their Uncertainty", arXiv 2507.16806): after
its answer line, the policy writes one more line stating how sure it is,

    A: 25*4=100
    confidence: 0.7

read by ``stated_confidence`` (a 0-1 decimal or a percentage, clamped to [0, 1]; None when
absent or unparsable). The reward is RLCR's correctness plus Brier term,
``brier_reward``: correct - (c - correct)^2, in [-1, 1].

A sampler that stops at the answer line (``policies.rollout.generate_solutions``) never
reaches that line; ``add_confidence_lines`` samples exactly one more step after every
solution that ended on a complete answer line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from treesearch.tasks import prompt_ids

# "confidence: 0.7", "Confidence = .3", "confidence: 70%", at the start of a line
_CONFIDENCE_LINE = re.compile(
    r"^[ \t]*confidence[ \t]*[:=][ \t]*([+-]?(?:\d+(?:\.\d*)?|\.\d+))[ \t]*(%?)",
    re.IGNORECASE | re.MULTILINE)
_CONFIDENCE_LABEL = re.compile(r"^[ \t]*confidence[ \t]*[:=]", re.IGNORECASE)


def stated_confidence(text: str) -> float | None:
    """The confidence a solution text states, in [0, 1], or None.

    Read from the LAST line that starts (after blanks) with "confidence:" (or "="; any
    case) followed by a number: a decimal (0.7, .3) or a percentage (70%). Values outside
    [0, 1] are clamped (1.4 -> 1.0, 150% -> 1.0, -0.2 -> 0.0). None when no such line
    exists or its value is not a number ("confidence: high").
    """
    if not isinstance(text, str):
        return None
    matches = _CONFIDENCE_LINE.findall(text)
    if not matches:
        return None
    number, percent = matches[-1]
    value = float(number) / (100.0 if percent else 1.0)
    return min(1.0, max(0.0, value))


def strip_confidence(text: str) -> str:
    """``text`` without its confidence lines (those starting with "confidence:"), so that
    an answer reader with a last-number fallback cannot take the confidence for the
    answer."""
    lines = text.split("\n")
    return "\n".join(line for line in lines if not _CONFIDENCE_LABEL.match(line))


def brier_reward(correct, confidence) -> np.ndarray:
    """RLCR's reward, float32 of the inputs' shape: correct - (c - correct)^2, in [-1, 1].

    correct: {0, 1} array (1 = the answer is right); confidence: float array of stated
    confidences in [0, 1], nan where the sample stated none. A missing confidence is
    scored as the WORST statement for that sample, c = 1 - correct (reward 0 when right,
    -1 when wrong): omitting the line can never beat stating any confidence, so the policy
    cannot dodge the calibration term by leaving it out.
    """
    y = np.asarray(correct, np.float64)
    c = np.asarray(confidence, np.float64)
    c = np.where(np.isnan(c), 1.0 - y, c)
    return (y - (c - y) ** 2).astype(np.float32)


def add_confidence_lines(policy, tokenizer, task, problems: Sequence, texts, tokens, counts,
                         max_step_tokens: int, temperature: float, batch_rows: int = 256):
    """Sample one more step (the confidence line) after each solution that ended on a
    complete answer line.

    policy: has ``propose(prefixes, n, max_step_tokens)``, a ``temperature`` attribute
    (set to ``temperature`` during the call) and optionally ``max_positions``; texts /
    tokens: P lists of G solution strings / sampled token ids, and counts int [P, G]
    generated tokens, as ``generate_solutions`` returns them. A solution is continued when
    its text ends with the task's step delimiter, its last step is an answer step
    (``task.is_answer_step``), it did not end on EOS, and its context has room for a token.
    Returns new (texts, tokens, counts int64 [P, G]) with the extra step appended and
    counted; the inputs are not modified.
    """
    texts = [list(row) for row in texts]
    tokens = [[list(t) for t in row] for row in tokens]
    counts = np.array(counts, np.int64, copy=True)
    eos = tokenizer.eos_token_id
    room = getattr(policy, "max_positions", None) or (1 << 62)
    delimiter = task.step_delimiter
    prompts = [list(prompt_ids(tokenizer, task, p)) for p in problems]
    todo = []
    for i, row in enumerate(texts):
        for j, text in enumerate(row):
            steps = [s for s in text.split(delimiter) if s.strip()]
            ended_on_answer = (text.endswith(delimiter) and steps
                               and task.is_answer_step(steps[-1] + delimiter))
            if (ended_on_answer and tokens[i][j] and tokens[i][j][-1] != eos
                    and len(prompts[i]) + len(tokens[i][j]) < room):
                todo.append((i, j))
    old = policy.temperature
    policy.temperature = float(temperature)
    try:
        for lo in range(0, len(todo), batch_rows):
            chunk = todo[lo:lo + batch_rows]
            props = policy.propose([prompts[i] + tokens[i][j] for i, j in chunk], 1,
                                   max_step_tokens)
            for (i, j), per in zip(chunk, props):
                extra = [int(t) for t in per[0].tokens]
                tokens[i][j].extend(extra)
                texts[i][j] += tokenizer.decode(extra, skip_special_tokens=True)
                counts[i, j] += len(extra)
    finally:
        policy.temperature = old
    return texts, tokens, counts


__all__ = ["add_confidence_lines", "brier_reward", "stated_confidence", "strip_confidence"]

"""What every critic shares: kinds and ranges, score checking, and the token bridge.

A critic scores states. A state is ``(prompt_ids, step_spans)``: the prompt's token ids
(``<bos>`` included) and the token ids of each step written so far, all in the POLICY's
tokenizer (token ids cross the door, see ``treesearch.engine.interfaces``). What a score means
depends on the critic's ``kind``; every kind scores in [0, 1]:

    value    V(s): the chance that a solution continued from s ends correct
             (the expected outcome, with outcome 1 = correct and 0 = wrong).
    process  PRM: the chance that the LAST step of s lies on a correct path.
    outcome  ORM: the chance that the finished solution s (its last step is the answer
             line) is correct.

``check_scores`` enforces this: a NaN or infinite score, a score outside [0, 1] or a
wrong shape raises ``CriticError`` naming the critic, so a broken model never reaches
the search silently.

``TokenBridge`` handles a critic whose tokenizer differs from the policy's: states are
decoded to text with the policy's tokenizer and re-encoded with the critic's. When the
two vocabularies are identical the ids pass through unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KINDS = ("value", "process", "outcome")
SCORE_RANGE = (0.0, 1.0)
# A model's sigmoid/softmax may overshoot [0, 1] by rounding; beyond this it is an error.
RANGE_TOLERANCE = 1e-5

State = tuple[Sequence[int], Sequence[Sequence[int]]]


class CriticError(ValueError):
    """A critic produced something unusable (NaN, out of range, wrong shape), or was asked
    something it must refuse (a held-out problem for a rule verifier)."""


def check_kind(kind: str, who: str = "critic") -> str:
    """Validate a critic kind, naming the known kinds on error."""
    if kind not in KINDS:
        raise CriticError(f"{who}: unknown critic kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return kind


def check_scores(name: str, scores, n: int) -> np.ndarray:
    """Validate a critic's output and return it as float32 [n] inside [0, 1].

    name: the critic, for the error message; scores: anything numpy can read as [n].
    Raises CriticError on a wrong shape, a non-finite value or a value outside [0, 1]
    (beyond a rounding tolerance, which is clipped).
    """
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CriticError(f"critic {name}: scores are not numbers ({exc})") from None
    if arr.shape != (n,):
        raise CriticError(f"critic {name}: expected {n} scores (shape ({n},)), got "
                          f"shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CriticError(f"critic {name}: score {i} of {n} is {arr[i]} (not finite); "
                          "the model produced NaN/inf")
    lo, hi = SCORE_RANGE
    out = (arr < lo - RANGE_TOLERANCE) | (arr > hi + RANGE_TOLERANCE)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise CriticError(f"critic {name}: score {i} of {n} is {arr[i]}, outside [{lo}, {hi}]")
    return np.clip(arr, lo, hi).astype(np.float32)


def flatten_state(state: State) -> list[int]:
    """prompt ids followed by every step's ids, as one list of ints."""
    prompt, steps = state
    out = [int(t) for t in prompt]
    for step in steps:
        out.extend(int(t) for t in step)
    return out


def _vocab(tokenizer) -> dict | None:
    try:
        return tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return None


class TokenBridge:
    """Maps states in the policy's token ids to sequences in a critic's token ids.

    policy_tokenizer: the tokenizer the states' ids come from (None: assume the critic's
        own). critic_tokenizer: the critic model's tokenizer.
    ``same`` is True when both map every token to the same id; then ``encode`` only
    concatenates. Otherwise the state's text (special tokens dropped) is re-encoded, with
    the critic's ``<bos>`` in front when it has one.
    """

    def __init__(self, policy_tokenizer, critic_tokenizer):
        self.policy_tokenizer = policy_tokenizer
        self.critic_tokenizer = critic_tokenizer
        vocab = _vocab(policy_tokenizer) if policy_tokenizer is not None else None
        self.same = (policy_tokenizer is None or policy_tokenizer is critic_tokenizer
                     or (vocab is not None and vocab == _vocab(critic_tokenizer)))

    def text(self, state: State) -> str:
        """The state's text (prompt and steps), decoded with the policy's tokenizer."""
        tok = self.policy_tokenizer or self.critic_tokenizer
        return tok.decode(flatten_state(state), skip_special_tokens=True,
                          clean_up_tokenization_spaces=False)

    def encode(self, state: State) -> list[int]:
        """The state as one sequence of the critic's token ids."""
        if self.same:
            return flatten_state(state)
        return self.encode_text(self.text(state))

    def encode_text(self, text: str) -> list[int]:
        """``text`` in the critic's ids, ``<bos>`` first when the critic has one."""
        tok = self.critic_tokenizer
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        bos = getattr(tok, "bos_token_id", None)
        return ([bos] if bos is not None else []) + ids

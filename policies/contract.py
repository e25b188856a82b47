"""Checks and lookups every Policy backend shares, so all backends fail the same way.

Each function takes the backend's name (``"HFPolicy"``, ``"VLLMPolicy"``) for its messages.
"""

from __future__ import annotations

from typing import Sequence


def check_sampling(backend: str, temperature: float, top_p: float) -> None:
    """Temperature >= 0 (0 = greedy) and top-p mass in (0, 1]."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"{backend}: need temperature >= 0 and 0 < top_p <= 1, "
                         f"got {temperature}, {top_p}")


def eos_token_ids(tokenizer, *sources) -> frozenset[int]:
    """Token ids that end a sequence: the tokenizer's EOS plus each source's ``eos_token_id``
    (a model config or generation config; an int, a list of ints, or None)."""
    eos = {tokenizer.eos_token_id}
    for source in sources:
        ids = getattr(source, "eos_token_id", None)
        eos.update(ids if isinstance(ids, (list, tuple)) else [ids])
    return frozenset(int(i) for i in eos if i is not None)


def propose_keys(backend: str, model_name: str, prefixes: Sequence[Sequence[int]], n: int,
                 max_step_tokens: int, limit: int | None,
                 limit_name: str) -> list[tuple[int, ...]]:
    """Validate a ``propose`` request; returns the prefixes as tuples of ints.

    Every prefix must be non-empty and leave room for one step token below ``limit``
    (the model's context length, called ``limit_name`` in messages; None = no limit).
    """
    if n < 1 or max_step_tokens < 1:
        raise ValueError(f"{backend}.propose: need n >= 1 and max_step_tokens >= 1, "
                         f"got {n}, {max_step_tokens}")
    keys = [tuple(int(t) for t in p) for p in prefixes]
    for key in keys:
        if not key:
            raise ValueError(f"{backend}({model_name}): empty prefix (start prompts with BOS)")
        if limit is not None and len(key) >= limit:
            raise ValueError(
                f"{backend}: prefix of {len(key)} tokens does not fit model {model_name!r}, "
                f"whose limit is {limit} positions ({limit_name}); at least one step token "
                "must fit after it")
    return keys

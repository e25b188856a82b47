"""What sampled solutions say about a policy's diversity: token entropy, format, answer
rule and strategy shares. Shared by the study (``treesearch.study.measure``) and
self-play's per-round measurements (``eval.passk_samples``).

    token_entropy(model, [(prompt_ids, sample_ids), ...], temperature=0.7)   # nats/token
    format_share(task, texts)        # {"0": 0.9, "none": 0.1}
    strategy_share(task, correct_texts)   # {"division": 0.1, "subtraction": 0.4}
    strategy_use_share(task, texts)       # the same over all samples, correct or not
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from policies.distill import collate


def format_share(task, texts: Sequence[str]) -> dict[str, float]:
    """Share of ``texts`` in each solution format (``task.style_of``), keys "0", "1", ...
    and "none" (no step line or an unknown format), sorted; {} for no texts."""
    styles = Counter(task.style_of(t) for t in texts)
    total = sum(styles.values())
    return {("none" if s is None else str(s)): c / total
            for s, c in sorted(styles.items(), key=lambda kv: str(kv[0]))}


def token_entropy(model, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                  temperature: float = 1.0, batch_size: int = 32) -> float:
    """Mean entropy (nats) of the next-token distribution softmax(logits / temperature)
    over every completion position of ``sequences`` [(prompt ids, completion ids)], each
    position weighted equally; nan for no completion tokens."""
    total, positions = 0.0, 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for lo in range(0, len(sequences), batch_size):
                batch = collate(sequences[lo:lo + batch_size], 0, device)
                logits = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"],
                               use_cache=False).logits[:, :-1].float() / temperature
                logp = torch.log_softmax(logits, dim=-1)
                ent = -(logp.exp() * logp).sum(-1)           # [B, T-1]
                mask = batch["labels"][:, 1:] != -100        # positions that predict a sample token
                total += float(ent[mask].sum())
                positions += int(mask.sum())
    finally:
        model.train(was_training)
    return total / positions if positions else float("nan")


def answer_rule_share(task, texts: Sequence[str]) -> dict[str, float]:
    """Share of ``texts`` by the rule that read their answer (``task.read_answer``), keys
    "line", "boxed", "answer_is", "last_number" and "none" (no answer), sorted; {} for no
    texts."""
    rules = Counter(task.read_answer(t)[1] or "none" for t in texts)
    total = sum(rules.values())
    return {rule: c / total for rule, c in sorted(rules.items())}


def strategy_share(task, texts: Sequence[str]) -> dict[str, float]:
    """For each of the task's named strategies (``task.strategies``), the share of ``texts``
    (e.g. the CORRECT samples) that use it (``task.uses_strategy``); nan without texts."""
    return {s: (float(np.mean([task.uses_strategy(t, s) for t in texts]))
                if texts else float("nan")) for s in task.strategies}


def strategy_use_share(task, texts: Sequence[str]) -> dict[str, float]:
    """For each of the task's named strategies, the share of ALL ``texts`` (every sample,
    correct or not) that use it: does a policy try a strategy at all, whether or not it
    gets the answer right? Same keys and rule as ``strategy_share``; nan without texts."""
    return strategy_share(task, texts)

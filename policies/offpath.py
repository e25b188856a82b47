"""The own-KL term of ``policies.distill.sft``: KL(p_start || p) over the whole vocabulary at
every position of the policy's OWN samples, so that imitation holds the start's
distribution on the states the policy itself visits, not only on the imitated paths.

``anchor_kl`` holds the start only at the imitated positions: a state off those paths (a
wrong turn the policy takes, a problem it was not trained on) is moved by the shared
weights and held by nothing, so the policy's entropy there falls and pass@k with it.
``prior_samples`` adds cross-entropy on the start's sampled tokens, one token per position.
The own-KL term compares the whole next-token distribution at every position of samples
the policy drew as the call started (right or wrong; the caller draws them,
``treesearch.stages.harvest.own_samples``), each optimizer step on a minibatch of them
taken from a seeded cycle (``OwnStates``) beside the step's SFT minibatch.

The caller collates each minibatch (``policies.distill.collate``); this module only picks
the sequences and measures the KL, so it imports nothing of the trainers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["OwnStates", "completion_kl"]


class OwnStates:
    """The own samples in minibatches of ``batch_size``: a seeded random order, redrawn
    (same generator) after each pass, so the same seed gives the same minibatches.

    sequences: (prompt ids, completion ids) pairs, the completion the sampled tokens.
    """

    def __init__(self, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                 batch_size: int, seed: int):
        if not sequences:
            raise ValueError("own-KL: no own samples to hold the start on")
        self.sequences = [(list(p), list(c)) for p, c in sequences]
        self.batch_size = int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed) + 7_919)
        self.order: list[int] = []

    def __len__(self) -> int:
        return len(self.sequences)

    def take(self) -> list[tuple[list[int], list[int]]]:
        """The next ``min(batch_size, len(self))`` sequences of the cycle."""
        out = []
        while len(out) < min(self.batch_size, len(self.sequences)):
            if not self.order:
                self.order = torch.randperm(len(self.sequences), generator=self.generator).tolist()
            out.append(self.sequences[self.order.pop()])
        return out


def completion_kl(model, anchor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the completion positions of ``batch`` of KL(p_anchor || p_model), nats per
    position, a scalar with the model's graph (the anchor runs without one).

    batch: ``collate`` output (input_ids, attention_mask, labels [B, T]); position t of a
    sequence scores token t + 1, counted where that token is a completion token.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits[:, :-1].float()
    with torch.no_grad():
        ref = anchor(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=False).logits[:, :-1].float().log_softmax(-1)
    mask = batch["labels"][:, 1:] != -100                                  # [B, T-1]
    kl = (ref.exp() * (ref - logits.log_softmax(-1))).sum(-1)               # [B, T-1]
    return (kl * mask).sum() / mask.sum().clamp_min(1)

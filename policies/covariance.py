"""Covariance-restricted policy-gradient updates: Clip-Cov and KL-Cov (Cui et al. 2025, "The
Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", arXiv 2505.22617).

Under a policy-gradient step the policy's entropy changes by about minus the covariance,
over the tokens of the batch, between a token's log-probability and its advantage: a
likely token pushed up (or an unlikely one pushed down) sharpens the distribution. The
covariance is a sum of per-token centred products

    cov_t = (logp_t - mean logp) * (A_t - mean A)

(means over the minibatch's completion tokens; logp under the current weights, detached;
A_t the advantage of token t's sequence or step), and a small share of tokens with large
positive products carries most of it. Both methods act on those tokens only:

- Clip-Cov (``clip`` = r): the ceil(r * N) tokens of the N in the minibatch with the largest
  positive cov_t have their log-probability detached, so they contribute no gradient; with
  bounds (``clip_bounds`` = (omega_low, omega_high)) the paper's rule instead: ceil(r * N)
  tokens drawn at random among those with omega_low < cov_t < omega_high (the paper and
  verl use 1 and 5, for their scale of advantages);
- KL-Cov (``kl_top`` = k, coefficient beta): the ceil(k * N) tokens with the largest
  positive cov_t get beta * |logp_t - ref_t| added to their loss, ref_t the token's
  log-probability under the weights the update started from (the paper's |log pi - log
  pi_old|), which holds them where they were.

Tokens with cov_t <= 0 are never selected. Both selections are per minibatch; the loss
functions of ``policies.distill.policy_gradient`` and ``policies.rl`` (grpo, psr, nsr,
tree_rl) call ``restrict`` and ``kl_penalty``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["bounded_tokens", "clip_bound_checks", "clip_bounds", "kl_penalty", "restrict",
           "token_covariance", "top_tokens"]


def token_covariance(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Centred products (logp_t - mean logp) * (A_t - mean A), float [B, T-1], 0 off ``mask``.

    logp: float [B, T-1] per-token log-probabilities (nats; detached here). adv: float [B],
    [B, 1] or [B, T-1], each token's advantage (a sequence's broadcast over its tokens).
    mask: bool [B, T-1], the completion tokens. Means are over the masked tokens.
    """
    mask = mask.bool()
    logp = logp.detach()
    a = adv.to(logp.device, logp.dtype)
    a = (a[:, None] if a.dim() == 1 else a).expand_as(logp)
    n = mask.sum().clamp_min(1)
    centred_logp = logp - logp[mask].sum() / n
    centred_adv = a - a[mask].sum() / n
    return torch.where(mask, centred_logp * centred_adv, torch.zeros_like(logp))


def top_tokens(cov: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool [B, T-1]: the ceil(``fraction`` * N) masked tokens with the largest positive
    ``cov`` (N masked tokens; fewer when fewer are positive); all False for fraction 0."""
    mask = mask.bool()
    n = int(mask.sum())
    chosen = torch.zeros_like(mask)
    if fraction <= 0 or n == 0:
        return chosen
    k = min(n, math.ceil(fraction * n))
    scores = cov.masked_fill(~mask | (cov <= 0), float("-inf")).flatten()
    values, index = torch.topk(scores, k)
    chosen.view(-1)[index[torch.isfinite(values)]] = True
    return chosen


def bounded_tokens(cov: torch.Tensor, mask: torch.Tensor, fraction: float, low: float,
                   high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """bool [B, T-1]: the paper's Clip-Cov selection: ceil(``fraction`` * N) masked tokens
    (N masked tokens; fewer when fewer qualify) drawn at random, by ``generator``, among
    those with ``low`` < ``cov`` < ``high``; all False for fraction 0."""
    mask = mask.bool()
    n = int(mask.sum())
    chosen = torch.zeros_like(mask)
    if fraction <= 0 or n == 0:
        return chosen
    inside = (mask & (cov > low) & (cov < high)).flatten().nonzero().squeeze(1)
    k = min(len(inside), math.ceil(fraction * n))
    order = torch.randperm(len(inside), generator=generator)[:k].to(inside.device)
    chosen.view(-1)[inside[order]] = True
    return chosen


def restrict(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, *, clip: float = 0.0,
             kl_top: float = 0.0, clip_bounds: tuple[float, float] | None = None,
             generator: torch.Generator | None = None):
    """Clip-Cov and KL-Cov's token selections on one minibatch.

    logp: float [B, T-1] per-token log-probabilities with their graph; adv, mask as in
    ``token_covariance``. clip_bounds: None, Clip-Cov takes the top of the ranking
    (``top_tokens``); (low, high), it draws its tokens at random by ``generator`` among
    those whose product lies between them (``bounded_tokens``, the paper's rule). Returns
    (logp with the Clip-Cov tokens detached, float [B, T-1]; KL-Cov tokens, bool [B, T-1];
    info {"cov_clipped": Clip-Cov tokens, "cov_kl_tokens": KL-Cov tokens, "tokens": masked
    tokens}). With clip = kl_top = 0, logp comes back as it is and no token is selected.
    """
    if clip <= 0 and kl_top <= 0:
        return logp, torch.zeros_like(mask, dtype=torch.bool), {}
    cov = token_covariance(logp, adv, mask)
    clipped = (top_tokens(cov, mask, clip) if clip_bounds is None
               else bounded_tokens(cov, mask, clip, *clip_bounds, generator=generator))
    held = top_tokens(cov, mask, kl_top)
    if clipped.any():
        logp = torch.where(clipped, logp.detach(), logp)
    info = {"cov_clipped": int(clipped.sum()), "cov_kl_tokens": int(held.sum()),
            "tokens": int(mask.sum())}
    return logp, held, info


def kl_penalty(logp: torch.Tensor, ref: torch.Tensor, held: torch.Tensor,
               beta: float) -> torch.Tensor:
    """KL-Cov's per-token penalty, float [B, T-1]: beta * |logp - ref| on the ``held``
    tokens (bool [B, T-1] from ``restrict``), 0 elsewhere; ``ref`` float [B, T-1], the
    log-probabilities the update started from (no gradient)."""
    return beta * (logp - ref.detach()).abs() * held.to(logp.dtype)


def clip_bounds(config) -> tuple[float, float] | None:
    """A trainer config's Clip-Cov bounds (``cov_clip_low``, ``cov_clip_high``): None when
    both are 0 (the top of the ranking), else (low, high)."""
    low, high = float(config.cov_clip_low), float(config.cov_clip_high)
    return None if low == high == 0 else (low, high)


def clip_bound_checks(config) -> list[tuple[str, bool, str]]:
    """(knob, ok, what it must be) for a trainer config's Clip-Cov bounds: both 0, or
    finite with low < high and Clip-Cov on."""
    low, high = config.cov_clip_low, config.cov_clip_high
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (low, high))
    ok = numbers and ((low == high == 0) or (low < high and config.cov_clip > 0))
    return [("cov_clip_high", ok, "finite, > cov_clip_low, with cov_clip > 0 (both bounds 0: "
             "Clip-Cov takes the top of the ranking)")]

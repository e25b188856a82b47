"""The *when vs how* probe: how much of a trained model's gain lives in the few tokens
where it disagrees with its prior?

Published claim under test: most of an RL-trained model's gain over its base model comes
from a small share of positions where the two disagree; sampling from the base model and
handing only those positions to the trained model recovers about 91% of the gain.

Token routing (``routed_sample``): solutions are sampled token by token from the PRIOR,
except that at every position where the trained model's top-1 token (argmax of its raw
logits) differs from the prior's, the token is drawn from the TRAINED model's
distribution, at the same temperature. Both models read the same prefix (the routed
text so far) through their own KV caches.

Why sampled routing and not greedy routing: at temperature 0 the routed token is the
prior's argmax where the argmaxes agree and the trained argmax where they differ, i.e.
always the trained model's argmax; greedy routing is the trained model's greedy decode
and "recovers" 100% of the greedy gain by construction, whatever the models. With
sampling, the positions where the argmaxes agree still draw from the PRIOR's whole
distribution (its entropy, its mass on second choices), which the trained model may
have sharpened or reshaped without moving its top-1. The routed pass@1 therefore splits
the gain into *when* to deviate (the top-1 flips, handed to the trained model) and *how*
the distribution is shaped everywhere else (left to the prior): ``recovered`` near 1
means the gain is in the flips, near 0 that it is in the shaping.

``routing_probe`` measures it: pass@1 of the prior, the trained model and the routed
sampler on the same problems with the same n, temperature and limits, labels read only
after decoding. All three use the same sampling seed (common random numbers: the routed
and the prior samples coincide until the first swap, which lowers the variance of their
difference without biasing either estimate).

Step structure: ``RoutedPolicy`` implements the Policy protocol (``propose`` over token
ids), so ``policies.rollout.generate_solutions`` drives it exactly as it drives a plain
``HFPolicy``: step delimiter, ``max_steps``, ``max_step_tokens``, EOS, the context
length and answer lines are handled there. Within a step it mirrors ``HFPolicy``'s
decoding loop with two models, and reuses each ``HFPolicy``'s prefix KV cache, so a
solution costs O(its length) forward tokens per model, batched over all samples. With
identical models it never swaps and consumes the random stream exactly as ``HFPolicy``
does: routing a model with itself gives that model's own samples under the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from policies.contract import propose_keys
from policies.hf import HFPolicy
from policies.rollout import generate_solutions
from treesearch.backends import build_policy
from treesearch.engine.interfaces import StepProposal


class RoutedPolicy:
    """Step policy that samples from ``prior`` and hands the trained model every token
    where the two models' top-1 tokens differ (see the module docstring).

    prior, trained: ``HFPolicy`` over models with the same tokenizer (same vocabulary);
        the prior's step delimiter, EOS set, ``top_p`` and random generator are used.
    Counters: ``generated`` (tokens sampled) and ``swapped`` (of those, the ones drawn
    from the trained model). ``StepProposal.logprob`` is the log-probability of the step
    under the distribution each token was drawn from (temperature 1).
    """

    def __init__(self, prior: HFPolicy, trained: HFPolicy):
        if prior.device != trained.device:
            raise ValueError(f"RoutedPolicy: the models run on {prior.device} and "
                             f"{trained.device}; put both on one device")
        self.prior, self.trained = prior, trained
        self.tokenizer = prior.tokenizer
        self.name = f"routed({prior.name} <- {trained.name})"
        limits = [m for m in (prior.max_positions, trained.max_positions) if m is not None]
        self.max_positions = min(limits) if limits else None
        self.generated = 0
        self.swapped = 0
        self.seconds = 0.0

    @property
    def temperature(self) -> float:
        return self.prior.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.prior.temperature = float(value)
        self.trained.temperature = float(value)

    @property
    def swapped_share(self) -> float:
        """Share of sampled tokens drawn from the trained model (0.0 before any)."""
        return self.swapped / self.generated if self.generated else 0.0

    def propose(self, prefixes: Sequence[Sequence[int]], n: int,
                max_step_tokens: int) -> list[list[StepProposal]]:
        """For each prefix (token ids), n routed next steps, all in one batch; the step
        contract of ``HFPolicy.propose``."""
        keys = propose_keys("RoutedPolicy", self.name, prefixes, n, max_step_tokens,
                            self.max_positions, "max_position_embeddings")
        if not keys:
            return []
        start = time.perf_counter()
        out = self.prior.propose(prefixes, n, max_step_tokens, companion=self.trained,
                                 choose=self._route)
        self.seconds += time.perf_counter() - start
        return out

    def _route(self, prior_logits: torch.Tensor, trained_logits: torch.Tensor):
        """logits float32 [A, vocab] each -> (token ids long [A], log p(token) float32 [A]
        under the distribution it was drawn from); counts the tokens and the swaps."""
        if prior_logits.shape != trained_logits.shape:
            raise ValueError(f"RoutedPolicy: the models' logits differ in shape "
                             f"({tuple(prior_logits.shape)} vs {tuple(trained_logits.shape)}): "
                             "routing needs one vocabulary")
        swapped = prior_logits.argmax(-1) != trained_logits.argmax(-1)
        logits = torch.where(swapped[:, None], trained_logits, prior_logits)
        tok = self.prior.sample(logits)
        logp = torch.log_softmax(logits, dim=-1).gather(1, tok[:, None]).squeeze(1)
        self.generated += len(tok)
        self.swapped += int(swapped.sum())
        return tok, logp


def _policy(model, tokenizer, step_delimiter: str, device: str) -> HFPolicy:
    """An ``HFPolicy`` over a model directory or an in-memory model (with ``tokenizer``)."""
    source = model if isinstance(model, (str, Path)) else (model, tokenizer)
    return build_policy(source, step_delimiter=step_delimiter, device=device)


def _fresh(policy: HFPolicy, seed: int) -> HFPolicy:
    """``policy`` as if just built with ``seed``: sampler reseeded, prefix cache empty."""
    policy.generator.manual_seed(int(seed))
    policy.reset_cache()
    return policy


def _routed_texts(prior: HFPolicy, trained: HFPolicy, task, blind: Sequence, seed: int,
                  **limits):
    """(texts [P][n], swapped share) of ``generate_solutions`` over the routed pair, both
    policies reset to ``seed`` first."""
    prior, trained = _fresh(prior, seed), _fresh(trained, seed)
    routed = RoutedPolicy(prior, trained)
    texts = generate_solutions(routed, routed.tokenizer, task, blind, **limits)
    return texts, routed.swapped_share


def routed_sample(prior_model, trained_model, tokenizer, task, problems: Sequence, n: int,
                  temperature: float = 1.0, max_steps: int = 6, max_step_tokens: int = 24,
                  seed: int = 0, *, device: str = "cpu", batch_rows: int = 1024):
    """n routed solutions per problem (see the module docstring).

    prior_model, trained_model: a causal LM (``torch.nn.Module``, then ``tokenizer`` is
        its tokenizer, shared by both) or a model directory; both must share one
        vocabulary. An in-memory model is moved to ``device`` and set to eval mode.
    task, problems, n, temperature, max_steps, max_step_tokens, batch_rows: as in
        ``policies.rollout.generate_solutions``, which drives the decoding (labels are
        never read).
    seed: the sampling seed; routing a model with itself gives exactly
        ``generate_solutions(HFPolicy(model, seed=seed), ...)``.
    Returns (texts: ``len(problems)`` lists of n strings, swapped_share: the share of
    generated tokens drawn from the trained model, in [0, 1]).
    """
    prior = _policy(prior_model, tokenizer, task.step_delimiter, device)
    trained = _policy(trained_model, tokenizer, task.step_delimiter, device)
    return _routed_texts(prior, trained, task, [p.without_label() for p in problems], seed,
                         n=n, temperature=temperature, max_steps=max_steps,
                         max_step_tokens=max_step_tokens, batch_rows=batch_rows)


def _pass1(task, problems: Sequence, texts: list[list[str]]) -> float:
    """Mean over problems of (correct samples / samples); labels read here only."""
    return float(np.mean([np.mean([task.check_solution(p, t) for t in ts])
                          for p, ts in zip(problems, texts)]))


def routing_probe(prior_model, trained_model, tokenizer, task, problems: Sequence, n: int,
                  temperature: float = 1.0, max_steps: int = 6, max_step_tokens: int = 24,
                  seed: int = 0, *, device: str = "cpu", batch_rows: int = 1024) -> dict:
    """Pass@1 of the prior, the trained model and the routed sampler on ``problems``
    (arguments as in ``routed_sample``; all three sampled with the same n, temperature,
    limits and seed). Returns a JSON-ready dict:

    swapped_share: share of the routed sampler's tokens drawn from the trained model;
    prior_pass1, trained_pass1, routed_pass1: mean over problems of correct / n;
    recovered: (routed - prior) / (trained - prior), the share of the trained model's
        pass@1 gain that routing alone recovers (None when |trained - prior| < 1e-9; the
        study's report takes it over seeds, from their mean pass@1s, and only for a gain
        outside the noise);
    problems, samples: the number of problems and n; temperature.
    """
    if n < 1 or not problems:
        raise ValueError(f"routing_probe: need n >= 1 and at least one problem, got n={n}, "
                         f"{len(problems)} problems")
    blind = [p.without_label() for p in problems]
    limits = {"n": n, "temperature": temperature, "max_steps": max_steps,
              "max_step_tokens": max_step_tokens, "batch_rows": batch_rows}
    policies = {"prior": _policy(prior_model, tokenizer, task.step_delimiter, device),
                "trained": _policy(trained_model, tokenizer, task.step_delimiter, device)}
    plain = {name: _pass1(task, problems, generate_solutions(
                 _fresh(policy, seed), policy.tokenizer, task, blind, **limits))
             for name, policy in policies.items()}
    texts, swapped_share = _routed_texts(policies["prior"], policies["trained"], task, blind,
                                         seed, **limits)
    routed = _pass1(task, problems, texts)
    gain = plain["trained"] - plain["prior"]
    return {"swapped_share": float(swapped_share), "prior_pass1": plain["prior"],
            "trained_pass1": plain["trained"], "routed_pass1": routed,
            "recovered": (routed - plain["prior"]) / gain if abs(gain) >= 1e-9 else None,
            "problems": len(problems), "samples": n, "temperature": float(temperature)}


__all__ = ["RoutedPolicy", "routed_sample", "routing_probe"]

"""policies.covariance: Clip-Cov gives the tokens of largest positive centred
product (logp - mean)(A - mean) no gradient and KL-Cov holds them, in both policy-gradient
trainers (policies.distill.policy_gradient, policies.rl's grpo loss); over a few updates
on a toy problem the policy's entropy falls less than without them."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import save_tiny_llama  # noqa: E402

import policies.distill as distill  # noqa: E402
import policies.rl as rl  # noqa: E402
from policies.covariance import (  # noqa: E402
    bounded_tokens,
    kl_penalty,
    restrict,
    token_covariance,
    top_tokens,
)
from policies.distill import (  # noqa: E402
    DistillConfig,
    PGExample,
    collate,
    completion_logprobs,
    policy_gradient,
)
from policies.diversity import token_entropy  # noqa: E402
from policies.hf import load_model  # noqa: E402

torch.set_num_threads(1)

# 2 sequences x 4 positions; the last position of row 1 is padding
LOGP = [[-0.1, -2.0, -0.5, -3.0], [-0.2, -4.0, -1.0, 0.0]]
MASK = [[True, True, True, True], [True, True, True, False]]
ADV = [1.0, -1.0]


def _leaf():
    return torch.tensor(LOGP, requires_grad=True)


def test_covariance_is_the_centred_product_over_the_masked_tokens():
    logp, mask = torch.tensor(LOGP), torch.tensor(MASK)
    cov = token_covariance(logp, torch.tensor(ADV), mask)
    lp = np.array(LOGP)[np.array(MASK)]
    a = np.repeat(ADV, 4)[np.array(MASK).ravel()]
    want = (lp - lp.mean()) * (a - a.mean())
    assert np.allclose(cov[mask].numpy(), want, atol=1e-6)
    assert cov[1, 3] == 0                                           # padding
    top = top_tokens(cov, mask, 0.3)                                # ceil(0.3 * 7) = 3
    assert int(top.sum()) == 3
    assert set(cov[top].tolist()) == set(sorted(cov[mask].tolist())[-3:])
    assert not top_tokens(cov, mask, 0.0).any()
    assert int(top_tokens(cov, mask, 0.99).sum()) == int((cov[mask] > 0).sum())  # positives only


def test_bounded_clip_cov_draws_its_tokens_between_the_bounds():
    """The paper's rule: ceil(r * N) tokens drawn at random among those whose product lies
    strictly between the bounds; the same generator seed, the same draw."""
    logp, mask = torch.tensor(LOGP), torch.tensor(MASK)
    cov = token_covariance(logp, torch.tensor(ADV), mask)
    values = sorted(cov[mask].tolist())
    low, high = values[1], values[-1]            # strictly inside: the 3rd .. 6th of 7
    inside = mask & (cov > low) & (cov < high)
    assert int(inside.sum()) == 4
    draw = bounded_tokens(cov, mask, 0.3, low, high, torch.Generator().manual_seed(0))
    assert int(draw.sum()) == 3 and not (draw & ~inside).any()   # ceil(0.3 * 7) = 3, inside
    again = bounded_tokens(cov, mask, 0.3, low, high, torch.Generator().manual_seed(0))
    assert torch.equal(draw, again)
    draws = {tuple(bounded_tokens(cov, mask, 0.3, low, high,
                                  torch.Generator().manual_seed(s)).flatten().tolist())
             for s in range(20)}
    assert len(draws) > 1                                        # random, not the top
    assert int(bounded_tokens(cov, mask, 0.99, low, high).sum()) == 4   # at most those inside
    assert not bounded_tokens(cov, mask, 0.0, low, high).any()
    leaf = _leaf()
    clipped, _, info = restrict(leaf, torch.tensor(ADV), mask, clip=0.3, clip_bounds=(low, high),
                                generator=torch.Generator().manual_seed(0))
    (-(clipped * torch.tensor(ADV)[:, None] * mask).sum()).backward()
    assert info["cov_clipped"] == 3 and torch.all(leaf.grad[draw] == 0)
    assert torch.all(leaf.grad[mask & ~draw] != 0)


@pytest.mark.parametrize("knobs", [
    {"cov_clip_low": 1.0, "cov_clip_high": 5.0},                      # Clip-Cov off
    {"cov_clip": 0.1, "cov_clip_low": 5.0, "cov_clip_high": 1.0},     # low above high
    {"cov_clip": 0.1, "cov_clip_low": 1.0, "cov_clip_high": float("inf")},
])
def test_bad_clip_cov_bounds_are_refused_by_name(knobs):
    with pytest.raises(ValueError, match="cov_clip_high"):
        rl.validate(rl.RLConfig(method="grpo", token_budget=10, **knobs))
    with pytest.raises(ValueError, match="cov_clip_high"):
        distill.validate(DistillConfig(**knobs))


def test_clip_cov_detaches_the_top_tokens_and_kl_cov_holds_them():
    mask, adv = torch.tensor(MASK), torch.tensor(ADV)
    logp = _leaf()
    clipped, held, info = restrict(logp, adv, mask, clip=0.3)
    (-(clipped * adv[:, None] * mask).sum()).backward()
    top = top_tokens(token_covariance(logp, adv, mask), mask, 0.3)
    assert info == {"cov_clipped": 3, "cov_kl_tokens": 0, "tokens": 7} and not held.any()
    assert torch.all(logp.grad[top] == 0)                           # no gradient there
    assert torch.all(logp.grad[mask & ~top] != 0)                   # every other token pulls
    # KL-Cov: beta |logp - ref| on the held tokens only
    logp = _leaf()
    same, held, info = restrict(logp, adv, mask, kl_top=0.3)
    assert same is logp and torch.equal(held, top) and info["cov_kl_tokens"] == 3
    ref = torch.tensor(LOGP) - 0.5
    kl_penalty(logp, ref, held, 2.0).sum().backward()
    assert torch.all(logp.grad[held] == 2.0) and torch.all(logp.grad[~held] == 0)
    # off: nothing changes
    logp = _leaf()
    assert restrict(logp, adv, mask)[0] is logp


def _patched_logprobs(monkeypatch, module, logp):
    monkeypatch.setattr(module, "token_logprobs", lambda model, batch: logp)


def test_both_trainers_losses_give_the_top_tokens_no_gradient(monkeypatch):
    """The same selection inside policy_gradient's minibatch loss and grpo's loss: their
    per-token log-probs (patched to a leaf) get no gradient at the top-covariance tokens."""
    mask, adv = torch.tensor(MASK), torch.tensor(ADV)
    top = top_tokens(token_covariance(torch.tensor(LOGP), adv, mask), mask, 0.3)
    # collate puts completion tokens at labels[:, 1:]; prompts of one token, completions 4 / 3
    examples = [PGExample([1], [5, 6, 7, 8], 1.0), PGExample([1], [5, 6, 7], -1.0)]
    batch = collate([(e.prompt_ids, e.completion_ids) for e in examples])
    assert torch.equal(batch["labels"][:, 1:] != -100, mask)

    logp = _leaf()
    _patched_logprobs(monkeypatch, distill, logp)
    loss_fn = distill._pg_batch_loss(examples, None, DistillConfig(pg_clip=0.0, cov_clip=0.3),
                                     0, "cpu")
    loss, info = loss_fn(None, [0, 1])
    loss.backward()
    assert torch.all(logp.grad[top] == 0) and torch.all(logp.grad[mask & ~top] != 0)
    assert info["cov_clipped_share"] == pytest.approx(3 / 7)

    logp = _leaf()
    _patched_logprobs(monkeypatch, rl, logp)
    config = rl.RLConfig(method="grpo", token_budget=10, cov_clip=0.3)
    rl._pg_loss(None, batch, adv, None, None, True, config).backward()
    assert torch.all(logp.grad[top] == 0) and torch.all(logp.grad[mask & ~top] != 0)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A random tiny llama (entropy about 3 nats), 8 samples of 3 tokens after each of 4
    prompts, and GRPO advantages of a reward that favours the likely half of each group
    (the covariance that collapses entropy under policy gradient)."""
    model, tok = load_model(save_tiny_llama(tmp_path_factory.mktemp("toy") / "llama",
                                            hidden_size=32, max_positions=64))
    g = torch.Generator().manual_seed(0)
    prompts = [[tok.bos_token_id] + tok(s, add_special_tokens=False)["input_ids"]
               for s in ("1+2=", "3*4=", "9-5=", "7+7=")]
    seqs = []
    with torch.no_grad():
        for p in prompts:
            for _ in range(8):
                ids = list(p)
                for _ in range(3):
                    probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
                    ids.append(int(torch.multinomial(probs, 1, generator=g)))
                seqs.append((p, ids[len(p):]))
    logp = completion_logprobs(model, seqs).numpy().reshape(4, 8)
    reward = (logp > np.median(logp, axis=1, keepdims=True)).astype(float)
    adv = rl.group_advantages(reward, "grpo")
    examples = [PGExample(p, c, float(a)) for (p, c), a in zip(seqs, adv.ravel())]
    return model, tok, seqs, examples


def test_covariance_restriction_keeps_entropy_on_a_toy_problem(toy):
    model, tok, seqs, examples = toy
    start = token_entropy(model, seqs)

    def entropy_after(**knobs):
        config = DistillConfig(lr=1e-2, epochs=5, batch_size=32, threads=1, **knobs)
        trained, stats = policy_gradient(copy.deepcopy(model), tok, examples, config)
        return token_entropy(trained, seqs), stats

    plain, _ = entropy_after()
    clip_cov, stats = entropy_after(cov_clip=0.2)
    kl_cov, kl_stats = entropy_after(cov_kl=1.0, cov_kl_top=0.2)
    # measured here: 3.06 -> 2.46 plain, 2.75 Clip-Cov, 3.02 KL-Cov (nats)
    assert plain < start - 0.3
    assert start - clip_cov < 0.75 * (start - plain), (start, plain, clip_cov)
    assert start - kl_cov < 0.75 * (start - plain), (start, plain, kl_cov)
    assert stats["cov_clipped_share_last"] == pytest.approx(0.2, abs=0.02)
    assert kl_stats["cov_kl_share_last"] == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("knobs, field", [
    ({"method": "expert_iteration", "cov_clip": 0.1}, "cov_clip"),   # no policy gradient
    ({"method": "grpo", "cov_clip": 1.0}, "cov_clip"),
    ({"method": "grpo", "cov_kl": 1.0}, "cov_kl_top"),
    ({"method": "nsr", "cov_kl_top": 0.1}, "cov_kl_top"),
    ({"method": "expert_iteration", "cov_kl": 1.0, "cov_kl_top": 0.1}, "cov_kl"),
])
def test_rl_config_refuses_bad_covariance_knobs(knobs, field):
    with pytest.raises(ValueError, match=field):
        rl.validate(rl.RLConfig(token_budget=10, **knobs))

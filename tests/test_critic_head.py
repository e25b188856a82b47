"""HeadCritic on a tiny random Llama trunk with the character tokenizer."""

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import save_tiny_llama  # noqa: E402

from critics.base import CriticError  # noqa: E402
from critics.head import HeadCritic  # noqa: E402
from policies.tokenization import DEFAULT_CHARS, build_char_tokenizer  # noqa: E402

MAX_POS = 96


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), hidden_size=32,
                           max_positions=MAX_POS)


def state(tok, prompt, *steps):
    """(prompt ids with <bos>, step id spans) in ``tok``'s ids."""
    return ([tok.bos_token_id] + tok(prompt)["input_ids"], [tok(s)["input_ids"] for s in steps])


def some_states(tok):
    return [state(tok, "12+7="), state(tok, "3*4=", "12\n"),
            state(tok, "A:(25*4)+7", "=107\n", "8-3=5\n"), state(tok, "9")]


def perturb_head(critic, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        critic.head.weight.copy_(torch.randn(critic.head.weight.shape, generator=gen))
        critic.head.bias.fill_(0.1)


def op_states(tok, n, seed):
    """States whose last step is 'a+b\\n' (target 1) or 'a-b\\n' (target 0)."""
    rng = random.Random(seed)
    states, targets = [], []
    for i in range(n):
        op = "+-"[i % 2]
        a, b, c = (rng.randint(0, 99) for _ in range(3))
        states.append(state(tok, f"{c}:", f"{a}{op}{b}\n"))
        targets.append(1.0 if op == "+" else 0.0)
    return states, np.array(targets)


def test_fresh_critic_scores_half(model_dir):
    critic = HeadCritic(model_dir, "value")
    assert critic.kind == "value" and critic.name == f"head-value:{model_dir}"
    assert critic.max_positions == MAX_POS and critic.head.in_features == 32
    lm = transformers.AutoModelForCausalLM.from_pretrained(model_dir)  # trunk = its base model
    assert torch.equal(critic.trunk.embed_tokens.weight, lm.model.embed_tokens.weight)
    states = some_states(critic.tokenizer)
    scores = critic.score(states)
    assert scores.dtype == np.float32 and scores.shape == (len(states),)
    assert (scores == 0.5).all()
    n_tokens = sum(len(p) + sum(len(s) for s in steps) for p, steps in states)
    assert critic.counts.processed == n_tokens and critic.calls == 1
    empty = critic.score([])
    assert empty.dtype == np.float32 and empty.shape == (0,)
    assert "kind=process" in HeadCritic(model_dir, "process").describe()
    with pytest.raises(CriticError, match="unknown critic kind"):
        HeadCritic(model_dir, "reward")


def test_batching_and_padding_invariance(model_dir):
    critic = HeadCritic(model_dir, "process", batch_size=3)
    perturb_head(critic)
    states = some_states(critic.tokenizer)
    together = critic.score(states)
    alone = np.array([critic.score([s])[0] for s in states])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.ptp(together) > 1e-3  # the perturbed head tells the states apart
    assert ((together >= 0) & (together <= 1)).all()


def test_fit_learns_plus_from_minus(model_dir):
    critic = HeadCritic(model_dir, "outcome")
    tok = critic.tokenizer
    train, y = op_states(tok, 64, seed=0)
    stats = critic.fit(train, y, epochs=5, lr=3e-3, batch_size=16, seed=0)
    assert stats["examples"] == 64 and stats["epochs"] == 5
    assert stats["loss_last_epoch"] < 0.8 * stats["loss_first_epoch"]
    assert not critic.trunk.training and not critic.head.training
    test, y_test = op_states(tok, 32, seed=1)
    scores = critic.score(test)
    assert scores[y_test == 1].mean() > scores[y_test == 0].mean() + 0.2


def test_fit_head_only_weights_and_checks(model_dir):
    critic = HeadCritic(model_dir, "value")
    states, y = op_states(critic.tokenizer, 8, seed=2)
    before = [p.clone() for p in critic.trunk.parameters()]
    weights = np.arange(8, dtype=float)
    critic.fit(states, y * 0.8 + 0.1, epochs=2, batch_size=4, weights=weights, train_trunk=False)
    assert all(torch.equal(a, b) for a, b in zip(before, critic.trunk.parameters()))
    assert all(p.requires_grad for p in critic.trunk.parameters())
    assert critic.head.weight.abs().sum() > 0
    again = HeadCritic(model_dir, "value")  # same seed, same data: same head on CPU
    again.fit(states, y * 0.8 + 0.1, epochs=2, batch_size=4, weights=weights, train_trunk=False)
    assert torch.equal(again.head.weight, critic.head.weight)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        critic.fit(states, y + 1)
    with pytest.raises(ValueError, match="NaN"):
        critic.fit(states, np.full(8, np.nan))
    with pytest.raises(ValueError, match="shape"):
        critic.fit(states, y[:3])
    with pytest.raises(ValueError, match="weights"):
        critic.fit(states, y, weights=-weights)


def test_save_load_round_trip(model_dir, tmp_path):
    critic = HeadCritic(model_dir, "process", name="prm-tiny")
    states, y = op_states(critic.tokenizer, 8, seed=3)
    critic.fit(states, y, epochs=1, batch_size=4)
    out = critic.save(tmp_path / "prm")
    loaded = HeadCritic.load(out)
    assert loaded.kind == "process" and loaded.name == "prm-tiny"
    assert np.array_equal(loaded.score(states), critic.score(states))
    critic.save(tmp_path / "prm")  # replacing a saved critic works, and leaves no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prm"]
    assert np.array_equal(HeadCritic(out, "process").score(states), critic.score(states))
    with pytest.raises(CriticError, match="value"):
        HeadCritic(out, "value")
    with pytest.raises(FileExistsError):
        critic.save(model_dir)  # not a critic directory: never replaced


def test_nan_score_names_critic(model_dir):
    critic = HeadCritic(model_dir, "value", name="broken-critic")
    with torch.no_grad():
        critic.head.weight.fill_(float("nan"))
    with pytest.raises(CriticError, match="broken-critic"):
        critic.score(some_states(critic.tokenizer))


def test_policy_tokenizer_is_re_encoded(model_dir):
    policy_tok = build_char_tokenizer(chars=DEFAULT_CHARS[::-1])
    critic = HeadCritic(model_dir, "value", policy_tokenizer=policy_tok)
    own = HeadCritic(model_dir, "value")
    assert not critic.bridge.same and own.bridge.same
    perturb_head(critic)
    perturb_head(own)
    texts = [("12+7=", "19\n"), ("A:(25*4)+7", "=107\n"), ("3 * 4", "= 12\n")]
    from_policy = [state(policy_tok, p, s) for p, s in texts]
    from_critic = [state(own.tokenizer, p, s) for p, s in texts]
    assert from_policy != from_critic
    assert np.allclose(critic.score(from_policy), own.score(from_critic), atol=1e-6)
    assert not np.allclose(own.score(from_policy), own.score(from_critic), atol=1e-3)


def test_limits_and_missing_directory(model_dir, tmp_path):
    critic = HeadCritic(model_dir, "value")
    tok = critic.tokenizer
    fits = state(tok, "1" * (MAX_POS - 1))
    assert critic.score([fits]).shape == (1,)
    too_long = state(tok, "1" * MAX_POS)
    with pytest.raises(CriticError, match=f"{MAX_POS + 1} tokens.*{MAX_POS}"):
        critic.score([fits, too_long])
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        HeadCritic(missing, "value")
    with pytest.raises(FileNotFoundError, match="critic.json"):
        HeadCritic.load(model_dir)

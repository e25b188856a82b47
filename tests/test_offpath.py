"""policies.offpath, the own-KL term of sft: KL(start || policy) at every position
of the learner's own samples holds the start on states OFF the imitated paths, where the
imitated-position anchor (anchor_kl) holds nothing."""

import copy
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from policies.distill import (  # noqa: E402
    DistillConfig,
    collate,
    completion_logprobs,
    dpo,
    policy_gradient,
    sft,
    sft_example,
    validate,
)
from policies.hf import HFPolicy, load_model  # noqa: E402
from policies.offpath import OwnStates, completion_kl  # noqa: E402
from policies.zoo import resolve  # noqa: E402
from treesearch.stages.harvest import own_samples  # noqa: E402
from treesearch.tasks import get_task, prompt_ids  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def narrow():
    """The 3-number prior, one fixed trace on each of 8 training problems (the narrow set
    of imitated paths), 2 own samples per training problem and 4 samples on each of 8 OTHER
    problems (off-path states the training never sees), all from the start."""
    task = get_task("countdown3")
    model, tok = load_model(resolve("tiny-countdown3"))
    problems = task.problems("train", 16, seed=0)
    train, other = problems[:8], problems[8:]
    traces = [task.solution_trace(p, random.Random(i), style=0) for i, p in enumerate(train)]
    examples = [sft_example(tok, prompt_ids(tok, task, p), [t]) for p, t in zip(train, traces)]
    own = own_samples(HFPolicy((model, tok), temperature=1.0, seed=0), task, train, 2,
                      temperature=1.0, max_steps=4, max_step_tokens=24)
    held = own_samples(HFPolicy((model, tok), temperature=1.0, seed=1), task, other, 4,
                       temperature=1.0, max_steps=4, max_step_tokens=24)
    return model, tok, examples, own, held


def _trained(start, tok, examples, own, **knobs):
    model = copy.deepcopy(start)
    config = DistillConfig(lr=1e-3, epochs=20, batch_size=8, threads=1, anchor_kl=1.0, **knobs)
    return sft(model, tok, examples, config, own=own)


def test_own_kl_holds_the_start_off_the_imitated_paths(narrow):
    start, tok, examples, own, held = narrow
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples]
    n_tokens = sum(len(c) for _, c in seqs)
    before = completion_logprobs(start, seqs).sum().item() / n_tokens

    def measured(model):
        with torch.no_grad():
            off_path = completion_kl(model, start, collate(held, tok.pad_token_id)).item()
        return completion_logprobs(model, seqs).sum().item() / n_tokens, off_path

    anchored, a_stats = _trained(start, tok, examples, own)       # anchor_kl alone
    held_too, o_stats = _trained(start, tok, examples, own, own_kl=1.0, own_samples=2)
    imitated_a, kl_a = measured(anchored)
    imitated_o, kl_o = measured(held_too)
    assert imitated_o > before + 0.1 and imitated_a > before + 0.1   # imitation still works
    assert kl_o < 0.6 * kl_a, (kl_o, kl_a)                           # off-path states held
    assert o_stats["own_sequences"] == len(own) and o_stats["own_kl_last"] > 0
    assert "own_kl_last" not in a_stats and a_stats["steps"] == o_stats["steps"]
    assert a_stats["loss_first"] == pytest.approx(o_stats["loss_first"], rel=1e-5)  # KL 0 at start


def test_own_states_cycle_is_seeded_and_covers_every_sample():
    seqs = [([1], [i + 2]) for i in range(5)]
    a, b = OwnStates(seqs, 2, seed=3), OwnStates(seqs, 2, seed=3)
    drawn = [a.take() for _ in range(5)]
    assert drawn == [b.take() for _ in range(5)]
    assert all(len(d) == 2 for d in drawn)
    first_pass = [s for d in drawn[:2] for s in d] + drawn[2][:1]
    assert sorted(c[0] for _, c in first_pass) == [2, 3, 4, 5, 6]
    assert len(OwnStates(seqs, 8, seed=0).take()) == 5
    with pytest.raises(ValueError, match="no own samples"):
        OwnStates([], 2, seed=0)


@pytest.mark.parametrize("knobs, field", [
    ({"own_samples": 2}, "own_samples"),                   # own samples without own_kl
    ({"own_kl": 1.0}, "own_samples"),                      # own_kl without its samples
    ({"own_kl": -1.0, "own_samples": 1}, "own_kl"),
    ({"own_kl": 1.0, "own_samples": 1.5}, "own_samples"),
    ({"cov_clip": 1.0}, "cov_clip"), ({"cov_clip": -0.1}, "cov_clip"),
    ({"cov_kl": 1.0}, "cov_kl_top"),                       # KL-Cov without its share
    ({"cov_kl_top": 0.01}, "cov_kl_top"),                  # a share without KL-Cov
    ({"cov_kl": -1.0, "cov_kl_top": 0.1}, "cov_kl"),
])
def test_bad_objective_values_name_the_field(knobs, field):
    with pytest.raises(ValueError, match=field):
        validate(DistillConfig(**knobs))


def test_a_trainer_refuses_an_objective_it_cannot_train(narrow):
    start, tok, examples, own, _ = narrow
    model = copy.deepcopy(start)
    with pytest.raises(ValueError, match="cov_clip .* policy_gradient, which sft cannot"):
        sft(model, tok, examples, DistillConfig(cov_clip=0.1))
    with pytest.raises(ValueError, match="own_kl .* sft, which policy_gradient cannot"):
        policy_gradient(model, tok, [], DistillConfig(own_kl=1.0, own_samples=1))
    with pytest.raises(ValueError, match="cov_kl .* which dpo cannot"):
        dpo(model, tok, [], DistillConfig(cov_kl=1.0, cov_kl_top=0.1))
    # dpo leaves own_kl to the SFT half of sft+dpo, as it leaves anchor_kl
    assert dpo(model, tok, [], DistillConfig(own_kl=1.0, own_samples=1))[1]["steps"] == 0

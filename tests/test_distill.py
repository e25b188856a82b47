"""policies.distill: SFT on completions only, memorisation end to end, determinism, DPO,
LoRA merged back into a plain model, config checks and atomic saving."""

import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# imported after the importorskip calls, so the module skips where torch/transformers are absent
from tiny_models import save_tiny_llama  # noqa: E402

from policies import zoo  # noqa: E402
from policies.distill import (  # noqa: E402
    DistillConfig,
    PreferencePair,
    SFTExample,
    collate,
    completion_logprobs,
    dpo,
    save_policy,
    sft,
    sft_example,
    sft_loss,
    validate,
)
from policies.hf import HFPolicy, load_model  # noqa: E402
from policies.rollout import generate_solutions  # noqa: E402
from treesearch.tasks import get_task, prompt_ids  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", hidden_size=32,
                           max_positions=64)


@pytest.fixture(scope="module")
def countdown():
    """(task, 8 train problems, one fixed correct style-0 trace per problem)."""
    task = get_task("countdown")
    problems = task.problems("train", 8, seed=0)
    traces = [task.solution_trace(p, random.Random(i), style=0) for i, p in enumerate(problems)]
    return task, problems, traces


def _examples(tok, texts):
    """SFT examples over prompts/completions of different lengths."""
    return [sft_example(tok, [tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"],
                        [c]) for p, c in texts]


TEXTS = [("12+7=", "19\n"), ("Numbers: 3 4\n", "3*4=12\nA:3*4\n"), ("5*5=", "25\n"),
         ("Target: 9\n", "4+5=9\n"), ("1+1=", "2\n"), ("7-2=", "5\n")]


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- SFT

def test_sft_loss_covers_completion_tokens_only(tiny_dir):
    model, tok = load_model(tiny_dir)
    examples = _examples(tok, TEXTS[:2])
    examples[1].weight = 2.0
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples]
    assert len(seqs[0][0]) + len(seqs[0][1]) != len(seqs[1][0]) + len(seqs[1][1])
    batch = collate(seqs, tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert int((batch["labels"] != -100).sum()) == sum(len(c) for _, c in seqs)

    # by hand: each sequence alone (no padding), -log p of its completion tokens only
    total, n = 0.0, 0
    with torch.no_grad():
        for (prompt, completion), e in zip(seqs, examples):
            ids = torch.tensor([prompt + completion])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            for j, t in enumerate(completion):
                total -= e.weight * logp[len(prompt) + j - 1, t].item()
            n += len(completion)
        weights = torch.tensor([e.weight for e in examples])
        loss, n_tokens = sft_loss(model, batch, weights)
        assert n_tokens == n
        assert loss.item() == pytest.approx(total / n, rel=1e-5)
        # unit weights: the transformers loss with the prompt labels masked
        hf = model(**batch).loss.item()
        assert sft_loss(model, batch)[0].item() == pytest.approx(hf, rel=1e-5)
        # right padding leaves each sequence's completion log-prob alone
        one = completion_logprobs(model, seqs, batch_size=1)
        two = completion_logprobs(model, seqs, batch_size=2)
        assert torch.allclose(one, two, atol=1e-5)

    # sft's first step is that loss (one batch of both examples)
    model, stats = sft(model, tok, examples, DistillConfig(batch_size=2, epochs=1))
    assert stats["loss_first"] == pytest.approx(total / n, rel=1e-5)
    assert stats["steps"] == 1 and stats["examples"] == 2 and stats["tokens"] == n
    assert not model.training


def test_sft_memorises_countdown_solutions_end_to_end(countdown):
    task, problems, traces = countdown
    model, tok = load_model(zoo.resolve("tiny-countdown"))
    examples = [sft_example(tok, prompt_ids(tok, task, p), [t]) for p, t in zip(problems, traces)]
    assert all(e.completion_ids[-1] == tok.eos_token_id for e in examples)
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples]
    n_tokens = sum(len(c) for _, c in seqs)
    before = completion_logprobs(model, seqs).sum().item() / n_tokens

    model, stats = sft(model, tok, examples, DistillConfig(lr=3e-4, epochs=40, batch_size=8))
    after = completion_logprobs(model, seqs).sum().item() / n_tokens
    assert stats["steps"] == 40 and stats["tokens"] == 40 * n_tokens
    assert stats["loss_first"] == pytest.approx(-before, rel=1e-4)
    assert stats["loss_last"] < 0.1 and stats["loss_last"] < stats["loss_first"] / 2
    assert after > -0.1 and after > before + 0.1  # nats per completion token

    policy = HFPolicy((model, tok), seed=0)  # a fresh policy: no KV cached from old weights
    solutions = generate_solutions(policy, tok, task, problems, n=1, temperature=0.0)
    reproduced = sum(s[0] == t for s, t in zip(solutions, traces))
    assert reproduced >= 7, (reproduced, solutions)
    assert sum(task.check_solution(p, s[0]) for p, s in zip(problems, solutions)) >= 7


def _target_probs(model, seqs):
    """p(completion token) at every completion position of each sequence: float [N tokens]."""
    out = []
    with torch.no_grad():
        for prompt, completion in seqs:
            probs = torch.softmax(model(input_ids=torch.tensor([prompt + completion])).logits[0],
                                  -1)
            out += [probs[len(prompt) + j - 1, t] for j, t in enumerate(completion)]
    return torch.stack(out)


def test_anchor_kl_keeps_the_start_distribution_around_the_imitated_token(tiny_dir):
    """With anchor_kl = beta the optimum at a position is (onehot + beta p_start) / (1 + beta):
    imitation still raises the path's tokens, but far less than plain SFT, which drives them
    towards 1; the KL term is 0 at the first step (the anchor is the model as it starts)."""
    model, tok = load_model(tiny_dir)
    examples = _examples(tok, TEXTS[:3])
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples]
    start = _target_probs(model, seqs)
    config = dict(lr=1e-2, epochs=150, batch_size=3, threads=1)
    plain, plain_stats = sft(load_model(tiny_dir)[0], tok, examples, DistillConfig(**config))
    beta = 1.0
    anchored, stats = sft(model, tok, examples, DistillConfig(**config, anchor_kl=beta))
    assert stats["loss_first"] == pytest.approx(plain_stats["loss_first"], rel=1e-5)
    assert stats["anchor_kl_last"] > 0 and "anchor_kl_last" not in plain_stats
    p_plain, p_anchored = _target_probs(plain, seqs), _target_probs(anchored, seqs)
    assert p_plain.mean() > 0.9
    assert p_anchored.mean() > start.mean() + 0.2                 # imitation still works
    optimum = (1 + beta * start) / (1 + beta)                    # about 0.5 here
    assert abs(p_anchored.mean() - optimum.mean()) < 0.05
    assert all(p.requires_grad for p in anchored.parameters())   # the frozen copy is apart
    with pytest.raises(ValueError, match="anchor_kl"):
        validate(DistillConfig(anchor_kl=-1.0))


def test_same_seed_same_weights(tiny_dir):
    def run(seed, lora=False):
        model, tok = load_model(tiny_dir)
        config = DistillConfig(lr=1e-2, epochs=2, batch_size=2, seed=seed, lora=lora,
                               lora_r=2, threads=1)
        model, stats = sft(model, tok, _examples(tok, TEXTS), config)
        assert stats["steps"] == 6
        return _weights(model)

    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed orders the batches
    la, lb = run(3, lora=True), run(3, lora=True)
    assert all(torch.equal(la[k], lb[k]) for k in la)
    assert torch.equal(torch.get_rng_state(), rng)  # global random state untouched
    assert torch.get_num_threads() == threads      # thread setting restored


def test_max_steps_caps_training(tiny_dir):
    model, tok = load_model(tiny_dir)
    _, stats = sft(model, tok, _examples(tok, TEXTS),
                   DistillConfig(epochs=5, batch_size=2, max_steps=4, progress=True))
    assert stats["steps"] == 4


# ----------------------------------------------------------------------------- DPO

def _sibling_pairs(tok, task, problems, traces):
    """At every step of each trace: prefix = prompt + earlier steps, chosen = the right
    step, rejected = the same step with its result off by one (an arithmetic slip)."""
    pairs = []
    for p, trace in zip(problems, traces):
        lines = trace.splitlines(keepends=True)[:-1]  # the arithmetic steps
        for k, line in enumerate(lines):
            lhs, rhs = line.rstrip("\n").split("=")
            slip = f"{lhs}={int(rhs) + 1}\n"
            prefix = prompt_ids(tok, task, p) + tok("".join(lines[:k]),
                                                    add_special_tokens=False)["input_ids"]
            pairs.append(PreferencePair(prefix, tok(line, add_special_tokens=False)["input_ids"],
                                        tok(slip, add_special_tokens=False)["input_ids"]))
    return pairs


def test_dpo_raises_the_chosen_margin(countdown):
    task, problems, traces = countdown
    model, tok = load_model(zoo.resolve("tiny-countdown"))
    pairs = _sibling_pairs(tok, task, problems[:4], traces[:4])

    def margins(m):
        c = completion_logprobs(m, [(q.prompt_ids, q.chosen_ids) for q in pairs])
        r = completion_logprobs(m, [(q.prompt_ids, q.rejected_ids) for q in pairs])
        return c - r

    before = margins(model)
    model, stats = dpo(model, tok, pairs, DistillConfig(lr=3e-4, epochs=8, batch_size=8,
                                                        dpo_beta=0.1))
    after = margins(model)
    assert stats["loss_first"] == pytest.approx(math.log(2), abs=1e-5)
    assert stats["pairs"] == len(pairs) and stats["steps"] == 8 * math.ceil(len(pairs) / 8)
    assert stats["loss_last"] < math.log(2) and stats["reward_margin_last"] > 0
    assert after.mean() > before.mean() + 2.0  # nats
    assert (after > before).float().mean() >= 0.9
    assert not model.training


def test_dpo_with_explicit_reference(tiny_dir):
    model, tok = load_model(tiny_dir)
    reference, _ = load_model(tiny_dir)
    seqs = _examples(tok, TEXTS)
    pairs = [PreferencePair(a.prompt_ids, a.completion_ids, b.completion_ids)
             for a, b in zip(seqs, seqs[1:])]
    ref_before = _weights(reference)
    model, stats = dpo(model, tok, pairs, DistillConfig(lr=1e-2, epochs=3, batch_size=5),
                       reference=reference)
    assert stats["loss_first"] == pytest.approx(math.log(2), abs=1e-5)
    assert stats["loss_last"] < stats["loss_first"]
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in ref_before.items())


# ----------------------------------------------------------------------------- LoRA, saving

def test_lora_is_merged_into_a_plain_model_that_saves_and_reloads(tiny_dir, tmp_path):
    model, tok = load_model(tiny_dir)
    start = _weights(model)
    ids = torch.tensor([[tok.bos_token_id] + tok("12+7=19\n")["input_ids"]])
    with torch.no_grad():
        logits_before = model(input_ids=ids).logits
    config = DistillConfig(lr=1e-2, epochs=3, batch_size=3, lora=True, lora_r=4,
                           lora_targets=["q_proj", "v_proj"])
    trained, stats = sft(model, tok, _examples(tok, TEXTS), config)
    assert stats["steps"] == 6 and stats["loss_last"] < stats["loss_first"]
    assert trained is model and type(trained) is transformers.LlamaForCausalLM
    assert not any("lora" in name for name, _ in trained.named_modules())
    after = _weights(trained)
    assert set(after) == set(start)
    for name in after:  # only the adapted projections moved
        moved = not torch.equal(after[name], start[name])
        assert moved == (".q_proj." in name or ".v_proj." in name), name
    assert all(p.requires_grad for p in trained.parameters())
    with torch.no_grad():
        logits_after = trained(input_ids=ids).logits
    assert not torch.allclose(logits_after, logits_before)

    out = tmp_path / "round-1"
    assert save_policy(trained, tok, out) == str(out)
    reloaded, tok2 = load_model(out)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, logits_after)
    assert tok2("12+7=19\n")["input_ids"] == tok("12+7=19\n")["input_ids"]


def test_save_policy_replaces_an_existing_directory(tiny_dir, tmp_path):
    model, tok = load_model(tiny_dir)
    out = tmp_path / "policy"
    save_policy(model, tok, out)
    (out / "stale.txt").write_text("old round")
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    save_policy(model, tok, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]  # no temp dirs left
    reloaded, _ = load_model(out)
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)


# ----------------------------------------------------------------------------- checks

@pytest.mark.parametrize("field, value", [
    ("lr", 0.0), ("lr", float("nan")), ("epochs", 0), ("epochs", 1.5), ("batch_size", 0),
    ("batch_size", True), ("weight_decay", -0.1), ("grad_clip", -1.0), ("seed", -1),
    ("threads", 0), ("dpo_beta", 0.0), ("lora", "yes"), ("lora_r", 0), ("lora_alpha", 0),
    ("lora_dropout", 1.0), ("lora_targets", []), ("progress", 1), ("max_steps", 0),
])
def test_bad_config_values_name_the_field(tiny_dir, field, value):
    config = DistillConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        validate(config)
    model, tok = load_model(tiny_dir)
    with pytest.raises(ValueError, match=field):
        sft(model, tok, [], config)
    with pytest.raises(ValueError, match=field):
        dpo(model, tok, [], config)


def test_empty_data_is_a_no_op_and_bad_examples_raise(tiny_dir):
    model, tok = load_model(tiny_dir)
    start = _weights(model)
    same, stats = sft(model, tok, [], DistillConfig())
    assert same is model and stats["steps"] == 0 and stats["examples"] == 0
    assert stats["loss_first"] is None
    same, stats = dpo(model, tok, [], DistillConfig(lora=True))
    assert same is model and stats["steps"] == 0 and stats["pairs"] == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())

    bos, eos = tok.bos_token_id, tok.eos_token_id
    bad = {"empty completion": SFTExample([bos], []),
           "empty prompt": SFTExample([], [eos]),
           "vocabulary": SFTExample([bos], [10_000]),
           "max_position_embeddings": SFTExample([bos] * 60, [eos] * 10),
           "weight": SFTExample([bos], [eos], weight=-1.0)}
    for match, example in bad.items():
        with pytest.raises(ValueError, match=match):
            sft(model, tok, [example])
    with pytest.raises(ValueError, match="rejected"):
        dpo(model, tok, [PreferencePair([bos], [eos], [])])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())


def test_sft_example_concatenates_spans():
    from policies.tokenization import build_char_tokenizer

    tok = build_char_tokenizer()
    prompt = [tok.bos_token_id] + tok("1+2=", add_special_tokens=False)["input_ids"]
    spans = [np.asarray(tok("3\n")["input_ids"], np.int32), "A:3\n"]
    e = sft_example(tok, prompt, spans)
    assert e.prompt_ids == prompt and e.weight == 1.0
    assert tok.decode(e.completion_ids) == "3\nA:3\n" + tok.eos_token
    assert all(type(t) is int for t in e.completion_ids)
    assert sft_example(tok, prompt, spans, add_eos=False, weight=0.5).completion_ids == \
        e.completion_ids[:-1]

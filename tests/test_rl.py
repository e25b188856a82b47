"""policies.rl: config checks, the token budget, determinism, and the direction of each
method's update (GRPO, expert iteration, PSR, NSR) on the shipped 3-number prior."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# imported after the importorskip calls, so the module skips where torch/transformers are absent
import policies.rl as rl  # noqa: E402
from policies.distill import completion_logprobs  # noqa: E402
from policies.hf import HFPolicy, load_model  # noqa: E402
from policies.rl import RLConfig, group_advantages, train  # noqa: E402
from policies.rollout import generate_solutions  # noqa: E402
from treesearch.engine.forest import Forest  # noqa: E402
from treesearch.tasks import get_task, prompt_ids  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def task():
    return get_task("countdown3")


def _model(prior_dir):
    return load_model(prior_dir)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _config(method="grpo", **kw):
    base = dict(method=method, token_budget=1, group_size=4, problems_per_step=2, lr=1e-4,
                batch_size=16, seed=0, threads=1)
    base.update(kw)
    return RLConfig(**base)


@pytest.fixture()
def recorded(monkeypatch):
    """Every (prompt, completion) sequence that enters a gradient minibatch."""
    seqs = []
    real = rl.collate

    def spy(sequences, *args, **kwargs):
        seqs.extend((tuple(p), tuple(c)) for p, c in sequences)
        return real(sequences, *args, **kwargs)

    monkeypatch.setattr(rl, "collate", spy)
    return seqs


def _unique(seqs):
    return list(dict.fromkeys(seqs))


def _is_correct(tok, task, problems, seqs):
    """Real-checker verdict on each recorded (prompt, completion)."""
    by_prompt = {tuple(prompt_ids(tok, task, p)): p for p in problems}
    return torch.tensor([task.check_solution(by_prompt[p], tok.decode(list(c),
                                                                    skip_special_tokens=True))
                         for p, c in seqs])


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("field, value", [
    ("method", "ppo"), ("token_budget", 0), ("token_budget", 1.5), ("group_size", 0),
    ("problems_per_step", 0), ("lr", 0.0), ("lr", float("nan")), ("temperature", 0.0),
    ("max_steps", 0), ("max_step_tokens", 0), ("clip_eps", 0.0), ("kl_beta", -0.1),
    ("updates_per_batch", 0), ("batch_size", 0), ("grad_clip", -1.0), ("seed", -1),
    ("threads", 0), ("progress", 1),
])
def test_config_errors_name_the_field(field, value, prior_dir, task, problems):
    model, tok = _model(prior_dir)
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        train(model, tok, task, problems, _config(**{"method": "grpo", field: value}))


def test_config_errors_method_specific_and_problems(prior_dir, task, problems):
    model, tok = _model(prior_dir)
    with pytest.raises(ValueError, match="group_size"):       # a group of one: no advantage
        rl.validate(_config("grpo", group_size=1))
    rl.validate(_config("psr", group_size=1))
    with pytest.raises(ValueError, match="kl_beta"):
        rl.validate(_config("expert_iteration", kl_beta=0.1))
    with pytest.raises(ValueError, match="empty"):
        train(model, tok, task, [], _config("grpo"))
    held_out = task.problems("test", 1, seed=0)
    with pytest.raises(ValueError, match="held out"):
        train(model, tok, task, held_out, _config("grpo"))
    with pytest.raises(ValueError, match="no label"):
        train(model, tok, task, [problems[0].without_label()], _config("grpo"))


def test_group_advantages():
    r = np.array([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    grpo = group_advantages(r, "grpo")
    np.testing.assert_allclose(grpo[0], [1, -1, -1, 1], atol=1e-4)
    assert not grpo[1:].any()
    np.testing.assert_array_equal(group_advantages(r, "psr"), r)
    np.testing.assert_array_equal(group_advantages(r, "nsr"), -(1 - r))


# ----------------------------------------------------------------------------- rollout tokens

def test_rollout_returns_the_sampled_token_ids(prior_dir, task, problems):
    model, tok = _model(prior_dir)
    policy = HFPolicy((model, tok), seed=0)
    texts, counts, tokens = generate_solutions(policy, tok, task, problems[:2], n=3,
                                               temperature=1.0, return_counts=True,
                                               return_tokens=True)
    for i in range(2):
        for j in range(3):
            assert len(tokens[i][j]) == counts[i, j] > 0
            assert tok.decode(tokens[i][j], skip_special_tokens=True) == texts[i][j]
    policy = HFPolicy((model, tok), seed=0)                    # old call shape unchanged
    assert generate_solutions(policy, tok, task, problems[:2], n=3, temperature=1.0) == texts
    policy = HFPolicy((model, tok), seed=0)
    t2, tokens2 = generate_solutions(policy, tok, task, problems[:2], n=3, temperature=1.0,
                                     return_tokens=True)
    assert t2 == texts and tokens2 == tokens


# ----------------------------------------------------------------------------- budget

def test_budget_is_respected_and_samples_reported(prior_dir, task, problems):
    model, tok = _model(prior_dir)
    calls = []

    def on_samples(iteration, probs, texts, rewards):
        calls.append((iteration, list(probs), texts, np.array(rewards)))

    budget = 1500
    cfg = _config("psr", token_budget=budget, problems_per_step=3, group_size=4)
    model, stats = train(model, tok, task, problems, cfg, on_samples=on_samples)
    used, per_it = stats["tokens_generated"], stats["tokens_per_iteration"]
    assert used >= budget
    assert used - per_it[-1] < budget          # the last iteration started under budget
    assert sum(per_it) == used and len(per_it) == stats["iterations"] >= 2
    assert stats["samples"] == stats["iterations"] * 3 * 4
    assert len(stats["mean_reward"]) == len(stats["loss"]) == stats["iterations"]
    assert not model.training
    # the callback sees every iteration; problems cycle through a shuffle of the given ones
    assert [c[0] for c in calls] == list(range(stats["iterations"]))
    seen = [p.id for c in calls for p in c[1]]
    assert sorted(seen[:4]) == sorted(p.id for p in problems)
    for _, probs, texts, rewards in calls:
        assert rewards.shape == (3, 4) and len(texts) == 3 and all(len(t) == 4 for t in texts)
        real = [[float(task.check_solution(p, t)) for t in row] for p, row in zip(probs, texts)]
        np.testing.assert_array_equal(rewards, real)         # the real checker
    assert stats["mean_reward"] == [float(c[3].mean()) for c in calls]


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_weights(prior_dir, task, problems):
    cfg = _config("grpo", token_budget=1200, seed=1, updates_per_batch=2, kl_beta=0.05,
                  batch_size=4)
    runs = []
    for _ in range(2):
        model, tok = _model(prior_dir)
        model, stats = train(model, tok, task, problems, cfg)
        runs.append((_weights(model), {k: v for k, v in stats.items() if k != "seconds"}))
    assert runs[0][1]["steps"] > 0                            # it did train
    assert runs[0][1] == runs[1][1]
    assert _same(runs[0][0], runs[1][0])
    start, _ = _model(prior_dir)
    assert not _same(runs[0][0], _weights(start))


# ----------------------------------------------------------------------------- direction of updates

def test_nsr_lowers_logprob_of_wrong_samples(prior_dir, task, problems, monkeypatch, recorded):
    monkeypatch.setattr(task, "check_solution", lambda problem, text: False)
    start, tok = _model(prior_dir)
    model, _ = _model(prior_dir)
    model, stats = train(model, tok, task, problems, _config("nsr", token_budget=1))
    assert stats["iterations"] == 1 and stats["mean_reward"] == [0.0]
    seqs = _unique(recorded)
    assert stats["trained_samples"] == len(recorded) == 8 and stats["steps"] == 1
    delta = completion_logprobs(model, seqs) - completion_logprobs(start, seqs)
    assert delta.mean() < -0.1, delta


def test_psr_without_positives_makes_no_update(prior_dir, task, problems, monkeypatch,
                                               recorded):
    monkeypatch.setattr(task, "check_solution", lambda problem, text: False)
    model, tok = _model(prior_dir)
    before = _weights(model)
    model, stats = train(model, tok, task, problems, _config("psr", token_budget=600))
    assert stats["iterations"] >= 2
    assert stats["steps"] == 0 and stats["trained_samples"] == 0 and not recorded
    assert stats["loss"] == [None] * stats["iterations"]
    assert _same(before, _weights(model))


@pytest.mark.parametrize("verdict", [False, True])
def test_grpo_with_equal_rewards_makes_no_update(prior_dir, task, problems, monkeypatch,
                                                 recorded, verdict):
    monkeypatch.setattr(task, "check_solution", lambda problem, text: verdict)
    model, tok = _model(prior_dir)
    before = _weights(model)
    model, stats = train(model, tok, task, problems, _config("grpo", token_budget=600))
    assert stats["iterations"] >= 2
    assert stats["zero_advantage_groups"] == stats["iterations"] * 2
    assert stats["steps"] == 0 and not recorded
    assert stats["mean_reward"] == [float(verdict)] * stats["iterations"]
    assert _same(before, _weights(model))


def test_grpo_raises_logprob_of_correct_samples(prior_dir, task, problems, recorded):
    start, tok = _model(prior_dir)
    model, _ = _model(prior_dir)
    cfg = _config("grpo", token_budget=3000, group_size=8, problems_per_step=4, seed=1)
    model, stats = train(model, tok, task, problems, cfg)
    assert stats["steps"] >= 2
    seqs = _unique(recorded)
    ok = _is_correct(tok, task, problems, seqs)
    assert 3 <= int(ok.sum()) < len(seqs)          # both kinds were trained on
    delta = completion_logprobs(model, seqs) - completion_logprobs(start, seqs)
    assert delta[ok].mean() > 0.2, delta[ok]
    assert delta[ok].mean() > delta[~ok].mean() + 0.5
    assert (delta[ok] > 0).float().mean() >= 0.75


def test_expert_iteration_trains_on_correct_samples_only(prior_dir, task, problems, recorded):
    model, tok = _model(prior_dir)
    rewards = []
    cfg = _config("expert_iteration", token_budget=2500, group_size=8, problems_per_step=4,
                  seed=1)
    model, stats = train(model, tok, task, problems, cfg,
                         on_samples=lambda it, p, t, r: rewards.append(np.array(r)))
    n_correct = int(sum(r.sum() for r in rewards))
    assert n_correct >= 2
    assert stats["trained_samples"] == len(recorded) == n_correct
    assert _is_correct(tok, task, problems, recorded).all()  # the real checker agrees
    assert stats["steps"] >= 1
    assert not model.training


# ----------------------------------------------------------------------------- pass@k advantages

def test_passk_advantages_k1_is_grpo_and_k2_closed_form():
    r = np.array([[1, 0, 0, 0], [1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(rl.passk_advantages(r, 1), group_advantages(r, "grpo"),
                               atol=1e-6)
    np.testing.assert_array_equal(group_advantages(r, "grpo", passk=1), group_advantages(r, "grpo"))
    # n = 4, c = 1, k = 2: R = 1 - C(3,2)/C(4,2) = 1/2, std 1/2; positive (1 - 1/2) / (1/2) = 1;
    # negative (1 - 1/2 - C(2,1)/C(3,1)) / (1/2) = -1/3 (the group's advantages sum to 0)
    a = group_advantages(r, "grpo", passk=2)
    np.testing.assert_allclose(a[0], [1, -1 / 3, -1 / 3, -1 / 3], atol=1e-5)
    # c = 2, k = 2: R = 1 - 1/6 = 5/6, std sqrt(5)/6; pos (1/6) / std; neg (1/6 - 1/3) / std
    std = math.sqrt(5) / 6
    np.testing.assert_allclose(a[1], [1 / 6 / std, -1 / 6 / std, -1 / 6 / std, 1 / 6 / std],
                               atol=1e-5)
    assert not a[2:].any()                     # all right / all wrong: no signal
    # k = n: only the all-wrong group fails; one correct sample already solves the group
    assert not rl.passk_advantages(r[:2], 4).any()
    with pytest.raises(ValueError, match="passk"):
        rl.passk_advantages(r, 5)
    with pytest.raises(ValueError, match="passk"):
        group_advantages(r, "psr", passk=2)


def test_passk_config_is_checked():
    rl.validate(_config("grpo", passk=4, group_size=4))
    for bad in ({"passk": 0}, {"passk": 5, "group_size": 4}, {"method": "nsr", "passk": 2},
                {"passk": 2.0}):
        with pytest.raises(ValueError, match="passk"):
            rl.validate(_config(**{"method": "grpo", **bad}))
    with pytest.raises(ValueError, match="tree_baseline"):
        rl.validate(_config("tree_rl", tree_baseline="uncle"))


def test_grpo_with_passk_trains_deterministically(prior_dir, task, problems):
    cfg = _config("grpo", token_budget=800, passk=2, seed=3)
    runs = []
    for _ in range(2):
        model, tok = _model(prior_dir)
        model, _ = train(model, tok, task, problems, cfg)
        runs.append(_weights(model))
    assert _same(runs[0], runs[1])


# ----------------------------------------------------------------------------- tree_rl


def _tree_batch(tok, task, problems, good="25*4=100\n", bad="9*9=80\n", used=100):
    """One tree per problem: root with three children (steps good, bad, bad); the good step
    has Q 1, the bad ones Q 0, the root Q 1/3 (visits 3)."""
    forest = Forest(len(problems), 8)
    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    spans = forest.tokens.add_many([ids(good), ids(bad), ids(bad + "1")] * len(problems))
    for b in range(len(problems)):
        forest.expand([b], [0], [0, 3], [1 / 3] * 3, [0.0] * 3, [0.0] * 3, [0] * 3,
                      spans[3 * b:3 * b + 3])
        forest.visits[b, :4] = [3, 1, 1, 1]
        forest.value_sum[b, :4] = [1.0, 1.0, 0.0, 0.0]
    prompts = [prompt_ids(tok, task, p) for p in problems]
    return rl.TreeBatch(forest, prompts, used, np.ones(len(problems)),
                        [["A:1"] for _ in problems])


def test_tree_advantages_siblings_and_parent(prior_dir, task, problems):
    _, tok = _model(prior_dir)
    batch = _tree_batch(tok, task, problems[:2])
    tree, node, adv = rl.tree_advantages(batch.forest, "siblings")
    assert tree.tolist() == [0, 0, 0, 1, 1, 1] and node.tolist() == [1, 2, 3] * 2
    np.testing.assert_allclose(adv, [2 / 3, -1 / 3, -1 / 3] * 2)
    batch.forest.value_sum[:, 0] = 2.0                     # root Q 2/3
    _, _, adv = rl.tree_advantages(batch.forest, "parent")
    np.testing.assert_allclose(adv, [1 / 3, -2 / 3, -2 / 3] * 2)
    ex = rl.tree_examples(batch.forest, batch.prompts, "parent")
    assert len(ex) == 6 and ex[0].prompt_ids == list(batch.prompts[0])
    assert tok.decode(ex[0].completion_ids) == "25*4=100\n" and ex[0].advantage > 0


def test_tree_rl_needs_a_search(prior_dir, task, problems):
    model, tok = _model(prior_dir)
    with pytest.raises(ValueError, match="search"):
        train(model, tok, task, problems, _config("tree_rl"))


def test_tree_rl_moves_logprobs_by_the_sign_of_the_step_advantage(prior_dir, task, problems):
    start, tok = _model(prior_dir)
    model, _ = _model(prior_dir)
    calls = []

    def search(policy, probs, iteration):
        calls.append(iteration)
        return _tree_batch(tok, task, probs)

    model, stats = train(model, tok, task, problems, _config("tree_rl", token_budget=1, lr=1e-3),
                         search=search)
    assert calls == [0] and stats["iterations"] == 1 and stats["steps"] == 1
    assert stats["tree_steps"] == stats["trained_samples"] == 6
    ex = rl.tree_examples(_tree_batch(tok, task, problems[:2]).forest,
                          _tree_batch(tok, task, problems[:2]).prompts)
    seqs = [(e.prompt_ids, e.completion_ids) for e in ex]
    delta = completion_logprobs(model, seqs) - completion_logprobs(start, seqs)
    sign = torch.tensor([e.advantage > 0 for e in ex])
    assert (delta[sign] > 0).all() and (delta[~sign] < 0).all(), delta


def test_tree_rl_budget_and_determinism(prior_dir, task, problems):
    _, tok = _model(prior_dir)

    def search(policy, probs, iteration):
        return _tree_batch(tok, task, probs, used=300)

    runs = []
    for _ in range(2):
        model, _ = _model(prior_dir)
        model, stats = train(model, tok, task, problems,
                             _config("tree_rl", token_budget=1000, seed=2), search=search)
        runs.append((_weights(model), {k: v for k, v in stats.items() if k != "seconds"}))
    stats = runs[0][1]
    assert stats["tokens_generated"] == 1200 and stats["iterations"] == 4   # 3 x 300 < 1000
    assert stats["steps"] == 4 and not model.training
    assert runs[0][1] == runs[1][1] and _same(runs[0][0], runs[1][0])


def test_tree_rl_with_a_real_search(prior_dir, task, problems):
    """The study's searcher shape: StepSearch with the rule verifier over the current weights."""
    from critics.compose import StepScorer
    from critics.verifier import RuleVerifier
    from treesearch.search import SearchConfig, StepSearch

    model, tok = _model(prior_dir)
    cfg = SearchConfig(simulations=8, max_tokens=300, early_stop=False)

    def search(policy, probs, iteration):
        result = StepSearch(policy, StepScorer(outcome=RuleVerifier(task, tok, probs)), task,
                            tok, cfg).run(probs, progress=False)
        solved = np.array([float(task.check_solution(p, a))
                           for p, a in zip(probs, result.answers)])
        return rl.TreeBatch(result.forest, result.prompts, int(result.stats.generated.sum()),
                            solved, [[a] for a in result.answers])

    model, stats = train(model, tok, task, problems, _config("tree_rl", token_budget=1500),
                         search=search)
    assert stats["tokens_generated"] >= 1500 and stats["iterations"] >= 2, stats
    assert stats["tree_steps"] > 0 and stats["steps"] >= 1, stats

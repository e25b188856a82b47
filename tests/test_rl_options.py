"""policies.rl's options: zero-success groups (keep / drop / downweight), the
RLCR Brier reward on a stated confidence (``policies.confidence``), the easy_first
curriculum charged to the budget, their checks in ``policies.rl.validate`` and the study
config, and the study's stated-confidence calibration."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# imported after the importorskip calls, so the module skips where torch/transformers are absent
from policies import rl  # noqa: E402
from policies.confidence import (  # noqa: E402
    add_confidence_lines,
    brier_reward,
    stated_confidence,
    strip_confidence,
)
from policies.hf import HFPolicy, load_model  # noqa: E402
from policies.rl import RLConfig, train  # noqa: E402
from treesearch.config import ConfigError  # noqa: E402
from treesearch.engine.interfaces import StepProposal  # noqa: E402
from treesearch.study.config import load_study_config  # noqa: E402
from treesearch.study.measure import stated_calibration  # noqa: E402
from treesearch.tasks import get_task, prompt_ids  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def task():
    return get_task("countdown3")
QUICK = Path(__file__).resolve().parent.parent / "configs" / "study_quick.yaml"


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _config(method="grpo", **kw):
    base = {"method": method, "token_budget": 1, "group_size": 4, "problems_per_step": 2,
            "lr": 1e-3, "batch_size": 16, "seed": 0, "threads": 1}
    base.update(kw)
    return RLConfig(**base)


# ----------------------------------------------------------------------------- the parser

@pytest.mark.parametrize("text, want", [
    ("A:12*5\nconfidence: 0.7\n", 0.7),
    ("confidence: 70%", 0.7),
    ("A:3\nConfidence: .3", 0.3),
    ("  CONFIDENCE = 45 %\n", 0.45),
    ("confidence: 1.4", 1.0),
    ("confidence: 150%", 1.0),
    ("confidence: -0.2", 0.0),
    ("confidence: 0.2\nconfidence: 0.9\n", 0.9),          # the last statement counts
    ("confidence: high", None),
    ("A:12*5\n", None),
    ("I am 70% sure", None),                                # not the convention's line
    ("confidence:", None),
])
def test_stated_confidence(text, want):
    got = stated_confidence(text)
    assert got == pytest.approx(want) if want is not None else got is None


def test_strip_confidence_keeps_the_solution():
    assert strip_confidence("1+2=3\nA:3\nconfidence: 0.5\n") == "1+2=3\nA:3\n"
    assert strip_confidence("A:3\n") == "A:3\n"


def test_brier_reward_values():
    correct = np.array([1, 1, 0, 0, 1, 0, 1])
    stated = np.array([1.0, 0.7, 0.7, 0.0, np.nan, np.nan, 0.0])
    # correct - (c - correct)^2; a missing confidence is the worst one (c = 1 - correct)
    np.testing.assert_allclose(brier_reward(correct, stated),
                               [1.0, 0.91, -0.49, 0.0, 0.0, -1.0, 0.0], atol=1e-6)
    assert brier_reward(correct, stated).dtype == np.float32


# ----------------------------------------------------------------------------- config checks

@pytest.mark.parametrize("field, value, method", [
    ("zero_success", "sometimes", "grpo"), ("zero_success", "drop", "tree_rl"),
    ("zero_success_weight", 1.5, "grpo"), ("zero_success_weight", -0.1, "grpo"),
    ("zero_success_weight", float("nan"), "grpo"), ("reward", "log", "grpo"),
    ("reward", "brier", "nsr"), ("curriculum", "hard_first", "grpo"),
    ("curriculum_samples", 0, "grpo"), ("curriculum_samples", 2.0, "grpo"),
])
def test_rl_config_errors_name_the_field(field, value, method):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        rl.validate(_config(method, **{field: value}))


def test_brier_needs_plain_grpo_advantages():
    rl.validate(_config("grpo", reward="brier", zero_success="downweight",
                        curriculum="easy_first"))
    with pytest.raises(ValueError, match="reward"):
        rl.validate(_config("grpo", reward="brier", passk=2))


@pytest.mark.parametrize("override, key", [
    (["rl.zero_success=sometimes"], "rl.zero_success"),
    (["rl.zero_success_weight=2"], "rl.zero_success_weight"),
    (["rl.reward=log"], "rl.reward"),
    (["rl.reward=brier", "optimizers=[nsr]"], "rl.reward"),
    (["rl.curriculum=hard_first"], "rl.curriculum"),
    (["rl.curriculum_samples=0"], "rl.curriculum_samples"),
])
def test_study_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_study_config(QUICK, ["priors=[{name: p3, model: tiny-countdown3}]", *override])


def test_study_passes_the_options_to_each_optimizer(tmp_path, monkeypatch):
    import treesearch.stages.train as stages_train
    import treesearch.study.run as study_run
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, [
        "priors=[{name: p3, model: tiny-countdown3}]", "optimizers=[grpo, nsr, tree_rl]",
        "rl.reward=brier", "rl.zero_success=downweight", "rl.zero_success_weight=0.25",
        "rl.curriculum=easy_first", "rl.curriculum_samples=3", "train_problems=2"])
    seen = {}

    def fake_train(model, tokenizer, task, problems, config, on_samples=None, search=None):
        seen[config.method] = config
        return model, {}

    monkeypatch.setattr(stages_train, "rl_train", fake_train)
    try:
        study = study_run.Study(cfg, RunDir(tmp_path))
        for optimizer in ("grpo", "nsr", "tree_rl"):
            study.training.train("p3", optimizer, 0)
    finally:
        torch.set_num_threads(1)
    assert seen["grpo"].reward == "brier" and seen["nsr"].reward == "binary"
    assert seen["grpo"].zero_success == seen["nsr"].zero_success == "downweight"
    assert seen["tree_rl"].zero_success == "keep"            # a search batch has no groups
    for config in seen.values():
        assert config.zero_success_weight == 0.25
        assert config.curriculum == "easy_first" and config.curriculum_samples == 3
        rl.validate(config)


# ----------------------------------------------------------------------------- zero-success groups

def _fixed_samples(tok, by_problem):
    """A stand-in for ``rl._sample``: each problem's fixed texts (by problem id), their
    token ids, and the tokens counted."""
    def sample(model, policy, tokenizer, task, problems, config, iteration):
        texts = [list(by_problem[p.id]) for p in problems]
        tokens = [[tok(t, add_special_tokens=False)["input_ids"] for t in row] for row in texts]
        return texts, tokens, sum(len(t) for row in tokens for t in row)
    return sample


def _train_fixed(prior_dir, task, batch, by_problem, monkeypatch, **kw):
    """One iteration on fixed samples of ``batch`` (all of it in one step); returns the
    trained weights and the stats."""
    model, tok = load_model(prior_dir)
    monkeypatch.setattr(rl, "_sample", _fixed_samples(tok, by_problem))
    model, stats = train(model, tok, task, batch, _config(problems_per_step=len(batch), **kw))
    return _weights(model), stats


def test_zero_success_drop_is_the_batch_without_that_group(prior_dir, task, problems,
                                                           monkeypatch):
    """NSR pushes down every wrong sample, so an all-wrong group moves the weights under
    "keep"; under "drop" the update is bit-identical to the batch without that group."""
    solved, unsolved = problems[0], problems[1]
    by_problem = {solved.id: ["22*10=220\nA:yes\n", "A:no\n", "1+2=3\nA:no\n", "A:nope\n"],
                  unsolved.id: ["10-3=7\nA:no\n", "A:no\n", "3*3=9\nA:no\n", "A:never\n"]}
    monkeypatch.setattr(task, "check_solution", lambda problem, text: "A:yes" in text)
    def run(batch, **kw):
        return _train_fixed(prior_dir, task, batch, by_problem, monkeypatch, method="nsr", **kw)

    alone, alone_stats = run([solved])
    keep, keep_stats = run([solved, unsolved])
    drop, drop_stats = run([solved, unsolved], zero_success="drop")
    down, down_stats = run([solved, unsolved], zero_success="downweight",
                           zero_success_weight=0.1)
    down_one, _ = run([solved, unsolved], zero_success="downweight", zero_success_weight=1.0)
    assert alone_stats["trained_samples"] == drop_stats["trained_samples"] == 3
    assert keep_stats["trained_samples"] == 7
    assert keep_stats["zero_success_groups"] == drop_stats["zero_success_groups"] == 1
    assert _same(drop, alone)
    assert not _same(keep, alone)
    assert _same(down_one, keep)                            # weight 1 is "keep"
    assert not _same(down, keep) and not _same(down, drop)
    # on the first pass every NSR sample's loss is exactly 1 (ratio 1, advantage -1): the
    # minibatch mean shows who is counted ("drop" is not a weight of 0, which gives 3/7)
    assert alone_stats["loss"] == keep_stats["loss"] == drop_stats["loss"] == [1.0]
    assert down_stats["loss"] == [pytest.approx((3 + 4 * 0.1) / 7)]


def test_brier_reward_gives_zero_success_groups_a_signal(prior_dir, task, problems,
                                                         monkeypatch):
    """With the Brier reward an all-wrong group's samples differ by their stated
    confidence (GRPO advantage != 0): "keep" trains on them, "drop" does not."""
    solved, unsolved = problems[0], problems[1]
    by_problem = {
        solved.id: ["A:yes\nconfidence: 0.8\n", "A:no\nconfidence: 0.8\n", "A:yes\n",
                    "A:no\nconfidence: 0.1\n"],
        unsolved.id: ["A:no\nconfidence: 0.9\n", "A:no\nconfidence: .1\n", "A:no\n",
                      "A:no\nconfidence: 0.5\n"]}
    monkeypatch.setattr(task, "check_solution", lambda problem, text: "A:yes" in text)
    rewards = []
    model, tok = load_model(prior_dir)
    monkeypatch.setattr(rl, "_sample", _fixed_samples(tok, by_problem))
    _, stats = train(model, tok, task, [solved, unsolved],
                     _config("grpo", reward="brier", problems_per_step=2),
                     on_samples=lambda it, probs, texts, r: rewards.append(
                         {p.id: row for p, row in zip(probs, np.asarray(r))}))
    np.testing.assert_allclose(rewards[0][solved.id], [0.96, -0.64, 0.0, -0.01], atol=1e-6)
    np.testing.assert_allclose(rewards[0][unsolved.id], [-0.81, -0.01, -1.0, -0.25], atol=1e-6)
    assert stats["mean_correct"] == [0.25] and stats["stated_share"] == [0.75]
    assert stats["trained_samples"] == 8 and stats["zero_success_groups"] == 1
    def run(batch, **kw):
        return _train_fixed(prior_dir, task, batch, by_problem, monkeypatch, method="grpo",
                            reward="brier", **kw)

    alone, _ = run([solved])
    keep, _ = run([solved, unsolved])
    drop, drop_stats = run([solved, unsolved], zero_success="drop")
    assert drop_stats["trained_samples"] == 4
    assert _same(drop, alone) and not _same(keep, alone)


# ----------------------------------------------------------------------------- the confidence line

class _ScriptedPolicy:
    """Proposes the same step for every prefix; records the prefixes and temperature."""

    def __init__(self, step_ids):
        self.step_ids = np.asarray(step_ids, np.int32)
        self.temperature = 0.0
        self.max_positions = None
        self.calls = []

    def propose(self, prefixes, n, max_step_tokens):
        self.calls.append(([list(p) for p in prefixes], self.temperature))
        return [[StepProposal(self.step_ids, 0.0, len(self.step_ids), False)] * n
                for _ in prefixes]


def test_confidence_line_follows_complete_answer_lines_only(prior_dir, task, problems):
    _, tok = load_model(prior_dir)
    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    texts = [["12*5=60\nA:12*5\n", "12*5=60\n", "A:12*5\n", "A:12*"]]
    tokens = [[ids(t) for t in texts[0]]]
    tokens[0][2] = tokens[0][2] + [tok.eos_token_id]         # ended on EOS: no more steps
    counts = np.array([[len(t) for t in tokens[0]]])
    policy = _ScriptedPolicy(ids("confidence: 0.6\n"))
    new_texts, new_tokens, new_counts = add_confidence_lines(
        policy, tok, task, problems[:1], texts, tokens, counts, 48, 0.7)
    prompt = list(prompt_ids(tok, task, problems[0]))
    assert policy.calls == [([prompt + tokens[0][0]], 0.7)] and policy.temperature == 0.0
    assert new_texts[0] == ["12*5=60\nA:12*5\nconfidence: 0.6\n"] + texts[0][1:]
    assert new_tokens[0][0] == tokens[0][0] + ids("confidence: 0.6\n")
    assert new_counts.tolist() == [[counts[0, 0] + 16, *counts[0, 1:]]]
    assert counts[0, 0] == len(tokens[0][0])                # the inputs are untouched


def test_brier_training_samples_and_charges_the_confidence_line(prior_dir, task, problems,
                                                                monkeypatch):
    added = []

    def spy(policy, tokenizer, task_, probs, texts, tokens, counts, *args):
        out = add_confidence_lines(policy, tokenizer, task_, probs, texts, tokens, counts, *args)
        added.append((int(counts.sum()), int(out[2].sum())))
        return out

    monkeypatch.setattr(rl, "add_confidence_lines", spy)
    model, tok = load_model(prior_dir)
    _, stats = train(model, tok, task, problems, _config("grpo", reward="brier"))
    assert len(added) == stats["iterations"] == 1
    before, after = added[0]
    assert after > before                                   # some answers got an extra line
    assert stats["tokens_generated"] == after and len(stats["stated_share"]) == 1


# ----------------------------------------------------------------------------- curriculum

def test_easy_first_puts_solved_problems_first_and_charges_the_probe(prior_dir, task,
                                                                     problems, monkeypatch):
    easy = {problems[2].id, problems[3].id}
    monkeypatch.setattr(task, "check_solution", lambda problem, text: problem.id in easy)

    def run(budget):
        model, tok = load_model(prior_dir)
        batches = []
        _, stats = train(model, tok, task, problems,
                         _config("psr", group_size=2, token_budget=budget,
                                 curriculum="easy_first", curriculum_samples=2),
                         on_samples=lambda it, probs, texts, r: batches.append(
                             {p.id for p in probs}))
        return {k: v for k, v in stats.items() if k != "seconds"}, batches

    # the probe alone spends a budget of 1: no training iteration is left
    stats, batches = run(1)
    probe = stats["curriculum"]
    assert probe["tokens"] > 0 and stats["tokens_generated"] == probe["tokens"]
    assert stats["iterations"] == 0 and not batches
    assert set(probe["order"][:2]) == easy and probe["success"] == [1.0, 1.0, 0.0, 0.0]
    # one token more: one iteration, on the problems the prior solves
    stats, batches = run(probe["tokens"] + 1)
    assert stats["curriculum"] == probe                     # deterministic under the seed
    assert stats["iterations"] == 1 and batches == [easy]
    assert stats["tokens_generated"] == probe["tokens"] + sum(stats["tokens_per_iteration"])
    assert run(probe["tokens"] + 1) == (stats, batches)


def test_easy_first_breaks_ties_by_fewer_numbers(prior_dir, task, problems, monkeypatch):
    monkeypatch.setattr(task, "check_solution", lambda problem, text: False)
    two = [dataclasses.replace(p, id=p.id + "/2", inputs={
        "numbers": tuple(p.inputs["numbers"][:2]), "target": p.inputs["target"]})
        for p in problems[:2]]
    mixed = [problems[0], two[0], problems[1], two[1]]
    model, tok = load_model(prior_dir)
    policy = HFPolicy((model, tok), seed=0)
    order, probe = rl._easy_first_order(model, policy, tok, task, mixed,
                                        _config(curriculum="easy_first", curriculum_samples=1))
    assert sorted(order[:2]) == [1, 3] and sorted(order) == [0, 1, 2, 3]
    assert probe["success"] == [0.0] * 4 and probe["tokens"] > 0


def test_random_curriculum_is_unchanged(problems):
    cycle = rl._ProblemCycle(problems, seed=5)
    same = rl._ProblemCycle(problems, seed=5, fixed_order=None)
    assert [p.id for p in cycle.take(10)] == [p.id for p in same.take(10)]
    fixed = rl._ProblemCycle(problems, seed=5, fixed_order=[3, 1, 0, 2])
    assert [p.id for p in fixed.take(6)] == [problems[i].id for i in (3, 1, 0, 2, 3, 1)]


# ----------------------------------------------------------------------------- measurement

def test_stated_calibration_on_hand_made_texts():
    texts = ["A:1\nconfidence: 0.9\n", "A:2\nconfidence: 20%\n", "A:3\n", "A:4\nconfidence: 1"]
    correct = [True, False, True, 0]
    out = stated_calibration(texts, correct)
    assert out["stated_share"] == 0.75
    assert out["stated_brier"] == pytest.approx((0.1 ** 2 + 0.2 ** 2 + 1.0) / 3)
    # 10 bins: 0.2 (y 0) alone; 0.9 (y 1) and 1.0 (y 0) share the last bin (mean 0.95 vs 0.5)
    assert out["stated_ece"] == pytest.approx((0.2 + 2 * 0.45) / 3)
    # the one right sample (0.9) ranks above one wrong (0.2) and below the other (1.0)
    assert out["stated_auroc"] == pytest.approx(0.5)
    ranked = stated_calibration(["A:1\nconfidence: 0.8\n", "A:2\nconfidence: 0.3\n"], [1, 0])
    assert ranked["stated_auroc"] == 1.0
    none = stated_calibration(["A:1\n", "A:2\n"], [1, 0])
    assert math.isnan(none["stated_brier"]) and math.isnan(none["stated_ece"])
    assert math.isnan(none["stated_auroc"])
    assert none["stated_share"] == 0.0
    with pytest.raises(ValueError, match="verdicts"):
        stated_calibration(["A:1\n"], [1, 0])


def test_measure_samples_the_confidence_line_on_request(prior_dir, task, problems):
    from treesearch.study.measure import measure

    model, tok = load_model(prior_dir)
    plain = measure(HFPolicy((model, tok), seed=0), task, problems[:2], n=4, entropy_samples=1)
    lined = measure(HFPolicy((model, tok), seed=0), task, problems[:2], n=4, entropy_samples=1,
                    confidence_line=True)
    assert math.isnan(plain.stated_brier) and plain.stated_share == 0.0
    assert lined.tokens_per_sample > plain.tokens_per_sample   # the extra step is counted
    assert lined.counts == plain.counts                         # same solutions, same verdicts

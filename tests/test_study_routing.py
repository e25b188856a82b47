"""The when-vs-how token-routing probe (``treesearch.study.routing``): routing a model with
itself changes nothing, a model whose top-1 always differs takes every token, the probe's
numbers, and its place in a study cell's measure.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from policies.hf import HFPolicy, load_model
from policies.rollout import generate_solutions
from policies.zoo import resolve
from treesearch.config import ConfigError
from treesearch.study.config import load_study_config
from treesearch.study.routing import RoutedPolicy, routed_sample, routing_probe
from treesearch.tasks import get_task, prompt_ids

QUICK = Path(__file__).resolve().parent.parent / "configs" / "study_quick.yaml"
LIMITS = {"n": 6, "temperature": 1.0, "max_steps": 4, "max_step_tokens": 24}


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    task = get_task("countdown3")
    model, tokenizer = load_model(resolve("tiny-countdown3"))
    return task, task.problems("test", 3, seed=0), model, tokenizer


def perturbed(model, scale: float = 0.02, seed: int = 1):
    """A copy of ``model`` with small Gaussian noise on every weight."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return other


def always_disagreeing(model):
    """A copy whose logits are the model's shifted by one token id: logits'[v] =
    logits[(v + 1) % V], so its top-1 is never the model's (output layer untied)."""
    other = copy.deepcopy(model)
    weight = other.get_output_embeddings().weight.detach()
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    head.weight = torch.nn.Parameter(torch.roll(weight, -1, dims=0).clone())
    other.lm_head = head
    other.config.tie_word_embeddings = False
    return other


def plain(model, tokenizer, task, problems, seed):
    policy = HFPolicy((model, tokenizer), step_delimiter=task.step_delimiter, seed=seed)
    return generate_solutions(policy, tokenizer, task, [p.without_label() for p in problems],
                              **LIMITS)


def test_routing_a_model_with_itself_swaps_nothing_and_gives_its_own_samples(setup):
    task, problems, model, tokenizer = setup
    texts, share = routed_sample(model, model, tokenizer, task, problems, seed=7, **LIMITS)
    assert share == 0.0
    assert texts == plain(model, tokenizer, task, problems, seed=7)
    assert len(texts) == 3 and all(len(ts) == LIMITS["n"] for ts in texts)


def test_routing_to_a_different_model_swaps_some_tokens_deterministically(setup):
    task, problems, model, tokenizer = setup
    other = perturbed(model)
    texts, share = routed_sample(model, other, tokenizer, task, problems, seed=3, **LIMITS)
    assert 0.0 < share < 0.5   # small noise: the models disagree on a few positions
    again, share_again = routed_sample(model, other, tokenizer, task, problems, seed=3, **LIMITS)
    assert (again, share_again) == (texts, share)
    different, _ = routed_sample(model, other, tokenizer, task, problems, seed=4, **LIMITS)
    assert different != texts


def test_a_model_that_always_disagrees_takes_every_token(setup):
    """Every token comes from the trained model, so the routed samples are its own plain
    samples under the same seed (which also checks its KV-cached decoding)."""
    task, problems, model, tokenizer = setup
    contrary = always_disagreeing(model)
    texts, share = routed_sample(model, contrary, tokenizer, task, problems, seed=5, **LIMITS)
    assert share == 1.0
    assert texts == plain(contrary, tokenizer, task, problems, seed=5)


def test_greedy_routing_is_the_trained_models_greedy_decode(setup):
    """Why the probe samples: at temperature 0 routing always takes the trained argmax."""
    task, problems, model, tokenizer = setup
    other = perturbed(model)
    greedy = {**LIMITS, "n": 1, "temperature": 0.0}
    texts, _ = routed_sample(model, other, tokenizer, task, problems, seed=0, **greedy)
    policy = HFPolicy((other, tokenizer), step_delimiter=task.step_delimiter)
    assert texts == generate_solutions(policy, tokenizer, task,
                                       [p.without_label() for p in problems], **greedy)


def test_routed_decoding_runs_each_token_once_per_model(setup):
    """KV caches across steps: each model processes about prompt + generated tokens
    (linear in the length), not the whole prefix again for every step."""
    task, problems, model, tokenizer = setup
    routed = RoutedPolicy(HFPolicy((model, tokenizer), seed=0),
                          HFPolicy((perturbed(model), tokenizer)))
    _, counts = generate_solutions(routed, tokenizer, task,
                                   [p.without_label() for p in problems], **LIMITS,
                                   return_counts=True)
    prompts = sum(len(prompt_ids(tokenizer, task, p)) for p in problems)
    assert routed.generated == counts.sum()
    for policy in (routed.prior, routed.trained):
        assert policy.counts.processed <= prompts + routed.generated


def test_probe_reports_pass1_of_all_three_and_the_recovered_share(setup):
    task, problems, model, tokenizer = setup
    same = routing_probe(model, model, tokenizer, task, problems, seed=2, **LIMITS)
    assert set(same) >= {"swapped_share", "prior_pass1", "trained_pass1", "routed_pass1",
                         "recovered", "problems", "samples"}
    assert same["swapped_share"] == 0.0 and same["recovered"] is None   # no gain to recover
    assert same["prior_pass1"] == same["trained_pass1"] == same["routed_pass1"]
    assert (same["problems"], same["samples"]) == (3, LIMITS["n"])

    contrary = always_disagreeing(model)
    probe = routing_probe(model, contrary, tokenizer, task, problems, seed=2, **LIMITS)
    assert probe["swapped_share"] == 1.0
    assert probe["routed_pass1"] == probe["trained_pass1"]   # every token routed
    if probe["recovered"] is not None:
        assert probe["recovered"] == pytest.approx(1.0)


def test_routing_samples_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"eval\.routing_samples"):
        load_study_config(QUICK, ["eval.routing_samples=-1"])


def test_a_study_cell_with_routing_samples_writes_the_probe(tmp_path, setup, monkeypatch):
    """run_cell with a stand-in for training (the prior plus noise): measure.json gets a
    ``routing`` dict; with routing_samples=0 it gets none."""
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir

    _, _, model, tokenizer = setup
    overrides = [f"out={tmp_path / 'run'}", "priors=[{name: p3, model: tiny-countdown3}]",
                 "optimizers=[grpo]", "eval.problems=2", "eval.ood_problems=0",
                 "eval.samples=2", "eval.entropy_samples=1", "eval.routing_samples=3",
                 "search.max_depth=3", "progress=false", "threads=1"]
    cfg = load_study_config(QUICK, overrides)
    study = Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    monkeypatch.setattr(study.training, "train", lambda prior, optimizer, seed: (
        perturbed(model, seed=seed), tokenizer, {"tokens_generated": 0}))
    study.cells.run_cell("p3", "grpo", 0)
    cell = json.loads((study.cell_dir("p3", "grpo", 0) / "measure.json").read_text())
    routing = cell["routing"]
    assert (routing["problems"], routing["samples"]) == (2, 3)
    assert 0.0 <= routing["swapped_share"] <= 1.0
    for key in ("prior_pass1", "trained_pass1", "routed_pass1"):
        assert 0.0 <= routing[key] <= 1.0
    assert "recovered" in routing
    assert not (study.cell_dir("p3", "grpo", 0) / "policy").exists()

    study.cfg.eval.routing_samples = 0
    study.cells.run_cell("p3", "grpo", 1)
    measure = json.loads((study.cell_dir("p3", "grpo", 1) / "measure.json").read_text())
    assert "routing" not in measure


def test_the_report_gives_a_recovered_share_only_for_a_gain_outside_the_noise():
    """The report's ratio comes from the seeds' mean pass@1s, and only where the trained
    policy's gain exceeds two binomial standard errors over problems x samples: a gain of
    -0.001 (which once printed "recovered 26.0") gives none."""
    from treesearch.study.report import _recovered

    def route(prior, trained, routed):
        return {"prior_pass1": prior, "trained_pass1": trained, "routed_pass1": routed,
                "problems": 100, "samples": 8}

    assert _recovered([route(0.084, 0.083, 0.051)]) is None
    assert _recovered([route(0.10, 0.11, 0.105)]) is None          # 1 point on 800 draws: noise
    assert abs(_recovered([route(0.10, 0.20, 0.15)]) - 0.5) < 1e-12
    # two seeds: the ratio of the means, not the mean of the ratios
    two = [route(0.10, 0.20, 0.20), route(0.10, 0.30, 0.10)]
    assert abs(_recovered(two) - (0.15 - 0.10) / (0.25 - 0.10)) < 1e-12
    assert _recovered([{"prior_pass1": 0.1}]) is None

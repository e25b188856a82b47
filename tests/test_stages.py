"""The stages self-play and the study share: one search pipeline (verifier -> scorer ->
search -> verdicts) and one optimizer registry that both apps' names resolve in."""

import numpy as np
import pytest

from policies.distill import PGExample, SFTExample
from treesearch.config import DISTILL_METHODS
from treesearch.search import SearchConfig
from treesearch.stages import search_problems
from treesearch.stages import train as stages_train
from treesearch.stages.train import NEEDS, OPTIMIZERS, TrainData, from_trees
from treesearch.study.config import FROM_TREES
from treesearch.study.config import OPTIMIZERS as STUDY_OPTIMIZERS


def test_both_apps_name_entries_of_one_registry():
    for name in DISTILL_METHODS + STUDY_OPTIMIZERS:
        assert name in OPTIMIZERS, name
        assert OPTIMIZERS[name].needs <= set(NEEDS)
    assert {n for n in STUDY_OPTIMIZERS if from_trees(n)} == set(FROM_TREES)
    assert all(from_trees(n) for n in DISTILL_METHODS)
    # the study's mcts is self-play's sft; tree_pg (offline, one finished search) and
    # tree_rl (on-policy, a search per iteration) are two algorithms
    assert OPTIMIZERS["mcts"].train is OPTIMIZERS["sft"].train
    assert OPTIMIZERS["tree_pg"].train is not OPTIMIZERS["tree_rl"].train
    assert "search" in OPTIMIZERS["tree_rl"].needs and "search" not in OPTIMIZERS["grpo"].needs


def test_a_policy_gradient_pass_sees_signed_examples_then_scaled_positives_then_prior(
        monkeypatch):
    seen = {}

    def fake_pg(model, tokenizer, examples, config):
        seen["examples"] = examples
        return model, {}

    monkeypatch.setattr(stages_train, "policy_gradient", fake_pg)
    data = TrainData(pg=[PGExample([1], [2], -1.0)], examples=[SFTExample([1], [3], 2.0)],
                     prior=[SFTExample([1], [4], 0.5)], positive_weight=0.1)
    OPTIMIZERS["wreinforce"].train(None, None, data, None)
    assert [(e.completion_ids, e.advantage) for e in seen["examples"]] == [
        ([2], -1.0), ([3], pytest.approx(0.2)), ([4], 0.5)]


def test_search_problems_judges_the_chosen_answers(policy, task):
    problems = task.problems("train", 3, seed=0)
    searched = search_problems(policy, task, problems, SearchConfig(simulations=4),
                               verify=True)
    assert searched.correct.dtype == bool and searched.correct.shape == (3,)
    assert list(searched.correct) == [task.check_solution(p, a)
                                      for p, a in zip(problems, searched.result.answers)]
    assert searched.solved_share == float(np.mean(searched.correct))
    assert searched.generated.shape == (3,) and searched.generated.sum() > 0
    assert searched.nodes.shape == (3,)
    with pytest.raises(ValueError, match="at least one critic"):
        search_problems(policy, task, problems, SearchConfig(simulations=4))


def test_one_pass_at_k_for_self_play_and_the_study():
    from policies.rollout import pass_at_k as one_problem
    from treesearch.stages.evaluate import pass_at_k, powers_of_two

    counts = [0, 3, 8, 1]
    table = pass_at_k(counts, 8)
    assert list(table) == ["1", "2", "4", "8"]
    for k, v in table.items():
        assert v == float(np.mean([one_problem(8, c, int(k)) for c in counts]))
    assert powers_of_two(6) == [1, 2, 4] and list(pass_at_k(counts[:1], 6)) == [
        "1", "2", "4", "6"]
    assert list(pass_at_k([1, 2], 6, powers_of_two(6))) == ["1", "2", "4"]


def test_harvest_fills_what_the_optimizer_needs_and_nothing_else(policy, task):
    from policies.rl import tree_examples
    from treesearch.search.harvest import HarvestConfig, sibling_preference_pairs
    from treesearch.stages.harvest import harvest

    problems = task.problems("train", 3, seed=1)
    searched = search_problems(policy, task, problems, SearchConfig(simulations=6),
                               verify=True)
    config = HarvestConfig(paths_per_problem=2, dpo_margin=0.05)
    steps = harvest(OPTIMIZERS["tree_pg"].needs, searched.result, problems, task,
                    policy.tokenizer, config)
    assert steps.pg == tree_examples(searched.result.forest, searched.result.prompts)
    assert not (steps.examples or steps.pairs)
    both = harvest(OPTIMIZERS["sft+dpo"].needs, searched.result, problems, task,
                   policy.tokenizer, config)
    assert not both.pg and len(both.examples) <= 2 * len(problems)
    assert both.pairs == sibling_preference_pairs(searched.result, 0.05)
    assert all(e.weight == 1.0 for e in both.examples)

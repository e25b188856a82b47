"""Ranked correct paths and sibling pairs taken from real searched trees."""

import pytest


@pytest.fixture(scope="module")
def searched():
    import torch

    from critics.compose import StepScorer
    from critics.verifier import RuleVerifier
    from policies.hf import HFPolicy
    from policies.zoo import resolve
    from treesearch.search import SearchConfig, StepSearch
    from treesearch.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("countdown3")
    policy = HFPolicy(resolve("tiny-countdown3"), seed=0)
    problems = task.problems("train", 12, seed=4)
    verifier = RuleVerifier(task, policy.tokenizer, problems)
    config = SearchConfig(simulations=16, branching=2, horizon=6, max_depth=6, max_step_tokens=24)
    result = StepSearch(policy, StepScorer(outcome=verifier), task, policy.tokenizer,
                        config).run(problems)
    return task, policy.tokenizer, problems, verifier, result


def test_best_correct_paths_are_verified_ranked_and_clean_ones_a_subset(searched):
    from treesearch.search.harvest import best_correct, sft_examples

    task, tok, problems, verifier, result = searched
    f = result.forest
    found = 0
    for b in range(f.n_trees):
        nodes = best_correct(result, b, verifier, k=3)
        clean = best_correct(result, b, verifier, k=100, clean_steps=True)
        assert len(nodes) <= 3
        assert set(clean) <= set(best_correct(result, b, verifier, k=100))
        for c in nodes:
            text = "".join(tok.decode(s.tolist()) for s in result.steps(b, c))
            assert task.check_solution(problems[b], text)
        keys = [(-f.score[b, c], -f.visits[b, c]) for c in nodes]
        assert keys == sorted(keys)
        found += len(nodes)
    assert found > 0  # the 3-number prior solves some of these with 16 simulations
    examples = sft_examples(result, tok, verifier, k=3)
    assert len(examples) == found
    assert all(e.completion_ids[-1] == tok.eos_token_id for e in examples)


def test_sibling_pairs_share_a_prefix_and_differ(searched):
    from treesearch.search.harvest import sibling_preference_pairs

    task, tok, problems, verifier, result = searched
    pairs = sibling_preference_pairs(result, margin=0.3)
    assert pairs, "a searched forest with verified answers has siblings of different Q"
    prompts = {tuple(p) for p in result.prompts}
    for pair in pairs:
        assert pair.chosen_ids != pair.rejected_ids
        assert any(tuple(pair.prompt_ids[:len(p)]) == p for p in prompts)

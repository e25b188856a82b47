"""Game of 24: every solvable multiset once, split by content; the step oracle; step validity."""

import random

import numpy as np
import pytest

from critics.base import CriticError
from critics.oracle import StepOracle
from policies.tokenization import build_char_tokenizer
from treesearch.config import ConfigError, load_config
from treesearch.tasks import get_task, prompt_ids
from treesearch.tasks.countdown import expression_solves
from treesearch.tasks.game24 import Game24, solution_count
from treesearch.tasks.testing import check_task
from treesearch.tasks.validity import step_validity, step_verdicts


@pytest.fixture(scope="module")
def game24():
    return get_task("game24")


def test_every_solvable_multiset_once_split_by_content(game24):
    by_split = game24.all_problems()
    sizes = {split: len(problems) for split, problems in by_split.items()}
    assert sum(sizes.values()) == 1346  # of the 1820 multisets, under integer intermediates
    assert sizes["test"] >= 500 and sizes["val"] >= 150 and sizes["train"] >= 500
    ids = [p.id for problems in by_split.values() for p in problems]
    assert len(set(ids)) == len(ids)
    assert game24.problems("test", None) == game24.problems("test", None)
    assert len(game24.problems("test", None)) == sizes["test"]
    assert [p.id for p in game24.problems("val", 5, seed=0)] != \
        [p.id for p in game24.problems("val", 5, seed=1)]
    for problems in by_split.values():
        for p in problems[:50]:
            assert p.inputs["target"] == 24 and len(p.inputs["numbers"]) == 4
            assert expression_solves(p.label, p.inputs["numbers"], 24)
    # 1 1 1 1 cannot make 24; 5 5 5 1 needs a fraction (5*(5-1/5)); neither is a problem
    numbers = {p.inputs["numbers"] for problems in by_split.values() for p in problems}
    assert (1, 1, 1, 1) not in numbers and (1, 5, 5, 5) not in numbers
    assert (1, 1, 1, 8) in numbers  # (1+1+1)*8


def test_conformance_kit_passes(game24):
    report = check_task(game24)
    assert report.ok and "traces" in report.passed


def test_difficulty_from_the_solver(game24):
    assert solution_count((1, 1, 1, 8), 24) >= 1
    assert solution_count((1, 1, 1, 1), 24) == 0
    # 4 6 8 13 has more ways than 1 1 1 8 (whose only route is 1+1=2, 2+1=3, 8*3=24)
    assert solution_count((1, 1, 1, 8), 24) == 1
    assert solution_count((4, 6, 8, 13), 24) > 1
    bins = {game24.difficulty(p) for p in game24.problems("test", None)}
    assert bins == {"1-2", "3-5", "6-11", "12+"}


def test_traces_are_annotated_and_the_last_line_answers(game24):
    problem = game24.problems("train", 1)[0]
    text = game24.solution_trace(problem, random.Random(0))
    lines = text.strip().split("\n")
    assert len(lines) == 4 and lines[-1].startswith("A:")
    assert all("(" in line for line in lines[:3]) and game24.style_of(text) == 0
    assert game24.check_solution(problem, text)


@pytest.mark.parametrize("kwargs, word", [
    (dict(n_numbers=1), "n_numbers"), (dict(n_numbers=7), "n_numbers"),
    (dict(min_value=0), "min_value"), (dict(max_value=100), "max_value"),
    (dict(min_value=9, max_value=3), "min_value"), (dict(target=-1), "target"),
    (dict(n_numbers=6, max_value=40), "multisets"), (dict(test_fraction=1.5), "test_fraction"),
])
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        get_task("game24", **kwargs)


def test_asking_for_more_than_a_split_holds_says_how_many(game24):
    with pytest.raises(ValueError, match=r"the val split has \d+ puzzles"):
        game24.problems("val", 10_000)


def test_other_targets_and_ranges():
    task = Game24(n_numbers=3, max_value=6, target=10, name="make10")
    problems = [p for ps in task.all_problems().values() for p in ps]
    assert problems and all(expression_solves(p.label, p.inputs["numbers"], 10) for p in problems)


def test_step_oracle_follows_the_solver(game24):
    rng = random.Random(0)
    for problem in game24.problems("val", 20):
        lines = game24.solution_trace(problem, rng).strip().split("\n")
        assert all(game24.step_oracle(problem.inputs, lines[:k]) for k in range(len(lines) + 1))
        flawed = game24.solution_trace(problem, rng, flawed=True).strip().split("\n")
        assert not game24.step_oracle(problem.inputs, flawed)
    inputs = {"numbers": (4, 6, 8, 13), "target": 24}
    assert not game24.step_oracle(inputs, ["13-8=6 (4 6 6)"])     # false arithmetic
    assert not game24.step_oracle(inputs, ["8*6=48 (4 13 48)"])   # 4 13 48 cannot make 24
    assert not game24.step_oracle(inputs, ["13-8=5 (4 6 5)"])     # 4 6 5 cannot make 24
    assert game24.step_oracle(inputs, ["13-6=7 (4 8 7)"])        # (13-6-4)*8 still works


def test_step_oracle_critic_flips_and_refuses(game24):
    tok = build_char_tokenizer()
    problems = game24.problems("test", 30)
    states, exact = [], []
    rng = random.Random(1)
    for problem in problems:
        for flawed in (False, True):
            lines = game24.solution_trace(problem, rng, flawed=flawed).strip().split("\n")
            spans = [tok(line + "\n", add_special_tokens=False)["input_ids"] for line in lines]
            states.append((prompt_ids(tok, game24, problem.without_label()), spans))
            exact.append(not flawed)
    perfect = StepOracle(game24, tok, problems, "process").score(states)
    assert perfect.tolist() == [float(e) for e in exact]
    noisy = StepOracle(game24, tok, problems, "value", flip=0.5, seed=3)
    flipped = noisy.score(states) != perfect
    assert 0.2 < flipped.mean() < 0.8
    assert np.array_equal(noisy.score(states), noisy.score(states))  # a state keeps its verdict
    with pytest.raises(CriticError, match="no exact solver"):
        StepOracle(get_task("arithmetic"), tok, [], "process")
    with pytest.raises(CriticError, match="flip rate"):
        StepOracle(game24, tok, problems, "process", flip=1.5)


def test_self_play_refuses_the_oracle():
    with pytest.raises(ConfigError, match=r"critics\.process.*benchmarks only"):
        load_config(None, ["task=game24", "critics.process=oracle"])


def test_step_validity_shares(game24):
    inputs = {"numbers": (4, 6, 8, 13), "target": 24}
    assert step_verdicts(game24, inputs, "13-6=7 (4 8 7)\n7-4=3 (8 3)\n8*3=24 (24)\nA:x\n9+9=1\n") \
        == [True, True, True]
    samples = [["13-6=7 (4 8 7)\n7-4=3 (8 3)\n8*3=24 (24)\nA:((13-6)-4)*8\n",  # all valid, right
                "13-6=8 (4 8 8)\n8*3=24 (24)\nA:(13-6)*8-4\n",  # false steps, wrong
                "A:((13-6)-4)*8\n"]]  # right, no steps
    correct = [[True, False, True]]
    v = step_validity(game24, [inputs], samples, correct)
    assert v.steps == 5 and v.valid_step_share == pytest.approx(3 / 5)
    assert v.samples_with_steps == 2 and v.first_step_valid_share == pytest.approx(0.5)
    assert v.all_valid_share == pytest.approx(0.5)
    assert v.correct == 2 and v.correct_through_valid_share == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must match"):
        step_validity(game24, [inputs], samples, [])


def test_the_shipped_prior_writes_true_steps(game24):
    """tiny-game24 (policies/priors) loads by its zoo name and its sampled steps are valid
    arithmetic on numbers still available; its metrics.json records the shares it shipped
    with, measured on val."""
    import json

    from policies.hf import HFPolicy
    from policies.rollout import generate_solutions
    from policies.zoo import resolve

    path = resolve("tiny-game24")
    recorded = json.loads((path / "metrics.json").read_text())["eval"]
    assert recorded["split"] == "val" and recorded["valid_step_share"] >= 0.95
    assert recorded["correct_through_valid_share"] >= 0.9
    policy = HFPolicy(path, seed=0)
    problems = game24.problems("val", 20, seed=3)
    samples = generate_solutions(policy, policy.tokenizer, game24, problems, n=4,
                                 temperature=0.7, max_steps=6, max_step_tokens=24)
    correct = [[game24.check_solution(p, s) for s in sols] for p, sols in zip(problems, samples)]
    shares = step_validity(game24, [p.inputs for p in problems], samples, correct)
    assert shares.steps >= 150 and shares.valid_step_share >= 0.9
    assert 0 < sum(map(sum, correct)) < 80  # it solves some puzzles, not all


def test_step_validity_with_nothing_to_count_is_none(game24):
    v = step_validity(game24, [{"numbers": (1, 2, 3, 4), "target": 24}], [["A:1+2+3+4\n"]],
                      [[False]])
    assert v.steps == 0 and v.valid_step_share is None and v.correct_through_valid_share is None


def test_pruning_closes_dead_ends_so_no_tokens_go_below_them(game24):
    """prune_below=0 with the step oracle: every node the oracle scores 0 that does not end
    the episode is a terminal leaf, so no step is ever sampled below a dead end; without
    pruning the search does expand below some (the same budget, the shipped prior)."""
    from critics.compose import StepScorer
    from policies.hf import HFPolicy
    from policies.zoo import resolve
    from treesearch.search import SearchConfig, StepSearch

    policy = HFPolicy(resolve("tiny-game24"), temperature=0.7, seed=0)
    problems = game24.problems("val", 5, seed=0)
    scorer = StepScorer(*(StepOracle(game24, policy.tokenizer, problems, kind)
                          for kind in ("value", "process", "outcome")))
    below_dead = {}
    for prune, backtrack in ((None, False), (0.0, False), (0.0, True)):
        config = SearchConfig(simulations=100, branching=1, horizon=1, max_depth=5,
                              max_tokens=128, prune_below=prune, backtrack=backtrack)
        forest = StepSearch(policy, scorer, game24, policy.tokenizer, config).run(problems).forest
        assert forest.check_invariants(strict_visits=False) == []
        below_dead[prune, backtrack] = 0
        for t in range(len(problems)):
            for n in np.flatnonzero(forest.depth[t, :forest.n_nodes[t]] > 0):  # live slots
                parent = int(forest.parent[t, n])
                if parent > 0 and forest.score[t, parent] == 0:
                    below_dead[prune, backtrack] += 1
                if prune is not None and forest.score[t, n] == 0:
                    assert forest.terminal[t, n] == 1 and forest.n_children[t, n] == 0
    assert below_dead[0.0, False] == below_dead[0.0, True] == 0 < below_dead[None, False]


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_prune_threshold_out_of_range_is_refused(value):
    from treesearch.search import SearchConfig

    with pytest.raises(ValueError, match="prune_below"):
        SearchConfig(prune_below=value)
    with pytest.raises(ValueError, match="backtrack needs prune_below"):
        SearchConfig(backtrack=True)

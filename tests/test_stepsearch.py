"""The step search: real tiny prior end to end, merging and widening on a scripted policy,
budgets, and the rule that labels never reach the search."""

import numpy as np
import pytest

from critics.base import CriticError
from critics.compose import StepScorer
from critics.verifier import RuleVerifier
from policies.hf import HFPolicy
from treesearch.engine.interfaces import StepProposal, TokenCounts
from treesearch.search import SearchConfig, StepSearch

SENTINEL = "LEAK-SENTINEL-4417"


class _Const:
    def __init__(self, kind, value=0.5):
        self.kind, self.value, self.name, self.seen = kind, value, f"const-{kind}", []

    def score(self, states):
        self.seen.extend(states)
        return np.full(len(states), self.value, np.float32)


class _Recording:
    """Wraps a task and fails if the search hands it a problem that still has its label."""

    def __init__(self, task):
        self.task, self.name, self.step_delimiter = task, task.name, task.step_delimiter

    def prompt(self, problem):
        assert problem.label is None and problem.reference == ()
        return self.task.prompt(problem)

    def __getattr__(self, name):  # everything else (answers, keys) goes to the task
        return getattr(self.task, name)


def test_search_with_the_tiny_prior_is_sound_and_accounted(policy, task):
    problems = task.problems("train", 4, seed=2)
    scorer = StepScorer(value=_Const("value"),
                        outcome=RuleVerifier(task, policy.tokenizer, problems))
    config = SearchConfig(simulations=12, branching=2, horizon=2, max_depth=5)
    result = StepSearch(policy, scorer, task, policy.tokenizer, config).run(problems)
    forest = result.forest
    assert forest.check_invariants(strict_visits=False) == []
    assert np.all(forest.n_nodes > 1) and len(result.answers) == 4
    for b in range(4):
        stored = sum(len(forest.tokens.get(int(forest.payload[b, n])))
                     for n in range(1, int(forest.n_nodes[b])) if forest.depth[b, n] >= 0)
        assert result.stats.generated[b] >= stored > 0  # merged duplicates were still paid for
        # the answer is the text of the chosen node's path
        steps = result.steps(b, int(result.chosen_node[b]))
        assert result.answers[b] == "".join(policy.tokenizer.decode(s.tolist()) for s in steps)
    assert result.stats.processed.sum() > 0 and result.stats.critic_calls.sum() > 0
    assert set(result.stats.seconds) == {"select", "propose", "score", "expand", "backup", "other"}
    # parts are stored per node: terminal answers carry the verifier's verdict
    outcome = forest.extra("c_outcome")
    scored = ~np.isnan(outcome) & (forest.depth > 0)
    assert scored.any() and set(np.unique(outcome[scored])) <= {0.0, 1.0}


def test_labels_never_reach_the_search(policy, task):
    import dataclasses

    problems = [dataclasses.replace(p, label=SENTINEL) for p in task.problems("test", 3, seed=0)]
    value = _Const("value")
    result = StepSearch(policy, StepScorer(value=value), _Recording(task), policy.tokenizer,
                        SearchConfig(simulations=4)).run(problems)
    texts = [policy.tokenizer.decode([t for s in steps for t in s]) for _, steps in value.seen]
    assert value.seen and not any(SENTINEL in t for t in texts + result.answers)
    # the rule verifier refuses held-out problems outright
    with pytest.raises(CriticError, match="held out"):
        RuleVerifier(task, policy.tokenizer, task.problems("test", 2, seed=0))


class _Scripted:
    """Always proposes the same steps: '1+2=3' then the answer line."""

    def __init__(self, tokenizer):
        self.tokenizer, self.counts, self.temperature = tokenizer, TokenCounts(), 1.0

    def propose(self, prefixes, n, max_step_tokens):
        out = []
        for prefix in prefixes:
            text = self.tokenizer.decode(prefix, skip_special_tokens=True)
            step = "A:1+2\n" if "1+2=3" in text else "1+2=3\n"
            ids = np.array(self.tokenizer(step, add_special_tokens=False)["input_ids"], np.int32)
            out.append([StepProposal(ids, -1.0, len(ids), False) for _ in range(n)])
            self.counts.generated += n * len(ids)
            self.counts.processed += len(prefix) + n * len(ids)
        return out


def test_identical_steps_merge_and_fruitless_widening_is_capped(policy, task):
    scripted = _Scripted(policy.tokenizer)
    problems = task.problems("test", 2, seed=1)
    config = SearchConfig(simulations=10, branching=4, horizon=1, widen_c=2.0, max_children=8,
                          early_stop=False)
    result = StepSearch(scripted, StepScorer(value=_Const("value", 0.3)), task,
                        policy.tokenizer, config).run(problems)
    forest = result.forest
    for b in range(2):
        assert int(forest.n_nodes[b]) == 3  # root -> '1+2=3' -> 'A:1+2', nothing duplicated
        assert forest.n_children[b, 0] == 1 and forest.extra("child_cap")[b, 0] == 1
        assert forest.terminal[b, 2] == 1
        assert result.answers[b] == "1+2=3\nA:1+2\n"
    # both steps were sampled 4 times at least (6 tokens each), the same in both trees
    assert result.stats.generated[0] == result.stats.generated[1] >= 2 * 4 * 6


def test_fruitless_nodes_reopen_when_their_visits_double(policy, task):
    """reopen_fruitless: a capped node is widened again once its visits double, and the
    search still goes deeper (a deterministic policy never starves the answer node)."""
    problems = task.problems("test", 1, seed=1)
    base = SearchConfig(simulations=12, branching=4, horizon=1, widen_c=2.0, max_children=8,
                        early_stop=False)
    runs = {}
    for reopen in (False, True):
        config = SearchConfig(**{**vars(base), "reopen_fruitless": reopen})
        runs[reopen] = StepSearch(_Scripted(policy.tokenizer),
                                  StepScorer(value=_Const("value", 0.3)), task,
                                  policy.tokenizer, config).run(problems)
    for result in runs.values():
        assert int(result.forest.n_nodes[0]) == 3  # root -> '1+2=3' -> 'A:1+2', no duplicates
        assert result.answers[0] == "1+2=3\nA:1+2\n"
    assert runs[True].stats.generated[0] > runs[False].stats.generated[0]  # it sampled again


def test_repeat_visits_counts_every_continuation_that_repeats_a_solution(policy, task):
    """Four identical rollouts in one round: merged into one path either way; with
    repeat_visits each is one visit of the answer node, as a repeat from an earlier round
    always is (without it the within-round repeats add nothing)."""
    problems = task.problems("test", 1, seed=1)
    visits = {}
    for repeat in (False, True):
        config = SearchConfig(simulations=1, branching=4, horizon=2, max_depth=2,
                              early_stop=False, repeat_visits=repeat)
        result = StepSearch(_Scripted(policy.tokenizer), StepScorer(value=_Const("value", 0.3)),
                            task, policy.tokenizer, config).run(problems)
        forest = result.forest
        assert int(forest.n_nodes[0]) == 3 and forest.terminal[0, 2] == 1
        assert forest.check_invariants(strict_visits=False) == []
        visits[repeat] = int(forest.visits[0, 2])
    assert visits == {False: 1, True: 4}, visits


def test_without_state_merge_every_sampled_step_is_a_node(policy, task):
    scripted = _Scripted(policy.tokenizer)
    problems = task.problems("test", 1, seed=1)
    config = SearchConfig(simulations=3, branching=2, horizon=1, merge=False, early_stop=False)
    result = StepSearch(scripted, StepScorer(value=_Const("value", 0.3)), task,
                        policy.tokenizer, config).run(problems)
    forest = result.forest
    assert forest.check_invariants(strict_visits=False) == []
    assert forest.n_children[0, 0] >= 2  # the same '1+2=3' twice: two children, not one
    texts = {policy.tokenizer.decode(forest.tokens.get(int(forest.payload[0, k])).tolist())
             for k in forest.children(0, 0)}
    assert texts == {"1+2=3\n"}


def test_a_budgeted_tree_that_only_recounts_finished_solutions_stops(policy, task):
    from treesearch.search.stepsearch import IDLE_ROUNDS

    scripted = _Scripted(policy.tokenizer)
    config = SearchConfig(simulations=500, branching=1, horizon=2, max_children=1,
                          max_tokens=10_000, early_stop=False, idle_rollouts=False)
    result = StepSearch(scripted, StepScorer(value=_Const("value", 0.3)), task,
                        policy.tokenizer, config).run(task.problems("test", 1, seed=1))
    # one path exists and is finished at once; then only re-counting rounds remain
    assert result.stats.rounds[0] <= 1 + IDLE_ROUNDS
    assert result.stats.generated[0] < 10_000


def test_idle_rollouts_spend_the_budget_from_the_root(policy, task):
    """A tree whose selection only lands on its finished solution samples fresh root
    continuations instead (here they repeat the one solution: visits, no new nodes) until
    its budget is spent, where without idle_rollouts it stops idle."""
    base = dict(simulations=500, branching=1, horizon=2, max_children=1, max_tokens=600,
                early_stop=False)
    runs = {}
    for on in (False, True):
        config = SearchConfig(**base, idle_rollouts=on)
        runs[on] = StepSearch(_Scripted(policy.tokenizer), StepScorer(value=_Const("value", 0.3)),
                              task, policy.tokenizer, config).run(task.problems("test", 1, seed=1))
    off, on = runs[False], runs[True]
    assert off.stats.generated[0] < 100
    assert 600 - 24 < on.stats.generated[0] <= 600 + 24  # spent, overshot < one step
    assert int(on.forest.n_nodes[0]) == 3  # root -> '1+2=3' -> 'A:1+2': only repeats
    assert on.forest.visits[0, 2] > 2 * off.forest.visits[0, 2]  # each repeat is a visit
    assert on.answers[0] == off.answers[0] == "1+2=3\nA:1+2\n"


def test_widening_adds_children_and_budgets_stop_trees(policy, task):
    problems = task.problems("train", 3, seed=5)
    config = SearchConfig(simulations=40, branching=2, horizon=1, widen_c=1.5, max_children=6,
                          max_tokens=120, max_depth=5, early_stop=False)
    result = StepSearch(policy, StepScorer(value=_Const("value")), task, policy.tokenizer,
                        config).run(problems)
    forest = result.forest
    assert forest.check_invariants(strict_visits=False) == []
    assert forest.n_children[:, 0].max() > 2  # the root was widened beyond one expansion
    assert np.all(forest.n_children[:, 0] <= 6)
    # a tree stops once its budget is spent: at most one round (2 steps) over it
    assert np.all(result.stats.generated <= 120 + 2 * config.max_step_tokens)
    assert np.all(result.stats.rounds < 40)


def test_bad_requests_are_refused_before_model_work(policy, task):
    with pytest.raises(ValueError, match="at least one critic"):
        StepSearch(policy, StepScorer(), task, policy.tokenizer)
    with pytest.raises(ValueError, match="empty problem list"):
        StepSearch(policy, StepScorer(value=_Const("value")), task, policy.tokenizer).run([])
    with pytest.raises(ValueError, match="max_tokens"):
        SearchConfig(max_tokens=8, max_step_tokens=32)
    with pytest.raises(ValueError, match="answer"):
        SearchConfig(answer="best")


def test_vote_groups_equivalent_answers_and_score_picks_the_best(policy, task):
    from treesearch.engine.forest import Forest
    from treesearch.search import EXTRA_FIELDS

    texts = ["A:5*4\n", "A:4*5\n", "A:20+1\n"]
    forest = Forest(1, capacity=8, extra_fields=EXTRA_FIELDS)
    spans = forest.tokens.add_many([policy.tokenizer(t)["input_ids"] for t in texts])
    forest.expand([0], [0], [0, 3], [1 / 3] * 3, [0.0] * 3, [0.5, 0.5, 0.9], [1, 1, 1], spans)
    forest.backup([0, 0, 0], [1, 2, 3])
    chosen = {}
    for rule in ("vote", "score"):
        search = StepSearch(policy, StepScorer(value=_Const("value")), task, policy.tokenizer,
                            SearchConfig(answer=rule))
        chosen[rule] = int(search.choose(forest)[0])
    assert chosen["vote"] == 1  # 5*4 and 4*5 claim the same: 2 x 0.5 outweighs 0.9
    assert chosen["score"] == 3


def test_a_full_context_ends_the_path_instead_of_failing(task):
    import tempfile

    from tiny_models import save_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        small = HFPolicy(save_tiny_llama(tmp, 32, max_positions=48), temperature=1.0, seed=0)
        problems = task.problems("test", 2, seed=4)
        config = SearchConfig(simulations=6, branching=2, horizon=6, max_depth=6,
                              max_step_tokens=12, early_stop=False)
        result = StepSearch(small, StepScorer(value=_Const("value")), task, small.tokenizer,
                            config).run(problems)
        forest = result.forest
        assert forest.check_invariants(strict_visits=False) == []
        for b in range(2):
            for n in range(int(forest.n_nodes[b])):
                if forest.depth[b, n] >= 0:
                    length = len(result.prompts[b]) + sum(len(s) for s in result.steps(b, n))
                    assert length <= 48


@pytest.mark.parametrize("budget", [24, 60, 200])
def test_a_budget_is_overshot_by_less_than_one_step(policy, task, budget):
    """Every call asks only for the steps a tree's remaining budget can pay, so no tree
    generates max_step_tokens or more beyond its budget, whatever branching and horizon."""
    problems = task.problems("test", 6, seed=1)
    config = SearchConfig(simulations=40, branching=4, horizon=6, leaves_per_tree=2,
                          max_step_tokens=24, max_tokens=budget, early_stop=False)
    result = StepSearch(policy, StepScorer(value=_Const("value")), task, policy.tokenizer,
                        config).run(problems)
    generated = result.stats.generated
    assert np.all(generated < budget + config.max_step_tokens), generated
    assert np.all(generated >= min(budget, 12))  # and the budget is used, not wasted


def test_critic_calls_count_every_evaluation(policy, task):
    """An outcome critic alone scores only answer nodes: its calls are counted per problem
    (they were rounded away when averaged over all new nodes)."""
    problems = task.problems("train", 3, seed=4)
    verifier = RuleVerifier(task, policy.tokenizer, problems)
    scorer = StepScorer(outcome=verifier)
    result = StepSearch(policy, scorer, task, policy.tokenizer,
                        SearchConfig(simulations=6, branching=2, horizon=6)).run(problems)
    assert result.stats.critic_calls.sum() == verifier.calls == scorer.calls["outcome"] > 0
    assert result.stats.critic_tokens.sum() == 0  # the verifier runs no model

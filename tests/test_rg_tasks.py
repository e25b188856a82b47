"""reasoning-gym datasets by name (``rg:<dataset>``): the conformance kit on several of them,
each dataset's own answer checks as correct and a wrong one as wrong, config keys as
task_args (unknown ones refused by name), the label audit that catches reasoning-gym
0.1.25's left-to-right ``basic_arithmetic`` labels, pretraining's refusal of a dataset
without a solver, and every dataset reasoning-gym lists either passing the kit or refused
by name with the reason (``treesearch.tasks.rg_support``)."""

import random
import warnings

import pytest

from treesearch.tasks import RGTask, TaskArgsError, TaskOptions, get_task
from treesearch.tasks.rg import dataset_names
from treesearch.tasks.rg_support import LABEL_FIELDS, REFUSED
from treesearch.tasks.testing import TaskCheckError, check_task

# (dataset, task_args): with a solver (traces, label audit) and without
WITH_SOLVER = [("basic_arithmetic", {}), ("basic_arithmetic", {"operators": ["+", "-", "*"]}),
               ("chain_sum", {"allow_negation": True}), ("simple_equations", {}), ("products", {})]
WITHOUT_SOLVER = [("leg_counting", {}), ("gcd", {}), ("lcm", {})]


@pytest.mark.parametrize("dataset,args", WITH_SOLVER + WITHOUT_SOLVER,
                         ids=[f"{d}{'+' if a else ''}" for d, a in WITH_SOLVER + WITHOUT_SOLVER])
def test_datasets_pass_the_kit(dataset, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # basic_arithmetic's floor-division labels, left out
        task = get_task(f"rg:{dataset}", **args)
        report = check_task(task, n=15)
    assert task.name == f"rg:{dataset}" and report.ok
    if (dataset, args) in WITH_SOLVER:
        assert task.writes_traces and "traces" in report.passed
    else:
        assert not task.writes_traces and "traces" in report.skipped


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "chain_sum", "leg_counting", "gcd"])
def test_end_to_end_problems_prompt_and_the_datasets_own_scorer(dataset):
    import reasoning_gym

    task = get_task(f"rg:{dataset}")
    problem = task.problems("test", 3, seed=1)[0]
    prompt = task.prompt(problem)
    assert prompt.endswith("\n") and problem.question in prompt and problem.held_out
    assert "metadata" not in repr(problem.inputs)  # the entry (with its solution) is not shown
    entry = task.entry(problem)
    assert entry["question"].strip() == problem.question
    scorer = reasoning_gym.create_dataset(dataset, seed=0, size=1)
    assert scorer.score_answer(problem.label, entry) == 1.0
    assert task.check(problem, problem.label)
    assert task.check_solution(problem, f"A: {problem.label}\n")
    wrong = str(int(problem.label) + 1)
    assert not task.check(problem, wrong) and scorer.score_answer(wrong, entry) < 1.0
    # read per the prompt style: chat also reads \boxed{}
    chat = get_task(f"rg:{dataset}", options=TaskOptions(prompt_style="chat"))
    assert chat.check_solution(problem, f"So we get \\boxed{{{problem.label}}}.")
    assert not task.check_solution(problem, f"So we get \\boxed{{{problem.label}}}.")


def test_gcd_partial_credit_is_wrong():
    """reasoning-gym's default scorer gives partial credit to an answer that contains the
    label ("10" for "1": 0.5): only 1.0 counts as correct."""
    task = get_task("rg:gcd")
    problem = task.problems("train", 1, seed=0)[0]
    wrong = problem.label + "0"
    scorer = task._dataset(problem.source["seed"], problem.source["size"])
    assert 0 < scorer.score_answer(wrong, task.entry(problem)) < 1
    assert not task.check(problem, wrong)


def test_a_problem_checks_in_a_fresh_task_object():
    """The checker regenerates the entry from the problem's source (another process)."""
    problem = get_task("rg:simple_equations").problems("val", 2, seed=3)[1]
    fresh = get_task("rg:simple_equations")
    assert fresh.check(problem, problem.label) and not fresh.check(problem, problem.label + "1")
    with pytest.raises(ValueError, match="no label"):
        fresh.check(problem.without_label(), problem.label)


def test_traces_use_negative_operands_and_slips_count_them():
    task = get_task("rg:chain_sum", allow_negation=True)
    rng = random.Random(0)
    traces = [task.solution_trace(p, rng) for p in task.problems("train", 30, seed=0)]
    assert sum("-" in t.split("=")[0] for t in traces) > 5
    assert all(task.step_slips(t) == 0 for t in traces)
    flawed = [task.solution_trace(p, rng, flawed=True) for p in task.problems("train", 30, seed=0)]
    assert all(task.step_slips(t) == 1 for t in flawed)


def test_left_to_right_labels_are_refused_by_name():
    """reasoning-gym 0.1.25's basic_arithmetic without parentheses computes its labels left
    to right ("8 + 3 * 6" -> 66): the audit refuses the config, naming it."""
    with pytest.raises(TaskArgsError, match=r"allow_parentheses.*labels disagree") as info:
        get_task("rg:basic_arithmetic", allow_parentheses=False)
    assert info.value.key == "allow_parentheses"


def test_the_kit_catches_the_label_bug_when_the_audit_is_off():
    task = get_task("rg:basic_arithmetic", allow_parentheses=False, audit_labels=False)
    with pytest.raises(TaskCheckError, match="the correct trace checks as wrong"):
        check_task(task, n=15)


def test_floor_division_labels_are_left_out_and_reported():
    """In parenthesised mode a few divisions are not exact and reasoning-gym labels them by
    floor division: those problems are left out, with a warning, never used."""
    task = get_task("rg:basic_arithmetic")
    with pytest.warns(UserWarning, match="labels disagree with the exact answer"):
        problems = task.problems("train", 100, seed=0)
    assert len(problems) == 100 and task.label_disagreements
    bad = {d["question"] for d in task.label_disagreements}
    assert not bad & {p.question for p in problems}
    audit = task.audit()
    assert audit["audited"] == 200 and audit["disagree"] <= 10


@pytest.mark.parametrize("args,key",
                         [({"foo": 1}, "foo"), ({"seed": 3}, "seed"), ({"size": 9}, "size"),
                                      ({"min_terms": 5, "max_terms": 2}, "min_terms")])
def test_bad_task_args_are_refused_naming_the_key(args, key):
    with pytest.raises(TaskArgsError) as info:
        get_task("rg:chain_sum", **args)
    assert info.value.key == key and key in str(info.value)


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="reasoning-gym has no dataset 'nope'"):
        get_task("rg:nope")


def test_pretraining_says_a_dataset_has_no_solver():
    pytest.importorskip("torch")
    from policies.pretrain import PretrainConfig, validate

    with pytest.raises(ValueError, match="'rg:leg_counting' has no solver"):
        validate(PretrainConfig(task="rg:leg_counting", steps=1))
    task, styles = validate(PretrainConfig(task="rg:chain_sum", task_args={"max_terms": 3},
                                           steps=1))
    assert isinstance(task, RGTask) and styles == [0, 1]


def test_shots_need_a_solver():
    with pytest.raises(ValueError, match="no solver"):
        get_task("rg:gcd", options=TaskOptions(prompt_style="fewshot", shots=1))
    assert get_task("rg:chain_sum", options=TaskOptions(prompt_style="fewshot", shots=1))


def test_templates_of_one_expression_stay_in_one_split(monkeypatch):
    """basic_arithmetic's natural format words one expression in several templates ("What
    is 5 - 3?", "Compute 5 - 3."): the split is a hash of the expression, not the wording."""
    def expressions(task):
        return {split: {task.entry(p)["metadata"]["expression"]
                        for seed in (0, 1) for p in task.problems(split, 60, seed=seed)}
                for split in ("train", "val", "test")}

    args = dict(format_style="natural", operators=["+", "-"], max_terms=2, max_digits=1)
    by_split = expressions(get_task("rg:basic_arithmetic", **args))
    assert not (by_split["train"] & by_split["test"] or by_split["train"] & by_split["val"]
                or by_split["val"] & by_split["test"])
    monkeypatch.setattr(RGTask, "content_key", lambda self, entry: entry["question"])
    worded = expressions(get_task("rg:basic_arithmetic", **args))  # keyed by the wording
    assert worded["train"] & worded["test"]


def test_a_flawed_trace_never_divides_by_zero():
    """A slip of -1 in "3 - 2 = 1" would make "6 / 0": the flaw goes elsewhere instead."""
    from treesearch.tasks.rg_traces import solve_expression

    for seed in range(60):
        steps, answer = solve_expression("6 / (3 - 2)", random.Random(seed), flawed=True)
        assert answer != "6" and len(steps) == 2
    assert solve_expression("6 / (3 - 2)", random.Random(0)) == (["3-2=1", "6/1=6"], "6")


# ---- every dataset reasoning-gym lists: served (passes the kit) or refused by name ----

# served datasets whose problems take reasoning-gym minutes to make (puzzles solved by
# search): the kit runs on them too, with fewer problems
SLOW = {"futoshiki", "knight_swap", "puzzle24", "sudoku", "rearc",
        "game_of_life", "polynomial_equations"}
SERVED = sorted(set(dataset_names()) - set(REFUSED))


@pytest.mark.parametrize("dataset", sorted(REFUSED))
def test_a_dataset_that_fails_the_kit_is_refused_by_name_with_the_reason(dataset):
    with pytest.raises(ValueError) as info:
        get_task(f"rg:{dataset}")
    assert str(info.value) == f"task 'rg:{dataset}' is refused: {REFUSED[dataset]}"


def test_a_refused_dataset_is_refused_by_the_recipe_key():
    pytest.importorskip("torch")
    from treesearch.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="config key 'task' = 'rg:propositional_logic': task "
                                          "'rg:propositional_logic' is refused: reasoning-gym "
                                          "gives no answer"):
        load_config(None, ["task=rg:propositional_logic"])


def test_the_table_names_datasets_reasoning_gym_has():
    assert set(REFUSED) <= set(dataset_names()) and set(LABEL_FIELDS) <= set(SERVED)
    assert len(SERVED) + len(REFUSED) == len(dataset_names()) == 106


@pytest.mark.slow
@pytest.mark.parametrize("dataset", SERVED)
def test_every_served_dataset_passes_the_kit(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = get_task(f"rg:{dataset}")
        report = check_task(task, n=3 if dataset in SLOW else 8)
    assert report.ok, str(report)


def test_a_dataset_without_an_answer_takes_its_example_of_one_as_the_label():
    """graph_color gives no answer but a colouring that works: that is the label, and its
    scorer still judges any colouring (another valid one is right too)."""
    import json

    task = get_task("rg:graph_color")
    problem = task.problems("train", 1, seed=0)[0]
    colouring = json.loads(problem.label)
    assert task.check(problem, problem.label)
    clash = dict(colouring)
    edges = task.entry(problem)["metadata"]["puzzle"]["edges"]
    a, b = edges[0]
    clash[str(a)] = clash[str(b)]  # two neighbours in one colour
    assert not task.check(problem, json.dumps(clash))
    fresh = get_task("rg:graph_color")  # the label regenerates from the source
    assert fresh.check(problem, problem.label)


def test_entries_without_a_label_are_left_out():
    """A few of ab's programs rewrite to nothing (answer ''): an empty label cannot be told
    from no answer, so those problems are left out."""
    task = get_task("rg:ab")
    problems = [p for s in ("train", "val", "test") for p in task.problems(s, 100, seed=0)]
    assert all(p.label.strip() for p in problems)

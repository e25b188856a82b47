"""Tasks: determinism, disjoint splits, solver traces against the tasks' own checkers and
reasoning-gym's scorers, flawed traces, answer extraction, OOD presets, the GSM loader."""

import json
import random
import subprocess
import sys

import pytest

from treesearch.tasks import TASKS, Problem, get_task
from treesearch.tasks.base import Task
from treesearch.tasks.countdown import evaluate, solve
from treesearch.tasks.gsm import GSMTask, load_jsonl

GENERATED = ["countdown", "countdown3", "countdown5", "countdown_wide", "arithmetic",
             "arithmetic_long"]


@pytest.fixture(scope="module")
def countdown_train():
    return get_task("countdown").problems("train", 250, seed=0)


def rg_entry(problem):
    return {"metadata": {"numbers": list(problem.inputs["numbers"]),
                         "target": problem.inputs["target"]}}


@pytest.fixture(scope="module")
def rg_countdown():
    from reasoning_gym.games.countdown import CountdownConfig, CountdownDataset
    return CountdownDataset(CountdownConfig(seed=0, size=1))


# ---- contract -----------------------------------------------------------------------

def test_imports_no_torch_policies_or_critics():
    code = ("import sys, treesearch.tasks as t; t.get_task('countdown3').problems('train', 3); "
            "t.get_task('gsm').problems('test'); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'policies', 'critics')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_problem_fields_and_label_stripping():
    task = get_task("countdown3")
    train, test = task.problems("train", 2, seed=0), task.problems("test", 2, seed=0)
    assert all(p.split == "train" and not p.held_out for p in train)
    assert all(p.split == "test" and p.held_out for p in test)
    bare = test[0].without_label()
    assert bare.label is None and bare.held_out and bare.inputs == test[0].inputs
    assert task.prompt(bare) == task.prompt(test[0])
    with pytest.raises(ValueError, match="no label"):
        task.check(bare, "1+2+3")
    with pytest.raises(ValueError, match="split"):
        Problem(id="x", question="q", inputs={}, label="1", split="dev")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_prompt_and_trace_conventions(name):
    task = get_task(name)
    assert task.step_delimiter == "\n" and task.answer_prefix == "A:"
    problem = task.problems("train", 3, seed=0)[0]
    prompt = task.prompt(problem)
    assert prompt.endswith(task.step_delimiter) and task.answer_prefix not in prompt
    for style in range(task.n_styles):
        trace = task.solution_trace(problem, random.Random(style), style=style)
        lines = trace.split(task.step_delimiter)
        assert trace.endswith(task.step_delimiter) and lines[-1] == ""
        assert task.is_answer_step(lines[-2])
        assert not any(task.is_answer_step(s) for s in lines[:-2])
    with pytest.raises(ValueError, match="style"):
        task.solution_trace(problem, random.Random(0), style=task.n_styles)


# ---- determinism and splits ------------------------------------------------------------

@pytest.mark.parametrize("name", GENERATED + ["gsm"])
def test_problems_deterministic_for_a_seed(name):
    n = 3 if name == "gsm" else 20
    a = get_task(name).problems("train", n, seed=7)
    b = get_task(name).problems("train", n, seed=7)
    assert [p.id for p in a] == [p.id for p in b] and a == b
    c = get_task(name).problems("train", n, seed=8)
    assert [p.id for p in a] != [p.id for p in c]
    assert len({p.id for p in a}) == n


@pytest.mark.parametrize("name", GENERATED)
def test_train_and_test_disjoint(name):
    task = get_task(name)
    train = {p.id for s in (0, 1) for p in task.problems("train", 60, seed=s)}
    test = {p.id for s in (0, 1) for p in task.problems("test", 15, seed=s)}
    assert not train & test


def test_gsm_split_deterministic_and_disjoint():
    task = GSMTask()
    train, test = task.problems("train"), task.problems("test")
    assert len(train) + len(test) == 22 and len(test) == 4
    assert not {p.id for p in train} & {p.id for p in test}
    assert not {p.question for p in train} & {p.question for p in test}
    assert [p.id for p in GSMTask().problems("test", seed=3)] == [p.id for p in task.problems("test", seed=3)]
    with pytest.raises(ValueError, match="asked for 5 test"):
        task.problems("test", 5)


# ---- countdown ---------------------------------------------------------------------------

def test_countdown_traces_check_with_own_checker_and_reasoning_gym(countdown_train, rg_countdown):
    task = get_task("countdown")
    rng = random.Random(0)
    for i, problem in enumerate(countdown_train):
        trace = task.solution_trace(problem, rng, style=i % task.n_styles)
        answer = task.extract_answer(trace)
        assert task.check(problem, answer), (problem.id, trace)
        assert rg_countdown.score_answer(answer, rg_entry(problem)) == 1.0, (problem.id, answer)
        # each step combines two available numbers into the stated result
        state = list(problem.inputs["numbers"])
        for step in trace.split("\n")[:-2]:
            lhs, rhs = step.split(" (")[0].replace(" ", "").split("=")
            value, (a, b) = evaluate(lhs)
            assert value == int(rhs)
            state.remove(a)
            state.remove(b)
            state.append(int(rhs))
        assert state == [problem.inputs["target"]]


def test_countdown_flawed_traces_fail_and_checkers_agree(countdown_train, rg_countdown):
    task = get_task("countdown")
    rng = random.Random(1)
    for i, problem in enumerate(countdown_train):
        trace = task.solution_trace(problem, rng, flawed=True, style=i % task.n_styles)
        answer = task.extract_answer(trace)
        assert answer is not None
        assert not task.check(problem, answer), (problem.id, trace)
        assert rg_countdown.score_answer(answer, rg_entry(problem)) < 1.0, (problem.id, answer)


def test_countdown_checker_agrees_with_reasoning_gym_on_edge_answers(countdown_train, rg_countdown):
    task = get_task("countdown")
    problem = countdown_train[0]
    steps, expr = solve(problem.inputs["numbers"], problem.inputs["target"])
    numbers = problem.inputs["numbers"]
    candidates = [expr, expr.replace("(", "( ").replace(")", " )"), f"({expr})",
                  f"{expr}={problem.inputs['target']}", f"({expr})*1", "+".join(map(str, numbers)),
                  "*".join(map(str, numbers)), "", "abc", f"{expr})", "/".join(["0"] * 2)]
    for answer in candidates:
        ours = task.check(problem, answer)
        theirs = rg_countdown.score_answer(answer, rg_entry(problem)) == 1.0
        assert ours == theirs, answer


def test_countdown_check_rules():
    task = get_task("countdown")
    p = Problem(id="t", question="", inputs={"numbers": (25, 4, 7, 3), "target": 104},
                label="25*4+7-3", split="train")
    assert task.check(p, "(25*4)+7-3")
    assert task.check(p, " 7 - 3 + 25 * 4 ")
    assert not task.check(p, "(25*4)+7")          # a number unused
    assert not task.check(p, "(25*4)+7-3+0")      # a number not given
    assert not task.check(p, "(25*4)+7+7-3-7")    # a number used twice
    assert not task.check(p, "25*4+7-3=104")      # '=' not allowed
    assert not task.check(p, "25**4")
    assert not task.check(p, "__import__('os')")
    assert not task.check(p, "(25*4)+7-3" + ")" * 1)
    assert not task.check(p, "7/(3-3)*25*4")


def test_solver_finds_known_solutions_and_reports_none():
    steps, expr = solve([25, 4, 7, 3], 104)
    assert evaluate(expr)[0] == 104 and len(steps) == 3
    assert solve([1, 1], 5) is None
    assert solve([6, 4], 2) == ([(6, "-", 4, 2)], "6-4")


@pytest.mark.parametrize("name,count,lo,hi", [("countdown", 4, 100, 999), ("countdown3", 3, 100, 999),
                                              ("countdown5", 5, 100, 999),
                                              ("countdown_wide", 4, 10, 9999)])
def test_countdown_presets(name, count, lo, hi):
    task = get_task(name)
    problems = task.problems("train", 40, seed=0) + task.problems("test", 10, seed=0)
    for p in problems:
        assert len(p.inputs["numbers"]) == count
        assert all(1 <= x <= 25 for x in p.inputs["numbers"])
        assert lo <= p.inputs["target"] <= hi
    trace = task.solution_trace(problems[-1], random.Random(0))
    assert task.check(problems[-1], task.extract_answer(trace))
    if name == "countdown_wide":
        assert max(p.inputs["target"] for p in problems) > 999
    assert get_task("countdown", n_numbers=6).n_numbers == 6


# ---- arithmetic --------------------------------------------------------------------------

@pytest.mark.parametrize("name,terms", [("arithmetic", 4), ("arithmetic_long", 6)])
def test_arithmetic_traces_and_reasoning_gym_scorer(name, terms):
    from reasoning_gym.arithmetic.chain_sum import ChainSumConfig, ChainSumDataset

    rg = ChainSumDataset(ChainSumConfig(seed=0, size=1))
    task = get_task(name)
    rng = random.Random(0)
    for i, problem in enumerate(task.problems("train", 60, seed=0)):
        assert len(problem.inputs["terms"]) == terms
        entry = {"answer": problem.label}
        good = task.extract_answer(task.solution_trace(problem, rng, style=i % 3))
        bad = task.extract_answer(task.solution_trace(problem, rng, flawed=True, style=i % 3))
        assert task.check(problem, good) and rg.score_answer(good, entry) == 1.0
        assert not task.check(problem, bad) and rg.score_answer(bad, entry) < 1.0
        assert task.check(problem, good + ".0")


# ---- answer extraction -------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("25*4=100\n100+7=107\nA:(25*4)+7\n", "(25*4)+7"),
    ("A: 42", "42"),
    ("  A:42  \n", "42"),
    ("step\nA:1\nA:2\n", "1"),          # the first answer line ends the episode
    ("step\nA:\n", None),
    ("step\nA:   \n", None),
    ("no answer here\n", None),
    ("", None),
    ("xA:5\n", None),                    # the prefix must start the line
    ("3+4=7\r\nA:7\r\n", "7"),
    ("Numbers: 1 2\nTarget: 3\n2+1=3\nA:2+1", "2+1"),
])
def test_extract_answer(text, expected):
    assert get_task("countdown3").extract_answer(text) == expected


def test_extract_answer_non_string():
    assert get_task("gsm").extract_answer(None) is None


# ---- GSM ---------------------------------------------------------------------------------

def test_gsm_sample_parses_and_checks_with_math_verify():
    task = GSMTask()
    problems = task.problems("train") + task.problems("test")
    rng = random.Random(0)
    for p in problems:
        assert p.reference and p.label
        trace = task.solution_trace(p, rng)
        assert task.check_solution(p, trace), trace
        flawed = task.solution_trace(p, rng, flawed=True)
        assert not task.check_solution(p, flawed), flawed
    by_label = {p.label: p for p in problems}
    assert task.check(by_label["24"], "24.0") and task.check(by_label["24"], "$24")
    assert task.check(by_label["1250"], "1,250") and task.check(by_label["10.5"], "10.50")
    assert not task.check(by_label["24"], "25") and not task.check(by_label["24"], "")
    assert not task.check(by_label["24"], "twenty-four")


def test_gsm_math_verify_18_vs_18_0(tmp_path):
    path = tmp_path / "one.jsonl"
    record = {"question": "Q?", "answer": "9 + 9 = 18 <<9+9=18>>\n#### 18"}
    path.write_text(json.dumps(record) + "\n\n" + json.dumps({**record, "question": "R?"}) + "\n")
    task = GSMTask(path)
    p = task.problems("train")[0] if task.problems("train") else task.problems("test")[0]
    assert p.reference == ("9 + 9 = 18",)       # calculator annotation removed
    assert task.check(p, "18.0") and task.check(p, "18")
    assert not task.check(p, "18.5")


@pytest.mark.parametrize("bad_line,message", [
    ('{"question": "Q?", "answer": "1 + 1 = 2\\n#### 2"', "malformed JSON"),
    ('{"answer": "#### 2"}', "missing key 'question'"),
    ('{"question": "Q?"}', "missing key 'answer'"),
    ('{"question": "Q?", "answer": "1 + 1 = 2"}', "no '####"),
    ('{"question": "Q?", "answer": "1 + 1 = 2\\n####  "}', "nothing after"),
    ('[1, 2]', "expected a JSON object"),
    ('{"question": 5, "answer": "#### 2"}', "non-empty string"),
])
def test_gsm_bad_lines_name_file_and_line(tmp_path, bad_line, message):
    good = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        load_jsonl(path)
    assert f"{path}:3" in str(info.value)
    with pytest.raises(ValueError, match="bad.jsonl:3"):
        GSMTask(path).problems("train")


def test_gsm_duplicate_question_and_missing_file(tmp_path):
    line = json.dumps({"question": "What is 1 + 1?", "answer": "#### 2"})
    path = tmp_path / "dup.jsonl"
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"dup.jsonl:2: same question as line 1"):
        load_jsonl(path)
    with pytest.raises(ValueError, match="not found"):
        GSMTask(tmp_path / "nope.jsonl").problems("train")


# ---- registry ----------------------------------------------------------------------------

def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError) as info:
        get_task("chess")
    for name in TASKS:
        assert name in str(info.value)


def test_registry_builds_tasks_with_overrides():
    for name in TASKS:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and task.n_styles >= 1
    assert get_task("countdown", max_target=500).max_target == 500
    with pytest.raises(ValueError, match="n_numbers"):
        get_task("countdown", n_numbers=1)


def test_step_slips_count_false_arithmetic_without_labels():
    task = get_task("countdown")
    assert task.step_slips("16 + 7 = 23\n23 * 7 = 151\n151 + 10 = 171\nA:((16+7)*7)+10\n") == 2
    assert task.step_slips("16*8=128\n128/4=32\n25*4=100 (7 3 100)\nA:(16*8)/4\n") == 0
    assert task.step_slips("9/0=1\n7-9=-2\n") == 1
    assert get_task("arithmetic").step_slips("12+7=19\n19-5=15\n") == 1


def test_countdown_style_of_reads_the_format_of_every_style():
    import random

    from treesearch.tasks import get_task

    task = get_task("countdown3")
    problems = task.problems("train", 12, seed=3)
    for style in range(task.n_styles):
        for i, p in enumerate(problems):
            trace = task.solution_trace(p, random.Random(i), flawed=i % 3 == 0, style=style)
            assert task.style_of(trace) == style, trace
    assert task.style_of("A:3+4\n") is None
    assert task.style_of("three plus four\nA:3+4\n") is None


def test_countdown_strategies():
    from treesearch.tasks import get_task

    task = get_task("countdown3")
    assert task.uses_strategy("24/3=8\nA:24/3+5\n", "division")
    assert not task.uses_strategy("24*3=72\nA:(24*3)+5\n", "division")
    assert task.uses_strategy("25 - 3 = 22\nA:25-3\n", "subtraction")
    assert not task.uses_strategy("3+5=8\nA:-3+5\n", "subtraction")
    assert not task.uses_strategy("3*5=15 (15 -2)\nA:3*5\n", "subtraction")
    with pytest.raises(ValueError, match="unknown strategy"):
        task.uses_strategy("A:1", "telepathy")


def test_countdown2_preset_has_enough_held_out_problems():
    from treesearch.tasks import get_task

    task = get_task("countdown2")
    problems = task.problems("test", 24, seed=0)
    assert all(len(p.inputs["numbers"]) == 2 for p in problems)
    assert all(task.check(p, p.label) for p in problems)

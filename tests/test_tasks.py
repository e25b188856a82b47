"""Tasks: the conformance kit on every registered task, determinism, disjoint train / val /
test splits (test unchanged by val), solver traces against the tasks' own checkers and
reasoning-gym's scorers, flawed traces, answer extraction, OOD presets, the GSM loader."""

import itertools
import json
import random
import subprocess
import sys

import pytest

from treesearch.tasks import SPLITS, TASKS, Problem, get_task, registered_tasks
from treesearch.tasks.base import Task
from treesearch.tasks.countdown import evaluate, solve
from treesearch.tasks.gsm import GSMTask, load_jsonl
from treesearch.tasks.testing import check_task

# problems per split the kit asks of a task: gsm's bundled sample has 2 val problems
KIT_N = {"gsm": 2}


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
            "bad = [m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'policies', 'critics')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_problem_fields_and_label_stripping():
    task = get_task("countdown3")
    train, test = task.problems("train", 2, seed=0), task.problems("test", 2, seed=0)
    val = task.problems("val", 2, seed=0)
    assert all(p.split == "train" and not p.held_out for p in train)
    assert all(p.split == "val" and p.held_out for p in val)        # tuned on, never trained on
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


# ---- the conformance kit on every registered task ----------------------------------------

@pytest.mark.parametrize("name", registered_tasks())
def test_every_registered_task_passes_the_kit(name):
    """Built-ins and installed ``treesearch.tasks`` entry points: splits disjoint and
    deterministic, prompts, labels out of prompts, checker, traces, answer keys."""
    report = check_task(get_task(name), n=KIT_N.get(name, 10))
    assert report.ok and "traces" in report.passed


# ---- determinism and splits ------------------------------------------------------------

@pytest.mark.parametrize("name", registered_tasks())
def test_problems_deterministic_for_a_seed(name):
    n = 3 if name == "gsm" else 20
    a = get_task(name).problems("train", n, seed=7)
    b = get_task(name).problems("train", n, seed=7)
    assert [p.id for p in a] == [p.id for p in b] and a == b
    c = get_task(name).problems("train", n, seed=8)
    assert [p.id for p in a] != [p.id for p in c]
    assert len({p.id for p in a}) == n


@pytest.mark.parametrize("name", registered_tasks())
def test_problems_once_draws_a_set_once_per_task_object(name, monkeypatch):
    task = get_task(name)
    n = 3 if name == "gsm" else 5
    calls = []
    draw = task.problems
    monkeypatch.setattr(task, "problems", lambda *a, **k: calls.append(a) or draw(*a, **k))
    first = task.problems_once("train", n, seed=7)
    assert task.problems_once("train", n, seed=7) is first and len(calls) == 1
    assert first == get_task(name).problems("train", n, seed=7)
    task.problems_once("train", n, seed=8)
    assert len(calls) == 2   # another seed: another set
    monkeypatch.undo()
    import pickle

    copy = pickle.loads(pickle.dumps(task))  # to a worker: without the drawn sets
    assert "_problems_memo" not in vars(copy)
    assert copy.problems_once("train", n, seed=7) == first


# Every task in the registry, three splits. Generated tasks give N_SPLIT problems per split
# (n_split); gsm's bundled sample is too small for that (16 / 2 / 4), so it is tested with
# all the problems it has (n=None).
N_SPLIT = 30
_PROBLEMS: dict = {}


def n_split(name, n=N_SPLIT):
    return None if name == "gsm" else n


def problems_of(name, split, n=N_SPLIT, seed=0, **kwargs):
    """``get_task(name, **kwargs).problems(split, ...)`` from a fresh task, cached per module."""
    key = (name, split, n, seed, tuple(sorted(kwargs.items())))
    if key not in _PROBLEMS:
        _PROBLEMS[key] = get_task(name, **kwargs).problems(split, n_split(name, n), seed=seed)
    return _PROBLEMS[key]


def content(problem):
    """What a problem asks, independent of its id: countdown's numbers as a multiset (the
    order they are shown in is not part of the problem), every other input as given."""
    return tuple(sorted((k, tuple(sorted(v)) if k == "numbers" else v)
                        for k, v in problem.inputs.items()))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_three_splits_pairwise_disjoint_by_id_and_content(name):
    by_split = {split: problems_of(name, split) + problems_of(name, split, n=10, seed=1)
                for split in SPLITS}
    assert set(SPLITS) == {"train", "val", "test"}
    for split, problems in by_split.items():
        assert problems and all(p.split == split for p in problems)
        assert all(p.held_out == (split != "train") for p in problems)
    if name != "gsm":
        assert all(len(problems_of(name, split)) == N_SPLIT for split in SPLITS)
    for a, b in itertools.combinations(SPLITS, 2):
        assert not {p.id for p in by_split[a]} & {p.id for p in by_split[b]}, (a, b)
        assert not {content(p) for p in by_split[a]} & {content(p) for p in by_split[b]}, (a, b)
        assert not {p.question for p in by_split[a]} & {p.question for p in by_split[b]}, (a, b)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_split_deterministic_for_a_seed(name):
    for split in SPLITS:
        again = get_task(name).problems(split, n_split(name, 10), seed=1)
        first = problems_of(name, split, n=10, seed=1)
        assert [p.id for p in again] == [p.id for p in first] and again == first, split


@pytest.mark.parametrize("name", sorted(TASKS))
def test_test_split_does_not_depend_on_val_fraction(name):
    test = problems_of(name, "test")
    assert [p.id for p in problems_of(name, "test", val_fraction=0.0)] == [p.id for p in test]
    if name in ("gsm", "arithmetic"):   # cheap enough for a second, larger val share
        assert [p.id for p in problems_of(name, "test", val_fraction=0.3)] == [p.id for p in test]


def test_countdown3_test_split_is_the_old_rule():
    """The first test problems of countdown3 (seed 0) are those of the rule from before val
    existed: keep a problem iff a hash of its content u < test_fraction."""
    from treesearch.tasks.base import stable_hash

    task = get_task("countdown3")
    dataset = task._dataset(stable_hash("countdown3", "rg-seed", 0) % 2**31, 1000)
    old, seen = [], set()
    for idx in range(1000):
        if len(old) == 5:
            break
        try:
            entry = dataset[idx]
        except ValueError:
            continue
        numbers, target = entry["metadata"]["numbers"], entry["metadata"]["target"]
        key = f"{','.join(map(str, sorted(int(v) for v in numbers)))}={int(target)}"
        if key in seen or not stable_hash("split", key) / 2.0**64 < task.test_fraction:
            continue
        seen.add(key)
        old.append(f"countdown3:{key}")
    assert len(old) == 5
    assert [p.id for p in problems_of("countdown3", "test")[:5]] == old
    assert [p.id for p in task.problems("test", 5, seed=0)] == old


@pytest.mark.parametrize("name", sorted(TASKS))
def test_val_fraction_zero_means_no_val_split(name):
    task = get_task(name, val_fraction=0)
    with pytest.raises(ValueError, match=f"task '{name}' has no val split \\(val_fraction=0\\)"):
        task.problems("val", n_split(name, 1), seed=0)
    with pytest.raises(ValueError, match="split must be one of"):
        task.problems("dev", n_split(name, 1), seed=0)
    with pytest.raises(ValueError, match="split must be one of"):
        get_task(name).problems("validation", n_split(name, 1), seed=0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(val_fraction=-0.1), "val_fraction must be >= 0"),
    (dict(val_fraction=0.8), "test_fraction \\+ val_fraction must be < 1"),
    (dict(test_fraction=0.5, val_fraction=0.5), "test_fraction \\+ val_fraction must be < 1"),
    (dict(test_fraction=0.0), "test_fraction must be in"),
])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_bad_split_fractions_are_refused(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_task(name, **kwargs)


def test_rule_verifier_refuses_val_problems():
    """Val labels are not for search or training targets either."""
    pytest.importorskip("torch")
    from critics.base import CriticError
    from critics.verifier import RuleVerifier
    from policies.tokenization import build_char_tokenizer

    task = get_task("arithmetic")
    with pytest.raises(CriticError, match="held out"):
        RuleVerifier(task, build_char_tokenizer(), task.problems("val", 1, seed=0))


def test_gsm_split_deterministic_and_disjoint():
    task = GSMTask()
    train, val, test = task.problems("train"), task.problems("val"), task.problems("test")
    assert len(train) + len(val) + len(test) == 22 and len(test) == 4 and len(val) == 2
    for a, b in itertools.combinations((train, val, test), 2):
        assert not {p.id for p in a} & {p.id for p in b}
        assert not {p.question for p in a} & {p.question for p in b}
    # the test rows are the first test_fraction of the hash ranking, whatever val_fraction is
    assert {p.id for p in GSMTask(val_fraction=0).problems("test")} == {p.id for p in test}
    # and val is carved out of what would otherwise be train
    assert {p.id for p in GSMTask(val_fraction=0).problems("train")} == {p.id for p in train + val}
    assert ([p.id for p in GSMTask().problems("test", seed=3)]
            == [p.id for p in task.problems("test", seed=3)])
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


@pytest.mark.parametrize("name,count,lo,hi",
                         [("countdown", 4, 100, 999), ("countdown3", 3, 100, 999),
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

@pytest.mark.parametrize("name,terms",
                         [("arithmetic", 4), ("arithmetic_long", 6), ("arithmetic2", 2)])
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


def test_countdown_reads_a_long_digit_run_at_once():
    """A sampled line with " (" and a long run of digits (a degenerate policy writes those)
    is read like any other: the annotation regexes once took 2^(digits) steps to reject it
    (a study measurement hung for half an hour). The alarm turns a relapse into a failure."""
    import signal

    from treesearch.tasks import get_task
    from treesearch.tasks.countdown import _parse_step

    task = get_task("countdown3")
    runs = ["3*5=15 (" + "1" * 400 + "x", "3 - 5 = -2 (" + "12 " * 200 + "-",
            "25/5=5 (" + "7" * 400]
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("regex")))
    signal.alarm(5)
    try:
        for line in runs:
            for strategy in ("division", "subtraction"):
                task.uses_strategy(line + "\nA:1\n", strategy)
            assert task.style_of(line + "\n") in (0, 1, None)
            assert _parse_step(line) is None
        assert task.uses_strategy("25/5=5 (" + "7" * 400 + ")\n", "division")
        assert _parse_step("25/5=5 (7 3 100)") == (25, "/", 5, 5)
        assert task.style_of("25/5=5 (7 3 100)\nA:25/5\n") == 2
    finally:
        signal.alarm(0)


def test_countdown2_preset_has_enough_held_out_problems():
    from treesearch.tasks import get_task

    task = get_task("countdown2")
    problems = task.problems("test", 24, seed=0)
    assert all(len(p.inputs["numbers"]) == 2 for p in problems)
    assert all(task.check(p, p.label) for p in problems)

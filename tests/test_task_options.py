"""Task options: prompt styles (plain / fewshot / chat), the step delimiter, answer formats
and the rule that read each answer, and their config keys. No model is loaded here (the
SmolLM2 checks live in test_smollm2_prompts.py)."""

import random

import pytest

from policies.tokenization import StepEnds, build_char_tokenizer
from treesearch.config import ConfigError, build_task, load_config
from treesearch.tasks import TASKS, TaskOptions, get_task, prompt_ids
from treesearch.tasks.answers import read_answer
from treesearch.tasks.prompting import chat_messages, fewshot_text


@pytest.fixture(scope="module")
def char_tok():
    return build_char_tokenizer()


def old_extract_answer(text, delimiter="\n", prefix="A:"):
    """The extractor as it was before answer formats existed (the plain contract)."""
    if not isinstance(text, str):
        return None
    for line in text.split(delimiter):
        line = line.strip()
        if line.startswith(prefix):
            return line[len(prefix):].strip() or None
    return None


# ----------------------------------------------------------------------------- plain is unchanged

@pytest.mark.parametrize("name", ["countdown3", "countdown", "arithmetic"])
def test_plain_prompt_is_bos_plus_the_prompt_text(name, char_tok):
    task, configured = get_task(name), get_task(name, options=TaskOptions())
    for p in task.problems("train", 3, seed=1):
        want = ([char_tok.bos_token_id]
                + char_tok(task.prompt(p), add_special_tokens=False)["input_ids"])
        assert prompt_ids(char_tok, task, p) == want == prompt_ids(char_tok, configured, p)


SAMPLES = ["12+7=19\nA:19\n", "A:\n", "  A: 44 \nA:45", "no answer here", "x\nA:(3*4)+1\n",
           "The answer is 12.", "\\boxed{7}\n", "19\n\nA:19\n\n", "", "A:1\n\\boxed{2}"]


def test_plain_extract_answer_is_the_old_one():
    for name in ("countdown3", "arithmetic", "gsm"):
        task = get_task(name)
        for text in SAMPLES:
            assert task.extract_answer(text) == old_extract_answer(text), (name, text)
        assert task.extract_answer(None) is None
        assert task.is_answer_step("A:19\n") and task.is_answer_step(" A:") \
            and not task.is_answer_step("The answer is 19.") \
            and not task.is_answer_step("\\boxed{3}")


# ----------------------------------------------------------------------------- answer formats

@pytest.mark.parametrize("text, formats, fallback, want", [
    ("12 + 7 = 19\nA: 19\n", ("line", "boxed", "answer_is"), False, ("19", "line")),
    ("So we get \\boxed{19}.", ("line", "boxed", "answer_is"), False, ("19", "boxed")),
    ("\\boxed{\\frac{1}{2}} and more", ("boxed",), False, ("\\frac{1}{2}", "boxed")),
    ("\\boxed{1} then \\boxed{2", ("boxed",), False, ("1", "boxed")),   # unclosed: the earlier one
    ("Therefore, the answer is 42.", ("line", "boxed", "answer_is"), False, ("42", "answer_is")),
    ("The final answer is: **$1,250$**. Done", ("answer_is",), False, ("1,250", "answer_is")),
    ("The answer is \\boxed{8}.", ("answer_is",), False, ("8", "answer_is")),
    ("the answer is 3.5", ("answer_is",), False, ("3.5", "answer_is")),
    ("Therefore, 19 + 25 = 34.", ("line", "boxed", "answer_is"), False, (None, None)),
    ("Therefore, 19 + 25 = 34.", ("line", "boxed", "answer_is"), True, ("34", "last_number")),
    ("We owe -1,200 dollars", ("line",), True, ("-1200", "last_number")),
    ("A:\nThe answer is 5", ("line", "answer_is"), True, (None, None)),  # an empty A: line ends it
    ("The answer is 5\nA: 6", ("line", "answer_is"), False, ("6", "line")),  # order of formats
    ("no digits", ("line",), True, (None, None)),
])
def test_read_answer_rules(text, formats, fallback, want):
    assert read_answer(text, formats, "A:", fallback=fallback) == want


def test_chat_style_reads_boxed_and_answer_is_and_marks_them_terminal():
    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat"))
    assert task.answer_formats == ("line", "boxed", "answer_is")
    assert task.read_answer("6 + 2 = 8\nThe answer is 8.") == ("8", "answer_is")
    assert task.is_answer_step("The answer is 8.\n") and task.is_answer_step("so \\boxed{8}\n")
    assert not task.is_answer_step("6 + 2 = 8\n") and not task.is_answer_step("\\boxed{8\n")
    only_line = get_task("arithmetic",
                         options=TaskOptions(prompt_style="chat", answer_formats=["line"]))
    assert only_line.read_answer("The answer is 8.") == (None, None)
    fallback = get_task("arithmetic", options=TaskOptions(last_number_fallback=True))
    assert fallback.read_answer("6 + 2 = 8") == ("8", "last_number")
    assert not fallback.is_answer_step("6 + 2 = 8")  # the fallback never ends a step


def test_gsm_boxed_answers_go_through_math_verify():
    task = get_task("gsm", options=TaskOptions(prompt_style="chat"))
    p = task.problems("train", 1)[0]
    answer, rule = task.read_answer(f"Adding up, the total is \\boxed{{{p.label}.0}}.")
    assert rule == "boxed" and task.check(p, answer)
    assert not task.check(p, f"{int(float(p.label)) + 1}")


# ------------------------------------------------------------------------- fewshot and delimiter

def test_fewshot_prepends_worked_train_examples(char_tok):
    task = get_task("arithmetic", options=TaskOptions(prompt_style="fewshot", shots=2))
    target = task.problems("val", 1)[0]
    text = fewshot_text(task, target)
    assert text.endswith(task.prompt(target))
    shots = task.problems("train", 3, seed=0)[:2]
    for shot in shots:
        assert task.prompt(shot) in text and shot.split == "train"
    worked = text[:-len(task.prompt(target))]
    assert worked.count("A:") == 2
    for block in worked.split("Compute:")[1:]:  # every shown solution is right
        p = next(s for s in shots if task.prompt(s) == "Compute:" + block.split("\n")[0] + "\n")
        assert task.check_solution(p, block)
    ids = prompt_ids(char_tok, task, target)
    assert ids == [char_tok.bos_token_id] + char_tok(text, add_special_tokens=False)["input_ids"]
    # a train problem never sees itself as an example
    first = task.problems("train", 3, seed=0)[0]
    assert fewshot_text(task, first).count(task.prompt(first)) == 1


def test_blank_line_delimiter_round_trips():
    task = get_task("countdown3", options=TaskOptions(step_delimiter="\n\n"))
    p = task.problems("train", 1, seed=3)[0]
    trace = task.solution_trace(p, random.Random(0))
    assert task.prompt(p).endswith("\n\n") and "\n\n" in trace and trace.endswith("\n\n")
    assert task.check_solution(p, task.prompt(p) + trace)
    assert task.style_of(trace) == 0
    escaped = TaskOptions(step_delimiter="\\n\\n")  # as a command line writes it
    assert escaped.step_delimiter == "\n\n"


def test_chat_messages_state_the_conventions():
    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat", shots=1,
                                                      system_prompt="Be brief."))
    p = task.problems("val", 1)[0]
    messages = chat_messages(task, p)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be brief."
    assert "one step per line" in messages[-1]["content"]
    assert "'A: <number>'" in messages[-1]["content"]
    assert messages[-1]["content"].endswith(p.question)
    assert messages[2]["content"].splitlines()[-1].startswith("A:")
    blank = get_task("arithmetic", options=TaskOptions(prompt_style="chat", step_delimiter="\n\n"))
    assert "blank line" in chat_messages(blank, p)[-1]["content"]


def test_chat_needs_a_chat_template(char_tok):
    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat"))
    with pytest.raises(ValueError,
                       match="prompt_style 'chat' needs a tokenizer with a chat template"):
        prompt_ids(char_tok, task, task.problems("val", 1)[0])


# ----------------------------------------------------------------------------- config keys

@pytest.mark.parametrize("override, key", [
    ("task_options.prompt_style=banter", "task_options.prompt_style"),
    ("task_options.shots=-1", "task_options.shots"),
    ("task_options.shots=2", "task_options.shots"),                  # plain shows no examples
    ("task_options.prompt_style=fewshot", "task_options.shots"),     # fewshot needs one
    ("task_options.system_prompt=hello", "task_options.system_prompt"),
    ("task_options.step_delimiter=;", "task_options.step_delimiter"),
    ("task_options.answer_formats=[line,latex]", "task_options.answer_formats"),
    # the tiny prior has no template
    ("task_options.prompt_style=chat", "task_options.prompt_style"),
])
def test_bad_task_options_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_task_options_reach_the_task():
    cfg = load_config("smollm2", ["task_options.prompt_style=fewshot", "task_options.shots=3",
                                  "task_options.step_delimiter=\\n\\n"])
    task = build_task(cfg)
    assert task.name == cfg.task and task.options.shots == 3 and task.step_delimiter == "\n\n"
    assert build_task(load_config(None)).options == TaskOptions()
    assert set(TASKS) >= {"arithmetic", "countdown3", "gsm"}


# ----------------------------------------------------------------------------- step ends

def test_step_ends_follows_a_delimiter_across_tokens(char_tok):
    nl, a = char_tok.convert_tokens_to_ids("\n"), char_tok.convert_tokens_to_ids("a")
    one = StepEnds(char_tok, "\n")
    assert not one.split and one.advance("", nl) == (True, "") and one.advance("", a) == (False, "")
    two = StepEnds(char_tok, "\n\n")
    assert two.split and not two.whole
    assert two.advance("", nl) == (False, "\n") and two.advance("\n", nl) == (True, "")
    assert two.advance("\n", a) == (False, "")  # "\n" then "a": not a blank line
    with pytest.raises(ValueError, match="cannot be written"):
        StepEnds(build_char_tokenizer("0123+"), "\n\n")


def test_the_study_counts_answer_rules():
    from treesearch.study.measure import answer_rule_share

    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat"))
    texts = ["A:1", "The answer is 2.", "\\boxed{3}", "nothing", "2 + 2 = 4\nA: 4"]
    assert answer_rule_share(task, texts) == {"answer_is": 0.2, "boxed": 0.2, "line": 0.4,
                                              "none": 0.2}
    assert answer_rule_share(get_task("arithmetic"), texts) == {"line": 0.4, "none": 0.6}

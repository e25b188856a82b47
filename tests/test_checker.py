"""Label-free checkers: steps and answers judged from the problem's own text."""

import random

import pytest

from critics.base import CriticError
from critics.checker import Checker
from policies.tokenization import build_char_tokenizer
from treesearch.tasks import get_task, prompt_ids


def _state(tok, task, problem, lines):
    return (prompt_ids(tok, task, problem),
            [tok(line + "\n", add_special_tokens=False)["input_ids"] for line in lines])


@pytest.fixture(scope="module")
def setup():
    task, tok = get_task("countdown3"), build_char_tokenizer()
    return task, tok, task.problems("test", 40, seed=0)  # held-out problems are fine


def test_countdown_step_rules():
    task = get_task("countdown3")
    inputs = {"numbers": [3, 19, 25], "target": 478}
    ok = [([], "25*19=475"), (["25*19=475"], "475+3=478"), ([], "25 * 19 = 475"),
          ([], "25*19=475 (3 475)"), (["25*19=475", "475+3=478"], "A:(25*19)+3"),
          ([], "19-3=16")]
    bad = [([], "25*19=476"),                    # false arithmetic
           (["25*19=475"], "475+19=494"),        # 19 is used up
           ([], "25/3=8"),                       # inexact division
           ([], "A:(25*19)+2"),                  # the answer misses the target
           ([], "so 25 and 19"), ([], "")]       # not a step
    assert all(task.check_step(inputs, s, x) for s, x in ok)
    assert not any(task.check_step(inputs, s, x) for s, x in bad)


def test_checkers_need_no_labels_and_agree_with_the_rule(setup):
    """On held-out problems (labels dropped), the outcome checker agrees with the labelled
    check on every correct and flawed trace, and the process checker accepts every step of
    every correct trace and flags every flawed trace somewhere."""
    task, tok, problems = setup
    outcome = Checker(task, tok, problems, "outcome")
    process = Checker(task, tok, [p.without_label() for p in problems], "process")
    rng = random.Random(0)
    for p in problems:
        for flawed in (False, True):
            lines = [x for x in task.solution_trace(p, rng, flawed=flawed,
                                                    style=rng.randrange(3)).split("\n") if x]
            prefixes = [_state(tok, task, p, lines[:i + 1]) for i in range(len(lines))]
            steps_ok = process.score(prefixes)
            verdict = outcome.score([prefixes[-1]])[0]
            assert verdict == float(task.check_solution(p, "\n".join(lines)))
            assert (steps_ok.min() == 1.0) == (not flawed)
    assert outcome.calls == 2 * len(problems)


def test_bad_input_is_named(setup):
    task, tok, problems = setup
    with pytest.raises(CriticError, match="no label-free value checker"):
        Checker(task, tok, problems, "value")
    with pytest.raises(CriticError, match="'arithmetic' cannot verify answers"):
        Checker(get_task("arithmetic"), tok, [], "outcome")
    checker = Checker(task, tok, problems[:1], "process")
    with pytest.raises(CriticError, match="no problem it was given"):
        checker.score([_state(tok, task, problems[1], ["1+1=2"])])


def test_config_refuses_checkers_that_cannot_check():
    from treesearch.config import load_config
    from treesearch.utils.recipes import ConfigError

    cfg = load_config(None, ["critics.process=checker", "critics.outcome=checker"])
    assert (cfg.critics.process, cfg.critics.outcome) == ("checker", "checker")
    with pytest.raises(ConfigError, match="critics.value.*no label-free value checker"):
        load_config(None, ["critics.value=checker"])
    with pytest.raises(ConfigError, match="'arithmetic' cannot verify answers"):
        load_config(None, ["task=arithmetic", "critics.outcome=checker"])

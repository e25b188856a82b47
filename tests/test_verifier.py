"""The rule verifier: labels for training targets only."""

import pytest

from critics.base import CriticError
from critics.verifier import RuleVerifier
from policies.tokenization import build_char_tokenizer
from treesearch.tasks import get_task, prompt_ids


@pytest.fixture(scope="module")
def setup():
    task, tok = get_task("countdown"), build_char_tokenizer()
    problems = task.problems("train", 3, seed=0)
    return task, tok, problems, RuleVerifier(task, tok, problems)


def _state(tok, task, problem, text):
    steps = [tok(line + "\n", add_special_tokens=False)["input_ids"]
             for line in text.split("\n") if line]
    return prompt_ids(tok, task, problem), steps


def test_scores_right_and_wrong_answers(setup):
    task, tok, problems, verifier = setup
    p = problems[0]
    right = _state(tok, task, p, f"A:{p.label}\n")
    wrong = _state(tok, task, p, f"A:({p.label})+1\n")
    assert verifier.score([right, wrong]).tolist() == [1.0, 0.0]
    slipped = _state(tok, task, p, f"1+1=3\nA:{p.label}\n")
    assert verifier.correct(slipped) and not verifier.correct(slipped, clean_steps=True)


def test_refuses_held_out_and_unknown_problems(setup):
    task, tok, _, verifier = setup
    test_problem = task.problems("test", 1, seed=0)[0]
    with pytest.raises(CriticError, match="held out"):
        RuleVerifier(task, tok, [test_problem])
    with pytest.raises(CriticError, match="no label"):
        RuleVerifier(task, tok, [task.problems("train", 1, seed=5)[0].without_label()])
    with pytest.raises(CriticError, match="only scores problems it was given"):
        verifier.score([_state(tok, task, test_problem, "A:1+2\n")])

"""A search that cannot fit the model's context is refused before any model work: the
longest prompt over the problems an app will search, plus ``search.max_depth x
search.max_step_tokens``, against the model's positions (``treesearch.search.context``),
in self-play, decode and the study, naming the keys; before, such a run failed in the
middle of a search with a critic's traceback."""

import pytest

pytest.importorskip("torch")

from policies.zoo import resolve  # noqa: E402
from treesearch import decode  # noqa: E402
from treesearch.config import (  # noqa: E402
    ConfigError,
    build_task,
    check_context,
    load_config,
    searched_problems,
    train_problems,
)
from treesearch.search.context import ContextError, longest_prompt  # noqa: E402
from treesearch.search.context import check_context as fits_context  # noqa: E402
from treesearch.selfplay import run as selfplay  # noqa: E402
from treesearch.study import run as study  # noqa: E402
from treesearch.study.config import check_context as check_study_context  # noqa: E402
from treesearch.study.config import load_study_config  # noqa: E402
from treesearch.tasks import get_task  # noqa: E402
from treesearch.utils.checkpoints import load_tokenizer, max_positions  # noqa: E402

FEWSHOT = ["task=rg:chain_sum", "task_options.prompt_style=fewshot", "task_options.shots=3"]
SMALL = ["rounds=1", "train_problems=4", "eval.problems=4"]


class ReachedWork(BaseException):
    pass


def _tripwire(*args, **kwargs):
    raise ReachedWork


def one_error_line(capsys, rc) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_check_compares_the_longest_prompt_with_the_positions():
    path = str(resolve("tiny-countdown3"))
    tokenizer, positions = load_tokenizer(path), max_positions(path)
    assert positions == 256
    task = get_task("countdown3")
    problems = task.problems("train", 20, seed=0)
    longest, problem = longest_prompt(tokenizer, task, problems)
    assert problem in problems and 10 < longest < 64
    room = (positions - longest) // 24
    fits_context(tokenizer, positions, task, problems, room, 24, model="m")  # just fits
    with pytest.raises(ContextError) as info:
        fits_context(tokenizer, positions, task, problems, room + 1, 24, model="m",
                     model_key="--model", depth_key="d", step_key="s")
    message = str(info.value)
    for part in ("d x s", f"{room + 1} x 24", f"({longest} tokens", "the 256 of --model 'm'",
                 f"at most {room} steps"):
        assert part in message, message
    fits_context(tokenizer, None, task, problems, 10**6, 24, model="m")  # no stated limit
    # a critic text that shows the question again holds the longest prompt twice
    twice = (positions - 2 * longest) // 24
    fits_context(tokenizer, positions, task, problems, twice, 24, model="m", prompt_again=True)
    assert longest + (twice + 1) * 24 <= positions   # one more step fits the prompt once
    fits_context(tokenizer, positions, task, problems, twice + 1, 24, model="m")
    with pytest.raises(ContextError, match=f"plus {longest} tokens of the question"):
        fits_context(tokenizer, positions, task, problems, twice + 1, 24, model="m",
                     prompt_again=True, extra_what="the question")


def test_selfplay_checks_every_round_and_the_eval_problems():
    cfg = load_config(None, ["rounds=2", "train_problems=3", "eval.problems=5"])
    task = build_task(cfg)
    problems = searched_problems(cfg, task)
    assert len(problems) == 5 + 2 * 3
    for r in (1, 2):
        assert all(p in problems for p in train_problems(cfg, task, r))
    check_context(cfg, task)  # the default recipe fits
    cfg = load_config(None, [*SMALL, "search.max_depth=12"])
    with pytest.raises(ConfigError, match="search.max_depth x search.max_step_tokens = 12 x 24"):
        check_context(cfg, build_task(cfg))


def test_a_generative_critic_needs_room_for_its_template():
    """A search that fits the policy alone is refused once a generative critic on the same
    model must also hold its template around the state, naming critics.judge."""
    from critics.generative import template_tokens

    path = str(resolve("tiny-countdown3"))
    tokenizer = load_tokenizer(path)
    cfg = load_config(None, SMALL)
    task = build_task(cfg)
    longest = longest_prompt(tokenizer, task, searched_problems(cfg, task))[0]
    template = template_tokens(tokenizer, "value")
    assert template > 24
    depth = (256 - longest) // 24          # the most steps the policy alone holds
    fits = [*SMALL, f"search.max_depth={depth}", "search.max_step_tokens=24"]
    check_context(load_config(None, fits), task)
    check_context(load_config(None, [*fits, "critics.value=head"]), task)
    assert longest + depth * 24 + template > 256   # the slack left is below one step
    with pytest.raises(ConfigError, match="generative critics' template"):
        check_context(load_config(None, [*fits, "critics.value=generative"]), task)
    short = (256 - longest - template) // 24   # room for the template too: fits
    check_context(load_config(None, [*SMALL, f"search.max_depth={short}",
                                     "search.max_step_tokens=24",
                                     "critics.value=generative"]), task)


def test_selfplay_refuses_a_fewshot_prompt_too_long_for_the_tiny_prior(capsys, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(selfplay, "SelfPlay", _tripwire)
    rc = selfplay.main([*FEWSHOT, *SMALL, f"out={tmp_path / 'run'}"])
    line = one_error_line(capsys, rc)
    for part in ("search.max_depth", "search.max_step_tokens", "policy.model 'tiny-game24'",
                 "the 256 of", "the prompt alone does not fit"):
        assert part in line, line
    assert not (tmp_path / "run").exists()


def test_decode_refuses_before_loading_the_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "build_policy", _tripwire)
    rc = decode.main(["--problems", "3", "--strategies", "greedy", "--budgets", "256",
                      "search.max_depth=20", "--out", str(tmp_path / "d")])
    line = one_error_line(capsys, rc)
    assert "search.max_depth x search.max_step_tokens = 20 x 24" in line, line
    assert "the 256 of --model 'tiny-game24'" in line, line
    assert not (tmp_path / "d").exists()


def test_study_refuses_before_a_run_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "Study", _tripwire)
    rc = study.main(["--quick", "search.max_depth=12", f"out={tmp_path / 'study'}"])
    line = one_error_line(capsys, rc)
    assert "search.max_depth x search.max_step_tokens = 12 x 24" in line, line
    assert "priors.0.model 'tiny-countdown3'" in line, line
    assert not (tmp_path / "study").exists()


def test_a_pretrained_prior_is_checked_with_the_positions_it_is_pretrained_with():
    priors = "priors=[{name: a, pretrain: {steps: 1, max_positions: %d}}]"
    cfg = load_study_config("study_quick", ["search.max_depth=12", priors % 512])
    check_study_context(cfg)
    cfg = load_study_config("study_quick", ["search.max_depth=12", priors % 128])
    with pytest.raises(ConfigError, match=r"the 128 of priors.0.pretrain.max_positions 'a'"):
        check_study_context(cfg)
    # a variant without its own max_positions has its reference's (tiny-countdown3: 256)
    variant = ("priors=[{name: r, model: tiny-countdown3}, "
               "{name: v, reference: r, pretrain: {tokens: 1000%s}}]")
    check_study_context(load_study_config("study_quick", ["search.max_depth=8", variant % ""]))
    cfg = load_study_config("study_quick", ["search.max_depth=8",
                                            variant % ", max_positions: 128"])
    with pytest.raises(ConfigError, match=r"the 128 of priors.1.pretrain.max_positions 'v'"):
        check_study_context(cfg)

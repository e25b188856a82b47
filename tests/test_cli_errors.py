"""Every refusal of the command-line tools (self-play, decode, the study, pretraining) is one
line on stderr that names the flag or config key, never a traceback; the helper behind it
(``treesearch.utils.cli``)."""

import textwrap

import pytest

pytest.importorskip("torch")

from policies import pretrain  # noqa: E402
from treesearch import decode, selfplay  # noqa: E402
from treesearch.config import ConfigError, load_config  # noqa: E402
from treesearch.study import run as study  # noqa: E402
from treesearch.utils.cli import CLIError, blame, dotted_args  # noqa: E402


def one_line_error(capsys, rc, expected_rc=2) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == expected_rc and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv,flag", [
    (["--strategies", "mcts"], "--strategies mcts: decode: strategy 'mcts' needs a value"),
    (["--task", "nope"], "--task: unknown task 'nope'"),
    (["--task", "rg:chain_sum", "task_args.foo=1"],
     "task_args.foo: rg:chain_sum: unknown task_args"),
    (["--task", "countdown3", "task_args.n_numbers=1"], "task_args.n_numbers:"),
    (["--task", "rg:leg_counting"],
     "--task / --model: the tokenizer of model 'tiny-game24' cannot write"),
    (["--model", "/no/such/model"], "--model:"),
    (["--problems", "0"], "--problems: must be >= 1"),
    (["--split", "val", "--task", "gsm", "--problems", "3"],
     "--split val --problems: gsm: asked for 3"),
    (["--threads", "0"], "--threads: must be >= 1"),
    (["--budgets", "4"], "--budgets: decode: budget 4"),
    (["--value", "bogus"], "--value / --process / --outcome / --judge:"),
    (["--config", "nope"], "config file 'nope' does not exist"),
    (["search.simulations=["], "cannot read the YAML (command-line override 'simulations=[')"),
])
def test_decode_refusals(capsys, tmp_path, argv, flag):
    rc = decode.main([*argv, "--problems" if "--problems" not in argv else "--seed", "2",
                      "--out", str(tmp_path / "d")])
    assert one_line_error(capsys, rc).startswith(f"error: {flag}")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv,key", [
    (["task=nope"], "config key 'task' = 'nope': unknown task"),
    (["task=rg:basic_arithmetic", "task_args.allow_parentheses=false"],
     "config key 'task_args.allow_parentheses': rg:basic_arithmetic"),
    (["task=rg:leg_counting"],
     "config key 'task' = 'rg:leg_counting': the tokenizer of policy.model"),
    (["task=no_module_here:make"], "config key 'task' = 'no_module_here:make': task"),
    (["rounds=["], "cannot read the YAML (command-line override 'rounds=[')"),
])
def test_selfplay_refusals(capsys, tmp_path, argv, key):
    rc = selfplay.main([*argv, f"out={tmp_path / 'run'}"])
    assert one_line_error(capsys, rc).startswith(f"error: {key}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,key", [
    (["task=rg:chain_sum", "task_args.foo=1"], "config key 'task_args.foo'"),
    (["ood_tasks=[nope]"], "config key 'ood_tasks.0'"),
    (["task=rg:leg_counting", "priors=[{name: a, pretrain: {steps: 1}}]"],
     "config key 'priors.0.pretrain': prior 'a' is pretrained on task 'rg:leg_counting', which "
     "has no solver"),
])
def test_study_refusals(capsys, tmp_path, argv, key):
    rc = study.main(["--quick", *argv, f"out={tmp_path / 'study'}"])
    assert one_line_error(capsys, rc).startswith(f"error: {key}")


@pytest.mark.parametrize("argv,flag", [
    (["--task", "rg:leg_counting"], "--task: pretrain: task 'rg:leg_counting' has no solver"),
    (["--task", "rg:chain_sum", "task_args.seed=3"], "task_args.seed:"),
    (["--task", "rg:chain_sum", "oops"], "oops: unexpected argument"),
    (["--hidden", "30"], "--hidden: pretrain: hidden (30) must be a multiple of heads"),
    (["--task", "gsm", "--train-problems", "100", "--steps", "1"],
     "--train-problems / --eval-problems:"),
])
def test_pretrain_refusals(capsys, tmp_path, argv, flag):
    with pytest.raises(SystemExit) as info:
        pretrain.main([*argv, "--out", str(tmp_path / "p")])
    assert one_line_error(capsys, info.value.code).startswith(f"error: {flag}")
    assert not (tmp_path / "p").exists()


def test_clean_steps_is_refused_for_a_task_that_does_not_count_slips(tmp_path, monkeypatch):
    (tmp_path / "prose_task.py").write_text(textwrap.dedent('''
        from treesearch.tasks import ArithmeticChain

        class Prose(ArithmeticChain):
            counts_slips = False
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_config(None, ["task=prose_task:Prose"])
    for key in ("distill.clean_steps", "critics.train_clean_steps"):
        with pytest.raises(ConfigError, match=f"'{key}' = True: task 'arithmetic' does not count"):
            load_config(None, ["task=prose_task:Prose", f"{key}=true"])


def test_blame_names_the_flag_once_and_lets_bugs_through():
    with pytest.raises(CLIError, match="^--x: bad value$") as info:
        with blame("--x"):
            raise ValueError("bad\nvalue")
    assert str(info.value) == "--x: bad value"
    with pytest.raises(CLIError) as info:
        with blame("--x"):
            raise ValueError("--x must be positive")
    assert str(info.value) == "--x must be positive"
    with pytest.raises(ZeroDivisionError):
        with blame("--x"):
            1 / 0  # noqa: B018 (a bug, not a refusal)


def test_dotted_args_reads_yaml_values():
    args, rest = dotted_args(["task_args.a=3", 'task_args.ops=["+","*"]', "task_args.b=true",
                              "x=1"])
    assert args == {"a": 3, "ops": ["+", "*"], "b": True} and rest == ["x=1"]
    with pytest.raises(CLIError, match="task_args.ops: cannot read"):
        dotted_args(["task_args.ops=[+,*]"])
    with pytest.raises(CLIError, match="expected task_args.KEY=VALUE"):
        dotted_args(["task_args.oops"])

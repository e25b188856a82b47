"""HFPolicy on a tiny random Llama with the character tokenizer, loaded from a directory."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import save_tiny_llama, step_endings  # noqa: E402

from policies.hf import HFPolicy, PrefixKVCache, _StepCache  # noqa: E402
from policies.tokenization import build_char_tokenizer, step_delimiter_ids  # noqa: E402

MAX_POS = 96


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), hidden_size=64,
                           max_positions=MAX_POS)


@pytest.fixture(scope="module")
def tok(model_dir):
    return transformers.AutoTokenizer.from_pretrained(model_dir)


def encode(tok, text):
    return [tok.bos_token_id] + tok(text)["input_ids"]


def prompts(tok):
    return [encode(tok, "12+7=19\n"), encode(tok, "3*4"), encode(tok, "A:(25*4)+7=107\n8-")]


def reference_step(model, prefix, max_step_tokens, stop_ids):
    """Greedy step with full forward passes and no cache: (tokens, summed logprob)."""
    seq, step, total = list(prefix), [], 0.0
    with torch.inference_mode():
        while len(step) < max_step_tokens and len(seq) < MAX_POS:
            logits = model(torch.tensor([seq])).logits[0, -1].float()
            x = int(logits.argmax())
            total += float(torch.log_softmax(logits, -1)[x])
            step.append(x)
            seq.append(x)
            if x in stop_ids:
                break
    return step, total


def test_char_tokenizer_roundtrip(model_dir, tok):
    text = "A:(25*4)+7=107\n8/2 = 4\n"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert step_delimiter_ids(tok) == frozenset(tok("\n")["input_ids"])
    with pytest.raises(ValueError, match="not contained"):
        step_delimiter_ids(build_char_tokenizer("0123+"))


def test_proposals_well_formed(model_dir, tok):
    policy = HFPolicy(model_dir, seed=0)
    out = policy.propose(prompts(tok), n=5, max_step_tokens=12)
    assert len(out) == 3 and all(len(props) == 5 for props in out)
    for props in out:
        for p in props:
            assert p.tokens.dtype == np.int32 and p.tokens.ndim == 1
            assert p.n_tokens == len(p.tokens) >= 1
            assert math.isfinite(p.logprob) and p.logprob <= 0
    generated = sum(p.n_tokens for props in out for p in props)
    assert policy.counts.generated == generated
    assert "hf" in policy.describe() and "float32" in policy.describe()


def test_duplicate_prefixes_share_one_prefill(model_dir, tok):
    policy = HFPolicy(model_dir, temperature=0.0, cache_tokens=0)
    prefix = prompts(tok)[2]
    out = policy.propose([prefix, prefix], n=3, max_step_tokens=6)
    steps = [p.tokens.tolist() for props in out for p in props]
    assert len(steps) == 6 and all(s == steps[0] for s in steps)
    assert policy.counts.processed == len(prefix) + 6 * (len(steps[0]) - 1)


def test_steps_stop_at_delimiter_eos_or_limit(model_dir, tok):
    policy = HFPolicy(model_dir, seed=1)
    nl, eos = tok("\n")["input_ids"][0], tok.eos_token_id
    ends = step_endings(policy.propose(prompts(tok), n=16, max_step_tokens=10), nl, eos, 10)
    assert "nl" in ends and "limit" in ends  # the random model does both here


def assert_greedy_reference(policy, prefixes, out, max_tokens, stop):
    """Every proposal of a greedy ``propose`` equals the uncached reference step."""
    for prefix, props in zip(prefixes, out):
        want, logp = reference_step(policy.model, prefix, max_tokens, stop)
        for p in props:
            assert p.tokens.tolist() == want
            assert abs(p.logprob - logp) < 1e-4


def test_greedy_matches_uncached_reference(model_dir, tok):
    policy = HFPolicy(model_dir, temperature=0.0)
    stop = {tok("\n")["input_ids"][0], tok.eos_token_id}
    prefixes = prompts(tok)
    for round_ in range(3):  # later rounds hit the prefix cache, mixed with fresh prefixes
        out = policy.propose(prefixes, n=2, max_step_tokens=12)
        assert_greedy_reference(policy, prefixes, out, 12, stop)
        prefixes = [prefixes[0] + out[0][0].tokens.tolist(), prefixes[1],
                    encode(tok, "9" * (round_ + 1))]


def reference_logprob(model, prefix, step):
    """Summed log p of ``step`` after ``prefix`` from one full forward pass, no cache."""
    with torch.inference_mode():
        logits = model(torch.tensor([list(prefix) + list(step)])).logits[0].float()
    logp = torch.log_softmax(logits[len(prefix) - 1:-1], -1)
    return float(logp[torch.arange(len(step)), torch.tensor(step)].sum())


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.8, 0.9)])
def test_sampled_steps_score_what_the_uncached_model_scores(model_dir, tok, temperature, top_p):
    """Whatever the step buffers sampled, each step's logprob is the one a plain forward
    pass over prefix + step gives, over prompts of different lengths, rows finishing at
    different steps (the batch compacted at every finish), and later rounds that hit the
    prefix cache; the generated count is the tokens returned."""
    policy = HFPolicy(model_dir, temperature=temperature, top_p=top_p, seed=11)
    prefixes, lengths, generated = prompts(tok), set(), 0
    for _ in range(3):
        out = policy.propose(prefixes, n=8, max_step_tokens=10)
        for prefix, props in zip(prefixes, out):
            for p in props:
                step = p.tokens.tolist()
                assert abs(p.logprob - reference_logprob(policy.model, prefix, step)) < 1e-4
                lengths.add(len(step))
                generated += len(step)
        prefixes = [prefixes[0] + out[0][0].tokens.tolist(),
                    prefixes[1] + out[1][3].tokens.tolist(), prefixes[2]]
    assert len(lengths) > 2  # rows did finish at different steps
    assert policy.counts.generated == generated


def test_riding_finished_rows_matches_uncached_reference(model_dir, tok):
    """Deferred compaction (finished rows ride along in the batch) stays greedy-exact."""
    policy = HFPolicy(model_dir, temperature=0.0)
    policy._compact_below = 0.3
    stop = {tok("\n")["input_ids"][0], tok.eos_token_id}
    prefixes = prompts(tok) + [encode(tok, "7"), encode(tok, "100-99=1\n2+2=4\n")]
    out = policy.propose(prefixes, n=3, max_step_tokens=12)
    assert_greedy_reference(policy, prefixes, out, 12, stop)


def test_step_cache_selects_rows_and_grows_like_dynamic_cache():
    gen = torch.Generator().manual_seed(0)
    kv = [(torch.randn(3, 2, 5, 4, generator=gen), torch.randn(3, 2, 5, 4, generator=gen))
          for _ in range(2)]
    ref = transformers.DynamicCache([(k[[0, 0, 2, 2]], v[[0, 0, 2, 2]]) for k, v in kv])
    cache = _StepCache.expanded(transformers.DynamicCache(kv), torch.tensor([0, 2]), 2, 1)
    for step in range(4):  # room for one column only: later updates must grow the buffers
        if step == 2:
            for c in (ref, cache):
                c.batch_select_indices(torch.tensor([1, 3]))
        rows = ref.layers[0].keys.shape[0]
        for layer in range(2):
            new = (torch.randn(rows, 2, 1, 4, generator=gen),
                   torch.randn(rows, 2, 1, 4, generator=gen))
            want = ref.update(*new, layer)
            got = cache.update(*new, layer)
            for a, b in zip(want, got):
                assert torch.equal(a, b)
        assert cache.get_seq_length() == ref.get_seq_length()


def test_top_p_tiny_is_greedy(model_dir, tok):
    greedy = HFPolicy(model_dir, temperature=0.0).propose(prompts(tok), 2, 8)
    nucleus = HFPolicy(model_dir, temperature=1.0, top_p=1e-6, seed=3).propose(prompts(tok), 2, 8)
    for a, b in zip(greedy, nucleus):
        assert [p.tokens.tolist() for p in a] == [p.tokens.tolist() for p in b]


def chain(policy, prefix, depth, n, max_step_tokens):
    """Expand a chain: each call's prefix is the previous prefix + its first proposal.
    Returns per call (proposals, processed delta, generated delta)."""
    calls = []
    for _ in range(depth):
        before = (policy.counts.processed, policy.counts.generated)
        props = policy.propose([prefix], n, max_step_tokens)[0]
        calls.append((props, policy.counts.processed - before[0],
                      policy.counts.generated - before[1]))
        first = next((p for p in props if not p.finished), props[0])
        prefix = prefix + first.tokens.tolist()
    return calls


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_kv_reuse_on_a_four_deep_chain(model_dir, tok, temperature):
    prompt = encode(tok, "12+7=19\n3*4=12\n")
    cached = HFPolicy(model_dir, temperature=temperature, seed=5)
    plain = HFPolicy(model_dir, temperature=temperature, seed=5, cache_tokens=0)
    calls = chain(cached, prompt, 4, n=4, max_step_tokens=8)
    ref = chain(plain, prompt, 4, n=4, max_step_tokens=8)

    assert calls[0][1] == len(prompt) + sum(p.n_tokens - 1 for p in calls[0][0])
    for props, processed, generated in calls[1:]:
        # only the parent step's last token plus the fed-back samples go through the model
        assert processed == 1 + sum(p.n_tokens - 1 for p in props)
    processed = sum(c[1] for c in calls[1:])
    generated = sum(c[2] for c in calls[1:])
    assert processed / generated <= 1.5
    assert sum(c[1] for c in ref[1:]) > processed  # the uncached policy re-reads its prefixes

    for (a, _, _), (b, _, _) in zip(calls, ref):  # the cache changes no result
        assert [p.tokens.tolist() for p in a] == [p.tokens.tolist() for p in b]
        assert np.allclose([p.logprob for p in a], [p.logprob for p in b], atol=1e-4)


def test_small_cache_bound_evicts_and_stays_correct(model_dir, tok):
    small = HFPolicy(model_dir, temperature=0.0, cache_tokens=12)
    plain = HFPolicy(model_dir, temperature=0.0, cache_tokens=0)
    prompt = encode(tok, "12+7=19\n")
    a, b = chain(small, prompt, 3, 3, 6), chain(plain, prompt, 3, 3, 6)
    assert small.kv.tokens <= 12
    for (pa, _, _), (pb, _, _) in zip(a, b):
        assert [p.tokens.tolist() for p in pa] == [p.tokens.tolist() for p in pb]


def test_prefix_cache_trie():
    kv = PrefixKVCache(max_tokens=5)
    t = [torch.zeros(1, 3, 2)]
    root = kv.add((1, 2, 3), None, t, t)
    kv.add((1, 2, 3, 4), root, [torch.zeros(1, 1, 2)], [torch.zeros(1, 1, 2)])
    assert kv.longest([1, 2, 3, 4, 5]).key == (1, 2, 3, 4)
    assert kv.longest([1, 2, 9]) is None and kv.tokens == 4
    kv.add((7, 8), None, [torch.zeros(1, 2, 2)], [torch.zeros(1, 2, 2)])  # over 5: evicts LRU
    assert kv.tokens <= 5 and kv.longest([7, 8]) is not None


def test_seed_determinism(model_dir, tok):
    def run(seed):
        policy = HFPolicy(model_dir, seed=seed)
        out = policy.propose(prompts(tok), n=4, max_step_tokens=10)
        out += policy.propose([prompts(tok)[0] + out[0][0].tokens.tolist()], n=4,
                              max_step_tokens=10)
        return [[(p.tokens.tolist(), round(p.logprob, 5)) for p in props] for props in out]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_in_memory_model_and_tokenizer(model_dir, tok):
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    a = HFPolicy((model, tok), temperature=0.0).propose(prompts(tok), 1, 6)
    b = HFPolicy(model_dir, temperature=0.0).propose(prompts(tok), 1, 6)
    assert [p[0].tokens.tolist() for p in a] == [p[0].tokens.tolist() for p in b]


def test_missing_model_dir_names_the_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        HFPolicy(missing)


def test_too_long_prompt_names_model_and_limit(model_dir, tok):
    policy = HFPolicy(model_dir)
    with pytest.raises(ValueError, match=rf"tiny_llama.*{MAX_POS}"):
        policy.propose([[tok.bos_token_id] * (MAX_POS + 5)], n=1, max_step_tokens=4)


def test_context_full_ends_the_step(model_dir, tok):
    policy = HFPolicy(model_dir, temperature=0.0)
    prefix = encode(tok, "1" * (MAX_POS - 4))
    for p in policy.propose([prefix], n=2, max_step_tokens=10)[0]:
        assert p.n_tokens <= MAX_POS - len(prefix)
        assert p.finished or int(p.tokens[-1]) == tok("\n")["input_ids"][0]


def test_a_delimiter_spelt_by_two_tokens_ends_the_step(tmp_path):
    """"\\n\\n" with a character tokenizer is two tokens: steps run across a single newline
    and end right after the second of two in a row, never earlier."""
    tok = build_char_tokenizer("\nab")
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    policy = HFPolicy((model, tok), step_delimiter="\n\n", temperature=1.0, seed=0)
    (props,) = policy.propose([[tok.bos_token_id] + tok("ab\n")["input_ids"]], 48, 60)
    ended, single = 0, 0
    for p in props:
        text = tok.decode(p.tokens.tolist(), skip_special_tokens=True)  # as the search reads it
        assert "\n\n" not in tok.decode(p.tokens[:-1].tolist(), skip_special_tokens=True)
        if not p.finished and p.n_tokens < 60:
            assert text.endswith("\n\n")
            ended += 1
        single += "\n" in text.rstrip("\n")
    assert ended > 0 and single > 0  # blank lines ended steps; lone newlines did not

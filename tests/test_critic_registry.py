"""Critics by name: unknown names list the known ones; specs build real critics."""

import pytest
from tiny_models import save_tiny_llama

from critics.base import CriticError
from critics.head import HeadCritic
from policies.tokenization import build_char_tokenizer
from treesearch.backends import IMPLEMENTATIONS, build_critic, build_scorer, parse_spec


def test_unknown_critic_lists_the_known_ones():
    with pytest.raises(CriticError) as err:
        build_critic("value", "magic", "tiny-countdown")
    for name in IMPLEMENTATIONS:
        assert name in str(err.value)
    with pytest.raises(CriticError, match="step oracle is for benchmarks only"):
        build_critic("value", "oracle")
    with pytest.raises(CriticError, match="unknown critic slot"):
        build_scorer({"reward": "none"})
    with pytest.raises(CriticError, match="needs a model"):
        build_critic("outcome", "head")


def test_specs_build_critics_and_none(tmp_path):
    path = save_tiny_llama(tmp_path / "m", 32, max_positions=64)
    assert parse_spec("head:/x/y") == ("head", "/x/y") and parse_spec(None) == ("none", None)
    scorer = build_scorer({"value": f"head:{path}", "process": "none"},
                          policy_tokenizer=build_char_tokenizer())
    assert isinstance(scorer.critics["value"], HeadCritic)
    assert scorer.critics["value"].kind == "value"
    assert scorer.critics["process"] is None and scorer.critics["outcome"] is None
    with pytest.raises(CriticError, match="verifier needs"):
        build_critic("outcome", "verifier")

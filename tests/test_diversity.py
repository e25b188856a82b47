"""Diversity-preserving distillation (distinct paths, unlikeliness weights, failing
siblings, the keep-the-prior term, tree_pg), its config keys, and the per-round pass@k /
diversity measurements of self-play (eval.passk_samples)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# imported after the importorskip calls, so the module skips where torch/transformers are absent
from policies import zoo  # noqa: E402
from policies.distill import (  # noqa: E402
    DistillConfig,
    PGExample,
    completion_logprobs,
    policy_gradient,
)
from policies.diversity import format_share, strategy_share  # noqa: E402
from policies.hf import load_model  # noqa: E402
from treesearch.config import ConfigError, load_config  # noqa: E402
from treesearch.engine.forest import Forest  # noqa: E402
from treesearch.search.harvest import (  # noqa: E402
    best_correct,
    failing_siblings,
    passk_tree_weights,
    path_logprior,
    sft_examples,
    solution_key,
    unlikeliness_weights,
)
from treesearch.search.result import SearchResult, SearchStats  # noqa: E402
from treesearch.tasks import get_task, prompt_ids  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prior():
    return load_model(zoo.resolve("tiny-countdown3"))


@pytest.fixture()
def task():
    return get_task("countdown3")


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("override, key", [
    ("distill.method=ppo", "distill.method"),
    ("distill.unlikeliness=-1", "distill.unlikeliness"),
    ("distill.prior_samples=-2", "distill.prior_samples"),
    ("distill.prior_weight=0", "distill.prior_weight"),
    ("distill.positive_weight=-0.1", "distill.positive_weight"),
    ("distill.tree_baseline=uncle", "distill.tree_baseline"),
    ("distill.passk_weight=-1", "distill.passk_weight"),
    ("distill.anchor_kl=-0.5", "distill.anchor_kl"),
    ("distill.method=wreinforce distill.anchor_kl=1", "distill.anchor_kl"),
    ("eval.passk_samples=-1", "eval.passk_samples"),
    ("eval.passk_problems=-1", "eval.passk_problems"),
    ("eval.entropy_samples=-1", "eval.entropy_samples"),
])
def test_bad_diversity_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, override.split())


def test_only_the_anchor_is_on_by_default_and_tree_pg_refuses_path_options():
    cfg = load_config(None, [])
    d = cfg.distill
    assert d.method == "sft" and not d.distinct and d.unlikeliness == 0 and d.prior_samples == 0
    assert d.passk_weight == 0 and d.anchor_kl == 1.0 and d.epochs == 3
    assert cfg.eval.passk_samples == 0
    # the anchor belongs to SFT: another method asks for it to be switched off by name
    with pytest.raises(ConfigError, match=r"distill\.anchor_kl=0"):
        load_config(None, ["distill.method=wreinforce"])
    load_config(None, ["distill.method=wreinforce", "distill.anchor_kl=0", "distill.distinct=true",
                       "distill.unlikeliness=1", "distill.prior_samples=2"])
    no_anchor = ["distill.method=tree_pg", "distill.anchor_kl=0"]
    with pytest.raises(ConfigError, match="distill.method"):
        load_config(None, no_anchor + ["distill.distinct=true"])
    with pytest.raises(ConfigError, match="distill.method"):
        load_config(None, no_anchor + ["distill.passk_weight=4"])


# ----------------------------------------------------------------------------- harvest

class _AllCorrect:
    def correct(self, state, clean_steps=False):
        return True


def _answers_forest(tok, texts, scores, priors):
    """One tree: root with one terminal child per answer text."""
    f = Forest(1, 8)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    spans = f.tokens.add_many(ids)
    m = len(texts)
    f.expand([0], [0], [0, m], priors, [0.0] * m, scores, [1] * m, spans)
    f.visits[0, :m + 1] = [m] + [1] * m
    f.value_sum[0, 1:m + 1] = scores
    zeros = np.zeros(1, np.int64)
    return SearchResult(f, [[tok.bos_token_id or 0]], [""], zeros,
                        SearchStats(zeros, zeros, zeros, zeros, zeros, zeros))


def test_solution_key_and_distinct_paths(prior, task):
    _, tok = prior
    assert solution_key(task, "25*4=100\nA:(25*4)+7") == solution_key(task, "A: ( 25*4 ) + 7")
    assert solution_key(task, "A:(25*4)+7") != solution_key(task, "A:7+(25*4)")
    assert solution_key(task, "2+3=5\nA:5") == "2+3=5A:5"          # a bare number: the text
    texts = ["A:(25*4)+7\n", "A:( 25*4 )+7\n", "A:7+(25*4)\n"]
    result = _answers_forest(tok, texts, [0.9, 0.8, 0.7], [0.5, 0.3, 0.2])
    assert best_correct(result, 0, _AllCorrect(), k=4) == [1, 2, 3]

    def key(steps):
        return solution_key(task, tok.decode([t for s in steps for t in s]))

    assert best_correct(result, 0, _AllCorrect(), k=4, key=key) == [1, 3]
    assert best_correct(result, 0, _AllCorrect(), k=1, key=key) == [1]


def test_unlikeliness_weights_rare_paths_up(prior, task):
    _, tok = prior
    np.testing.assert_allclose(unlikeliness_weights([-1.0, -3.0, -2.0], 1.0), [1.0, 2.0, 1.5])
    np.testing.assert_array_equal(unlikeliness_weights([-1.0, -3.0], 0.0), [1.0, 1.0])
    np.testing.assert_array_equal(unlikeliness_weights([-1.0], 5.0), [1.0])
    result = _answers_forest(tok, ["A:(25*4)+7\n", "A:7+(25*4)\n"], [0.9, 0.8], [0.8, 0.2])
    assert path_logprior(result.forest, 0, 2) == pytest.approx(np.log(0.2))
    plain = sft_examples(result, tok, _AllCorrect(), k=4)
    assert [e.weight for e in plain] == [1.0, 1.0]
    rare = sft_examples(result, tok, _AllCorrect(), k=4, unlikeliness=2.0)
    assert [e.weight for e in rare] == [1.0, 3.0]               # the unlikely path: 1 + 2
    assert [e.completion_ids for e in rare] == [e.completion_ids for e in plain]


def test_passk_weights_favour_the_problems_the_search_rarely_solves(prior):
    """Root Q 0.75 (3 of 4 answers right) against root Q 0.25: at K = 3 the weights are
    0.25^2 and 0.75^2; an unvisited root counts as unsolved; K <= 1 is uniform; a path of
    weight 0 (a problem solved every time) is left out."""
    _, tok = prior
    texts = ["A:(25*4)+7\n", "A:7+(25*4)\n", "A:1\n", "A:2\n"]
    easy = _answers_forest(tok, texts, [1.0, 1.0, 1.0, 0.0], [0.25] * 4)
    hard = _answers_forest(tok, texts, [1.0, 0.0, 0.0, 0.0], [0.25] * 4)
    for result in (easy, hard):  # the root's value: the sum of its children's
        result.forest.value_sum[0, 0] = result.forest.value_sum[0, 1:5].sum()
    assert passk_tree_weights(easy.forest, 3) == pytest.approx([0.25 ** 2])
    assert passk_tree_weights(hard.forest, 3) == pytest.approx([0.75 ** 2])
    np.testing.assert_array_equal(passk_tree_weights(easy.forest, 1), [1.0])
    weighted = sft_examples(hard, tok, _AllCorrect(), k=2, tree_weights=[0.5])
    assert [e.weight for e in weighted] == [0.5, 0.5]
    assert sft_examples(hard, tok, _AllCorrect(), k=2, tree_weights=[0.0]) == []
    fresh = _answers_forest(tok, texts[:1], [1.0], [1.0])
    fresh.forest.visits[0, 0] = 0
    assert passk_tree_weights(fresh.forest, 4) == pytest.approx([1.0])


def test_failing_siblings_are_the_rejected_steps(prior):
    _, tok = prior
    result = _answers_forest(tok, ["A:(25*4)+7\n", "A:7+(25*4)\n", "A:1\n"], [1.0, 0.0, 0.0],
                             [0.4, 0.3, 0.3])
    neg = failing_siblings(result, margin=0.5)
    assert sorted(tok.decode(e.completion_ids) for e in neg) == ["A:1\n", "A:7+(25*4)\n"]
    assert all(e.advantage == -1.0 for e in neg)
    assert failing_siblings(result, margin=2.0) == []


# ----------------------------------------------------------------------------- policy_gradient

def test_policy_gradient_pushes_positives_up_and_negatives_down(prior, task):
    model, tok = load_model(zoo.resolve("tiny-countdown3"))
    start, _ = prior
    p = prompt_ids(tok, task, task.problems("train", 1, seed=0)[0])
    def ids(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    examples = [PGExample(p, ids("25*4=100\n"), 0.1), PGExample(p, ids("9*9=80\n"), -1.0),
                PGExample(p, ids("1+1=2\n"), 0.0)]
    model, stats = policy_gradient(model, tok, examples,
                                   DistillConfig(lr=1e-3, epochs=2, batch_size=4, seed=0))
    assert stats["examples"] == 2 and stats["positives"] == stats["negatives"] == 1
    assert stats["steps"] == 2 and not model.training
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples[:2]]
    delta = completion_logprobs(model, seqs) - completion_logprobs(start, seqs)
    assert delta[0] > 0 > delta[1], delta
    with pytest.raises(ValueError, match="advantage"):
        policy_gradient(model, tok, [PGExample(p, ids("1\n"), float("nan"))])


def test_the_clip_stops_a_negative_being_pushed_down_without_end(prior, task):
    """Unclipped, more steps on one negative keep driving its log-probability down (the
    wreinforce collapse); with pg_clip every token stops pulling once its probability has
    fallen by eps, so after the first steps' overshoot more steps change little."""
    start, tok = prior
    p = prompt_ids(tok, task, task.problems("train", 1, seed=0)[0])
    neg = [PGExample(p, tok("25*4=100\n", add_special_tokens=False)["input_ids"], -1.0)] * 8
    seqs = [(neg[0].prompt_ids, neg[0].completion_ids)]
    n = len(neg[0].completion_ids)
    drop = {}
    for eps in (0.0, 0.2):
        for epochs in (4, 16):
            model, _ = load_model(zoo.resolve("tiny-countdown3"))
            model, stats = policy_gradient(model, tok, neg, DistillConfig(
                lr=1e-4, epochs=epochs, batch_size=1, seed=0, pg_clip=eps))
            drop[eps, epochs] = float(completion_logprobs(model, seqs)
                                      - completion_logprobs(start, seqs)) / n
        if eps:
            assert stats["clipped_share_last"] > 0.9, stats
    # measured: unclipped -9.6 -> -25.0 nats per token, clipped -3.3 -> -3.7
    assert drop[0.0, 16] < drop[0.0, 4] - 5, drop
    assert abs(drop[0.2, 16] - drop[0.2, 4]) < 1.5, drop
    assert drop[0.2, 16] > drop[0.0, 16] / 3, drop


def test_shares(task):
    texts = ["25*4=100\nA:(25*4)+7", "25 * 4 = 100\nA:(25*4)-7", "A:7"]
    assert format_share(task, texts) == pytest.approx({"0": 1 / 3, "1": 1 / 3, "none": 1 / 3})
    share = strategy_share(task, texts[:2])
    assert share["subtraction"] == 0.5 and share["division"] == 0.0
    assert np.isnan(strategy_share(task, [])["division"])


# ----------------------------------------------------------------------------- self-play end to end

SMALL = ["rounds=1", "train_problems=8", "eval.problems=6", "eval.samples=2",
         "eval.mcts_problems=2", "eval.mcts_budget=96", "search.simulations=6",
         "critics.epochs=1", "critics.max_examples=64", "progress=false"]


def _run(tmp_path, overrides):
    from omegaconf import OmegaConf

    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    cfg = load_config(None, SMALL + overrides + [f"out={tmp_path}"])
    run = RunDir.create(tmp_path, OmegaConf.to_yaml(cfg))
    SelfPlay(cfg, run).run_all()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_selfplay_with_wreinforce_diversity_options_and_measurements(tmp_path):
    rows = _run(tmp_path / "run", ["distill.method=wreinforce", "distill.anchor_kl=0",
                                   "distill.distinct=true",
                                   "distill.unlikeliness=1.0", "distill.prior_samples=1",
                                   "eval.passk_samples=4", "eval.passk_problems=3",
                                   "eval.entropy_samples=2"])
    distill = next(r for r in rows if r["stage"] == "distill")
    assert distill["prior_examples"] == 8 and distill["pg_positives"] >= 8
    assert distill["pg_examples"] == distill["pg_positives"] + distill["pg_negatives"]
    evals = [r for r in rows if r["stage"] == "eval"]
    assert len(evals) == 2
    for r in evals:
        assert set(r["passk"]) == {"1", "2", "4"} and r["passk_problems"] == 3
        assert 0 <= r["passk"]["1"] <= r["passk"]["4"] <= 1
        assert r["entropy"] > 0 and r["distinct_correct"] >= 0
        assert sum(r["format_share"].values()) == pytest.approx(1.0)
        assert set(r["strategy_share"]) == {"division", "subtraction"}
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "What shrinks" in summary and "pass@4" in summary
    assert (tmp_path / "run" / "passk.png").is_file()


def test_selfplay_with_passk_weights_and_the_anchor(tmp_path):
    rows = _run(tmp_path / "run", ["distill.passk_weight=4", "distill.anchor_kl=0.5",
                                   "distill.epochs=2"])   # the first step: KL 0 (model = start)
    distill = next(r for r in rows if r["stage"] == "distill")
    assert distill["sft_examples"] > 0 and distill["sft_weight_mean"] == pytest.approx(1.0)
    assert distill["sft_anchor_kl_last"] > 0


def test_selfplay_with_tree_pg(tmp_path):
    rows = _run(tmp_path / "run", ["distill.method=tree_pg", "distill.anchor_kl=0",
                                   "distill.cumulative=false"])
    distill = next(r for r in rows if r["stage"] == "distill")
    assert distill["pg_examples"] > 0 and distill["pg_positives"] > 0
    assert distill["pg_negatives"] > 0
    assert distill["prior_examples"] == 0
    assert not (tmp_path / "run" / "passk.png").exists()   # measurements off by default
    assert "passk" not in next(r for r in rows if r["stage"] == "eval")


# ----------------------------------------------------------------------------- the study

@pytest.mark.slow
def test_study_runs_a_tree_rl_cell_and_grpo_with_passk(tmp_path):
    """tree_rl (a search per iteration, step advantages from the tree) and grpo with pass@k
    advantages as study optimizers, one small cell each."""
    from pathlib import Path

    from treesearch.study.config import load_study_config
    from treesearch.study.run import main

    quick = Path(__file__).resolve().parent.parent / "configs" / "study_quick.yaml"
    cfg = load_study_config(quick, ["optimizers=[tree_rl, grpo]", "rl.passk=4"])
    assert cfg.rl.passk == 4
    with pytest.raises(ConfigError, match="rl.passk"):
        load_study_config(quick, ["optimizers=[tree_rl]", "rl.passk=2"])
    out = tmp_path / "study"
    args = ["--quick", f"out={out}", "priors=[{name: p3, model: tiny-countdown3}]",
            "optimizers=[tree_rl, grpo]", "rl.passk=2", "rl.group_size=4",
            "rl.problems_per_step=2", "seeds=[0]", "budget_tokens=1000", "train_problems=4",
            "eval.problems=2", "eval.ood_problems=0", "eval.samples=4",
            "eval.entropy_samples=1", "search.simulations=6", "progress=false"]
    assert main(args) == 0
    for opt in ("tree_rl", "grpo"):
        cell = json.loads((out / f"cells/p3/{opt}/seed0/measure.json").read_text())
        assert cell["train_tokens"] >= 1000
    train = json.loads((out / "cells/p3/tree_rl/seed0/train.json").read_text())
    assert train["method"] == "tree_rl" and train["tree_steps"] > 0

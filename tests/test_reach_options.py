"""The off-path objectives in the apps: own_kl / own_samples and Clip-Cov / KL-Cov as self-play
distill knobs and study options (named errors before any model work, the knobs reaching the
trainers, own samples drawn by both apps), and the eval rows' per-problem pass@k counts with
the share of problems whose pass@max-k fell from round 0 (metrics, summary, widen_table)."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from treesearch.config import ConfigError, load_config  # noqa: E402
from treesearch.selfplay.report import write_summary  # noqa: E402
from treesearch.stages.evaluate import passk_fell  # noqa: E402
from policies.distill import SFTExample  # noqa: E402
from treesearch.stages.train import OPTIMIZERS, TrainData, distill_row  # noqa: E402
from treesearch.study.config import load_study_config, rl_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "study_quick.yaml"
PRIOR = "priors=[{name: p3, model: tiny-countdown3}]"
PG = ["distill.method=wreinforce", "distill.anchor_kl=0"]


@pytest.mark.parametrize("overrides, key", [
    (["distill.own_samples=2"], "distill.own_samples"),                 # without own_kl
    (["distill.own_kl=1.0"], "distill.own_samples"),                    # without samples
    ([*PG, "distill.own_kl=1.0", "distill.own_samples=2"], "distill.own_kl"),
    (["distill.cov_clip=0.1"], "distill.cov_clip"),                     # sft cannot train it
    (["distill.method=sft+dpo", "distill.cov_kl=1.0", "distill.cov_kl_top=0.1"],
     "distill.cov_kl"),
    ([*PG, "distill.cov_clip=1.0"], "distill.cov_clip"),                # outside [0, 1)
    ([*PG, "distill.cov_clip=-0.1"], "distill.cov_clip"),
    ([*PG, "distill.cov_kl=1.0"], "distill.cov_kl_top"),
    (["distill.method=tree_pg", "distill.anchor_kl=0", "distill.cov_kl_top=0.1"],
     "distill.cov_kl_top"),
])
def test_selfplay_refuses_bad_objectives_by_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "'"):
        load_config(None, overrides)


def test_selfplay_takes_each_objective_with_a_method_that_trains_it():
    cfg = load_config(None, ["distill.own_kl=1.0", "distill.own_samples=2"])
    assert (cfg.distill.own_kl, cfg.distill.own_samples, cfg.distill.anchor_kl) == (1.0, 2, 1.0)
    for method in ("wreinforce", "tree_pg"):
        cfg = load_config(None, ["distill.anchor_kl=0", f"distill.method={method}",
                                 "distill.cov_clip=0.02", "distill.cov_kl=1.0",
                                 "distill.cov_kl_top=0.002"])
        assert cfg.distill.cov_clip == 0.02
    default = load_config(None)
    assert (default.distill.own_kl, default.distill.own_samples, default.distill.cov_clip,
            default.distill.cov_kl, default.distill.cov_kl_top) == (0.0, 0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("overrides, key", [
    (["tree.sft.cov_clip=0.1"], "tree.sft.cov_clip"),                   # mcts trains sft
    (["tree.dpo.own_kl=1.0", "tree.dpo.own_samples=1"], "tree.dpo.own_kl"),
    (["tree.sft.own_samples=1"], "tree.sft.own_samples"),
    (["optimizers=[mcts, expert_iteration]", "rl.cov_clip=0.1"], "rl.cov_clip"),
    (["optimizers=[grpo]", "rl.cov_clip=1.5"], "rl.cov_clip"),
    (["optimizers=[g]", "variants={g: {optimizer: grpo, rl: {cov_kl: 1.0}}}"],
     "variants.g.rl.cov_kl_top"),
    (["optimizers=[m]", "variants={m: {optimizer: mcts, tree: {sft: {cov_clip: 0.1}}}}"],
     "variants.m.tree.sft.cov_clip"),
    (["optimizers=[m]", "variants={m: {optimizer: mcts, rl: {cov_clip: 0.1}}}"],
     "variants.m.rl"),                                                 # mcts reads no rl
    (["optimizers=[g]", "variants={g: {optimizer: grpo, tree: {sft: {own_kl: 1.0}}}}"],
     "variants.g.tree"),                                               # grpo reads no tree
])
def test_study_refuses_bad_objectives_by_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "'"):
        load_study_config(QUICK, [PRIOR, *overrides])


def test_a_tree_variant_is_not_held_to_the_rl_sections_checks():
    """rl.passk = 4 serves grpo; an mcts variant inherits the rl section but never reads it,
    so it is not refused for grpo's settings."""
    cfg = load_study_config(QUICK, [
        PRIOR, "optimizers=[grpo, mcts_anchored]", "rl.passk=4", "rl.group_size=4",
        "variants={mcts_anchored: {optimizer: mcts, tree: {sft_anchor_kl: 1.0}}}"])
    assert cfg.rl.passk == 4


def test_study_arms_carry_the_objectives_to_their_trainers():
    cfg = load_study_config(QUICK, [
        PRIOR, "optimizers=[mcts, mcts_own, grpo, grpo_clipcov, expert_iteration]",
        "rl.cov_kl=0.5", "rl.cov_kl_top=0.01",
        "variants={mcts_own: {optimizer: mcts, tree: {sft: {own_kl: 1.0, own_samples: 2}}},"
        " grpo_clipcov: {optimizer: grpo, rl: {cov_clip: 0.02}}}"])
    from treesearch.study.config import train_config

    assert train_config(cfg, "mcts_own", 0).own_kl == 1.0
    assert train_config(cfg, "mcts_own", 0).own_samples == 2
    assert train_config(cfg, "mcts", 0).own_kl == 0.0
    assert rl_config(cfg, "grpo_clipcov", 0).cov_clip == 0.02
    assert rl_config(cfg, "grpo", 0).cov_clip == 0.0
    assert (rl_config(cfg, "grpo", 0).cov_kl, rl_config(cfg, "grpo", 0).cov_kl_top) == (0.5, 0.01)
    ei = rl_config(cfg, "expert_iteration", 0)          # no policy gradient: left out
    assert (ei.cov_clip, ei.cov_kl, ei.cov_kl_top) == (0.0, 0.0, 0.0)


def test_the_sft_entries_hand_own_samples_to_sft(monkeypatch):
    import treesearch.stages.train as stages_train

    seen = {}

    def fake_sft(model, tokenizer, examples, config, own=()):
        seen.update(examples=examples, own=own)
        return model, {"loss_first": 1.0, "loss_last": 0.5, "own_kl_last": 0.01}

    monkeypatch.setattr(stages_train, "sft", fake_sft)
    prior = SFTExample([0], [5, 6, 7], 1.0)
    data = TrainData(examples=["e"], prior=[prior], own=[([1], [2])])
    for name in ("sft", "mcts"):
        OPTIMIZERS[name].train(None, None, data, None)
        assert seen == {"examples": ["e", prior], "own": [([1], [2])]}
    cfg = load_config(None, ["distill.own_kl=1.0", "distill.own_samples=2"])
    row = distill_row({"loss_first": 1.0, "loss_last": 0.5, "own_kl_last": 0.01}, data,
                      cfg.distill)
    assert row["own_examples"] == 1 and row["sft_own_kl_last"] == 0.01
    assert row["sampled_tokens"] == 3 + 1  # the prior's completion and the own sample
    assert "sampled_tokens" not in distill_row({}, TrainData(examples=["e"]), cfg.distill)
    cfg = load_config(None, [*PG, "distill.cov_clip=0.1"])
    pg_stats = {"examples": 3, "positives": 1, "negatives": 2, "loss_first": 0.1,
                "loss_last": 0.2, "clipped_share_last": 0.0, "cov_clipped_share_last": 0.1}
    assert distill_row(pg_stats, data, cfg.distill)["pg_cov_clipped_share_last"] == 0.1
    assert "pg_cov_clipped_share_last" not in distill_row(pg_stats, data,
                                                          load_config(None, PG).distill)


def test_the_study_draws_own_samples_from_the_prior_and_charges_them(tmp_path, monkeypatch):
    import treesearch.study.run as study_run
    import treesearch.study.training as training
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, [
        PRIOR, "optimizers=[mcts_own]", "train_problems=2", "progress=false",
        "variants={mcts_own: {optimizer: mcts, tree: {sft: {own_kl: 1.0, own_samples: 2}}}}"])
    study = study_run.Study(cfg, RunDir(tmp_path))
    problems = study.training.train_problems(0)
    monkeypatch.setattr(study.training, "search",
                        lambda prior, seed: (problems, None, {"tokens_generated": 100}, None))
    monkeypatch.setattr(training, "harvest", lambda *a, **k: TrainData())
    seen = {}

    def fake_train(model, tokenizer, data, config):
        seen.update(own=data.own, config=config)
        return model, {}

    monkeypatch.setattr(training, "OPTIMIZERS", {"mcts": type(OPTIMIZERS["mcts"])(
        fake_train, OPTIMIZERS["mcts"].needs)})
    try:
        _, _, stats = study.training.train("p3", "mcts_own", 0)
    finally:
        torch.set_num_threads(1)
    own = seen["own"]
    assert seen["config"].own_kl == 1.0 and 1 <= len(own) <= 4     # 2 per problem, non-empty
    assert stats["own_tokens"] == sum(len(c) for _, c in own)
    assert stats["tokens_generated"] == 100 + stats["own_tokens"]


# ----------------------------------------------------------------------------- pass@max-k fell

def test_passk_fell_counts_problems_solved_before_and_not_now():
    first = [3, 0, 1, 5, 0]
    now = [0, 0, 2, 5, 1]          # problem 0 lost; problem 4 gained (not a fall)
    assert passk_fell(first, now, 8) == pytest.approx(1 / 5)
    assert passk_fell(first, first, 8) == 0.0
    assert np.isnan(passk_fell([], [], 8))
    with pytest.raises(ValueError, match="same problems"):
        passk_fell([1, 2], [1], 8)


def _eval_row(r, counts, fell):
    n = 4
    return {"round": r, "stage": "eval", "greedy": 0.2, "pass@1": 0.1, "mcts": 0.3,
            "passk": {"1": 0.1, "2": 0.2, "4": 0.3}, "passk_problems": len(counts),
            "passk_samples": n, "passk_counts": counts, "passk_fell": fell,
            "distinct_correct": 1.0, "entropy": 0.5, "format_share": {"0": 1.0},
            "strategy_share": {}}


def test_summary_tables_the_share_that_fell(tmp_path):
    rows = [_eval_row(0, [1, 2, 0, 0], 0.0), _eval_row(1, [0, 2, 0, 1], 0.25)]
    write_summary(tmp_path, rows, "countdown3")
    text = (tmp_path / "summary.md").read_text()
    assert "pass@4 fell (share)" in text
    assert "| 1 | 0.100 | 0.300 | 0.250 |" in text
    old = [{k: v for k, v in row.items() if k != "passk_fell"} for row in rows]
    write_summary(tmp_path, old, "countdown3")                 # a run from before the column
    assert "| 1 | 0.100 | 0.300 | - |" in (tmp_path / "summary.md").read_text()


def test_widen_table_tables_the_share_that_fell(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import widen_table

    def run(name, rows):
        path = tmp_path / name
        path.mkdir()
        (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return path

    logged = run("a-s0", [_eval_row(0, [1, 2, 0, 0], 0.0), _eval_row(1, [0, 2, 0, 1], 0.25)])
    counted = [_eval_row(0, [1, 2, 3, 0], 0.0), _eval_row(1, [0, 0, 3, 1], 0.5)]
    for row in counted:
        del row["passk_fell"]                                  # from the counts: 2 of 4
    counts_only = run("a-s1", counted)
    neither = [{k: v for k, v in row.items() if not k.startswith("passk_")}
               for row in counted]
    for row in neither:
        row["passk"] = {"1": 0.1, "64": 0.3}
    table = widen_table.summarise([logged, counts_only, run("b-s0", neither)])
    assert table["a"]["fell"]["first"] == 0.0
    assert table["a"]["fell"]["last"] == pytest.approx((0.25 + 0.5) / 2)
    assert np.isnan(table["b"]["fell"]["last"])
    text = widen_table.markdown(table)
    assert "fell (r0 -> last, change)" in text and "0.000 -> 0.375 (+0.375 ± 0.125)" in text
    assert "0.000 -> - (-)" in text
    out = tmp_path / "t.json"
    assert widen_table.main([str(logged), str(counts_only), str(tmp_path / "b-s0"),
                             "--json", str(out)]) == 0
    assert json.loads(out.read_text())["arms"]["b"]["fell"]["last"] is None   # strict JSON


# ----------------------------------------------------------------------------- end to end

SMALL = ["rounds=1", "train_problems=8", "eval.problems=6", "eval.samples=2",
         "eval.mcts_problems=2", "eval.mcts_budget=96", "search.simulations=6",
         "critics.epochs=1", "critics.max_examples=64", "progress=false",
         "eval.passk_samples=4", "eval.passk_problems=3", "eval.entropy_samples=2"]


def _selfplay(out, overrides):
    from omegaconf import OmegaConf

    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    cfg = load_config(None, SMALL + overrides + [f"out={out}"])
    SelfPlay(cfg, RunDir.create(out, OmegaConf.to_yaml(cfg))).run_all()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in rows if r["stage"] == "distill"), [r for r in rows
                                                             if r["stage"] == "eval"]


def test_selfplay_with_own_kl_logs_the_share_that_fell(tmp_path):
    distill, evals = _selfplay(tmp_path / "run", ["distill.own_kl=1.0", "distill.own_samples=1"])
    assert 1 <= distill["own_examples"] <= 8 and distill["sft_own_kl_last"] >= 0
    assert distill["sampled_tokens"] >= distill["own_examples"]
    assert distill["sft_anchor_kl_last"] >= 0
    first, last = evals
    assert len(first["passk_counts"]) == 3 and all(0 <= c <= 4 for c in first["passk_counts"])
    assert first["passk_fell"] == 0.0
    assert last["passk_fell"] == passk_fell(first["passk_counts"], last["passk_counts"], 4)
    assert "pass@4 fell (share)" in (tmp_path / "run" / "summary.md").read_text()


def test_selfplay_with_clip_cov(tmp_path):
    distill, _ = _selfplay(tmp_path / "run", [*PG, "distill.cov_clip=0.1", "distill.cov_kl=0.5",
                                              "distill.cov_kl_top=0.05"])
    assert distill["pg_examples"] > 0
    assert 0.09 <= distill["pg_cov_clipped_share_last"] <= 0.2
    assert 0.04 <= distill["pg_cov_kl_share_last"] <= 0.1


def test_summary_pairs_mcts_with_majority_and_greedy_with_round_0(tmp_path):
    rows = [_eval_row(0, [1, 2, 0, 0], 0.0), _eval_row(1, [0, 2, 0, 1], 0.25)]
    rows[0].update(greedy_flags=[0, 1, 0, 0], mcts_flags=[1, 0], majority_flags=[1, 0])
    rows[1].update(greedy_flags=[1, 1, 1, 0], mcts_flags=[1, 1], majority_flags=[0, 1])
    write_summary(tmp_path, rows, "game24")
    text = (tmp_path / "summary.md").read_text()
    assert "4 problems for greedy, 2 for MCTS" in text
    assert "| 0 | +0.000 ± 0.000 | +0.000 ± 0.000 |" in text
    # MCTS - majority [0, 1]: +0.5 ± 0.5; greedy - round 0 [1, 0, 1, 0]: +0.5 ± 0.289
    assert "| 1 | +0.500 ± 0.500 | +0.500 ± 0.289 |" in text
    del rows[1]["majority_flags"]                   # a row from before the verdicts
    write_summary(tmp_path, rows, "game24")
    assert "Paired per problem" not in (tmp_path / "summary.md").read_text()

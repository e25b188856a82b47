"""The prior-vs-optimizer study: config checks, prior variants, measurements, the report,
and one small end-to-end grid with resume."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from treesearch.config import ConfigError
from treesearch.study.analysis import crossover
from treesearch.study.config import load_study_config
from treesearch.study.report import write_report

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "study_quick.yaml"


# ---------------------------------------------------------------------------- config

@pytest.mark.parametrize("override, key", [
    ("eval.bogus=1", "eval.bogus"),
    ("optimizers=[ppo]", "optimizers.0"),
    ("budget_tokens=10", "budget_tokens"),
    ("eval.samples=0", "eval.samples"),
    ("task=nonsense", "task"),
    ("ood_tasks=[countdown, nonsense]", "ood_tasks.1"),
    ("priors.1.pretrain={bogus: 1}", "priors.1.pretrain"),
    ("priors.1.reference=nobody", "priors.1.reference"),
    ("priors.0.model=/no/such/model", "priors.0.model"),
    ("rl.method_lr={ppo: 0.1}", "rl.method_lr.ppo"),
    ("rl.method_lr={nsr: -1}", "rl.method_lr.nsr"),
    ("rl.passk=0", "rl.passk"),
    ("rl.passk=99", "rl.passk"),
    ("rl.tree_baseline=uncle", "rl.tree_baseline"),
    ("priors.1.optimizers=[grpo, ppo]", "priors.1.optimizers.1"),
    ("priors.1.seeds=[0, 0]", "priors.1.seeds"),
    ("variants={grpo: {optimizer: nsr}}", "variants.grpo"),
    ("variants={v: {optimizer: ppo}}", "variants.v.optimizer"),
    ("variants={v: {optimizer: mcts, rl: {lr: 0.1}}}", "variants.v.rl"),
    ("variants={v: {optimizer: grpo, tree: {sft_lr: 0.1}}}", "variants.v.tree"),
    ("variants={v: {optimizer: mcts, tree: {bogus: 1}}}", "variants.v.tree"),
    # the older flat spelling of the tree section is checked under the key it sets now
    ("variants={v: {optimizer: mcts, tree: {sft_anchor_kl: -1}}}", "variants.v.tree.sft.anchor_kl"),
    ("tree.sft_anchor_kl=-1", "tree.sft.anchor_kl"),
    ("variants={v: {optimizer: mcts, tree: {sft: {anchor_kl: -1}}}}",
     "variants.v.tree.sft.anchor_kl"),
    ("tree.sft.anchor_kl=-1", "tree.sft.anchor_kl"),
    ("tree.dpo.lr=0", "tree.dpo.lr"),
    ("tree.sft.seed=3", "tree.sft.seed"),
    ("rl.temperature=0.5", "rl.temperature"),
    ("variants={v: {optimizer: grpo, rl: {method: nsr}}}", "variants.v.rl.method"),
    ("variants={v: {optimizer: mcts, tree: {sft_lr: 0.1, sft: {lr: 0.2}}}}", "sft_lr"),
    ("variants={v: {optimizer: grpo, rl: {bogus: 1}}}", "variants.v.rl"),
    ("variants={v: {optimizer: grpo, rl: {reward: shiny}}}", "variants.v.rl.reward"),
    ("variants={v: {optimizer: nsr, rl: {reward: brier}}}", "variants.v.rl.reward"),
    ("optimizers=[grpo, v]", "optimizers.1"),
])
def test_bad_study_config_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_study_config(QUICK, [override])


def test_a_prior_needs_a_model_or_a_reference():
    with pytest.raises(ConfigError, match="priors.1"):
        load_study_config(QUICK, ["priors.1.model=tiny-countdown3"])  # both set


def test_list_overrides_reach_list_items():
    cfg = load_study_config(QUICK, ["priors.1.pretrain={tokens: 1234}", "seeds=[3, 4]"])
    assert cfg.priors[1].pretrain == {"tokens": 1234}
    assert list(cfg.seeds) == [3, 4]


def test_variant_prior_differs_from_the_reference_in_one_factor(tmp_path):
    """The shipped reference was trained for 240 s; the variant replays it by the tokens
    it saw and changes only what it names."""
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir, read_json

    cfg = load_study_config(QUICK, [f"out={tmp_path / 'run'}",
                                    "priors.1.pretrain={n_styles_used: 1}"])
    study = Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    ref = read_json(study.prior_path("reference") / "metrics.json")
    variant = study.pretrain_config(cfg.priors[1])
    assert variant.tokens == ref["train"]["tokens"] and variant.time_budget_s is None
    assert variant.n_styles_used == 1
    same = {k: v for k, v in ref["config"].items()
            if k not in ("n_styles_used", "tokens", "time_budget_s", "progress")}
    assert all(getattr(variant, k) == v for k, v in same.items())
    amount = study.pretrain_config(load_study_config(QUICK).priors[1])
    assert amount.tokens == 330000 and amount.n_styles_used == ref["config"]["n_styles_used"]


# ---------------------------------------------------------------------------- report

def test_crossover_k():
    base = {"1": 0.1, "2": 0.2, "4": 0.4, "8": 0.6}
    assert crossover(base, {"1": 0.2, "2": 0.3, "4": 0.4, "8": 0.5}) == 4
    assert crossover(base, {"1": 0.2, "2": 0.3, "4": 0.5, "8": 0.7}) == "-"
    assert crossover(base, {"1": 0.05, "2": 0.2, "4": 0.4, "8": 0.6}) == "below"


def _fake_cell(path, prior, optimizer, seed, counts, n, ood_counts):
    from treesearch.utils.estimators import default_ks, pass_at_k_curve

    def m(c):
        c = np.asarray(c)
        return {"n": n, "counts": c.tolist(), "coverage": float((c > 0).mean()),
                "pass_at": {str(k): float(v)
                            for k, v in zip(default_ks(n), pass_at_k_curve(c, n, default_ks(n)))},
                "distinct_correct": 1.0, "entropy": 0.3, "brier": 0.1, "ece": 0.05,
                "confidence": 0.5, "format_share": {"0": 1.0}, "tokens_per_sample": 30.0}
    row = {"prior": prior, "optimizer": optimizer, "eval": {"id": m(counts), "ood": m(ood_counts)}}
    if seed is not None:
        row.update(seed=seed, train_tokens=1000,
                   sparsity={"fp32": {"0": 0.1, "1e-05": 0.5}, "bf16": {"0": 0.2, "1e-05": 0.6}},
                   rank={"mean_rank_share": 0.9})
    path.mkdir(parents=True, exist_ok=True)
    (path / "measure.json").write_text(json.dumps(row))


def test_report_on_a_synthetic_grid(tmp_path):
    """A grid where the prior decides pass@1 (A high, B low) and the optimizer adds a little:
    eta squared must give the prior most of the variance; newly solved is counted per
    problem against the base."""
    n = 8
    for prior, level in (("A", 6), ("B", 1)):
        _fake_cell(tmp_path / "cells" / prior / "base", prior, "base", None, [level, 0, level], n,
                   [0, 0])
        for opt, bump in (("x", 0), ("y", 1)):
            for seed in (0, 1):
                counts = [level + bump, seed, level]   # problem 2 newly solved by seed 1
                _fake_cell(tmp_path / "cells" / prior / opt / f"seed{seed}", prior, opt, seed,
                           counts, n, [0, 1])
    report = write_report(tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    eta = res["eta_squared"]["pass@1"]
    assert eta["a"] > 0.8 and eta["b"] < 0.2 and eta["replicates"] == 2
    assert math.isclose(eta["a"] + eta["b"] + eta["interaction"] + eta["residual"], 1.0)
    ns = {(c["prior"], c["optimizer"], c["seed"]): c["newly_solved"]["newly_solved"]
          for c in res["cells"]}
    assert ns[("A", "x", 1)] == 1 and ns[("A", "x", 0)] == 0
    text = report.read_text()
    assert "| A | (prior) |" in text and "passk_A.png" in text and (tmp_path / "eta2.png").is_file()


def test_a_probe_prior_has_its_own_cells_and_stays_out_of_eta_squared(tmp_path):
    """A prior with its own optimizer / seed lists is planned with them, marked off the
    grid in priors.json, and the report decomposes eta squared over the grid priors only
    (a probe that would unbalance the grid does not turn it into an error)."""
    from treesearch.study.config import optimizers_of, seeds_of

    cfg = load_study_config(QUICK, ["priors.1.optimizers=[grpo]", "priors.1.seeds=[5]"])
    assert optimizers_of(cfg, cfg.priors[1]) == ["grpo"] and seeds_of(cfg, cfg.priors[1]) == [5]
    assert optimizers_of(cfg, cfg.priors[0]) == list(cfg.optimizers)
    n = 8
    for prior, level in (("A", 6), ("B", 1)):
        _fake_cell(tmp_path / "cells" / prior / "base", prior, "base", None, [level, 0, level], n,
                   [0, 0])
        for opt in ("x", "y"):
            for seed in (0, 1):
                _fake_cell(tmp_path / "cells" / prior / opt / f"seed{seed}", prior, opt, seed,
                           [level + (opt == "y"), seed, level], n, [0, 1])
    _fake_cell(tmp_path / "cells" / "P" / "base", "P", "base", None, [0, 0, 0], n, [0, 0])
    _fake_cell(tmp_path / "cells" / "P" / "x" / "seed5", "P", "x", 5, [8, 8, 8], n, [0, 1])
    (tmp_path / "priors.json").write_text(json.dumps({
        "A": {"path": "a", "grid": True}, "B": {"path": "b", "grid": True},
        "P": {"path": "p", "grid": False}}))
    text = write_report(tmp_path).read_text()
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["eta_squared_priors"] == ["A", "B"]
    assert "error" not in res["eta_squared"]["pass@1"]
    assert res["eta_squared"]["pass@1"]["priors"] == ["A", "B"]
    assert "left out: P (trained with optimizer or seed lists of its own)" in text
    assert any(c["prior"] == "P" for c in res["cells"])  # still in the tables


def test_an_untrained_control_is_planned_without_cells(tmp_path, monkeypatch):
    """trained: false keeps a prior as a measured control: no optimizers, no cells, not in
    the grid; with optimizers of its own it is refused."""
    from treesearch.study.config import optimizers_of
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, ["priors.0.trained=false"])
    assert optimizers_of(cfg, cfg.priors[0]) == [] and optimizers_of(cfg, cfg.priors[1])
    with pytest.raises(ConfigError, match=r"priors\.0\.trained"):
        load_study_config(QUICK, ["priors.0.trained=false", "priors.0.optimizers=[grpo]"])
    study = Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    done = []
    study.cells.run_base = lambda prior: done.append((prior, "base"))
    study.cells.run_cell = lambda prior, opt, seed: done.append((prior, opt))
    study.cells.prior_val_figures = lambda prior: {}
    study.prior_path = lambda prior: tmp_path / prior
    monkeypatch.setattr("treesearch.study.run.write_report", lambda path, cfg: path)
    study.run_all()
    assert ("reference", "base") in done and not any(p == "reference" and o != "base"
                                                     for p, o in done)
    assert any(p == "small" and o != "base" for p, o in done)
    priors = json.loads((tmp_path / "run" / "priors.json").read_text())
    assert priors["reference"]["grid"] is False and priors["small"]["grid"] is True


def test_an_optimizer_variant_trains_its_base_with_its_rl_changes(tmp_path, monkeypatch):
    """A variant is its base optimizer with the rl section changed in the fields it names
    (its own lr beats method_lr); only a Brier-trained policy is measured with its
    confidence line."""
    from treesearch.stages import train as stages_train
    from treesearch.study import run as study_run
    from treesearch.study.config import base_optimizer, optimizer_lr, rl_of
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, [
        "optimizers=[grpo, grpo_brier, nsr_fast]",
        ("variants={grpo_brier: {optimizer: grpo, rl: {reward: brier, curriculum: easy_first}},"
        " nsr_fast: {optimizer: nsr, rl: {lr: 0.001}}}")])
    assert base_optimizer(cfg, "grpo_brier") == "grpo" and base_optimizer(cfg, "grpo") == "grpo"
    assert rl_of(cfg, "grpo_brier").reward == "brier" and cfg.rl.reward == "binary"
    assert rl_of(cfg, "grpo_brier").group_size == cfg.rl.group_size
    assert optimizer_lr(cfg, "nsr") == 1e-5 and optimizer_lr(cfg, "nsr_fast") == 1e-3
    seen = {}

    def fake_train(model, tokenizer, task, problems, config, on_samples=None, search=None):
        seen["config"] = config
        return model, {"tokens_generated": 0}

    monkeypatch.setattr(stages_train, "rl_train", fake_train)
    study = study_run.Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    study.training.train("reference", "grpo_brier", 0)
    c = seen["config"]
    assert (c.method, c.reward, c.curriculum, c.lr) == ("grpo", "brier", "easy_first", cfg.rl.lr)
    study.training.train("reference", "nsr_fast", 0)
    assert (seen["config"].method, seen["config"].lr) == ("nsr", 1e-3)
    def states(optimizer, who=study):
        return who.cells.states_confidence("reference", optimizer)

    assert states("grpo_brier") and not states("grpo")
    assert not states("base") and not states("mcts")
    assert not states("nsr_fast")
    everyone = study_run.Study(load_study_config(QUICK, ["rl.reward=brier"]),
                               RunDir.create(tmp_path / "run2", "x: 1\n"))
    assert states("grpo", everyone) and not states("nsr", everyone)
    # a prior pretrained to state a confidence: every policy from it is measured with it
    stated = tmp_path / "stated-prior"
    stated.mkdir()
    (stated / "metrics.json").write_text(json.dumps({"config": {"stated_confidence": True}}))
    study._prior_paths["reference"] = stated
    assert states("base") and states("grpo") and states("mcts")


def test_a_tree_variant_trains_mcts_with_its_tree_changes_from_the_shared_search(
        tmp_path, monkeypatch):
    """A variant of mcts (e.g. the prior-anchored SFT) is distilled with its
    tree section changed, from the same search as plain mcts; the study's own tree section
    stays as it was."""
    from treesearch.stages import harvest as stages_harvest
    from treesearch.stages import train as stages_train
    from treesearch.study import run as study_run
    from treesearch.study.config import base_optimizer, tree_of
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, [
        "optimizers=[mcts, mcts_anchored]",
        "variants={mcts_anchored: {optimizer: mcts, tree: {sft_anchor_kl: 1.0}}}"])
    assert base_optimizer(cfg, "mcts_anchored") == "mcts"
    assert tree_of(cfg, "mcts_anchored").sft.anchor_kl == 1.0 and cfg.tree.sft.anchor_kl == 0
    assert tree_of(cfg, "mcts_anchored").sft.epochs == cfg.tree.sft.epochs
    searched, seen = [], {}

    def fake_search(prior, seed):
        searched.append((prior, seed))
        return [], None, {"tokens_generated": 7}, None

    def fake_sft(model, tokenizer, examples, config, own=()):
        seen["config"] = config
        return model, {}

    monkeypatch.setattr(stages_harvest, "sft_examples", lambda *a, **k: [])
    monkeypatch.setattr(stages_harvest, "RuleVerifier", lambda *a: None)
    monkeypatch.setattr(stages_train, "sft", fake_sft)
    study = study_run.Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    monkeypatch.setattr(study.training, "search", fake_search)
    _, _, stats = study.training.train("reference", "mcts_anchored", 0)
    assert seen["config"].anchor_kl == 1.0 and stats["tokens_generated"] == 7
    study.training.train("reference", "mcts", 0)
    assert seen["config"].anchor_kl == 0.0
    assert searched == [("reference", 0), ("reference", 0)]


def test_a_knob_added_later_keeps_the_cached_priors_keys(tmp_path, monkeypatch):
    """A prior's cache key leaves out pretraining knobs added after it was cached while they
    sit at their default: the medium grid's amount_half keeps the key it was pretrained
    under; setting the knob (stated_confidence) makes another prior."""
    from omegaconf import OmegaConf

    from treesearch.study import run as study_run
    from treesearch.utils.runs import RunDir

    made = []
    monkeypatch.setattr(study_run, "pretrain", lambda config: made.append(config.out))
    cfg = load_study_config(ROOT / "configs" / "study_medium.yaml",
                            [f"prior_cache={tmp_path / 'cache'}"])
    study = study_run.Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    half = study.specs["amount_half"]
    assert study._pretrained(half).name == "amount_half-f9b6a2ecac"
    stating = OmegaConf.merge(half, {"pretrain": {"stated_confidence": True}})
    assert study._pretrained(stating).name != "amount_half-f9b6a2ecac"
    assert len(made) == 2


# ---------------------------------------------------------------------------- measurements

def test_token_entropy_matches_a_manual_computation():
    import torch

    from policies.hf import load_model
    from policies.zoo import resolve
    from treesearch.study.measure import token_entropy

    model, _tok = load_model(resolve("tiny-countdown3"))
    seqs = [([1, 5, 6], [7, 8]), ([1, 9], [10, 11, 12])]
    got = token_entropy(model, seqs)
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, completion in seqs:
            ids = torch.tensor([prompt + completion])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            for t in range(len(prompt) - 1, len(prompt) + len(completion) - 1):
                total += float(-(logp[t].exp() * logp[t]).sum())
                count += 1
    assert got == pytest.approx(total / count, rel=1e-5)


def test_measure_counts_correct_samples_only_after_decoding():
    import torch

    from policies.hf import HFPolicy
    from policies.zoo import resolve
    from treesearch.study.measure import measure
    from treesearch.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("countdown3")
    problems = task.problems("test", 3, seed=0)
    seen = []
    real = task.check_solution

    def recording(problem, text):
        seen.append(problem.label)
        return real(problem, text)

    task.check_solution = recording
    policy = HFPolicy(resolve("tiny-countdown3"), seed=0)
    prompts = []
    propose = policy.propose
    policy.propose = lambda prefixes, n, m: (prompts.append(len(prefixes)),
                                             propose(prefixes, n, m))[1]
    m = measure(policy, task, problems, n=16, entropy_samples=4)
    assert len(m.counts) == 3 and all(0 <= c <= 16 for c in m.counts)
    assert all(label is not None for label in seen)   # labelled only when checking
    assert m.pass_at["16"] == pytest.approx(np.mean([c > 0 for c in m.counts]))
    assert m.pass_at["1"] == pytest.approx(np.mean(m.counts) / 16)
    assert sum(m.format_share.values()) == pytest.approx(1.0)
    assert 0.0 < m.entropy < math.log(policy.tokenizer.vocab_size
                                      if hasattr(policy.tokenizer, "vocab_size") else 64)
    assert 0.0 <= m.brier <= 1.0 and 0.0 <= m.confidence <= 1.0


# ---------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_small_grid_end_to_end_and_resume(tmp_path):
    """Two shipped priors x two optimizers (one tree-based, one on-policy), tiny budgets:
    every cell is measured, the report is written, and a resume redoes only a missing cell."""
    from treesearch.study.run import main

    out = tmp_path / "study"
    args = ["--quick", f"out={out}", ("priors=[{name: p3, model: tiny-countdown3}, "
            "{name: p4, model: tiny-countdown}]"), "optimizers=[mcts, grpo]",
            "seeds=[0]", "budget_tokens=1500", "train_problems=6", "eval.problems=3",
            "eval.ood_problems=1",
            "eval.samples=8", "eval.entropy_samples=2", "progress=false"]
    assert main(args) == 0
    cells = sorted(p.relative_to(out).as_posix() for p in out.glob("cells/**/measure.json"))
    assert cells == ["cells/p3/base/measure.json", "cells/p3/grpo/seed0/measure.json",
                     "cells/p3/mcts/seed0/measure.json", "cells/p4/base/measure.json",
                     "cells/p4/grpo/seed0/measure.json", "cells/p4/mcts/seed0/measure.json"]
    grpo = json.loads((out / "cells/p3/grpo/seed0/measure.json").read_text())
    assert grpo["train_tokens"] >= 1500 and set(grpo["eval"]) == {"id", "countdown2", "countdown"}
    assert 0.0 <= grpo["sparsity"]["fp32"]["0"] < 1.0   # training changed the weights
    assert not (out / "cells/p3/grpo/seed0/policy").exists()
    report = (out / "report.md").read_text()
    assert "eta squared" in report and "| p4 | mcts |" in report

    keep = (out / "cells/p4/grpo/seed0/measure.json").stat().st_mtime_ns
    (out / "cells/p3/mcts/seed0/measure.json").unlink()
    assert main(["--resume", str(out)]) == 0
    assert (out / "cells/p3/mcts/seed0/measure.json").is_file()
    assert (out / "cells/p4/grpo/seed0/measure.json").stat().st_mtime_ns == keep

"""The study's statistics (``treesearch.study.stats``): eta squared and its bootstrap
intervals, paired differences, difficulty bins; and the report sections built on them,
from a synthetic run directory."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from treesearch.study import stats
from treesearch.study.report import _shown_path, write_report
from treesearch.utils.estimators import default_ks, pass_at_k_curve
from treesearch.utils.estimators import eta_squared as eta_squared_reference

N = 16   # samples per problem in the synthetic cells


def _grid_cells(rng, success, problems, seeds=2, n=N, ood=False):
    """Trained cells as measure.json rows: counts ~ Binomial(n, success[prior][opt] x the
    problem's ease), the same problems for every cell."""
    ease = rng.uniform(0.2, 1.0, size=problems)
    cells = []
    for prior, by_opt in success.items():
        for opt, p in by_opt.items():
            for seed in range(seeds):
                row = {"prior": prior, "optimizer": opt, "seed": seed,
                       "eval": {"id": {"n": n, "counts": rng.binomial(n, p * ease).tolist()}}}
                if ood:
                    row["eval"]["far"] = {"n": n, "counts": rng.binomial(n, p * ease / 2).tolist()}
                cells.append(row)
    return cells


# ---------------------------------------------------------------------------- eta squared

def test_eta_squared_gives_a_prior_only_grid_to_the_prior():
    rng = np.random.default_rng(0)
    priors, opts = np.repeat(["big", "small"], 6), np.tile(np.repeat(["a", "b", "c"], 2), 2)
    values = np.where(priors == "big", 0.8, 0.1) + rng.normal(0, 1e-3, size=12)
    eta = stats.eta_squared(values, priors, opts)
    assert eta["prior"] > 0.99 and eta["optimizer"] < 0.01 and eta["replicates"] == 2
    assert eta["priors"] == ["big", "small"] and eta["optimizers"] == ["a", "b", "c"]
    parts = eta["prior"] + eta["optimizer"] + eta["interaction"] + eta["residual"]
    assert parts == pytest.approx(1.0)


@pytest.mark.parametrize("replicates", [1, 3])
def test_eta_squared_agrees_with_the_estimators_module_on_shuffled_rows(replicates):
    rng = np.random.default_rng(replicates)
    priors = np.repeat(["p", "q", "r"], 4 * replicates)
    opts = np.tile(np.repeat(["w", "x", "y", "z"], replicates), 3)
    values = rng.normal(size=priors.size)
    order = rng.permutation(values.size)
    got = stats.eta_squared(values[order], priors[order], opts[order])
    want = eta_squared_reference(values[order], priors[order], opts[order])
    for mine, theirs in (("prior", "a"), ("optimizer", "b"), ("interaction", "interaction"),
                         ("residual", "residual")):
        assert got[mine] == pytest.approx(want[theirs], nan_ok=True)


def test_eta_squared_refuses_an_unbalanced_grid():
    with pytest.raises(ValueError, match="unbalanced"):
        stats.eta_squared([1.0, 2.0, 3.0], ["p", "p", "q"], ["x", "y", "x"])


def test_bootstrap_eta_squared_brackets_the_point_and_narrows_with_more_problems():
    success = {"strong": {"a": 0.9, "b": 0.7}, "weak": {"a": 0.3, "b": 0.15}}
    widths = {}
    for problems in (24, 600):
        cells = _grid_cells(np.random.default_rng(problems), success, problems)
        boot = stats.bootstrap_eta_squared(cells, "pass@1", n_boot=400, seed=0)
        for part in ("prior", "optimizer"):
            lo, hi = boot["ci"][part]
            assert lo <= boot["point"][part] <= hi, (problems, part, boot)
        widths[problems] = np.subtract(*boot["ci"]["prior"][::-1])
        values = [np.mean(c["eval"]["id"]["counts"]) / N for c in cells]
        direct = stats.eta_squared(values, [c["prior"] for c in cells],
                                   [c["optimizer"] for c in cells])
        assert boot["point"]["prior"] == pytest.approx(direct["prior"])
        assert boot["problems"] == {"id": problems}
    assert widths[600] < widths[24] / 2


def test_bootstrap_eta_squared_is_deterministic_and_handles_ood_drop_and_pass_at_k():
    cells = _grid_cells(np.random.default_rng(3), {"p": {"a": 0.5, "b": 0.4},
                                                  "q": {"a": 0.2, "b": 0.1}}, 30, ood=True)
    first = stats.bootstrap_eta_squared(cells, "ood_drop", n_boot=200, seed=7)
    assert first == stats.bootstrap_eta_squared(cells, "ood_drop", n_boot=200, seed=7)
    assert set(first["problems"]) == {"id", "far"}
    for metric in ("pass@4", "pass@n"):
        assert 0 <= stats.bootstrap_eta_squared(cells, metric, n_boot=50)["point"]["prior"] <= 1
    with pytest.raises(ValueError, match="unknown metric"):
        stats.bootstrap_eta_squared(cells, "accuracy", n_boot=10)


def test_gain_metrics_take_out_the_priors_starting_points():
    """Priors far apart, optimizers adding the same amount to every prior: the prior owns
    pass@1's variance, the optimizer its gain; a gain needs every prior's measurement."""
    rng = np.random.default_rng(5)
    ease = rng.uniform(0.2, 1.0, size=200)
    levels, lift = {"high": 0.6, "low": 0.2}, {"a": 0.0, "b": 0.15}
    bases = {p: {"eval": {"id": {"n": N, "counts": rng.binomial(N, v * ease).tolist()}}}
             for p, v in levels.items()}
    cells = [{"prior": p, "optimizer": o, "seed": s,
              "eval": {"id": {"n": N, "counts": rng.binomial(N, (v + d) * ease).tolist()}}}
             for p, v in levels.items() for o, d in lift.items() for s in range(2)]
    level = stats.bootstrap_eta_squared(cells, "pass@1", n_boot=100, seed=0)["point"]
    gain = stats.bootstrap_eta_squared(cells, "gain:pass@1", n_boot=100, seed=0, bases=bases)
    assert level["prior"] > 0.6 and gain["point"]["optimizer"] > 0.6
    assert gain["ci"]["optimizer"][0] > 0.3
    with pytest.raises(ValueError, match="untrained measurement of every prior"):
        stats.bootstrap_eta_squared(cells, "gain:pass@1", n_boot=10, bases={"high": bases["high"]})


def test_pass_at_k_of_a_named_set():
    """"pass@n:<set>" decomposes that set's pass@n alone; a missing set is named."""
    assert stats.metric_terms("pass@n:far", ["id", "far"]) == [("far", "n", 1.0)]
    assert stats.metric_terms("pass@4", ["id", "far"]) == [("id", "4", 1.0)]
    with pytest.raises(ValueError, match="no eval set 'near'"):
        stats.metric_terms("pass@n:near", ["id", "far"])
    cells = _grid_cells(np.random.default_rng(3), {"p": {"a": 0.5, "b": 0.4},
                                                  "q": {"a": 0.2, "b": 0.1}}, 30, ood=True)
    far = stats.bootstrap_eta_squared(cells, "pass@n:far", n_boot=50, seed=1)
    assert far["problems"] == {"far": 30}
    assert far != stats.bootstrap_eta_squared(cells, "pass@n", n_boot=50, seed=1)


def test_heldout_sets_are_not_ood():
    assert stats.ood_set_names(["id", "countdown", "heldout:division", "countdown2"]) == [
        "countdown", "countdown2"]


# ---------------------------------------------------------------------------- paired differences

def test_paired_difference_of_one_policy_with_itself_contains_zero():
    rng = np.random.default_rng(1)
    ease = rng.uniform(0, 1, size=200)
    a = rng.binomial(N, ease, size=(3, 200))      # three seeds of one policy
    b = rng.binomial(N, ease)                     # a fresh draw of the same policy
    d = stats.paired_difference_ci(a, b, n=N, k=1, n_boot=500, seed=0)
    assert d["lo"] < 0 < d["hi"] and d["seeds_a"] == 3 and d["seeds_b"] == 1
    same = stats.paired_difference_ci(b, b, n=N, k=4, n_boot=100)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0


def test_paired_difference_of_a_clearly_better_policy_excludes_zero():
    rng = np.random.default_rng(2)
    ease = rng.uniform(0, 0.6, size=100)
    better = rng.binomial(N, ease + 0.3, size=(2, 100))
    worse = rng.binomial(N, ease, size=(2, 100))
    d = stats.paired_difference_ci(better, worse, n=N, k=1, n_boot=500, seed=0)
    assert 0 < d["lo"] <= d["diff"] <= d["hi"]
    assert d["diff"] == pytest.approx((better.mean() - worse.mean()) / N)
    assert stats.paired_difference_ci(worse, better, n=N, k=N, n_boot=500)["hi"] < 0


def test_pass_at_k_per_problem_matches_the_curve():
    counts = np.array([[0, 3, 16, 1], [2, 2, 5, 0]])
    per_problem = stats.pass_at_k_per_problem(counts, N, 4)
    assert per_problem.shape == (2, 4)
    assert per_problem[0].mean() == pytest.approx(pass_at_k_curve(counts[0], N, [4])[0])
    assert per_problem[0, 0] == 0 and per_problem[0, 2] == 1


# ---------------------------------------------------------------------------- difficulty

def test_difficulty_bins_put_the_edges_on_the_right_side():
    n = 20  # 2 correct = exactly 10%, 10 correct = exactly 50%
    counts = [0, 1, 2, 3, 10, 11, 20]
    assert stats.difficulty_bins(counts, n).tolist() == [
        "0", "(0, 0.1]", "(0, 0.1]", "(0.1, 0.5]", "(0.1, 0.5]", "> 0.5", "> 0.5"]
    assert stats.difficulty_bins([3, 4, 15, 16], 30).tolist() == [   # 3 / 30: exactly 10%
        "(0, 0.1]", "(0.1, 0.5]", "(0.1, 0.5]", "> 0.5"]


def test_gain_by_bin_averages_the_gain_within_each_bin():
    base = [0, 0, 2, 8, 15]                          # n = 20: bins 0, 0, (0,.1], (.1,.5], >.5
    trained = [[4, 0, 2, 8, 20], [0, 0, 4, 8, 20]]   # two seeds
    got = stats.gain_by_bin(base, trained, 20)
    assert got["0"] == {"gain": pytest.approx((0.1 + 0.0) / 2), "problems": 2}
    assert got["(0, 0.1]"] == {"gain": pytest.approx(0.05), "problems": 1}
    assert got["(0.1, 0.5]"]["gain"] == pytest.approx(0.0)
    assert got["> 0.5"] == {"gain": pytest.approx(0.25), "problems": 1}
    empty = stats.gain_by_bin([0, 0], [1, 1], 20)
    assert np.isnan(empty["> 0.5"]["gain"]) and empty["> 0.5"]["problems"] == 0


# ---------------------------------------------------------------------------- the report

def _measurement(counts, n=N, **extra):
    counts = np.asarray(counts)
    ks = default_ks(n)
    return {"n": n, "counts": counts.tolist(), "coverage": float((counts > 0).mean()),
            "pass_at": {str(k): float(v) for k, v in zip(ks, pass_at_k_curve(counts, n, ks))},
            "distinct_correct": 1.0, "entropy": 0.3, "brier": 0.1, "ece": 0.05,
            "confidence": 0.5, "format_share": {"0": 1.0}, "tokens_per_sample": 30.0, **extra}


def _write_run(root, new_fields: bool):
    """A 2 priors x 2 optimizers x 2 seeds run directory; ``new_fields`` adds what newer
    runs record (held-out strategy set, strategy use, stated calibration, routing, val)."""
    rng = np.random.default_rng(0)
    problems = 40
    ease = rng.uniform(0, 1, size=problems)
    priors = {}
    for prior, level in (("big", 0.6), ("small", 0.1)):
        priors[prior] = {"factor": None if prior == "big" else "pretraining amount",
                         "pretrain": {}, "path": str(root / "priors" / prior)}
        if new_fields:
            priors[prior]["val"] = {"pass@1": level, "pass@256": 0.9}

        def cell(success, prior=prior, extra_row=None):
            ev = {"id": _measurement(rng.binomial(N, success * ease),
                                     **({"stated_brier": 0.2, "stated_ece": 0.1,
                                         "stated_auroc": 0.7,
                                         "stated_share": 0.5,
                                         "strategy_use": {"division": 0.01}} if new_fields else
                                        {})),
                  "countdown2": _measurement(rng.binomial(N, success * ease / 2, size=problems))}
            if new_fields:
                ev["heldout:division"] = _measurement(
                    rng.binomial(N, success * ease / 4, size=problems),
                    strategy_use={"division": success / 10})
            return {"prior": prior, "eval": ev, **(extra_row or {})}

        base = {**cell(level), "optimizer": "base"}
        (root / "cells" / prior / "base").mkdir(parents=True)
        (root / "cells" / prior / "base" / "measure.json").write_text(json.dumps(base))
        for opt, bump in (("grpo", 0.0), ("mcts", 0.3)):
            for seed in (0, 1):
                row = {**cell(min(level + bump, 1.0)), "optimizer": opt, "seed": seed,
                       "train_tokens": 1000}
                if new_fields:
                    row["routing"] = {"swapped_share": 0.02, "prior_pass1": level,
                                      "trained_pass1": level + bump, "routed_pass1": level,
                                      "recovered": None if bump == 0 else 0.5}
                where = root / "cells" / prior / opt / f"seed{seed}"
                where.mkdir(parents=True)
                (where / "measure.json").write_text(json.dumps(row))
    (root / "priors.json").write_text(json.dumps(priors))


def _section(text, title):
    """The body of the markdown section ``## title`` (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"no section {title!r} in:\n{text}"
    return match.group(1)


def test_report_of_a_new_run_has_intervals_and_every_new_section(tmp_path):
    run = tmp_path / "run"
    _write_run(run, new_fields=True)
    text = write_report(run).read_text()
    eta = _section(text, "Prior vs optimizer: eta squared")
    assert re.search(r"\| pass@1 \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", eta)
    headline = _section(text, "Headline differences")
    assert re.search(r"\| small \| mcts - prior \| \+0\.\d{3} \[\+0\.\d{3}, \+0\.\d{3}\] \|",
                     headline)
    assert "best - worst by pass@1: mcts - grpo" in headline
    difficulty = _section(text, "Gain by difficulty")
    assert "| big | mcts |" in difficulty and "prior pass rate (0.1, 0.5]" in difficulty
    heldout = _section(text, "Held-out strategy")
    assert ("pass@1 | pass@16 | correct | share of samples using division | in distribution |"
            in heldout)
    assert re.search(r"\| small \| grpo \| [\d.]+ \| [\d.]+ \| \d+ of \d+ \|", heldout)
    assert "| small | (prior) |" in heldout and "| 0.010 |" in heldout
    ood = _section(text, "Out of distribution")
    assert "heldout:division" not in ood
    # countdown2 is reached (a prior's pass@n > 0.2): its pass@n is decomposed, and each
    # trained policy's change in reach there gets an interval
    assert re.search(r"\| big \| mcts \| countdown2 \| [+-]\d\.\d{3} \[[+-]\d\.\d{3}, "
                     r"[+-]\d\.\d{3}\] \| \d+ \|", ood)
    assert re.search(r"\| pass@n:countdown2 \| \d\.\d{3} \[", eta)
    for metric in ("gain:pass@1", "gain:pass@n", "gain:pass@n:countdown2"):
        assert re.search(rf"\| {metric} \| \d\.\d{{3}} \[", eta), metric
    assert "| big | grpo |" in _section(text, "When vs how (token routing)")
    assert "| 0.200 | 0.100 | 0.700 | 0.500 |" in _section(text, "Calibration")
    priors = _section(text, "Priors")
    assert "val pass@1 | val pass@256 |" in priors and "`priors/big`" in priors
    assert str(tmp_path) not in text and not re.search(r"(^|[\s`(\[])/[\w.~-]", text, re.MULTILINE)
    res = json.loads((run / "results.json").read_text())
    ci = res["eta_squared"]["pass@1"]["ci"]["prior"]
    assert ci[0] <= res["eta_squared"]["pass@1"]["a"] <= ci[1]


def test_report_of_an_older_run_leaves_out_what_it_lacks(tmp_path):
    run = tmp_path / "run"
    _write_run(run, new_fields=False)
    text = write_report(run).read_text()
    for absent in ("## Held-out strategy", "## When vs how", "## Calibration", "val pass@1"):
        assert absent not in text
    assert "## Headline differences" in text and "## Gain by difficulty" in text
    assert "| big | (prior) |" in _section(text, "In distribution (held-out)")


def test_report_of_an_unfinished_run_still_renders(tmp_path):
    """A missing seed makes the grid unbalanced: eta squared says why, the rest renders."""
    run = tmp_path / "run"
    _write_run(run, new_fields=True)
    (run / "cells" / "big" / "mcts" / "seed1" / "measure.json").unlink()
    text = write_report(run).read_text()
    assert "unbalanced design" in _section(text, "Prior vs optimizer: eta squared")
    assert "| big | mcts - prior |" in _section(text, "Headline differences")
    for prior in ("big", "small"):
        (run / "cells" / prior / "grpo" / "seed0" / "measure.json").unlink()
        (run / "cells" / prior / "grpo" / "seed1" / "measure.json").unlink()
        (run / "cells" / prior / "mcts" / "seed0" / "measure.json").unlink(missing_ok=True)
        (run / "cells" / prior / "mcts" / "seed1" / "measure.json").unlink(missing_ok=True)
    text = write_report(run).read_text()   # only the priors measured so far
    assert "| small | (prior) |" in text and "## Headline differences" not in text


def test_a_prior_outside_project_and_home_is_shown_by_its_cache_entry(tmp_path):
    run = tmp_path / "run"
    outside = tmp_path / "cache" / "study-priors" / "big-0123abcd"
    assert _shown_path(outside, run) == ".../study-priors/big-0123abcd"
    assert _shown_path(run / "priors" / "big", run) == "priors/big"  # beside report.md
    assert _shown_path("priors/big", run) == "priors/big"  # relative paths are kept as given
    assert _shown_path(Path.home() / ".cache" / "p" / "big", run) == "~/.cache/p/big"

"""The study's probes: problems solvable only with a strategy (``Countdown.needs_strategy``,
``problems_needing``, the "heldout:<strategy>" eval set and its config keys), the share
of all samples using a strategy, and the reachable-OOD countdown preset."""

import math
from pathlib import Path

import pytest

from treesearch.config import ConfigError
from treesearch.study.config import load_study_config
from treesearch.tasks import get_task
from treesearch.tasks.base import split_of
from treesearch.tasks.countdown import solve

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "study_quick.yaml"


@pytest.fixture(scope="module")
def countdown3():
    return get_task("countdown3")


# ---------------------------------------------------------------------------- solver

def test_needs_strategy_on_hand_made_problems(countdown3):
    # 24/6*25 is the only way to 100 from 24, 25, 6; 478 = 25*19+3 needs neither
    needs_division = {"numbers": (24, 25, 6), "target": 100}
    assert countdown3.needs_strategy(needs_division, "division")
    assert not countdown3.needs_strategy(needs_division, "subtraction")
    plain = {"numbers": (3, 19, 25), "target": 478}
    assert not countdown3.needs_strategy(plain, "division")
    assert not countdown3.needs_strategy(plain, "subtraction")
    # 25-3 = 22 is the only way to 22 from 3, 25
    assert countdown3.needs_strategy({"numbers": (3, 25), "target": 22}, "subtraction")
    # unsolvable at all: needs nothing
    assert not countdown3.needs_strategy({"numbers": (1, 1, 1), "target": 999}, "division")
    with pytest.raises(ValueError, match="unknown strategy"):
        countdown3.needs_strategy(needs_division, "exponentiation")


def test_solver_excludes_operators():
    assert solve([24, 25, 6], 100) is not None
    assert solve([24, 25, 6], 100, exclude_ops=("/",)) is None
    steps, expr = solve([3, 19, 25], 478, exclude_ops=("/", "-"))
    assert all(op not in ("/", "-") for _, op, _, _ in steps) and "-" not in expr


@pytest.mark.parametrize("strategy, split, n", [("division", "val", 1),
                                                ("subtraction", "test", 5)])
def test_problems_needing_come_from_the_split_and_need_the_strategy(countdown3, strategy, split, n):
    excluded = {"division": ("/",), "subtraction": ("-",)}[strategy]
    problems = countdown3.problems_needing(strategy, split, n, seed=0)
    assert len(problems) == n and len({p.id for p in problems}) == n
    for p in problems:
        numbers, target = list(p.inputs["numbers"]), p.inputs["target"]
        key = f"{','.join(map(str, sorted(numbers)))}={target}"
        assert p.split == split and split_of(key, countdown3.test_fraction,
                                             countdown3.val_fraction) == split
        assert solve(numbers, target) is not None
        assert solve(numbers, target, exclude_ops=excluded) is None
        assert countdown3.check(p, p.label)


def test_problems_needing_says_how_many_it_found(countdown3):
    with pytest.raises(RuntimeError,
                       match="found only 1 distinct test problems that need 'division' in 300"):
        countdown3.problems_needing("division", "test", 2, max_draws=300)


# ---------------------------------------------------------------------------- shares

def test_strategy_use_share_counts_every_sample(countdown3):
    from policies.diversity import strategy_share, strategy_use_share

    texts = ["24/6=4\n4*25=100\nA:(24/6)*25",      # division
             "25-3=22\nA:25-3",                    # subtraction
             "25*19=475\n475+3=478\nA:(25*19)+3",  # neither
             "25*4=100 (7 3 100)\nA:25*4"]         # style 2's annotation is not subtraction
    use = strategy_use_share(countdown3, texts)
    assert use == {"division": 0.25, "subtraction": 0.25}
    assert strategy_share(countdown3, texts[:2]) == {"division": 0.5, "subtraction": 0.5}
    assert all(math.isnan(v) for v in strategy_use_share(countdown3, []).values())


# ---------------------------------------------------------------------------- study

@pytest.mark.parametrize("override, key", [
    ("eval.heldout_strategy=exponentiation", "eval.heldout_strategy"),
    ("eval.heldout_problems=0", "eval.heldout_problems"),
])
def test_heldout_config_is_refused_naming_the_key(override, key):
    overrides = [override] + ([] if "strategy" in override else ["eval.heldout_strategy=division"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_study_config(QUICK, overrides)


def test_heldout_strategy_needs_a_task_that_can_tell():
    with pytest.raises(ConfigError, match=r"eval\.heldout_strategy.*needs_strategy"):
        load_study_config(QUICK, ["task=arithmetic2", "eval.heldout_strategy=division"])


def test_eval_sets_hold_the_heldout_strategy_set(tmp_path):
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir

    cfg = load_study_config(QUICK, [f"out={tmp_path / 'run'}", "eval.problems=2",
                                    "eval.ood_problems=0", "eval.heldout_strategy=division",
                                    "eval.heldout_problems=1"])
    study = Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    sets = study.cells.eval_sets()
    assert set(sets) == {"id", "heldout:division"}
    task, problems = sets["heldout:division"]
    assert len(problems) == 1 and problems[0].split == "test"
    assert task.needs_strategy(problems[0], "division")
    assert study.cells.eval_sets() is sets  # drawn once
    off = load_study_config(QUICK, [f"out={tmp_path / 'run2'}", "eval.problems=2"])
    sets_off = Study(off, RunDir.create(tmp_path / "run2", "x: 1\n")).cells.eval_sets()
    assert not any(name.startswith("heldout:") for name in sets_off)


def test_prior_val_figures_use_the_largest_k(tmp_path):
    """``priors.json``'s "val" entry: pass@1 and pass@256, or pass@n when n < 256, read
    from (and not redone when there is) ``cells/<prior>/base/val.json``."""
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir, write_json

    cfg = load_study_config(QUICK, [f"out={tmp_path / 'run'}"])
    study = Study(cfg, RunDir.create(tmp_path / "run", "x: 1\n"))
    for prior, pass_at, expected in [
            ("reference", {"1": 0.1, "2": 0.2, "4": 0.3, "8": 0.5},
             {"pass@1": 0.1, "pass@8": 0.5}),
            ("small", {"1": 0.1, "128": 0.6, "256": 0.7, "300": 0.8},
             {"pass@1": 0.1, "pass@256": 0.7})]:
        write_json(study.cell_dir(prior, "base") / "val.json",
                   {"prior": prior, "split": "val", "problems": 3, "measure": {"pass_at": pass_at}})
        assert study.cells.prior_val_figures(prior) == expected


def test_reachable_ood_preset_is_countdown3_with_two_digit_targets():
    task = get_task("countdown3_small_targets")
    problems = task.problems("val", 5, seed=0)
    assert all(len(p.inputs["numbers"]) == 3 and 10 <= p.inputs["target"] <= 99
               and all(1 <= v <= 25 for v in p.inputs["numbers"]) for p in problems)
    assert all(task.check(p, p.label) for p in problems)

"""The README's figures for the embedded default are the committed figures file's
(benchmarks/results/default_run.json, written by benchmarks/default_run.py from runs of the
README's own command), and the script that writes it tables and refuses runs correctly."""

import json
import re
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import default_run  # noqa: E402

from treesearch.config import load_config  # noqa: E402

FIGURES = ROOT / "benchmarks/results/default_run.json"


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_readme_quotes_the_figures_file():
    fig = json.loads(FIGURES.read_text())
    assert fig["command"] == "python -m treesearch.selfplay"
    assert fig["seeds"] == [0, 1, 2] and fig["rounds"] == load_config().rounds
    assert default_run.sentence(fig) in squash((ROOT / "README.md").read_text())


@pytest.mark.parametrize("name", ["default_run.json", "default_run_countdown3.json"])
def test_figures_file_is_consistent(name):
    fig = json.loads((FIGURES.parent / name).read_text())
    assert {"greedy", "pass@8", "mcts"} <= set(fig["per_seed"]) <= set(default_run.METRICS)
    for key in fig["per_seed"]:
        seeds = fig["per_seed"][key]
        assert fig["quickstart"][key] == seeds["s0"]
        for i, m in enumerate(fig["mean"][key]):
            mean, se = default_run.mean_se([v[i] for v in seeds.values()])
            assert m == pytest.approx(mean, abs=1e-4)
            assert fig["se"][key][i] == pytest.approx(se, abs=1e-4)


def fake_run(path: Path, seed: int, greedy: list[float], recipe: str | None = None,
             **changes) -> Path:
    cfg = load_config(recipe, overrides=[f"seed={seed}", f"out={path}",
                                         *(f"{k}={v}" for k, v in changes.items())])
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    rows = [{"round": r, "stage": "eval", **{k: g for k in default_run.METRICS}}
            for r, g in enumerate(greedy)]
    rows.insert(1, {"round": 1, "stage": "search", "train_solved": 0.5})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_table_means_and_errors(tmp_path):
    runs = {s: fake_run(tmp_path / f"s{s}", s, [0.1, 0.2 + 0.1 * s]) for s in (0, 1, 2)}
    fig = default_run.table(runs)
    assert fig["rounds"] == 1
    assert fig["quickstart"]["greedy"] == [0.1, 0.2]
    assert fig["mean"]["greedy"] == [0.1, 0.3]
    assert fig["se"]["greedy"] == [0.0, pytest.approx(0.0577, abs=1e-4)]
    assert fig["runs"] == {"s0": "s0", "s1": "s1", "s2": "s2"}  # names only, no machine path


def test_a_run_off_the_default_is_refused_by_key(tmp_path):
    default_run.check_default(fake_run(tmp_path / "ok", 1, [0.1]), 1)
    odd = fake_run(tmp_path / "odd", 0, [0.1], **{"search.simulations": 8, "rounds": 2})
    with pytest.raises(ValueError, match="rounds, search.simulations"):
        default_run.check_default(odd, 0)
    with pytest.raises(ValueError, match="seed 1, expected 2"):
        default_run.check_default(tmp_path / "ok", 2)


def test_another_recipes_runs_are_checked_against_it(tmp_path):
    """--config countdown3: its runs pass against that recipe (progress bars off changes
    nothing computed), are refused by the embedded default by key, and the table names
    the recipe in its command."""
    run = fake_run(tmp_path / "s0", 0, [0.1, 0.2], recipe="countdown3", progress="false")
    default_run.check_default(run, 0, "countdown3")
    with pytest.raises(ValueError, match="not the embedded default; differs in .*task"):
        default_run.check_default(run, 0)
    fig = default_run.table({0: run}, "countdown3")
    assert fig["command"] == "python -m treesearch.selfplay --config countdown3"
    assert fig["problems"] == 600


def test_unequal_runs_are_refused(tmp_path):
    runs = {0: fake_run(tmp_path / "a", 0, [0.1, 0.2]), 1: fake_run(tmp_path / "b", 1, [0.1])}
    with pytest.raises(ValueError, match="unequal"):
        default_run.table(runs)

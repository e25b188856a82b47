"""Recipes: one source of truth per knob, shipped as package data, found from anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from treesearch.config import SelfPlayConfig, load_config
from treesearch.search import SearchConfig
from treesearch.study.config import load_study_config
from treesearch.utils.recipes import ConfigError, recipe_path, shipped_recipes

ROOT = Path(__file__).resolve().parent.parent


def test_default_yaml_is_the_dataclass_default():
    """configs/default.yaml spells out SelfPlayConfig's defaults, value for value."""
    from_yaml = OmegaConf.to_container(load_config(ROOT / "configs" / "default.yaml"))
    assert from_yaml == OmegaConf.to_container(OmegaConf.structured(SelfPlayConfig))
    assert from_yaml == OmegaConf.to_container(load_config(None))


def test_the_default_is_game24_and_countdown3_is_the_default_before():
    """The embedded default searches Game of 24 with its prior and a PRM; --config game24 is
    it at one thread; --config countdown3 keeps the countdown settings its figures were made
    with (the default before issue 30)."""
    default, game24, countdown3 = (OmegaConf.to_container(load_config(name))
                                   for name in (None, "game24", "countdown3"))
    assert (default["task"], default["policy"]["model"], default["critics"]["process"],
            default["search"]["max_depth"], default["distill"]["epochs"]) == (
        "game24", "tiny-game24", "head", 5, 3)
    assert {**game24, "policy": {**game24["policy"], "threads": 2}} == default
    assert (countdown3["task"], countdown3["policy"]["model"], countdown3["policy"]["threads"],
            countdown3["critics"]["process"], countdown3["search"]["max_depth"],
            countdown3["distill"]["epochs"], countdown3["eval"]["problems"]) == (
        "countdown3", "tiny-countdown3", 1, "none", 6, 2, 600)


def test_search_section_is_search_config():
    cfg = load_config(None, ["search.rule=uct", "search.gamma=0.9", "search.answer=score",
                             "search.early_stop=false", "search.prior_temperature=2.0"])
    search = OmegaConf.to_object(cfg.search)
    assert isinstance(search, SearchConfig)
    assert (search.rule, search.gamma, search.answer, search.early_stop,
            search.prior_temperature) == ("uct", 0.9, "score", False, 2.0)
    assert OmegaConf.to_object(load_config(None).search) == SearchConfig()


@pytest.mark.parametrize("override, key", [("search.answer=best", "search.answer"),
                                           ("search.simulations=0", "search.simulations"),
                                           ("search.rule=ucb", "rule")])
def test_bad_search_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_every_shipped_recipe_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # by name, from a directory without configs/
    names = shipped_recipes()
    assert {"default", "smollm2", "vllm", "study", "study_quick"} <= set(names)
    for name in names:
        if name.startswith("study"):
            assert load_study_config(name).priors
        else:
            assert load_config(name).rounds >= 1
    assert recipe_path("configs/smollm2.yaml").name == "smollm2.yaml"
    with pytest.raises(ConfigError, match="shipped recipes: .*default"):
        recipe_path("no-such-recipe")


def test_a_recipe_extends_another(tmp_path):
    """``extends`` loads the named recipe first: lists are replaced, mappings merged; a
    shipped name works from anywhere; a circle is refused naming the file."""
    (tmp_path / "base.yaml").write_text("seeds: [0, 1, 2]\nbudget_tokens: 5000\n"
                                        "rl: {lr: 0.001, group_size: 4}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nseeds: [7]\nrl: {lr: 0.002}\n"
                                         "priors: [{name: p, model: tiny-countdown3}]\n")
    cfg = load_study_config(tmp_path / "child.yaml")
    assert list(cfg.seeds) == [7] and cfg.budget_tokens == 5000
    assert cfg.rl.lr == 0.002 and cfg.rl.group_size == 4
    (tmp_path / "quick.yaml").write_text("extends: study_quick\nseeds: [3]\n")
    cfg = load_study_config(tmp_path / "quick.yaml")
    assert list(cfg.seeds) == [3]
    assert cfg.budget_tokens == load_study_config("study_quick").budget_tokens
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_study_config(tmp_path / "a.yaml")
    heldout = load_study_config("study_heldout")
    medium = load_study_config("study_medium")
    assert heldout.budget_tokens == medium.budget_tokens and heldout.rl == medium.rl
    assert [p.name for p in heldout.priors] == ["reference", "no_division"]


@pytest.mark.slow
def test_non_editable_install_finds_its_recipes(tmp_path):
    """`pip install .` (not editable), then the entry point from another directory."""
    src, target = tmp_path / "src", tmp_path / "site"
    for name in ("treesearch", "policies", "critics", "configs"):  # build outside the checkout
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, timeout=600)
    assert (target / "treesearch" / "recipes" / "default.yaml").is_file()
    assert not (target / "treesearch" / "recipes").is_symlink()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = tmp_path / "elsewhere"
    run.mkdir()
    code = ("import treesearch, sys; from treesearch.config import load_config; "
            "print(treesearch.__file__); print(load_config('countdown3').task)")
    out = subprocess.run([sys.executable, "-c", code], cwd=run, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(str(target))
    assert out.stdout.splitlines()[1] == "countdown3"
    help_ = subprocess.run([sys.executable, "-m", "treesearch.selfplay", "--help"], cwd=run,
                           env=env, capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0, help_.stderr
    assert "study_quick" in help_.stdout and "default" in help_.stdout


def test_portable_paths_are_relative_where_they_can_be(tmp_path, monkeypatch):
    from treesearch.utils.runs import portable_path

    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "runs" / "x") == "runs/x"
    assert portable_path(ROOT / "policies" / "priors" / "tiny-countdown3") == \
        "policies/priors/tiny-countdown3"
    assert portable_path(Path.home() / ".cache" / "m") == "~/.cache/m"


def test_decode_replays_a_recipes_search_with_overrides():
    """decode --config takes the recipe's search section as it is; overrides change only
    the keys they name."""
    from treesearch.decode import search_config

    base = SearchConfig(simulations=64, horizon=1, max_children=8)
    out = search_config(base, ["search.rule=uct", "search.gamma=0.9"])
    assert (out.simulations, out.horizon, out.max_children) == (64, 1, 8)
    assert (out.rule, out.gamma) == ("uct", 0.9)
    with pytest.raises(ConfigError, match="search.simulations"):
        search_config(base, ["search.simulations=0"])
    with pytest.raises(ConfigError, match="only search.KEY=VALUE"):
        search_config(base, ["rounds=3"])


def test_search_overrides_may_follow_list_options():
    from treesearch.decode import split_overrides

    rest, overrides = split_overrides(["--budgets", "256", "512", "search.simulations=32",
                                       "--task", "countdown3", "search.rule=uct"])
    assert rest == ["--budgets", "256", "512", "--task", "countdown3"]
    assert overrides == ["search.simulations=32", "search.rule=uct"]


def test_decode_runs_the_simulations_it_is_given_else_the_budget_sizes_them(tmp_path):
    """``search.simulations=N`` on decode's command line is MCTS's round count; a recipe's
    count (its training search's) and the default leave it to the budget (None)."""
    from treesearch.decode import parse_args, resolve_settings

    settings, search = resolve_settings(parse_args(["search.simulations=32"]))
    assert settings["simulations"] == 32 == search.simulations
    assert resolve_settings(parse_args(["--budgets", "256", "search.rule=uct"]))[0][
        "simulations"] is None
    recipe = tmp_path / "sims.yaml"
    recipe.write_text("search:\n  simulations: 40\n")
    settings, search = resolve_settings(parse_args(["--config", str(recipe)]))
    assert settings["simulations"] is None and search.simulations == 40
    settings, _ = resolve_settings(parse_args(["--config", str(recipe), "search.simulations=8"]))
    assert settings["simulations"] == 8


def test_decode_takes_the_judge_from_flag_or_recipe(tmp_path):
    from treesearch.decode import parse_args, resolve_settings

    assert resolve_settings(parse_args([]))[0]["judge"] == "plain"
    assert resolve_settings(parse_args(["--judge", "chat"]))[0]["judge"] == "chat"
    recipe = tmp_path / "judged.yaml"
    recipe.write_text("critics:\n  judge: chat\n")
    assert resolve_settings(parse_args(["--config", str(recipe)]))[0]["judge"] == "chat"
    with pytest.raises(SystemExit):
        parse_args(["--judge", "html"])

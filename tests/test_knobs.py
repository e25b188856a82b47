"""A knob is defined once, in the library config that uses it; the recipes embed it.

Every recipe section of self-play, the study and decode is walked: a field an app section
declares itself must not repeat a field of a library config (a second definition, with
its own default, of a knob the library owns). The apps build the library configs from
the recipe (every knob arrives), fill the fields they own themselves (refused in a
recipe), and state where their defaults differ from the library's.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from critics.compose import RewardWeights
from policies.distill import DistillConfig
from policies.pretrain import PretrainConfig
from policies.rl import RLConfig
from treesearch.config import DISTILL_SET_BY_APP, SelfPlayConfig, distill_config, load_config
from treesearch.decode import _Distributed
from treesearch.distributed import DistributedConfig
from treesearch.search import SearchConfig
from treesearch.search.harvest import HarvestConfig
from treesearch.study.config import (
    RL_SET_BY_STUDY,
    TREE_SET_BY_STUDY,
    StudyConfig,
    dpo_config,
    load_study_config,
    rl_config,
    sft_config,
    tree_of,
)
from treesearch.tasks import TaskOptions
from treesearch.utils.recipes import ConfigError

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "study_quick.yaml"
RECIPES = (SelfPlayConfig, StudyConfig, _Distributed)  # decode's recipe: its distributed section
APP_MODULES = {"treesearch.config", "treesearch.study.config", "treesearch.decode"}
LIBRARY = (SearchConfig, DistillConfig, RLConfig, RewardWeights, HarvestConfig, TaskOptions,
           DistributedConfig, PretrainConfig)
# app fields named like a library field that are other knobs, each with what it is
SAME_NAME_OTHER_KNOB = {
    "CriticsConfig.value": "which critic fills the value slot; its weight is weights.value",
    "CriticsConfig.process": "which critic fills the process slot; weight: weights.process",
    "CriticsConfig.outcome": "which critic fills the outcome slot; weight: weights.outcome",
    "CriticsConfig.epochs": "the critics' training, not the policy's",
    "CriticsConfig.lr": "the critics' training, not the policy's",
    "DistillSection.method": "self-play's distillation method (sft, ..., tree_pg), not RL's",
    "DistillSection.tree_baseline": ("tree_pg's baseline, the argument of "
                                     "policies.rl.tree_examples; values and default are the "
                                     "library's TREE_BASELINES"),
    "PolicyConfig.backend": "the policy's generator (hf, vllm), not where stages run",
    "PolicyConfig.temperature": "search and pass@k sampling (self-play trains no RLConfig)",
    "PolicyConfig.threads": "torch threads of the run (the library calls leave them)",
    "SelfPlayConfig.task": "the run's task (PretrainConfig.task: a prior's traces)",
    "SelfPlayConfig.task_args": "the run's task arguments",
    "SelfPlayConfig.train_problems": "training problems per round",
    "SelfPlayConfig.out": "the run directory",
    "SelfPlayConfig.seed": "the run's seed; each stage derives the library's seed from it",
    "SelfPlayConfig.progress": "the run's progress bars, handed to the library calls",
    "StudyConfig.task": "the study's task, handed to a prior pretrained without a reference",
    "StudyConfig.task_args": "the study's task arguments, likewise",
    "StudyConfig.train_problems": "training problems per cell",
    "StudyConfig.out": "the run directory",
    "StudyConfig.threads": "torch threads of the study (the library calls leave them)",
    "StudyConfig.progress": "the study's progress bars, handed to the library calls",
    "StudyEval.temperature": "the measurements' sampling, also handed to RLConfig.temperature",
}


def _sections(cls, seen: set) -> set:
    """``cls`` and every dataclass its fields hold (directly, or in a list or dict)."""
    if cls in seen:
        return seen
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for t in (hints[f.name], *typing.get_args(hints[f.name])):
            if dataclasses.is_dataclass(t):
                _sections(t, seen)
    return seen


def _own_fields(cls) -> list[str]:
    """The fields ``cls`` declares itself (not those it inherits)."""
    own = cls.__dict__.get("__annotations__", {})
    return [f.name for f in dataclasses.fields(cls) if f.name in own]


def test_no_app_section_defines_a_library_knob_again():
    library = {}
    for cls in LIBRARY:
        for f in dataclasses.fields(cls):
            library.setdefault(f.name, []).append(cls.__name__)
    sections = set()
    for recipe in RECIPES:
        _sections(recipe, sections)
    apps = [c for c in sections if c.__module__ in APP_MODULES]
    assert {c.__name__ for c in apps} >= {"SelfPlayConfig", "DistillSection", "StudyConfig",
                                           "RLSection", "TreeSection"}
    assert {c for c in sections if c.__module__ not in APP_MODULES} <= set(LIBRARY)
    twice = {f"{c.__name__}.{name}": library[name] for c in apps for name in _own_fields(c)
             if name in library and f"{c.__name__}.{name}" not in SAME_NAME_OTHER_KNOB}
    assert not twice, f"knobs defined again beside the library config that owns them: {twice}"
    names = {f"{c.__name__}.{name}" for c in apps for name in _own_fields(c)}
    assert set(SAME_NAME_OTHER_KNOB) <= names  # no stale entry


def test_the_sections_embed_the_library_configs():
    hints = typing.get_type_hints(SelfPlayConfig)
    assert issubclass(hints["distill"], DistillConfig) and hints["search"] is SearchConfig
    assert issubclass(hints["distill"], HarvestConfig)
    assert typing.get_type_hints(hints["critics"])["weights"] is RewardWeights
    hints = typing.get_type_hints(StudyConfig)
    assert issubclass(hints["rl"], RLConfig) and hints["search"] is SearchConfig
    tree = typing.get_type_hints(hints["tree"])
    assert tree["sft"] is DistillConfig and tree["dpo"] is DistillConfig
    assert issubclass(hints["tree"], HarvestConfig)


def _dotlist(prefix: str, values: dict) -> list[str]:
    return [f"{prefix}.{k}={json.dumps(v)}" for k, v in values.items()]


DISTILL_KNOBS = {"lr": 0.0123, "epochs": 3, "batch_size": 5, "weight_decay": 0.01,
                 "grad_clip": 0.5, "threads": 1, "dpo_beta": 0.2, "lora": True, "lora_r": 4,
                 "lora_alpha": 8.0, "lora_dropout": 0.1, "lora_targets": ["q_proj"],
                 "max_steps": 7, "pg_clip": 0.3, "anchor_kl": 0.5, "own_kl": 0.25,
                 "own_samples": 2}
# the policy-gradient objectives: refused with the SFT methods, so set with wreinforce
PG_DISTILL_KNOBS = {"cov_clip": 0.05, "cov_clip_low": 0.5, "cov_clip_high": 4.0,
                    "cov_kl": 0.5, "cov_kl_top": 0.01}
PG_METHOD = ["distill.method=wreinforce", "distill.anchor_kl=0"]
RL_KNOBS = [{"group_size": 4, "problems_per_step": 3, "lr": 0.0123, "clip_eps": 0.3,
             "kl_beta": 0.01, "updates_per_batch": 2, "batch_size": 5, "grad_clip": 0.5,
             "passk": 2, "tree_baseline": "parent", "zero_success": "drop",
             "zero_success_weight": 0.3, "curriculum": "easy_first", "curriculum_samples": 2,
             "threads": 1, "cov_clip": 0.05, "cov_clip_low": 0.5, "cov_clip_high": 4.0,
             "cov_kl": 0.5, "cov_kl_top": 0.01},
            {"reward": "brier"}]


def _library_knobs(cls, set_by_app) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - set(set_by_app)


def test_every_distill_knob_reaches_selfplays_distill_config():
    assert set(DISTILL_KNOBS) | set(PG_DISTILL_KNOBS) == _library_knobs(DistillConfig,
                                                                        DISTILL_SET_BY_APP)
    for knobs, method in ((DISTILL_KNOBS, []), (PG_DISTILL_KNOBS, PG_METHOD)):
        cfg = load_config(None, [*method, *_dotlist("distill", knobs)])
        built = distill_config(cfg, seed=5)
        assert {k: getattr(built, k) for k in knobs} == knobs
        assert (built.seed, built.progress) == (5, cfg.progress)


def test_every_rl_knob_reaches_the_studys_rl_config():
    assert set().union(*RL_KNOBS) == _library_knobs(RLConfig, RL_SET_BY_STUDY)
    for knobs in RL_KNOBS:
        cfg = load_study_config(QUICK, ["optimizers=[grpo]", "rl.method_lr={}",
                                        *_dotlist("rl", knobs)])
        built = rl_config(cfg, "grpo", seed=11)
        assert {k: getattr(built, k) for k in knobs} == knobs
        assert (built.method, built.token_budget, built.temperature, built.max_steps,
                built.max_step_tokens, built.seed, built.progress) == (
            "grpo", cfg.budget_tokens, cfg.eval.temperature, cfg.search.max_depth,
            cfg.search.max_step_tokens, 11, cfg.progress)


@pytest.mark.parametrize("part, build", [("sft", sft_config), ("dpo", dpo_config)])
def test_every_distill_knob_reaches_the_studys_tree_configs(part, build):
    """Every knob but the objectives a part's trainer cannot train (refused there: own_kl is
    the SFT's; Clip-Cov / KL-Cov reach grpo through the rl section)."""
    skip = {"lora"} | ({"own_kl", "own_samples"} if part == "dpo" else set())  # peft: optional
    knobs = {k: v for k, v in DISTILL_KNOBS.items() if k not in skip}
    cfg = load_study_config(QUICK, _dotlist(f"tree.{part}", knobs))
    built = build(cfg, "mcts" if part == "sft" else "dpo", seed=3)
    assert {k: getattr(built, k) for k in knobs} == knobs and built.seed == 3


def test_fields_the_apps_set_are_left_out_of_the_recipes_and_refused_there():
    selfplay = OmegaConf.structured(SelfPlayConfig)
    study = OmegaConf.structured(StudyConfig)
    for name in DISTILL_SET_BY_APP:
        assert OmegaConf.is_missing(selfplay.distill, name)
    for name in RL_SET_BY_STUDY:
        assert OmegaConf.is_missing(study.rl, name)
    for name in TREE_SET_BY_STUDY:
        assert OmegaConf.is_missing(study.tree.sft, name)
        assert OmegaConf.is_missing(study.tree.dpo, name)
    with pytest.raises(ConfigError, match=r"'distill\.seed' = 3: set by the app from seed"):
        load_config(None, ["distill.seed=3"])
    with pytest.raises(ConfigError, match=r"'rl\.token_budget' = 5: set by the app from budget"):
        load_study_config(QUICK, ["rl.token_budget=5"])
    with pytest.raises(ConfigError, match=r"'tree\.dpo\.progress'"):
        load_study_config(QUICK, ["tree.dpo.progress=false"])


def _changed(section, cls, set_by_app) -> set[str]:
    library = cls.__new__(cls)  # the library's defaults, without its required fields
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            setattr(library, f.name, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            setattr(library, f.name, f.default_factory())
    return {f.name for f in dataclasses.fields(cls) if f.name not in set_by_app
            and getattr(section, f.name) != getattr(library, f.name)}


def test_where_an_app_default_differs_from_the_librarys_it_says_so_once():
    """Self-play anchors its SFT (anchor_kl 1.0, three epochs at lr 1e-4); the study trains
    its on-policy optimizers at lr 1e-4 and its tree optimizers at lr 1e-4 for two epochs.
    Every other knob is the library's default."""
    selfplay = OmegaConf.structured(SelfPlayConfig)
    assert _changed(selfplay.distill, DistillConfig, DISTILL_SET_BY_APP) == {
        "lr", "epochs", "anchor_kl"}
    assert (selfplay.distill.lr, selfplay.distill.epochs, selfplay.distill.anchor_kl) == (
        1e-4, 3, 1.0)
    study = OmegaConf.structured(StudyConfig)
    assert _changed(study.rl, RLConfig, RL_SET_BY_STUDY) == {"lr"} and study.rl.lr == 1e-4
    for part in (study.tree.sft, study.tree.dpo):
        assert _changed(part, DistillConfig, TREE_SET_BY_STUDY) == {"lr", "epochs"}
        assert (part.lr, part.epochs) == (1e-4, 2)


def test_older_spellings_load_to_the_same_values(tmp_path):
    """The study's flat tree keys (files, overrides, a variant's tree) and self-play's
    critics.weight_* keys still load; a key spelled both ways in one file is refused."""
    old = ["tree.sft_lr=0.002", "tree.sft_epochs=3", "tree.sft_anchor_kl=0.5",
           "tree.dpo_lr=0.0005", "tree.dpo_epochs=4", "tree.dpo_beta=0.2", "tree.batch_size=8"]
    new = ["tree.sft.lr=0.002", "tree.sft.epochs=3", "tree.sft.anchor_kl=0.5",
           "tree.dpo.lr=0.0005", "tree.dpo.epochs=4", "tree.dpo.dpo_beta=0.2",
           "tree.sft.batch_size=8", "tree.dpo.batch_size=8"]
    want = load_study_config(QUICK, new).tree
    assert load_study_config(QUICK, old).tree == want
    (tmp_path / "old.yaml").write_text("extends: study_quick\ntree:\n" + "".join(
        f"  {o.split('=')[0].split('.')[1]}: {o.split('=')[1]}\n" for o in old))
    assert load_study_config(tmp_path / "old.yaml").tree == want
    variant = ("variants={v: {optimizer: mcts, tree: {sft_anchor_kl: 0.5, batch_size: 8}},"
               " w: {optimizer: mcts, tree: {sft: {anchor_kl: 0.5, batch_size: 8},"
               " dpo: {batch_size: 8}}}}")
    cfg = load_study_config(QUICK, [variant])
    assert tree_of(cfg, "v") == tree_of(cfg, "w")
    assert tree_of(cfg, "v").sft.anchor_kl == 0.5 and tree_of(cfg, "v").dpo.batch_size == 8
    (tmp_path / "both.yaml").write_text("extends: study_quick\ntree: {sft_lr: 0.1, "
                                        "sft: {lr: 0.2}}\n")
    with pytest.raises(ConfigError, match=r"'tree\.sft_lr' in .*both\.yaml.* 'tree\.sft\.lr'"):
        load_study_config(tmp_path / "both.yaml")
    weights = load_config(None, ["critics.weight_value=2", "critics.prm_aggregation=last"])
    assert weights.critics.weights == load_config(
        None, ["critics.weights.value=2", "critics.weights.prm_aggregation=last"]).critics.weights
    (tmp_path / "run.yaml").write_text("extends: default\ncritics: {weight_value: 2, "
                                       "prm_aggregation: last}\n")
    assert load_config(tmp_path / "run.yaml").critics.weights == weights.critics.weights

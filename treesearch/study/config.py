"""The study's recipe: priors x optimizers x seeds, budgets and measurements (omegaconf).

``configs/study_quick.yaml`` is the CPU grid (``python -m treesearch.study --quick``),
``configs/study.yaml`` the full grid sized for a GPU. Dotlist overrides work as in
self-play (``python -m treesearch.study --quick seeds=[0,1] budget_tokens=50000``); an
unknown key is an error listing the valid keys.

A prior is either a model as it is (``model``: zoo name or directory) or a pretraining
run (``pretrain``: ``policies.pretrain.PretrainConfig`` fields) built on first use and
cached. With ``reference`` (another prior's name whose model has a ``metrics.json``), the
``pretrain`` fields override the reference's recorded pretraining config, so the variant
differs from the reference in the one factor it names; without, they are the whole
pretraining config.

A knob is defined once, in the library config that uses it, and the recipe embeds that
config as it is: ``search`` is ``treesearch.search.SearchConfig``, ``rl`` is
``policies.rl.RLConfig`` (with the study's ``method_lr`` beside it), ``tree.sft`` and
``tree.dpo`` are ``policies.distill.DistillConfig``. Where the study's default differs from
the library's, the section's default says so (``_rl_defaults``, ``_tree_distill``). The
fields the study fills itself (the method, the budget, the cell's seed, ...) stay ``???``
in the recipe. The older flat spelling of the tree section (``tree.sft_lr``,
``tree.sft_anchor_kl``, ``tree.batch_size``, ..., also in a variant's ``tree``) keeps
loading (``TREE_RENAMES``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import OmegaConf

from policies.distill import DistillConfig
from policies.distill import refuse_objectives
from policies.distill import validate as check_distill
from policies.pretrain import PretrainConfig
from policies.rl import PG_METHODS, RLConfig
from policies.rl import validate as check_rl_config
from policies.tokenization import build_char_tokenizer
from policies.zoo import MODELS, resolve
from treesearch.config import build_task, check_model, check_prompts
from treesearch.distributed import DistributedConfig
from treesearch.distributed import check as check_distributed
from treesearch.search import SearchConfig
from treesearch.search.context import ContextError
from treesearch.search.context import check_context as fits_context
from treesearch.search.harvest import HarvestConfig
from treesearch.tasks import TaskOptions, get_task
from treesearch.tasks.base import HELD_OUT_SPLITS
from treesearch.utils import knobs
from treesearch.utils.checkpoints import load_tokenizer, max_positions
from treesearch.utils.knobs import REWARDS, RL_METHODS, ZERO_SUCCESS
from treesearch.utils.recipes import (
    ConfigError,
    check_library,
    check_set_by_app,
    instantiate,
    library_config,
    load_recipe,
    rename_keys,
    set_by_app,
)

FROM_TREES = ("mcts", "dpo")  # trained from one search over the training problems
ON_POLICY = RL_METHODS  # trained by ``policies.rl.train``
OPTIMIZERS = FROM_TREES + ON_POLICY


@dataclass
class PriorSpec:
    name: str = ""
    model: str = ""                       # zoo name or directory (used as is)
    reference: str = ""                   # prior whose pretraining config is the base
    factor: str = ""                      # what differs from the reference, for the report
    pretrain: Dict[str, Any] = field(default_factory=dict)
    # this prior's own optimizers / seeds (empty: the study's). A prior with its own lists
    # is a probe beside the grid: eta squared reads only the priors that share the
    # study's full optimizer x seed grid (``treesearch.study.analysis``)
    optimizers: List[str] = field(default_factory=list)
    seeds: List[int] = field(default_factory=list)
    # False: a control, measured untrained only (no cells; e.g. the reference beside a
    # probe prior built from it)
    trained: bool = True


def optimizers_of(cfg, spec) -> list[str]:
    """The optimizers a prior is trained with: its own list, else the study's; none for
    an untrained control."""
    if not spec.trained:
        return []
    return list(spec.optimizers or cfg.optimizers)


def seeds_of(cfg, spec) -> list[int]:
    """The seeds a prior is trained with: its own list, else the study's."""
    return list(spec.seeds or cfg.seeds)


def all_optimizers(cfg) -> set[str]:
    """Every optimizer (or variant name) some prior of the study is trained with."""
    return {o for p in cfg.priors for o in optimizers_of(cfg, p)}


def base_optimizer(cfg, name: str) -> str:
    """The optimizer a name trains with: a variant's base, else the name itself."""
    return cfg.variants[name].optimizer if name in cfg.variants else name


def rl_of(cfg, name: str):
    """The rl section optimizer ``name`` trains with: the study's, with a variant's
    changes on top (a variant's own ``lr`` beats ``method_lr``)."""
    if name not in cfg.variants:
        return cfg.rl
    rl = OmegaConf.merge(cfg.rl, dict(cfg.variants[name].rl))
    if "lr" in cfg.variants[name].rl:
        rl.method_lr = {}
    return rl


def tree_changes(changes, key: str = "tree") -> dict:
    """A variant's ``tree`` changes (a mapping) with the older flat spelling renamed
    (``TREE_RENAMES``: ``sft_anchor_kl`` -> ``sft.anchor_kl``, ...); ``key`` names it in an
    error."""
    plain = OmegaConf.to_container(changes) if OmegaConf.is_config(changes) else dict(changes)
    return OmegaConf.to_container(rename_keys(OmegaConf.create(plain), TREE_RENAMES,
                                              f" in {key}"))


def tree_of(cfg, name: str):
    """The tree section optimizer ``name`` trains with: the study's, with a variant's
    changes on top."""
    if name not in cfg.variants:
        return cfg.tree
    return OmegaConf.merge(cfg.tree, tree_changes(cfg.variants[name].tree,
                                                  f"variants.{name}.tree"))


def optimizer_lr(cfg, name: str) -> float:
    """The learning rate optimizer ``name`` trains with (``rl_of``, then ``method_lr``)."""
    rl = rl_of(cfg, name)
    return float(rl.method_lr.get(base_optimizer(cfg, name), rl.lr))


# the RLConfig fields the study sets itself (``rl_config``): field -> from what
RL_SET_BY_STUDY = {"method": "the optimizer lists (optimizers, variants)",
                   "token_budget": "budget_tokens", "temperature": "eval.temperature",
                   "max_steps": "search.max_depth", "max_step_tokens": "search.max_step_tokens",
                   "seed": "seeds (each cell derives its own)", "progress": "progress"}


@dataclass
class RLSection(RLConfig):
    """The on-policy optimizers' section: ``policies.rl.RLConfig`` as it is (group_size,
    lr, passk, tree_baseline, zero_success, reward, curriculum, ...), and the study's own
    ``method_lr`` (a learning rate per optimizer, over ``lr``). passk > 1 and the "brier"
    reward change grpo only, and tree_rl always keeps its zero-success groups (``rl_config``)."""

    method_lr: Dict[str, float] = field(default_factory=dict)  # e.g. {nsr: 1e-5}


def _rl_defaults() -> RLSection:
    """The study's rl section: RLConfig with lr 1e-4 (the library's is 1e-5); the fields
    the study sets itself are left out (``RL_SET_BY_STUDY``)."""
    return RLSection(lr=1e-4, **set_by_app(RL_SET_BY_STUDY))


@dataclass
class VariantSpec:
    """A named optimizer variant: ``optimizer`` trained with the study's ``rl`` section
    changed in the fields of ``rl`` (on-policy optimizers, e.g. ``{reward: brier}``) or its
    ``tree`` section changed in the fields of ``tree`` (mcts and dpo, e.g.
    ``{sft: {anchor_kl: 1.0}}``, or in the older spelling ``{sft_anchor_kl: 1.0}``); the
    name goes in an optimizer list like any optimizer, so its cells sit beside the base
    optimizer's (and share its search)."""

    optimizer: str = ""
    rl: Dict[str, Any] = field(default_factory=dict)
    tree: Dict[str, Any] = field(default_factory=dict)


# the DistillConfig fields the study sets itself (``sft_config``, ``dpo_config``)
TREE_SET_BY_STUDY = {"seed": "seeds (each cell derives its own)", "progress": "progress"}
# the tree section's older flat spelling: key -> the keys it sets now
TREE_RENAMES = {"sft_lr": ("sft.lr",), "sft_epochs": ("sft.epochs",),
                "sft_anchor_kl": ("sft.anchor_kl",), "dpo_lr": ("dpo.lr",),
                "dpo_epochs": ("dpo.epochs",), "dpo_beta": ("dpo.dpo_beta",),
                "batch_size": ("sft.batch_size", "dpo.batch_size")}
RENAMES = {f"tree.{old}": tuple(f"tree.{key}" for key in new) for old, new in TREE_RENAMES.items()}


def _tree_distill() -> DistillConfig:
    """The tree optimizers' distillation: DistillConfig with lr 1e-4 and two epochs (the
    library's: 3e-4, one); the fields the study sets itself are left out
    (``TREE_SET_BY_STUDY``). anchor_kl > 0 in ``sft`` adds that times KL(start || policy)
    on the imitated positions (self-play's distill.anchor_kl, the keep-the-prior term)."""
    return DistillConfig(lr=1e-4, epochs=2, **set_by_app(TREE_SET_BY_STUDY))


@dataclass
class TreeSection(HarvestConfig):
    """The MCTS + distillation and DPO optimizers: one search over the training problems
    (``search``; the rule verifier scores answers: these are LABELLED TRAINING problems),
    then SFT on the best ``paths_per_problem`` correct paths (mcts, trained with ``sft``) or
    DPO on sibling steps whose Q differ by ``dpo_margin`` (dpo, trained with ``dpo``):
    ``treesearch.search.harvest.HarvestConfig`` and two ``DistillConfig``s."""

    sft: DistillConfig = field(default_factory=_tree_distill)
    dpo: DistillConfig = field(default_factory=_tree_distill)


@dataclass
class StudyEval:
    split: str = "test"                    # "val" while tuning the recipe, "test" to report
    problems: int = 24                     # held-out, in distribution
    ood_problems: int = 12                 # per OOD task
    samples: int = 256                     # n per problem (>= 256 for pass@256)
    temperature: float = 1.0
    entropy_samples: int = 16
    # a held-out-strategy probe: eval.split problems solvable ONLY with this task strategy
    # (e.g. "division"; "" = off), measured as the set "heldout:<strategy>"
    heldout_strategy: str = ""
    heldout_problems: int = 100
    # the when-vs-how token-routing probe (``treesearch.study.routing``) on the in-distribution
    # problems of every trained cell: samples per problem (0 = off)
    routing_samples: int = 0


@dataclass
class StudyConfig:
    task: str = "countdown3"  # any form get_task takes (rg:<dataset>, package.module:factory, ...)
    # the task's own arguments (not the OOD tasks')
    task_args: Dict[str, Any] = field(default_factory=dict)
    ood_tasks: List[str] = field(default_factory=lambda: ["countdown2", "countdown"])
    # prompt style, step delimiter, answer formats of the task and the OOD tasks
    # (``treesearch.tasks.options``; the self-play recipe's ``task_options`` section)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    priors: List[PriorSpec] = field(default_factory=list)
    optimizers: List[str] = field(default_factory=lambda: list(OPTIMIZERS))
    seeds: List[int] = field(default_factory=lambda: [0])
    budget_tokens: int = 100_000           # generated tokens per training run
    train_problems: int = 128
    threads: int = 2
    device: str = "cpu"                    # policies train and sample here ("cuda" on a GPU)
    out: str = ""                          # empty: runs/study-<date>-<time>
    prior_cache: str = "~/.cache/treesearch/study-priors"
    progress: bool = True
    rl: RLSection = field(default_factory=_rl_defaults)
    # named on-policy optimizer variants (name -> VariantSpec), e.g. the probes of
    # calibration (reward), order (curriculum) and zero-success groups
    variants: Dict[str, VariantSpec] = field(default_factory=dict)
    # the training search of the mcts and dpo optimizers; search.max_depth and
    # search.max_step_tokens also bound every rollout (RL samples, measurements)
    # (max_depth 6: the countdown study's, kept when self-play's default moved to game24's 5)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(
        simulations=64, early_stop=False, max_depth=6))
    tree: TreeSection = field(default_factory=TreeSection)
    eval: StudyEval = field(default_factory=StudyEval)
    # where the cells run: this process, or Ray worker actors (``treesearch.distributed``;
    # the same keys as self-play's; shard_problems does not apply: a cell is the unit)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def load_study_config(path: str | Path | None, overrides=()) -> StudyConfig:
    """Defaults <- YAML <- dotlist overrides (``treesearch.utils.recipes.load_recipe``), then
    ``validate_study``."""
    cfg = load_recipe(StudyConfig, path, overrides, renames=RENAMES)
    validate_study(cfg)
    return cfg


def rl_config(cfg, optimizer: str, seed: int) -> RLConfig:
    """The ``RLConfig`` on-policy optimizer ``optimizer`` trains with: its rl section's
    library knobs (``rl_of``, the learning rate ``optimizer_lr``), those its method does not
    read set to what it does (pass@K and the Brier reward are grpo's, tree_rl keeps every
    group, Clip-Cov / KL-Cov are the policy-gradient methods'), and what the study sets
    itself (``RL_SET_BY_STUDY``; ``seed``: the cell's)."""
    method = base_optimizer(cfg, optimizer)
    rl = rl_of(cfg, optimizer)
    cov = {k: getattr(rl, k) if method in PG_METHODS else 0.0
           for k in ("cov_clip", "cov_clip_low", "cov_clip_high", "cov_kl", "cov_kl_top")}
    return library_config(RLConfig, rl, method=method, token_budget=cfg.budget_tokens,
                          temperature=cfg.eval.temperature, max_steps=cfg.search.max_depth,
                          max_step_tokens=cfg.search.max_step_tokens, seed=seed,
                          progress=cfg.progress, lr=optimizer_lr(cfg, optimizer),
                          passk=rl.passk if method == "grpo" else 1,
                          zero_success=rl.zero_success if method != "tree_rl" else "keep",
                          reward=rl.reward if method == "grpo" else "binary", **cov)


def sft_config(cfg, optimizer: str, seed: int) -> DistillConfig:
    """The ``DistillConfig`` of the mcts optimizer's (or its variant's) SFT: its tree
    section's ``sft``, with the cell's ``seed`` and the study's progress setting."""
    return library_config(DistillConfig, tree_of(cfg, optimizer).sft, seed=seed,
                          progress=cfg.progress)


def dpo_config(cfg, optimizer: str, seed: int) -> DistillConfig:
    """The ``DistillConfig`` of the dpo optimizer's (or its variant's) DPO: its tree
    section's ``dpo``, with the cell's ``seed`` and the study's progress setting."""
    return library_config(DistillConfig, tree_of(cfg, optimizer).dpo, seed=seed,
                          progress=cfg.progress)


def train_config(cfg, optimizer: str, seed: int):
    """The library config ``optimizer`` (a name of ``OPTIMIZERS`` or a variant) trains
    with: mcts its tree section's SFT (``sft_config``), dpo its DPO (``dpo_config``), an
    on-policy optimizer its ``rl_config``."""
    method = base_optimizer(cfg, optimizer)
    if method == "mcts":
        return sft_config(cfg, optimizer, seed)
    if method == "dpo":
        return dpo_config(cfg, optimizer, seed)
    return rl_config(cfg, optimizer, seed)


def _check_rl(cfg, rl, key: str, optimizers: set[str], need) -> None:
    """The checks of one rl section (the study's, or a variant's with its changes): ``key``
    names it in errors, ``optimizers`` are those it serves. What the study decides (the
    learning rate per optimizer, knobs a method would not read); then RLConfig's own checks
    of the config each on-policy optimizer trains with (``rl_config``)."""
    check_set_by_app(rl, key, RL_SET_BY_STUDY)
    methods = {base_optimizer(cfg, o) for o in optimizers}
    for method, lr in rl.method_lr.items():
        need(method in ON_POLICY, f"{key}.method_lr.{method}",
             f"not an on-policy optimizer ({', '.join(ON_POLICY)})")
        need(isinstance(lr, (int, float)) and lr > 0, f"{key}.method_lr.{method}", "must be > 0")
    need(isinstance(rl.passk, int) and 1 <= rl.passk <= rl.group_size, f"{key}.passk",
         f"must be an int in [1, {key}.group_size = {rl.group_size}] (pass@K of a group; "
         "K > 1 changes grpo only)")
    need(rl.passk == 1 or "grpo" in methods, f"{key}.passk",
         "K > 1 changes grpo's advantages only, and grpo is not among the optimizers")
    # checked here too: a method that does not read them gets its own value (rl_config)
    need(rl.zero_success in ZERO_SUCCESS, f"{key}.zero_success",
         f"must be one of {', '.join(ZERO_SUCCESS)}, got {rl.zero_success!r}")
    need(rl.reward in REWARDS, f"{key}.reward",
         f"must be one of {', '.join(REWARDS)}, got {rl.reward!r}")
    need(rl.reward == "binary" or ("grpo" in methods and rl.passk == 1),
         f"{key}.reward", "'brier' changes grpo's reward only (with rl.passk = 1), and needs "
         "grpo among the optimizers")
    for name in ("cov_clip", "cov_kl"):  # a section serving tree optimizers only: unread
        need(not getattr(rl, name) or bool(methods & set(PG_METHODS))
             or not methods & set(ON_POLICY), f"{key}.{name}",
             f"an objective of the policy-gradient methods ({', '.join(PG_METHODS)}), and "
             "none is among the on-policy optimizers it serves")
    for optimizer in sorted(o for o in optimizers if base_optimizer(cfg, o) in ON_POLICY):
        check_library(check_rl_config, rl_config(cfg, optimizer, seed=0), key)


def _check_tree(cfg, name: str, key: str) -> None:
    """The checks of one tree section (the study's: ``name`` an optimizer of its own, or a
    variant's with its changes), named ``key`` in errors: DistillConfig's own checks of
    the configs its SFT and DPO train with, and no objective its trainer cannot train
    (``policies.distill.refuse_objectives``: own_kl is the SFT's, Clip-Cov / KL-Cov are
    policy-gradient objectives, in the rl section for grpo)."""
    for part, build in (("sft", sft_config), ("dpo", dpo_config)):
        check_set_by_app(getattr(tree_of(cfg, name), part), f"{key}.{part}", TREE_SET_BY_STUDY)
        built = check_library(check_distill, build(cfg, name, seed=0), f"{key}.{part}")
        check_library(functools.partial(refuse_objectives, trainer=part), built,
                      f"{key}.{part}")


def validate_study(cfg) -> None:
    """Refuse values that cannot work, naming the key, before any model work."""
    need = functools.partial(knobs.need, error=ConfigError)
    task = build_task(cfg)  # the task with its task_args and task_options, refused by key
    for key in [f"ood_tasks.{i}" for i in range(len(cfg.ood_tasks))]:
        name = OmegaConf.select(cfg, key)
        try:
            get_task(name)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"config key {key!r}: cannot use task {name!r} ({exc})") from None
    _check_variants(cfg, need)
    known = list(OPTIMIZERS) + list(cfg.variants)
    need(len(cfg.optimizers) >= 1, "optimizers", "list at least one optimizer")
    for i, o in enumerate(cfg.optimizers):
        need(o in known, f"optimizers.{i}", f"unknown optimizer {o!r}; known: {known}")
    _check_priors(cfg, known, need)
    need(len(cfg.seeds) >= 1, "seeds", "list at least one seed")
    need(cfg.budget_tokens >= 1000, "budget_tokens", "must be >= 1000 generated tokens")
    need(cfg.train_problems >= 1, "train_problems", "must be >= 1")
    _check_eval(cfg, task, need)
    need(cfg.threads >= 1, "threads", "must be >= 1")
    check_distributed(cfg.distributed, cells=True)
    instantiate(cfg.search, "search")  # SearchConfig checks its own values
    _check_sections(cfg, need)
    _check_prior_models(cfg, task, need)


def _check_variants(cfg, need) -> None:
    """``validate_study``: every variant names a known base and changes only its fields."""
    rl_fields = set(RLSection.__dataclass_fields__)
    tree_fields = set(TreeSection.__dataclass_fields__)
    for name, v in cfg.variants.items():
        need(name not in OPTIMIZERS, f"variants.{name}", f"a variant cannot take the name of "
             f"an optimizer ({list(OPTIMIZERS)})")
        need(v.optimizer in ON_POLICY + FROM_TREES, f"variants.{name}.optimizer",
             f"must be one of {list(ON_POLICY + FROM_TREES)}, got {v.optimizer!r}")
        need(not v.rl or v.optimizer in ON_POLICY, f"variants.{name}.rl",
             f"{v.optimizer} does not read the rl section (it trains from the search's trees: "
             "change its tree section instead)")
        need(not v.tree or v.optimizer in FROM_TREES, f"variants.{name}.tree",
             f"{v.optimizer} does not read the tree section (an on-policy optimizer: change its "
             "rl section instead)")
        bad = sorted(set(v.rl) - rl_fields)
        need(not bad, f"variants.{name}.rl", f"unknown rl fields {bad}; valid: {sorted(rl_fields)}")
        bad = sorted(set(tree_changes(v.tree, f"variants.{name}.tree")) - tree_fields)
        need(not bad, f"variants.{name}.tree",
             f"unknown tree fields {bad}; valid: {sorted(tree_fields)}")


def _check_priors(cfg, known: list, need) -> None:
    """``validate_study``: the priors, each a model or a pretraining (variant)."""
    need(len(cfg.priors) >= 1, "priors", "list at least one prior")
    names = [p.name for p in cfg.priors]
    need(all(names) and len(set(names)) == len(names), "priors",
         f"every prior needs a distinct name, got {names}")
    fields = set(PretrainConfig.__dataclass_fields__)
    for i, p in enumerate(cfg.priors):
        built = bool(p.reference) or bool(p.pretrain)
        need(bool(p.model) != built, f"priors.{i}",
             f"prior {p.name!r}: give either model (use as is) or pretrain (and optionally "
             f"a reference), not both or neither")
        if p.reference:
            need(p.reference in names and p.reference != p.name, f"priors.{i}.reference",
                 f"{p.reference!r} is not another prior of this study ({names})")
        bad = sorted(set(p.pretrain) - fields)
        need(not bad, f"priors.{i}.pretrain", f"unknown pretrain fields {bad}; valid: "
             f"{sorted(fields)}")
        for j, o in enumerate(p.optimizers):
            need(o in known, f"priors.{i}.optimizers.{j}",
                 f"unknown optimizer {o!r}; known: {known}")
        need(len(set(p.seeds)) == len(p.seeds), f"priors.{i}.seeds", "seeds must be distinct")
        need(p.trained or not (p.optimizers or p.seeds), f"priors.{i}.trained",
             f"prior {p.name!r} is an untrained control (trained: false): it takes no "
             "optimizers or seeds of its own")


def _check_eval(cfg, task, need) -> None:
    """``validate_study``: the eval section."""
    need(cfg.eval.split in HELD_OUT_SPLITS, "eval.split",
         "must be 'val' (tuning) or 'test' (reporting)")
    need(cfg.eval.problems >= 1, "eval.problems", "must be >= 1")
    need(cfg.eval.ood_problems >= 0, "eval.ood_problems", "must be >= 0")
    need(cfg.eval.samples >= 1, "eval.samples", "must be >= 1")
    need(cfg.eval.temperature > 0, "eval.temperature", "must be > 0 (pass@k samples)")
    if cfg.eval.heldout_strategy:
        need(hasattr(task, "needs_strategy") and hasattr(task, "problems_needing"),
             "eval.heldout_strategy", f"task {cfg.task!r} cannot tell which problems need a "
             "strategy (no needs_strategy); set it to '' (off)")
        need(cfg.eval.heldout_strategy in task.strategies, "eval.heldout_strategy",
             f"{cfg.eval.heldout_strategy!r} is not one of task {cfg.task!r}'s strategies "
             f"{list(task.strategies)}")
        need(cfg.eval.heldout_problems >= 1, "eval.heldout_problems", "must be >= 1")
    need(cfg.eval.routing_samples >= 0, "eval.routing_samples",
         "must be >= 0 (samples per problem for the routing probe; 0 = off)")


def _check_sections(cfg, need) -> None:
    """``validate_study``: the tree and rl sections each optimizer and variant trains with
    (the library configs check their own knobs)."""
    _check_tree(cfg, "mcts", "tree")
    used = all_optimizers(cfg)
    # the study's rl section serves the optimizers used under their own names
    _check_rl(cfg, cfg.rl, "rl", {o for o in used if o not in cfg.variants}, need)
    for name, variant in cfg.variants.items():
        # checked in the one section its optimizer reads (``_check_variants`` refuses
        # changes to the other)
        reads = "tree" if variant.optimizer in FROM_TREES else "rl"
        try:
            section = tree_of(cfg, name) if reads == "tree" else rl_of(cfg, name)
        except ConfigError:
            raise
        except Exception as exc:  # a value of the wrong type for its field
            raise ConfigError(f"config key 'variants.{name}.{reads}': {exc}") from None
        if reads == "tree":
            _check_tree(cfg, name, f"variants.{name}.tree")
        else:
            _check_rl(cfg, section, f"variants.{name}.rl", {name}, need)


def _check_prior_models(cfg, task, need) -> None:
    """``validate_study``: each prior's model loads and takes the task's prompts; a prior
    pretrained from scratch needs a task with a solver."""
    for i, p in enumerate(cfg.priors):
        if p.model:
            check_model(p.model, f"priors.{i}.model")
            check_prompts(task, p.model, f"priors.{i}.model")
        elif not p.reference:
            need(task.writes_traces, f"priors.{i}.pretrain",
                 f"prior {p.name!r} is pretrained on task {cfg.task!r}, which has no solver "
                 "(no solution traces to pretrain on); give a model instead")


def searched_problems(cfg, task) -> list:
    """Every problem of the study's own task a prior is put before: the training problems
    of each seed (searched, or sampled by the on-policy optimizers) and the held-out ones."""
    seeds = sorted({s for p in cfg.priors for s in seeds_of(cfg, p)})
    problems = list(task.problems(cfg.eval.split, cfg.eval.problems, seed=0))
    for seed in seeds:
        problems += task.problems("train", cfg.train_problems, seed=seed)
    return problems


def prior_context(cfg, index: int):
    """(tokenizer, positions, key, model) of prior ``index``, read without loading it: a
    model's from its files, a pretrained prior's the character tokenizer and the
    ``max_positions`` it is pretrained with (its own, else its reference's, else
    ``PretrainConfig``'s); None for a zoo model still to be converted."""
    spec = cfg.priors[index]
    if spec.model:
        if spec.model in MODELS and MODELS[spec.model].build is not None:
            return None
        path = str(resolve(spec.model))
        return load_tokenizer(path), max_positions(path), f"priors.{index}.model", spec.model
    key = f"priors.{index}.pretrain.max_positions"
    positions = spec.pretrain.get("max_positions")
    names = [p.name for p in cfg.priors]
    if positions is None and spec.reference in names:
        ref = prior_context(cfg, names.index(spec.reference))
        positions = ref[1] if ref is not None else None
    if positions is None:
        positions = PretrainConfig.max_positions
    return build_char_tokenizer(), positions, key, spec.name


def check_context(cfg) -> None:
    """Refuse a study whose searches and rollouts cannot fit a prior's context: the
    longest prompt of ``searched_problems`` plus ``search.max_depth x
    search.max_step_tokens`` against each prior's positions
    (``treesearch.search.context``), a ConfigError naming those keys and the prior's,
    before any model work."""
    task, problems = build_task(cfg), None
    for index in range(len(cfg.priors)):
        context = prior_context(cfg, index)
        if context is None:
            continue
        tokenizer, positions, key, model = context
        problems = searched_problems(cfg, task) if problems is None else problems
        try:
            fits_context(tokenizer, positions, task, problems, cfg.search.max_depth,
                         cfg.search.max_step_tokens, model=model, model_key=key)
        except ContextError as exc:
            raise ConfigError(str(exc)) from None

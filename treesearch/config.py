"""The self-play recipe (omegaconf structured configs), loading and dotlist overrides.

    cfg = load_config("default", ["rounds=5", "policy.backend=vllm"])

Every recipe is a YAML file over ``SelfPlayConfig``; a key that the dataclasses do not
define is an error that lists the valid keys, and values are checked (``validate``)
before any work starts, with the offending key named. The dataclass defaults ARE the
embedded default: ``configs/default.yaml`` spells the same values out (a test holds the
two equal). A knob is defined once, in the library config that uses it, and the recipe
embeds that config as it is: the search section is ``treesearch.search.SearchConfig``, the
distill section ``policies.distill.DistillConfig`` with self-play's own keys beside it,
``critics.weights`` is ``critics.compose.RewardWeights``; where self-play's default differs
from the library's, the section's default says so (``_distill_defaults``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf
from transformers import AutoTokenizer

from critics.base import CriticError
from critics.compose import RewardWeights
from critics.generative import JUDGES, template_tokens
from critics.prm_formats import check_format_name, find_known, inspect
from policies.distill import DistillConfig
from policies.distill import validate as check_distill
from policies.zoo import MODELS, resolve
from treesearch.distributed import DistributedConfig
from treesearch.distributed import check as check_distributed
from treesearch.search import SearchConfig
from treesearch.search.context import ContextError
from treesearch.search.context import check_context as fits_context
from treesearch.search.harvest import HarvestConfig
from treesearch.tasks import Task, TaskArgsError, TaskOptions, get_task, prompt_ids
from treesearch.tasks.base import HELD_OUT_SPLITS, stable_hash
from treesearch.utils import knobs
from treesearch.utils.checkpoints import has_chat_template, load_tokenizer, max_positions
from treesearch.utils.knobs import TREE_BASELINES
from treesearch.utils.recipes import (
    ConfigError,
    check_library,
    check_set_by_app,
    instantiate,
    library_config,
    load_recipe,
    set_by_app,
)

BACKENDS = ("hf", "vllm")
CRITIC_IMPLS = ("head", "generative", "checker", "prm", "none")


@dataclass
class PolicyConfig:
    model: str = "tiny-game24"  # zoo name or model directory
    backend: str = "hf"
    device: str = "cpu"
    dtype: Optional[str] = None
    temperature: float = 0.7  # search and pass@k samples
    top_p: float = 1.0
    # torch threads of this process: the default is sized for 2 cores (12 min there at 2,
    # not bit-identical to a run at 1: float sums in another order); a Ray worker takes its
    # distributed.num_cpus instead (distributed.worker_threads)
    threads: int = 2


@dataclass
class CriticsConfig:
    """Each of value / process / outcome: "head", "generative", "checker" (process and
    outcome only: label-free checks from the problem's text, ``critics.checker``),
    "prm:<dir or name>" (process and outcome only: a published process reward model,
    ``critics.prm``, read in the format ``prm_format``) or "none"; ``trunk`` is the model
    each learned critic starts from (empty: the policy's model). How their scores combine
    is ``weights``, ``critics.compose.RewardWeights`` as it is (older recipes spell its
    keys ``weight_value``, ... and ``prm_aggregation`` here: ``RENAMES``)."""

    value: str = "head"
    process: str = "head"
    outcome: str = "head"
    trunk: str = ""
    # how a "generative" critic asks its model: "plain" (a True/False text prompt) or
    # "chat" (Yes/No in the model's own chat template, ``critics.generative``)
    judge: str = "plain"
    # how a "prm:" critic reads its checkpoint: one of critics.prm_formats.FORMATS
    # (math-shepherd, qwen-prm, rlhflow, value-head); empty: detected from the checkpoint
    prm_format: str = ""
    device: str = ""  # where the learned critics run and train; empty: policy.device
    weights: RewardWeights = field(default_factory=RewardWeights)
    # outcome scores during TRAINING searches: the rule verifier on labelled training
    # problems ("verifier"), or the learned ORM ("learned"); held-out search is always learned
    train_outcome: str = "verifier"
    # with the verifier: count an answer reached through false arithmetic ("23*7=151") as
    # wrong, so training searches keep looking for solutions worth distilling
    train_clean_steps: bool = False
    epochs: int = 2
    lr: float = 1e-3
    max_examples: int = 512  # per critic per round (drawn at random; ORM: class-balanced)
    train_trunk: bool = True  # False: fit the scalar head only (much cheaper)


DISTILL_METHODS = ("sft", "sft+dpo", "wreinforce", "tree_pg")
# the objectives only some methods train: DistillConfig field -> those methods
OBJECTIVE_METHODS = {"own_kl": ("sft", "sft+dpo"), "cov_clip": ("wreinforce", "tree_pg"),
                     "cov_kl": ("wreinforce", "tree_pg")}
# the DistillConfig fields self-play sets itself (``distill_config``): field -> from what
DISTILL_SET_BY_APP = {"seed": "seed (each round's distill stage derives its own)",
                      "progress": "progress"}


@dataclass
class DistillSection(DistillConfig, HarvestConfig):
    """How a round's trees train the policy: ``policies.distill.DistillConfig`` as it is
    (lr, epochs, batch_size, lora, dpo_beta, pg_clip, anchor_kl, ...; self-play's defaults
    for it are ``_distill_defaults``), ``treesearch.search.harvest.HarvestConfig``
    (paths_per_problem, dpo_margin) and the keys of self-play alone below.
    ``method``: "sft" (STaR-style imitation of the best verified paths), "sft+dpo" (then DPO
    on sibling steps), "wreinforce" (one weighted REINFORCE pass: the verified paths pushed
    up with weight ``positive_weight``, the failing sibling steps of the trees, the rejected
    side of the ``dpo_margin`` sibling pairs, pushed down with weight 1; Zhu et al. 2025,
    arXiv 2506.01347) or "tree_pg" (one policy-gradient pass on every visited step of the
    trees with a step advantage from the tree itself: its Q minus ``tree_baseline``, the mean
    Q of its visited siblings or its parent's Q; ``policies.rl.tree_examples``). Of the
    diversity options only ``anchor_kl`` is on by default (picked on val,
    ``benchmarks/results/widen_val.md``). Off the imitated paths (all off by
    default): ``own_kl`` with ``own_samples`` (sft, sft+dpo: KL(start || policy) at every
    position of ``own_samples`` samples per training problem drawn from the learner as the
    stage starts, seeded from the stage's seed) and Clip-Cov / KL-Cov (``cov_clip``;
    ``cov_kl`` with ``cov_kl_top``; wreinforce, tree_pg), knobs of ``DistillConfig``."""

    method: str = "sft"
    # True: every round fine-tunes the STARTING model on the paths of all rounds so far
    # (STaR); False: the previous round's policy on this round's paths only
    cumulative: bool = True
    # True: only paths whose steps hold no false arithmetic are imitated (fewer, cleaner
    # examples); False: every path that reaches a verified answer
    clean_steps: bool = False
    # True: at most one imitated path per problem for each distinct solution (what it does:
    # its answer expression without whitespace, ``harvest.solution_key``), best first
    distinct: bool = False
    # > 0: the imitated paths of a problem are weighted 1 + unlikeliness * rank / (m - 1),
    # rank 0 the most likely of its m paths under the search's step priors (rare correct
    # paths up-weighted; the unlikeliness reward of arXiv 2506.02355); 0 = off
    unlikeliness: float = 0.0
    # > 0: keep-the-prior term: this many samples per training problem from the STARTING
    # model (right or wrong) join the training set with weight prior_weight (cross-entropy
    # on the starting model's own samples = KL(start || policy) up to a constant); 0 = off
    prior_samples: int = 0
    prior_weight: float = 1.0
    # K >= 1: the imitated paths of a problem are weighted (1 - q)^(K - 1), q its tree's
    # root Q (the search's success rate on it, clipped to [0, 1]), then scaled so the
    # round's weights average 1: a problem the policy already solves reliably adds little,
    # a rarely solved one counts fully (the shape of pass@K advantages, arXiv 2508.10751,
    # without sampling groups); 0 = off
    passk_weight: int = 0
    positive_weight: float = 0.1  # wreinforce: lambda on the verified paths
    # tree_pg: the step baseline handed to ``policies.rl.tree_examples`` (one of
    # ``treesearch.utils.knobs.TREE_BASELINES``; the first, the library's default)
    tree_baseline: str = TREE_BASELINES[0]


def _distill_defaults() -> DistillSection:
    """Self-play's distillation: DistillConfig with these defaults changed (the rest are
    the library's). lr 1e-4 and three epochs: with the anchor on, more passes let SFT move
    further while the anchor keeps the rest of the start's distribution (one pass barely
    leaves the start; on game24 val three beat two by +2.3 greedy points, the rest tied:
    ``benchmarks/results/widen_val_game24.md``). anchor_kl 1.0 (sft, sft+dpo): beta of
    KL(start || policy) over the whole vocabulary at every imitated position, start the
    model the round's SFT begins from (with cumulative: the starting model): imitation
    raises the path's token, the rest keep the start's proportions; 0 = off (plain STaR
    SFT, which narrows what the policy can reach). pg_clip (wreinforce, tree_pg) stays the
    library's 0.2: off, wreinforce at lr 1e-4 collapsed the policy in round 1. The seed and
    the progress bar are the run's (``DISTILL_SET_BY_APP``)."""
    return DistillSection(lr=1e-4, epochs=3, anchor_kl=1.0, **set_by_app(DISTILL_SET_BY_APP))


@dataclass
class EvalSection:
    # held-out split evaluated every round: "val" while tuning a recipe, "test" to report
    split: str = "test"
    problems: int = 200  # greedy accuracy (game24's smallest held-out split is val's 208)
    samples: int = 8  # n of sampled pass@k
    sample_problems: int = 200  # sampled pass@k on the first this many problems (0: all)
    mcts_problems: int = 40
    mcts_budget: int = 384  # generated tokens per problem
    # > 0: what shrinks, per round, on the first passk_problems held-out problems with this
    # many samples each: pass@k for k = 1, 2, 4, ..., passk_samples, distinct correct
    # solutions per problem, mean token entropy (over the first entropy_samples samples of
    # each problem), format and strategy shares; also passk.png. 0 = off (the default cost)
    passk_samples: int = 0
    passk_problems: int = 200
    entropy_samples: int = 8


@dataclass
class SelfPlayConfig:
    # a built-in name, rg:<reasoning-gym dataset>, a treesearch.tasks entry point or
    # package.module:factory (``treesearch.tasks.registry``)
    task: str = "game24"
    # the task's own arguments: a preset's keyword arguments, a reasoning-gym dataset's
    # config keys (task_args.operators=[+,-,*]) or the factory's; unknown keys are errors
    task_args: Dict[str, Any] = field(default_factory=dict)
    # how the task talks to the model: prompt_style (plain | chat | fewshot), system_prompt,
    # shots, step_delimiter, answer_formats, last_number_fallback (``treesearch.tasks.options``)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    rounds: int = 4
    train_problems: int = 512  # per round
    seed: int = 0
    out: str = ""  # run directory; empty: runs/selfplay-<date>-<time>
    progress: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    critics: CriticsConfig = field(default_factory=CriticsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    distill: DistillSection = field(default_factory=_distill_defaults)
    eval: EvalSection = field(default_factory=EvalSection)
    # where the search and eval stages run: this process, or Ray worker actors
    # (``treesearch.distributed``)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


# older spellings of keys, still read from recipes, run directories and overrides
RENAMES = {"critics.weight_value": ("critics.weights.value",),
           "critics.weight_process": ("critics.weights.process",),
           "critics.weight_outcome": ("critics.weights.outcome",),
           "critics.prm_aggregation": ("critics.weights.prm_aggregation",)}


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> SelfPlayConfig:
    """Defaults <- YAML file <- dotlist overrides, then ``validate``. Returns an omegaconf
    DictConfig typed as ``SelfPlayConfig``."""
    cfg = load_recipe(SelfPlayConfig, path, overrides, renames=RENAMES)
    validate(cfg)
    return cfg


def distill_config(cfg, seed: int) -> DistillConfig:
    """The ``DistillConfig`` a distill stage trains with: the distill section's library
    knobs, the stage's ``seed`` and the run's ``progress``."""
    return library_config(DistillConfig, cfg.distill, seed=seed, progress=cfg.progress)


def stage_seed(seed: int, round_: int, stage: str) -> int:
    """The seed of one self-play stage of one round (run seed, round, stage name): every
    stage reseeds itself from it, so a resumed run computes what an uninterrupted one would."""
    return stable_hash("selfplay", seed, round_, stage) % 2**31


def train_problems(cfg, task: Task, round_: int) -> list:
    """Round ``round_``'s ``cfg.train_problems`` training problems of a self-play recipe:
    what its search stage searched (and the tree viewer shows)."""
    return task.problems_once("train", cfg.train_problems,
                              seed=stage_seed(cfg.seed, round_, "problems"))


def build_task(cfg) -> Task:
    """The recipe's task (``task``, built with ``task_args``) with its ``task_options``: the
    one task object every stage renders prompts and reads answers with. A task that cannot
    be built is a ConfigError naming ``task`` or the ``task_args`` key."""
    options = instantiate(cfg.task_options, "task_options")
    args = (OmegaConf.to_container(cfg.task_args) if OmegaConf.is_config(cfg.task_args)
            else dict(cfg.task_args))
    try:
        task = get_task(cfg.task, **args)
    except TaskArgsError as exc:
        raise ConfigError(f"config key 'task_args.{exc.key}': {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config key 'task' = {cfg.task!r}: {exc}") from None
    try:
        return task.configure(options)
    except ValueError as exc:  # options the task cannot take (shots without a solver)
        raise ConfigError(f"config key 'task_options': {exc}") from None


def check_clean_steps(cfg, task: Task) -> None:
    """Refuse clean_steps (critics.train_clean_steps, distill.clean_steps) for a task that
    does not count arithmetic slips, naming the key and the task."""
    for key in ("critics.train_clean_steps", "distill.clean_steps"):
        if OmegaConf.select(cfg, key) and not task.counts_slips:
            raise ConfigError(f"config key {key!r} = True: task {task.name!r} does not count "
                              "arithmetic slips (counts_slips = False), so steps cannot be "
                              "judged clean")


def validate(cfg) -> None:
    """Refuse values that cannot work, naming the key, before any model work."""
    need = functools.partial(knobs.need, source=cfg, error=ConfigError)
    task = build_task(cfg)  # names the task, task_args or task_options key it cannot use
    check_clean_steps(cfg, task)
    need(cfg.rounds >= 1, "rounds", "must be >= 1")
    need(cfg.train_problems >= 1, "train_problems", "must be >= 1")
    need(cfg.policy.backend in BACKENDS, "policy.backend", f"must be one of {BACKENDS}")
    need(cfg.policy.temperature > 0, "policy.temperature", "must be > 0 (search samples)")
    need(0 < cfg.policy.top_p <= 1, "policy.top_p", "must be in (0, 1]")
    need(cfg.policy.threads >= 1, "policy.threads", "must be >= 1")
    _check_critics(cfg, task, need)
    instantiate(cfg.search, "search")  # SearchConfig checks its own values
    _check_distill(cfg, need)
    _check_eval(cfg, need)
    check_distributed(cfg.distributed)
    check_model(cfg.policy.model, "policy.model")
    if cfg.critics.trunk:
        check_model(cfg.critics.trunk, "critics.trunk")
    if cfg.task_options.prompt_style == "chat":
        check_chat_model(cfg.policy.model, "policy.model")
    check_prompts(task, cfg.policy.model, "policy.model", seed=cfg.seed)


def _check_critics(cfg, task: Task, need) -> None:
    """``validate``'s critics section."""
    for kind in ("value", "process", "outcome"):
        need(getattr(cfg.critics, kind) != "oracle", f"critics.{kind}",
             "the step oracle is for benchmarks only (benchmarks/bench_decode.py "
             "--step-oracle), never a critic of self-play")
        impl, _, model = str(getattr(cfg.critics, kind)).partition(":")
        need(impl in CRITIC_IMPLS, f"critics.{kind}",
             f"unknown critic; known: {', '.join(CRITIC_IMPLS)} (prm as prm:<dir or name>)")
        need((impl == "prm") == bool(model.strip()), f"critics.{kind}",
             "write prm:<dir or name>" if impl == "prm" else
             "only a prm critic names its model here (prm:<dir or name>)")
        if impl == "prm":
            _check_prm(cfg, kind, model.strip(), need)
    if not any(str(getattr(cfg.critics, k)).startswith("prm:") for k in ("process", "outcome")):
        _prm_format(cfg, need)
    need(cfg.critics.value != "checker", "critics.value",
         "there is no label-free value checker (checkers judge steps or answers)")
    if cfg.critics.outcome == "checker":
        need(task.can_verify_answers, "critics.outcome",
             f"task {cfg.task!r} cannot verify answers from the problem's text alone, so it "
             "has no outcome checker")
    need(any(getattr(cfg.critics, k) != "none" for k in ("value", "process", "outcome")),
         "critics.value", "the search needs at least one critic (value, process or outcome)")
    need(cfg.critics.judge in JUDGES, "critics.judge", f"must be one of {', '.join(JUDGES)}")
    if cfg.critics.judge == "chat" and any(getattr(cfg.critics, k) == "generative"
                                           for k in ("value", "process", "outcome")):
        if cfg.critics.trunk:
            check_chat_model(cfg.critics.trunk, "critics.trunk", "critics.judge")
        else:
            check_chat_model(cfg.policy.model, "policy.model", "critics.judge")
    need(cfg.critics.train_outcome in ("verifier", "learned"), "critics.train_outcome",
         "must be 'verifier' or 'learned'")
    instantiate(cfg.critics.weights, "critics.weights")  # RewardWeights checks its own values
    need(cfg.critics.max_examples >= 2, "critics.max_examples", "must be >= 2")
    need(cfg.critics.lr >= 0, "critics.lr", "must be >= 0")


def _prm_format(cfg, need) -> str | None:
    """``critics.prm_format`` checked: None (detect) or a format name."""
    try:
        return check_format_name(cfg.critics.prm_format)
    except CriticError as exc:
        need(False, "critics.prm_format", str(exc))


def _check_prm(cfg, kind: str, model: str, need) -> None:
    """A ``prm:`` critic: process or outcome slot, a checkpoint that exists and that its
    format (``critics.prm_format``, or detected) can read, from its files alone."""
    need(kind != "value", f"critics.{kind}", "a PRM scores steps (process) or finished "
         "solutions (outcome), not values")
    fmt = _prm_format(cfg, need)
    try:
        path = find_known(model) or resolve(model)
        inspect(path, fmt)
    except (FileNotFoundError, ValueError) as exc:  # CriticError is a ValueError
        raise ConfigError(f"config key 'critics.{kind}' = {getattr(cfg.critics, kind)!r}: "
                          f"{exc}") from None


def _check_distill(cfg, need) -> None:
    """``validate``'s distill section (``DistillConfig`` checks its own knobs)."""
    d = cfg.distill
    need(d.method in DISTILL_METHODS, "distill.method",
         f"must be one of {', '.join(DISTILL_METHODS)}")
    check_set_by_app(d, "distill", DISTILL_SET_BY_APP)
    check_library(check_distill, distill_config(cfg, seed=0), "distill")  # DistillConfig's own
    need(d.unlikeliness >= 0, "distill.unlikeliness", "must be >= 0 (0 = off)")
    need(d.prior_samples >= 0, "distill.prior_samples", "must be >= 0 (0 = off)")
    need(d.prior_weight > 0, "distill.prior_weight", "must be > 0")
    need(isinstance(d.passk_weight, int) and d.passk_weight >= 0, "distill.passk_weight",
         "must be an int >= 0 (K of the (1 - q)^(K - 1) problem weight; 0 = off)")
    need(d.positive_weight >= 0, "distill.positive_weight", "must be >= 0")
    for key, methods in OBJECTIVE_METHODS.items():
        need(not getattr(d, key) or d.method in methods, f"distill.{key}",
             f"an objective of {' and '.join(methods)}, which method {d.method!r} cannot "
             f"train (0 = off)")
    need(d.anchor_kl == 0 or d.method in ("sft", "sft+dpo"), "distill.anchor_kl",
         f"applies to the SFT methods (sft, sft+dpo), not {d.method!r}: add "
         "distill.anchor_kl=0 (the default recipe anchors its SFT)")
    need(d.tree_baseline in TREE_BASELINES, "distill.tree_baseline",
         f"must be one of {', '.join(TREE_BASELINES)}")
    need(d.method != "tree_pg" or not (d.distinct or d.unlikeliness > 0 or d.passk_weight),
         "distill.method", "tree_pg trains on every visited step of the trees, not on "
         "selected paths: distill.distinct, distill.unlikeliness and distill.passk_weight "
         "do not apply")


def _check_eval(cfg, need) -> None:
    """``validate``'s eval section."""
    need(cfg.eval.split in HELD_OUT_SPLITS, "eval.split",
         "must be 'val' (tuning) or 'test' (reporting); train problems are not held out")
    need(cfg.eval.problems >= 1, "eval.problems", "must be >= 1")
    need(cfg.eval.samples >= 1, "eval.samples", "must be >= 1")
    need(cfg.eval.sample_problems >= 0, "eval.sample_problems",
         "must be >= 0 (0, or more than eval.problems: all of them)")
    need(cfg.eval.passk_samples >= 0, "eval.passk_samples", "must be >= 0 (0 = off)")
    need(cfg.eval.passk_problems >= 0, "eval.passk_problems",
         "must be >= 0 (0, or more than eval.problems: all of them)")
    need(cfg.eval.entropy_samples >= 0, "eval.entropy_samples", "must be >= 0 (0 = no entropy)")
    need(cfg.eval.mcts_problems >= 1, "eval.mcts_problems",
         "must be >= 1 (the held-out problems MCTS and majority vote decode; more than "
         "eval.problems: all of them)")
    need(cfg.eval.mcts_budget >= cfg.search.max_step_tokens, "eval.mcts_budget",
         f"must pay for at least one step (search.max_step_tokens = {cfg.search.max_step_tokens})")


def check_model(name: str, key: str) -> None:
    if name in MODELS and MODELS[name].build is not None:
        return  # converted on first use (e.g. smollm2-135m)
    try:
        resolve(name)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"config key {key!r} = {name!r}: {exc}") from None


def check_chat_model(name: str, key: str, setting: str = "task_options.prompt_style") -> None:
    """Refuse ``setting`` = 'chat' (the prompt style, or the generative critics' judge) for
    a model whose tokenizer has no chat template, from its files (a zoo model still to be
    converted is checked when its prompts render)."""
    if name in MODELS and MODELS[name].build is not None:
        return
    if not has_chat_template(resolve(name)):
        other = "'plain' or 'fewshot'" if setting == "task_options.prompt_style" else "'plain'"
        raise ConfigError(f"config key {setting!r} = 'chat': the tokenizer of "
                          f"{key} {name!r} has no chat template (use {other})")


@functools.lru_cache(maxsize=8)
def _tokenizer(model_dir: str):
    return AutoTokenizer.from_pretrained(model_dir)


def check_prompts(task: Task, name: str, key: str, seed: int = 0) -> None:
    """Refuse a task whose prompts the model's tokenizer cannot write (a character-level
    tiny prior has no token for most of a word problem's characters), naming the task and
    ``key``, from one train problem. A zoo model still to be converted is checked when its
    prompts render."""
    if name in MODELS and MODELS[name].build is not None:
        return
    problem = task.problems("train", 1, seed=seed)[0]
    try:
        prompt_ids(_tokenizer(str(resolve(name))), task, problem)
    except Exception as exc:  # tokenizers raise a bare Exception for a missing character
        raise ConfigError(f"config key 'task' = {task.name!r}: the tokenizer of {key} {name!r} "
                          f"cannot write its prompts ({type(exc).__name__}: {exc}), e.g. "
                          f"{task.prompt(problem)[:80]!r}; use a model whose tokenizer "
                          "can") from None


def searched_problems(cfg, task: Task) -> list:
    """Every problem a self-play run puts before its policy: the held-out eval problems
    and each round's training problems (``train_problems``)."""
    problems = list(task.problems_once(cfg.eval.split, cfg.eval.problems, seed=cfg.seed))
    for round_ in range(1, cfg.rounds + 1):
        problems += train_problems(cfg, task, round_)
    return problems


def check_context(cfg, task: Task) -> None:
    """Refuse a recipe whose searches cannot fit the context of its policy (or of the
    learned critics' own trunk): the longest prompt of ``searched_problems`` plus
    ``search.max_depth x search.max_step_tokens`` against the model's positions
    (``treesearch.search.context``), a ConfigError naming those keys, before any model
    work. A generative critic's model must also hold its template around the state
    (``critics.generative.template_tokens``; judge "chat" also shows the question, counted
    as long as the prompt). A zoo model still to be converted is checked once it is (its
    first run)."""
    kinds = ("value", "process", "outcome")
    generative = [k for k in kinds if getattr(cfg.critics, k) == "generative"]
    learned = generative or any(getattr(cfg.critics, k) == "head" for k in kinds)
    critic_model = cfg.critics.trunk or cfg.policy.model
    models = [("policy.model", cfg.policy.model)]
    if cfg.critics.trunk and learned:
        models.append(("critics.trunk", cfg.critics.trunk))
    problems = None
    for key, name in models:
        if name in MODELS and MODELS[name].build is not None:
            continue
        path = str(resolve(name))
        tokenizer = load_tokenizer(path)
        problems = searched_problems(cfg, task) if problems is None else problems
        extra, what, question = 0, "", False
        if generative and name == critic_model:
            extra = max(template_tokens(tokenizer, k, cfg.critics.judge) for k in generative)
            question = cfg.critics.judge == "chat"
            what = f"the generative critics' template (critics.judge = {cfg.critics.judge})"
        try:
            fits_context(tokenizer, max_positions(path), task, problems, cfg.search.max_depth,
                         cfg.search.max_step_tokens, model=name, model_key=key, extra=extra,
                         extra_what=what, prompt_again=question)
        except ContextError as exc:
            raise ConfigError(str(exc)) from None

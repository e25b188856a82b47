"""Structured configs of the self-play loop (omegaconf), loading and dotlist overrides.

    cfg = load_config("configs/default.yaml", ["rounds=5", "policy.backend=vllm"])

Every recipe is a YAML file over ``SelfPlayConfig``; a key that the dataclasses do not
define is an error that lists the valid keys, and values are checked (``validate``)
before any work starts, with the offending key named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

BACKENDS = ("hf", "vllm")
CRITIC_IMPLS = ("head", "generative", "none")


@dataclass
class PolicyConfig:
    model: str = "tiny-countdown"  # zoo name or model directory
    backend: str = "hf"
    device: str = "cpu"
    dtype: Optional[str] = None
    temperature: float = 1.0
    top_p: float = 1.0
    threads: int = 1  # torch threads (2 cores here: one for the model, one for the rest)


@dataclass
class CriticsConfig:
    """Each of value / process / outcome: "head", "generative" or "none"; ``trunk`` is
    the model each learned critic starts from (empty: the policy's model)."""

    value: str = "head"
    process: str = "none"
    outcome: str = "head"
    trunk: str = ""
    weight_value: float = 1.0
    weight_process: float = 1.0
    weight_outcome: float = 1.0
    prm_aggregation: str = "min"
    # outcome scores during TRAINING searches: the rule verifier on labelled training
    # problems ("verifier"), or the learned ORM ("learned"); held-out search is always learned
    train_outcome: str = "verifier"
    # with the verifier: count an answer reached through false arithmetic ("23*7=151") as
    # wrong, so training searches keep looking for solutions worth distilling
    train_clean_steps: bool = True
    epochs: int = 3
    lr: float = 1e-3
    max_examples: int = 1024  # per critic per round (drawn at random; ORM: class-balanced)
    train_trunk: bool = True  # False: fit the scalar head only (much cheaper)


@dataclass
class SearchSection:
    simulations: int = 24
    branching: int = 2
    horizon: int = 6
    max_children: int = 6
    widen_c: float = 1.0
    widen_alpha: float = 0.5
    max_depth: int = 6
    max_step_tokens: int = 24
    c_explore: float = 1.25
    leaves_per_tree: int = 1


@dataclass
class DistillSection:
    method: str = "sft"  # "sft" or "sft+dpo"
    lr: float = 3e-4
    epochs: int = 2
    batch_size: int = 16
    paths_per_problem: int = 1
    # True: every round fine-tunes the STARTING model on the paths of all rounds so far
    # (STaR); False: the previous round's policy on this round's paths only
    cumulative: bool = False
    # True: only paths whose steps hold no false arithmetic are imitated (fewer, cleaner
    # examples); False: every path that reaches a verified answer
    clean_steps: bool = True
    lora: bool = False
    dpo_beta: float = 0.1
    dpo_margin: float = 0.3


@dataclass
class EvalSection:
    problems: int = 100
    samples: int = 8  # n of sampled pass@k
    sample_problems: int = 0  # sampled pass@k on the first this many problems (0: all)
    mcts_problems: int = 40
    mcts_budget: int = 384  # generated tokens per problem


@dataclass
class SelfPlayConfig:
    task: str = "countdown"
    rounds: int = 3
    train_problems: int = 64  # per round
    seed: int = 0
    out: str = ""  # run directory; empty: runs/selfplay-<date>-<time>
    progress: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    critics: CriticsConfig = field(default_factory=CriticsConfig)
    search: SearchSection = field(default_factory=SearchSection)
    distill: DistillSection = field(default_factory=DistillSection)
    eval: EvalSection = field(default_factory=EvalSection)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def valid_keys(node=None, prefix: str = "", schema=None) -> list[str]:
    """Every dotted key of ``schema`` (default ``SelfPlayConfig``); free-form dicts (e.g. a
    prior's ``pretrain`` fields) count as one key."""
    node = OmegaConf.structured(schema or SelfPlayConfig) if node is None else node
    out = []
    for key in node:
        value = node[key]
        if OmegaConf.is_dict(value) and OmegaConf.get_type(value) is not dict:
            out.extend(valid_keys(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


_MISSING = object()


def load_recipe(schema, path: str | Path | None = None, overrides=()):
    """Defaults of the dataclass ``schema`` <- YAML file <- dotlist overrides, as an
    omegaconf DictConfig. An override may index a list (``priors.1.pretrain={tokens: 9}``).
    Unknown keys and ill-typed values raise ``ConfigError`` naming the key and where it
    came from; nothing is validated beyond types (the caller's ``validate`` does that)."""
    cfg = OmegaConf.structured(schema)
    where = ""
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            where = f" in {str(path)!r}"
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        where = " (command-line override)"
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key=value")
            key, value = item.split("=", 1)
            if any(part.isdigit() for part in key.split(".")):
                # dotlist merging cannot index a list: update the item in place
                if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                    raise ConfigKeyError(f"unknown key {key}")
                OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"x={value}"]).x, merge=False)
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or str(exc).removeprefix("unknown key ")
        raise ConfigError(f"unknown config key {key!r}{where}; valid keys: "
                          f"{', '.join(valid_keys(schema=schema))}") from None
    except (ValidationError, TypeError) as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(f"bad value for config key {key!r}{where}: {msg}") from None
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> SelfPlayConfig:
    """Defaults <- YAML file <- dotlist overrides, then ``validate``. Returns an omegaconf
    DictConfig typed as ``SelfPlayConfig``."""
    cfg = load_recipe(SelfPlayConfig, path, overrides)
    validate(cfg)
    return cfg


def validate(cfg) -> None:
    """Refuse values that cannot work, naming the key, before any model work."""
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key!r} = {OmegaConf.select(cfg, key)!r}: {why}")

    from treesearch.tasks import TASKS

    need(cfg.task in TASKS, "task", f"unknown task; known: {', '.join(TASKS)}")
    need(cfg.rounds >= 1, "rounds", "must be >= 1")
    need(cfg.train_problems >= 1, "train_problems", "must be >= 1")
    need(cfg.policy.backend in BACKENDS, "policy.backend", f"must be one of {BACKENDS}")
    need(cfg.policy.temperature > 0, "policy.temperature", "must be > 0 (search samples)")
    need(0 < cfg.policy.top_p <= 1, "policy.top_p", "must be in (0, 1]")
    need(cfg.policy.threads >= 1, "policy.threads", "must be >= 1")
    for kind in ("value", "process", "outcome"):
        need(getattr(cfg.critics, kind) in CRITIC_IMPLS, f"critics.{kind}",
             f"unknown critic; known: {', '.join(CRITIC_IMPLS)}")
    need(any(getattr(cfg.critics, k) != "none" for k in ("value", "process", "outcome")),
         "critics.value", "the search needs at least one critic (value, process or outcome)")
    need(cfg.critics.train_outcome in ("verifier", "learned"), "critics.train_outcome",
         "must be 'verifier' or 'learned'")
    need(cfg.critics.prm_aggregation in ("min", "last", "mean"), "critics.prm_aggregation",
         "must be min, last or mean")
    need(cfg.critics.max_examples >= 2, "critics.max_examples", "must be >= 2")
    for key in ("weight_value", "weight_process", "weight_outcome", "lr"):
        need(getattr(cfg.critics, key) >= 0, f"critics.{key}", "must be >= 0")
    for key in ("simulations", "branching", "horizon", "max_children", "max_depth",
                "max_step_tokens", "leaves_per_tree"):
        need(getattr(cfg.search, key) >= 1, f"search.{key}", "must be >= 1")
    need(cfg.distill.method in ("sft", "sft+dpo"), "distill.method", "must be 'sft' or 'sft+dpo'")
    need(cfg.distill.lr > 0, "distill.lr", "must be > 0")
    need(cfg.distill.epochs >= 1, "distill.epochs", "must be >= 1")
    need(cfg.eval.problems >= 1, "eval.problems", "must be >= 1")
    need(cfg.eval.samples >= 1, "eval.samples", "must be >= 1")
    need(cfg.eval.sample_problems >= 0, "eval.sample_problems", "must be >= 0 (0: all)")
    need(cfg.eval.mcts_budget >= cfg.search.max_step_tokens, "eval.mcts_budget",
         f"must pay for at least one step (search.max_step_tokens = {cfg.search.max_step_tokens})")
    _check_model(cfg.policy.model, "policy.model")
    if cfg.critics.trunk:
        _check_model(cfg.critics.trunk, "critics.trunk")


def _check_model(name: str, key: str) -> None:
    from policies.zoo import MODELS, resolve

    if name in MODELS and MODELS[name].build is not None:
        return  # converted on first use (e.g. smollm2-135m)
    try:
        resolve(name)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"config key {key!r} = {name!r}: {exc}") from None

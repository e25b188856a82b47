"""``python -m treesearch.decode``: decoding strategies compared at matched generated-token
budgets on held-out problems (greedy and sampling as one-sample references, best-of-N by
the ORM, ORM-weighted best-of-N, majority vote, step-level beam search, MCTS); a table,
``decode.json`` and ``decode.png``.

    python -m treesearch.decode --config default --model RUN/round_4/policy \\
        --value head:RUN/round_4/critics/value --outcome head:RUN/round_4/critics/outcome \\
        --strategies greedy majority weighted_bon mcts --budgets 256 512 search.simulations=32

``--config`` takes a self-play recipe (a file, or a shipped recipe by name): its task and
``task_options`` (prompt style, step delimiter, answer formats), policy model, sampling
temperature and ``search`` section become this run's defaults, so a
self-play round's search can be replayed exactly. Positional ``search.KEY=VALUE``
overrides set any ``SearchConfig`` option; ``search.max_depth`` and
``search.max_step_tokens`` bound every strategy's solutions. MCTS spends each budget
(``search.max_tokens`` is the budget): without ``search.simulations=N`` on the command line
its rounds are raised to the budget, so it searches until the budget is spent or its trees
idle (as self-play's eval does); with it, MCTS runs at most N rounds (``simulations``).

``distributed.KEY=VALUE`` overrides (self-play's ``distributed`` section, the recipe's
by default; README "More than one machine") cut the problems into shards of
``distributed.shard_problems``, each (strategy, budget, shard) seeded by its shard index,
run here in order (``backend=local``) or on Ray worker actors (``backend=ray``): the
rows are the same whatever the number of workers (``evaluate_shards``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from critics.generative import JUDGES
from critics.prm_formats import FORMATS as PRM_FORMATS
from policies.zoo import resolve
from treesearch.backends import build_critic, build_policy, build_scorer, check_critic, parse_spec
from treesearch.config import SelfPlayConfig, load_config
from treesearch.distributed import DistributedConfig, DistributedError, cluster, shards
from treesearch.distributed import check as check_distributed
from treesearch.search import SearchConfig
from treesearch.search.context import check_context as fits_context
from treesearch.search.strategies import (
    REFERENCES,
    STRATEGIES,
    check_request,
    concat_results,
    decode,
    evaluate,
    format_table,
    plot,
    restart,
    result_row,
)
from treesearch.tasks import TaskOptions, get_task, prompt_ids
from treesearch.tasks.base import HELD_OUT_SPLITS, stable_hash
from treesearch.tasks.registry import code_paths
from treesearch.utils.checkpoints import load_tokenizer, max_positions
from treesearch.utils.cli import ArgumentParser, CLIError, blame, dotted_args
from treesearch.utils.recipes import ConfigError, instantiate, load_recipe
from treesearch.utils.runs import portable_path, write_json


def _fallback() -> dict:
    """The settings without ``--config``: the embedded default self-play recipe's (the
    ``SelfPlayConfig`` defaults, read from the dataclass, not spelled again here)."""
    default = SelfPlayConfig()
    return {"task": default.task, "model": default.policy.model,
            "temperature": default.policy.temperature, "judge": default.critics.judge,
            "prm_format": default.critics.prm_format}


FALLBACK = _fallback()


def split_overrides(argv) -> tuple[list[str], list[str]]:
    """(the other arguments, the ``search.KEY=VALUE`` overrides) of ``argv``: overrides
    may stand anywhere, even after a list option such as ``--budgets 256 512``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("search.") and "=" in a]
    return [a for a in argv if a not in overrides], overrides


def search_config(base: SearchConfig, overrides) -> SearchConfig:
    """``base`` with ``search.KEY=VALUE`` overrides, checked (ConfigError naming the key)."""
    items = []
    for item in overrides:
        if not item.startswith("search."):
            raise ConfigError(f"override {item!r}: only search.KEY=VALUE overrides are taken here")
        items.append(item.removeprefix("search."))
    return instantiate(load_recipe(base, None, items), "search")


def given_simulations(overrides, search: SearchConfig) -> int | None:
    """MCTS's rounds when the command line sets ``search.simulations`` (a recipe's count is
    its training search's, so it does not count), else None: the budget sizes them."""
    given = any(item.partition("=")[0] == "search.simulations" for item in overrides)
    return search.simulations if given else None


def resolve_settings(args) -> tuple[dict, SearchConfig]:
    """This run's task, model, temperature, MCTS rounds (``given_simulations``) and search:
    flags over the ``--config`` recipe over ``FALLBACK`` (the embedded default's)."""
    settings, search, options, task_args = dict(FALLBACK), SearchConfig(), {}, {}
    if args.config:
        recipe = load_config(args.config)
        settings = {"task": recipe.task, "model": recipe.policy.model,
                    "temperature": recipe.policy.temperature, "judge": recipe.critics.judge,
                    "prm_format": recipe.critics.prm_format}
        options = OmegaConf.to_container(recipe.task_options)
        search = OmegaConf.to_object(recipe.search)
        if args.task in (None, recipe.task):  # the recipe's task_args belong to its task
            task_args = OmegaConf.to_container(recipe.task_args)
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    task_args = {**task_args, **getattr(args, "task_args", {})}  # task_args.KEY=VALUE on top
    search = search_config(search, args.overrides)
    return ({**settings, "task_options": options, "task_args": task_args,
             "simulations": given_simulations(args.overrides, search)}, search)


def parse_args(argv):
    parser = ArgumentParser(prog="python -m treesearch.decode",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a self-play recipe (file or shipped name)")
    parser.add_argument("--task", default=None,
                        help=f"default: the recipe's, else {FALLBACK['task']}")
    parser.add_argument("--model", default=None, help="zoo name or model directory")
    parser.add_argument("--value", default="none",
                        help="critic spec: head:<dir>, generative:<model> or none")
    parser.add_argument("--process", default="none",
                        help="... or checker (label-free), or prm:<dir or name> (a published PRM)")
    parser.add_argument("--outcome", default="none", help="... likewise")
    parser.add_argument("--prm-format", default=None, choices=PRM_FORMATS,
                        help="how prm: critics read their checkpoint; default: the recipe's "
                             "critics.prm_format, else detected from the checkpoint")
    parser.add_argument("--judge", default=None, choices=JUDGES,
                        help="how generative critics ask: plain (True/False) or chat (Yes/No "
                             "in the model's chat template); default: the recipe's critics.judge")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--budgets", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--split", choices=HELD_OUT_SPLITS, default="test",
                        help="held-out split: val while tuning, test to report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/decode")
    parser.add_argument("overrides", nargs="*", help="search.KEY=VALUE and "
                        "distributed.KEY=VALUE (anywhere on the line)")
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
    args.overrides += overrides
    args.distributed = [o for o in args.overrides if o.startswith("distributed.")]
    args.overrides = [o for o in args.overrides if not o.startswith("distributed.")]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    return args


@dataclass
class _Distributed:
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def distributed_config(args) -> DistributedConfig:
    """The run's ``distributed`` section: the ``--config`` recipe's (default: local, one
    shard) with the ``distributed.KEY=VALUE`` overrides on top; ConfigError naming the key."""
    base = (OmegaConf.to_object(load_config(args.config).distributed) if args.config
            else DistributedConfig())
    cfg = instantiate(load_recipe(_Distributed(base), None, args.distributed),
                      "distributed").distributed
    check_distributed(cfg)
    return cfg


def shard_items(strategies, budgets, n: int, size: int, seed: int) -> list[tuple]:
    """The work items (strategy, budget, lo, hi, shard seed) of every (strategy, budget)
    job, the references once, over problems [0, n) cut into shards of ``size``; a
    shard's sampling seed is keyed by (seed, strategy, budget, shard index), never by the
    worker that runs it."""
    items, seen = [], set()
    for budget in budgets:
        for strategy in strategies:
            if strategy in REFERENCES and strategy in seen:
                continue
            seen.add(strategy)
            items += [(strategy, budget, lo, hi,
                       stable_hash("decode", seed, strategy, budget, i) % 2**31)
                      for i, (lo, hi) in enumerate(shards(n, size))]
    return items


class DecodeShards:
    """Runs decode's work items (``shard_items``) with one policy and scorer: here for the
    local backend, on every Ray worker otherwise (``_decode_worker``). An item starts from
    an empty prefix cache and a reseeded generator, so its result does not depend on the
    worker or on what ran before it."""

    def __init__(self, task, problems, policy, critics, search, temperature: float,
                 simulations: int | None = None):
        self.task, self.problems, self.policy, self.critics = task, problems, policy, critics
        self.search, self.temperature, self.simulations = search, temperature, simulations

    def run(self, item):
        strategy, budget, lo, hi, seed = item
        restart(self.policy, seed, self.critics)
        return decode(self.policy, self.critics, self.problems[lo:hi], strategy, budget,
                      task=self.task, temperature=self.temperature, search=self.search,
                      simulations=self.simulations)


def build_run(spec: dict):
    """(task, problems, policy, critics) of a decode run from its ``spec`` (settings,
    critic specs, split, problems, seed, threads): what ``main`` builds, built again on a
    worker."""
    settings = spec["settings"]
    torch.set_num_threads(spec["threads"])
    task = get_task(settings["task"], options=TaskOptions(**settings["task_options"]),
                    **settings.get("task_args", {}))
    problems = task.problems(spec["split"], spec["problems"], seed=spec["seed"])
    policy = build_policy(resolve(settings["model"]), step_delimiter=task.step_delimiter,
                          temperature=settings["temperature"], seed=spec["seed"])
    critics = build_scorer(spec["critics"], policy_tokenizer=policy.tokenizer, task=task,
                           problems=problems, judge=settings["judge"],
                           prm_format=settings.get("prm_format"))
    return task, problems, policy, critics


def _decode_worker(spec: dict, search, temperature: float,
                   simulations: int | None = None) -> DecodeShards:
    return DecodeShards(*build_run(spec), search, temperature, simulations)


def run_spec(args, settings: dict) -> dict:
    """What a worker needs to build this run's task, problems, policy and critics
    (``build_run``): plain values."""
    return {"settings": settings, "split": args.split, "problems": args.problems,
            "seed": args.seed, "threads": args.threads,
            "strategies": list(args.strategies), "budgets": list(args.budgets),
            "critics": {"value": args.value, "process": args.process, "outcome": args.outcome}}


def evaluate_shards(args, settings: dict, search, built) -> list[dict]:
    """``evaluate``'s rows. ``distributed.backend=local`` with ``shard_problems=0``: the
    one-process computation as ever (``built``: the task, problems, policy and critics
    main made). Otherwise ``shard_rows`` here or on the cluster's workers."""
    dist = (DistributedConfig(**args.dist) if getattr(args, "dist", None)
            else distributed_config(args))
    task, problems, policy, critics = built
    if dist.backend == "local" and not dist.shard_problems:
        return evaluate(policy, critics, task, problems, args.strategies, args.budgets,
                        temperature=settings["temperature"], search=search, seed=args.seed,
                        simulations=settings.get("simulations"))
    with cluster(dist, code_paths=code_paths(settings["task"])) as pool:
        return shard_rows(built, run_spec(args, settings), search, settings,
                          dist.shard_problems, pool)


def shard_rows(built, spec: dict, search, settings: dict, size: int, pool=None) -> list[dict]:
    """Every (strategy, budget) as shards of ``size`` problems (``shard_items``), run here
    in order with ``built`` (pool None) or on the pool's workers (each builds its own
    policy and critics from ``spec``), merged in problem order into ``evaluate``'s rows:
    the same rows at any number of workers."""
    task, problems, policy, critics = built
    items = shard_items(spec["strategies"], spec["budgets"], len(problems), size, spec["seed"])
    if pool is None:
        state = DecodeShards(task, problems, policy, critics, search, settings["temperature"],
                             settings.get("simulations"))
        parts = [state.run(item) for item in items]
    else:
        pool.setup(_decode_worker, spec, search, settings["temperature"],
                   settings.get("simulations"))
        names = [f"{s} budget {b} problems [{lo}:{hi}] (ids "
                 f"{', '.join(str(p.id) for p in problems[lo:hi][:4])}"
                 f"{', ...' if hi - lo > 4 else ''})" for s, b, lo, hi, _ in items]
        parts = pool.map("run", items, names=names)
    rows, i = [], 0
    while i < len(items):
        strategy, budget = items[i][:2]
        j = i
        while j < len(items) and items[j][:2] == (strategy, budget):
            j += 1
        rows.append(result_row(task, problems, budget, concat_results(parts[i:j])))
        i = j
    return rows


class _Asked:
    """The critics a command line asks for, read as ``check_request`` reads a scorer
    (``has``), from their specs alone: a request is refused before any model loads."""

    def __init__(self, specs: dict):
        self.kinds = {kind for kind, spec in specs.items() if parse_spec(spec)[0] != "none"}

    def has(self, kind: str) -> bool:
        return kind in self.kinds


def check_model(settings: dict, task, problems, search):
    """The model's tokenizer (read from its files, the model is not loaded), refused
    when it cannot write the prompts or when the searches cannot fit the model's context
    (``treesearch.search.context``)."""
    with blame("--model"):
        path = str(resolve(settings["model"]))
        tokenizer = load_tokenizer(path)
    with blame("--task / --model", (Exception,)):
        for p in problems:
            try:
                prompt_ids(tokenizer, task, p)
            # tokenizers raise a bare Exception for a missing character
            except Exception as exc:
                raise ValueError(f"the tokenizer of model {settings['model']!r} cannot write "
                                 f"task {task.name!r}'s prompts ({exc}), e.g. "
                                 f"{task.prompt(p)[:80]!r}") from None
    with blame(None):  # names search.max_depth, search.max_step_tokens and --model
        fits_context(tokenizer, max_positions(path), task, problems, search.max_depth,
                     search.max_step_tokens, model=settings["model"], model_key="--model")
    return tokenizer


def check_critics(args, task, problems, search, tokenizer) -> None:
    """Refuse critic specs that cannot be built (the label-free and rule critics are
    built here to be sure: no model) and strategies the critics asked for cannot serve."""
    specs = {"value": args.value, "process": args.process, "outcome": args.outcome}
    with blame("--value / --process / --outcome / --judge"):
        for kind, spec in specs.items():
            impl, model = parse_spec(spec)
            check_critic(kind, impl, model)
            if impl in ("checker", "verifier"):
                build_critic(kind, impl, task=task, problems=problems,
                             policy_tokenizer=tokenizer)
    for strategy in args.strategies:
        flag = (f"--strategies {strategy}" if min(args.budgets) >= search.max_step_tokens
                else "--budgets")
        with blame(flag):
            check_request(strategy, _Asked(specs), problems, min(args.budgets),
                          search.max_step_tokens)


def refuse_early(args):
    """Every refusal of the command line, before any model is loaded: (settings, search,
    task, problems), else a CLIError naming the flag (or the config key)."""
    args.task_args, args.overrides = dotted_args(args.overrides)
    with blame(None):  # ConfigErrors name their key or file
        settings, search = resolve_settings(args)
        args.dist = vars(distributed_config(args))
    with blame("--task"):
        task = get_task(settings["task"], options=TaskOptions(**settings["task_options"]),
                        **settings["task_args"])
    with blame(f"--split {args.split} --problems"):
        if args.problems < 1:
            raise CLIError("--problems", f"must be >= 1, got {args.problems}")
        problems = task.problems(args.split, args.problems, seed=args.seed)
    with blame("--threads", (ValueError, RuntimeError)):
        if args.threads < 1:
            raise ValueError(f"must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    with blame("--temperature"):
        t = settings["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
            raise ValueError(f"must be a finite number > 0, got {t!r}")
    tokenizer = check_model(settings, task, problems, search)
    check_critics(args, task, problems, search, tokenizer)
    return settings, search, task, problems


def build_critics(args, settings: dict, search, task, problems, policy):
    """The run's StepScorer from ``--value`` / ``--process`` / ``--outcome``; a PRM among
    them must hold the longest state the search can write (``check_fits``)."""
    critics = build_scorer({"value": args.value, "process": args.process,
                            "outcome": args.outcome}, policy_tokenizer=policy.tokenizer,
                           task=task, problems=problems, judge=settings["judge"],
                           prm_format=settings["prm_format"])
    for critic in critics.critics.values():
        if hasattr(critic, "check_fits"):
            critic.check_fits(problems, search.max_depth, search.max_step_tokens,
                              getattr(policy, "max_positions", None))
    return critics


def main(argv=None) -> int:
    args = parse_args(argv)
    try:  # every refusal is one line naming its flag (treesearch.utils.cli), before any model
        settings, search, task, problems = refuse_early(args)
        with blame("--model"):
            policy = build_policy(resolve(settings["model"]),
                                  step_delimiter=task.step_delimiter,
                                  temperature=settings["temperature"], seed=args.seed)
        with blame("--value / --process / --outcome / --judge"):
            critics = build_critics(args, settings, search, task, problems, policy)
    except CLIError as exc:
        return exc.exit()
    print(policy.describe())
    try:
        rows = evaluate_shards(args, settings, search, (task, problems, policy, critics))
    except (ConfigError, DistributedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(format_table(rows))
    record = {**vars(args), **settings, "search": vars(search)}
    record["model"] = portable_path(resolve(settings["model"]))
    record["out"] = portable_path(out)
    write_json(out / "decode.json", {"args": record, "rows": rows})
    plot(rows, out / "decode.png", f"{settings['task']}: {args.problems} {args.split} problems")
    print(f"wrote {out / 'decode.json'} and {out / 'decode.png'}")
    return 0


if __name__ == "__main__":
    # run the importable module, not __main__, so Ray workers find its functions by name
    from treesearch import decode as _module  # noqa: PLW0406 (the importable copy)

    sys.exit(_module.main())

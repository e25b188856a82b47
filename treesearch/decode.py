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
``search.max_step_tokens`` bound every strategy's solutions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from critics.generative import JUDGES
from policies.hf import HFPolicy
from policies.zoo import resolve
from treesearch.backends import build_scorer
from treesearch.config import load_config
from treesearch.search import SearchConfig
from treesearch.search.strategies import (
    STRATEGIES,
    check_request,
    evaluate,
    format_table,
    plot,
)
from treesearch.tasks import TaskOptions, get_task
from treesearch.utils.recipes import ConfigError, instantiate, load_recipe
from treesearch.utils.runs import portable_path, write_json

FALLBACK = {"task": "countdown3", "model": "tiny-countdown3", "temperature": 0.7, "judge": "plain"}


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


def resolve_settings(args) -> tuple[dict, SearchConfig]:
    """This run's task, model, temperature and search: flags over the ``--config`` recipe
    over ``FALLBACK`` (the embedded default's)."""
    settings, search, options = dict(FALLBACK), SearchConfig(), {}
    if args.config:
        recipe = load_config(args.config)
        settings = {"task": recipe.task, "model": recipe.policy.model,
                    "temperature": recipe.policy.temperature, "judge": recipe.critics.judge}
        options = OmegaConf.to_container(recipe.task_options)
        search = OmegaConf.to_object(recipe.search)
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return {**settings, "task_options": options}, search_config(search, args.overrides)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m treesearch.decode",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a self-play recipe (file or shipped name)")
    parser.add_argument("--task", default=None, help=f"default: the recipe's, else {FALLBACK['task']}")
    parser.add_argument("--model", default=None, help="zoo name or model directory")
    parser.add_argument("--value", default="none", help="critic spec: head:<dir>, generative:<model> or none")
    parser.add_argument("--process", default="none", help="... or checker (label-free)")
    parser.add_argument("--outcome", default="none", help="... or checker (label-free)")
    parser.add_argument("--judge", default=None, choices=JUDGES,
                        help="how generative critics ask: plain (True/False) or chat (Yes/No "
                             "in the model's chat template); default: the recipe's critics.judge")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--budgets", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="held-out split: val while tuning, test to report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/decode")
    parser.add_argument("overrides", nargs="*", help="search.KEY=VALUE (anywhere on the line)")
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
    args.overrides += overrides
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        settings, search = resolve_settings(args)
        task = get_task(settings["task"], options=TaskOptions(**settings["task_options"]))
        problems = task.problems(args.split, args.problems, seed=args.seed)
        torch.set_num_threads(args.threads)
        policy = HFPolicy(resolve(settings["model"]), step_delimiter=task.step_delimiter,
                          temperature=settings["temperature"],
                          seed=args.seed)
        critics = build_scorer({"value": args.value, "process": args.process,
                                "outcome": args.outcome}, policy_tokenizer=policy.tokenizer,
                               task=task, problems=problems, judge=settings["judge"])
        for strategy in args.strategies:  # refuse early: before any decoding
            check_request(strategy, critics, problems, min(args.budgets), search.max_step_tokens)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(policy.describe())
    rows = evaluate(policy, critics, task, problems, args.strategies, args.budgets,
                    temperature=settings["temperature"], search=search, seed=args.seed)
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
    sys.exit(main())

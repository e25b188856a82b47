"""``python -m treesearch.decode``: decoding strategies compared at matched generated-token
budgets on held-out problems (greedy, sampling, best-of-N by the ORM, majority vote,
step-level beam search, MCTS); a table, ``decode.json`` and ``decode.png``.

    python -m treesearch.decode --task countdown3 --model tiny-countdown3 \\
        --value head:RUN/round_4/critics/value --outcome head:RUN/round_4/critics/outcome \\
        --strategies greedy majority best_of_n mcts --budgets 256 512 search.simulations=32

Positional ``search.KEY=VALUE`` overrides set any ``SearchConfig`` option of the MCTS
strategy; its defaults here are ``DECODE_SEARCH`` on top of ``SearchConfig``'s, with
``max_depth`` and ``max_step_tokens`` taken from ``--max-steps`` / ``--max-step-tokens``
(every strategy obeys those two).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from policies.hf import HFPolicy
from policies.zoo import resolve
from treesearch.backends import build_scorer
from treesearch.search import SearchConfig
from treesearch.search.strategies import (
    STRATEGIES,
    check_request,
    evaluate,
    format_table,
    plot,
)
from treesearch.tasks import get_task
from treesearch.utils.recipes import ConfigError, load_recipe
from treesearch.utils.runs import write_json

# the MCTS strategy's settings unless overridden (step expansion, wide nodes)
DECODE_SEARCH = {"simulations": 64, "branching": 4, "max_children": 8, "horizon": 1}


def search_config(overrides, max_steps: int, max_step_tokens: int) -> SearchConfig:
    """``DECODE_SEARCH`` and the step limits, then ``search.KEY=VALUE`` overrides, checked."""
    base = {**DECODE_SEARCH, "max_depth": max_steps, "max_step_tokens": max_step_tokens}
    items = [f"{k}={v}" for k, v in base.items()]
    for item in overrides:
        if not item.startswith("search."):
            raise ConfigError(f"override {item!r}: only search.KEY=VALUE overrides are taken here")
        items.append(item.removeprefix("search."))
    cfg = load_recipe(SearchConfig, None, items)
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("SearchConfig.", "search.")) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treesearch.decode",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="countdown")
    parser.add_argument("--model", default="tiny-countdown", help="zoo name or model directory")
    parser.add_argument("--value", default="none", help="critic spec: head:<dir>, generative:<model> or none")
    parser.add_argument("--process", default="none")
    parser.add_argument("--outcome", default="none")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--budgets", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="held-out split: val while tuning, test to report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-step-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/decode")
    parser.add_argument("overrides", nargs="*", help="search.KEY=VALUE for the MCTS strategy")
    args = parser.parse_args(argv)

    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    try:
        search = search_config(args.overrides, args.max_steps, args.max_step_tokens)
        task = get_task(args.task)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    problems = task.problems(args.split, args.problems, seed=args.seed)
    policy = HFPolicy(resolve(args.model), temperature=args.temperature, seed=args.seed)
    critics = build_scorer({"value": args.value, "process": args.process, "outcome": args.outcome},
                           policy_tokenizer=policy.tokenizer)
    for strategy in args.strategies:  # refuse early: before any model work
        check_request(strategy, critics, problems, min(args.budgets), args.max_step_tokens)
    print(policy.describe())
    rows = evaluate(policy, critics, task, problems, args.strategies, args.budgets,
                    temperature=args.temperature, max_steps=args.max_steps,
                    max_step_tokens=args.max_step_tokens, search=search)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(format_table(rows))
    write_json(out / "decode.json", {"args": vars(args), "rows": rows})
    plot(rows, out / "decode.png", f"{args.task}: {args.problems} held-out problems")
    print(f"wrote {out / 'decode.json'} and {out / 'decode.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HFPolicy's decode cache, old against new, side by side in one process.

``HFPolicy._decode`` keeps each call's KV in buffers allocated once (``policies.hf._StepCache``:
new columns written in place, rows selected in place); the reference path
(``_legacy_decode``) grows a ``DynamicCache`` by concatenation and copies it whenever a row
finishes. Both decode the same ``generate_solutions`` workload with the same seed, in
alternating repeats, and the script prints samples/s of each, their ratio, and whether they
sampled the same tokens.

    python benchmarks/bench_decode_cache.py                  # tiny-countdown3, 32 x 64
    python benchmarks/bench_decode_cache.py --problems 8 --n 16 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from policies.hf import HFPolicy
from policies.rollout import generate_solutions
from policies.zoo import resolve
from treesearch.tasks import get_task


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-countdown3", help="policies.zoo name or dir")
    parser.add_argument("--task", default="countdown3")
    parser.add_argument("--problems", type=int, default=32, help="val problems")
    parser.add_argument("--n", type=int, default=64, help="samples per problem")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-step-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each path")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--compact-below", type=float, default=None,
                        help="also time the new path with this HFPolicy._compact_below")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    problems = task.problems("val", args.problems, seed=0)
    path = resolve(args.model)
    variants = {"old": dict(_legacy_decode=True), "new": {}}
    if args.compact_below is not None:
        variants[f"new@{args.compact_below}"] = dict(_compact_below=args.compact_below)
    seconds = {name: [] for name in variants}
    tokens = {}
    for _ in range(args.repeats):
        for name, knobs in variants.items():
            policy = HFPolicy(path, step_delimiter=task.step_delimiter, seed=0)
            for key, value in knobs.items():
                setattr(policy, key, value)
            start = time.perf_counter()
            _, toks = generate_solutions(policy, policy.tokenizer, task, problems, n=args.n,
                                         temperature=args.temperature,
                                         max_steps=args.max_steps,
                                         max_step_tokens=args.max_step_tokens,
                                         return_tokens=True)
            seconds[name].append(time.perf_counter() - start)
            tokens[name] = toks
    samples = args.problems * args.n
    print(f"{args.model} on {args.task}: {args.problems} problems x {args.n} samples, "
          f"temperature {args.temperature}, max_steps {args.max_steps}, "
          f"max_step_tokens {args.max_step_tokens}, {args.threads} thread(s), "
          f"best of {args.repeats}")
    best = {name: min(s) for name, s in seconds.items()}
    for name in variants:
        same = tokens[name] == tokens["old"]
        print(f"  {name:>10}: {samples / best[name]:8.1f} samples/s  "
              f"({best[name]:.2f} s; runs {', '.join(f'{s:.2f}' for s in seconds[name])})  "
              f"ratio to old {best['old'] / best[name]:.2f}  same tokens as old: {same}")


if __name__ == "__main__":
    main()

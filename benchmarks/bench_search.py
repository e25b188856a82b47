"""Where a step search spends its wall time: policy, critics, and everything else.

For the default tiny prior (and, without ``--quick``, SmolLM2-135M) this runs one
``StepSearch`` over countdown problems with a value head critic on the same trunk and
reports the wall-time split by stage (select / propose / score / expand / backup / other),
the share of wall time outside policy and critic calls (the search's own overhead), and
selected nodes per second.

Usage: python benchmarks/bench_search.py [--quick] [--json PATH]
JSON keys: ``overhead_share_tiny``, ``overhead_share_smollm2`` (null with --quick),
``leaves_per_s`` (per model), ``seconds`` (per model, per stage).
Targets: overhead <= 10% with the tiny prior, <= 3% with SmolLM2.
"""

from __future__ import annotations

import argparse
import json
import time


def run(model: str, problems: int, simulations: int, branching: int, horizon: int) -> dict:
    import torch

    from critics.compose import StepScorer
    from critics.head import HeadCritic
    from policies.hf import HFPolicy
    from policies.zoo import resolve
    from treesearch.search import SearchConfig, StepSearch
    from treesearch.tasks import get_task

    torch.set_num_threads(1)
    path = resolve(model)
    task = get_task("countdown")
    policy = HFPolicy(path, temperature=1.0, seed=0)
    critic = HeadCritic(path, "value", policy_tokenizer=policy.tokenizer)
    config = SearchConfig(simulations=simulations, branching=branching, horizon=horizon,
                          max_depth=5, max_step_tokens=24, early_stop=False)
    search = StepSearch(policy, StepScorer(value=critic), task, policy.tokenizer, config)
    warm = task.problems("test", 2, seed=99)  # numba compilation and first calls
    StepSearch(policy, StepScorer(value=critic), task, policy.tokenizer,
               SearchConfig(simulations=2, branching=2, max_step_tokens=24)).run(warm)
    start = time.perf_counter()
    result = search.run(task.problems("test", problems, seed=0))
    wall = time.perf_counter() - start
    stats = result.stats
    return {"model": model, "problems": problems, "wall_s": round(wall, 3),
            "overhead_share": round(stats.overhead_share, 4),
            "leaves_per_s": round(float(stats.selected.sum()) / wall, 1),
            "tokens_generated": int(stats.generated.sum()),
            "seconds": {k: round(v, 4) for k, v in stats.seconds.items()},
            "nodes": int(result.forest.n_nodes.sum())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny prior only (under 60 s)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--simulations", type=int, default=24)
    parser.add_argument("--horizon", type=int, default=1)
    args = parser.parse_args(argv)
    out = {"tiny": run("tiny-countdown", args.problems, args.simulations, 2, args.horizon)}
    if not args.quick:
        out["smollm2"] = run("smollm2-135m", max(2, args.problems // 4),
                             max(4, args.simulations // 3), 2, args.horizon)
    print(f"{'model':<16} {'wall s':>7} {'overhead':>8} {'nodes/s':>8} "
          + " ".join(f"{k:>8}" for k in out["tiny"]["seconds"]))
    for r in out.values():
        print(f"{r['model']:<16} {r['wall_s']:>7.2f} {r['overhead_share']:>8.1%} "
              f"{r['leaves_per_s']:>8.1f} "
              + " ".join(f"{v:>8.3f}" for v in r["seconds"].values()))
    summary = {"overhead_share_tiny": out["tiny"]["overhead_share"],
               "overhead_share_smollm2": out.get("smollm2", {}).get("overhead_share"),
               "leaves_per_s": {k: r["leaves_per_s"] for k, r in out.items()},
               "seconds": {k: r["seconds"] for k, r in out.items()}, "runs": out}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()

"""Self-play's search stage on Ray: problems per second with the local backend, and with
1 and 2 Ray worker actors, side by side in one run.

    python benchmarks/bench_distributed.py --quick --json out.json      # under 5 minutes
    python benchmarks/bench_distributed.py --json out.json              # more problems, 3 repeats

The stage is ``SelfPlay.stage_search`` of round 1 (the starting tiny prior, a value and
an outcome head on its trunk, the rule verifier on the labelled training problems) with
``distributed.shard_problems`` problems per shard: the local backend runs the shards in
order in this process, the Ray backends on a local loopback cluster of 2 workers of one
CPU each, given 1 worker ("ray1": the other idles) or both ("ray2"). Every side runs one
thread (``policy.threads=1``: torch in this process and in every worker; Ray gives a
1-CPU actor ``OMP_NUM_THREADS=1``). Each side is warmed up once (checkpoint loading,
numba compilation in every worker), then timed ``--repeats`` times, the three sides
interleaved so that the load of a shared machine falls on all of them alike; the figure
is the median. The three sides must compute the same
stage (``same_metrics``: the search metrics, trees included, equal), or the script fails.

JSON keys: ``local_problems_per_s``, ``ray1_problems_per_s``, ``ray2_problems_per_s``,
``ray1_over_local`` (target >= 0.9: one worker within 10% of local), ``ray2_over_ray1``
(target >= 1.6 on 2 cores), ``seconds`` (every timed repeat per side), ``same_metrics``,
``settings``, ``load_average`` (before and after: the machine is shared, the figures are
noisy), ``machine_2proc_speedup`` (a control, before and after: a plain CPU-bound loop in
2 processes over 1, the most any program could gain from a second worker at the time).
Paths in it are relative.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUICK = {"problems": 16, "shard": 2, "simulations": 12, "repeats": 3}
FULL = {"problems": 48, "shard": 4, "simulations": 24, "repeats": 3}


def overrides(problems: int, shard: int, simulations: int) -> list[str]:
    return ["rounds=1", f"train_problems={problems}", f"search.simulations={simulations}",
            "policy.threads=1", "progress=false", f"distributed.shard_problems={shard}",
            "eval.problems=4", "eval.mcts_problems=4"]  # every worker builds the eval set


def measure(base: list[str], root: Path, repeats: int) -> dict:
    """Warm up, then time the round-1 search stage ``repeats`` times on each side, the
    sides interleaved (local, ray1, ray2, local, ...) so that a shared machine's load
    drifts over all three alike. Ray: one local cluster of 2 one-CPU workers; "ray1" is
    the stage given the first worker only (the other idles), "ray2" both."""

    from treesearch.config import load_config
    from treesearch.distributed import cluster
    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    local_cfg = load_config(None, base)
    ray_cfg = load_config(None, base + ["distributed.backend=ray", "distributed.workers=2"])
    got = {name: {"seconds": []} for name in ("local", "ray1", "ray2")}
    with cluster(ray_cfg.distributed) as pool:
        both = list(pool.actors)
        sides = {"local": (SelfPlay(local_cfg, RunDir.create(root / "local", ""), None), both),
                 "ray1": (SelfPlay(ray_cfg, RunDir.create(root / "ray1", ""), pool), both[:1]),
                 "ray2": (SelfPlay(ray_cfg, RunDir.create(root / "ray2", ""), pool), both)}
        sides["ray2"][0]._pool_ready = True  # one setup of the workers serves both Ray sides
        for rep in range(repeats + 1):  # the first: warm-up (loading, compilation, everywhere)
            for name, (sp, actors) in sides.items():
                pool.actors = actors
                start = time.perf_counter()
                row = sp.stage_search(1)
                seconds = time.perf_counter() - start
                pool.actors = both
                if rep:
                    got[name]["seconds"].append(seconds)
                got[name]["metrics"] = {k: v for k, v in row.items()
                                        if k not in ("overhead_share", "policy")}
                got[name]["trees"] = (sp.run.path / "round_1" / "trees.jsonl.gz").read_bytes()
            if rep:
                print(" ".join(f"{n} {g['seconds'][-1]:.2f} s" for n, g in got.items()), flush=True)
    return got


def _spin(n: int) -> int:
    return sum(i * i for i in range(n))


def machine_parallelism(items: int = 6, n: int = 2_000_000) -> float:
    """Control: a plain CPU-bound loop in 2 processes (multiprocessing) over 1, in this
    run: the speed-up the machine gives any program with 2 processes right now (about 2
    on 2 idle cores; about 1 while other work takes the cores)."""
    from multiprocessing import Pool

    start = time.perf_counter()
    for _ in range(items):
        _spin(n)
    one = time.perf_counter() - start
    with Pool(2) as pool:
        pool.map(_spin, [10, 10])
        start = time.perf_counter()
        pool.map(_spin, [n] * items, chunksize=1)
        two = time.perf_counter() - start
    return one / two


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['problems']} problems, {QUICK['repeats']} repeats (< 5 min)")
    parser.add_argument("--problems", type=int, default=None)
    parser.add_argument("--shard", type=int, default=None, help="distributed.shard_problems")
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)

    import torch

    torch.set_num_threads(1)
    base = overrides(settings["problems"], settings["shard"], settings["simulations"])
    load_before = os.getloadavg()
    start = time.perf_counter()
    control = [machine_parallelism()]
    with tempfile.TemporaryDirectory() as tmp:
        got = measure(base, Path(tmp), settings["repeats"])
    control.append(machine_parallelism())
    same = all(got[n]["metrics"] == got["local"]["metrics"] and
               got[n]["trees"] == got["local"]["trees"] for n in ("ray1", "ray2"))
    rate = {n: settings["problems"] / statistics.median(g["seconds"]) for n, g in got.items()}
    out = {"local_problems_per_s": round(rate["local"], 3),
           "ray1_problems_per_s": round(rate["ray1"], 3),
           "ray2_problems_per_s": round(rate["ray2"], 3),
           "ray1_over_local": round(rate["ray1"] / rate["local"], 3),
           "ray2_over_ray1": round(rate["ray2"] / rate["ray1"], 3),
           "targets": {"ray1_over_local": ">= 0.9", "ray2_over_ray1": ">= 1.6"},
           "same_metrics": same,
           # plain multiprocessing, 2 processes over 1, before and after: what the machine
           # allowed any program while this ran (ray2_over_ray1 cannot exceed it)
           "machine_2proc_speedup": [round(c, 3) for c in control],
           "seconds": {n: [round(s, 3) for s in g["seconds"]] for n, g in got.items()},
           "metrics": got["local"]["metrics"],
           "settings": {**settings, "overrides": base, "quick": args.quick,
                        "model": "tiny-countdown3", "threads_per_side": 1},
           "cpus": os.cpu_count(),
           "load_average": {"before": [round(x, 2) for x in load_before],
                            "after": [round(x, 2) for x in os.getloadavg()]},
           "wall_s": round(time.perf_counter() - start, 1),
           "command": "python benchmarks/bench_distributed.py"
                      + (" --quick" if args.quick else "")
                      + (f" --json {args.json}" if args.json else "")}
    print(json.dumps({k: out[k] for k in ("local_problems_per_s", "ray1_problems_per_s",
                                          "ray2_problems_per_s", "ray1_over_local",
                                          "ray2_over_ray1", "machine_2proc_speedup",
                                          "same_metrics")}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if not same:
        print("error: the three sides computed different search stages", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""AlphaLLM's ablation (their Table 3a) on our task: MCTS built up one component at a time.

    python benchmarks/bench_ablation.py --run runs/selfplay-X --split test --problems 300 \\
        --budget 512 --json benchmarks/results/ablation_countdown3.json
    python benchmarks/bench_ablation.py --run runs/default/s0 --split test \\
        --json benchmarks/results/ablation_game24.json \\
        --png benchmarks/results/ablation_game24.png

Rows, each adding one thing to the row above (AlphaLLM: vanilla MCTS 79.5 -> +adaptive
branching 84.9 -> +PRM 85.9 -> +fast-rollout ORM 86.5 -> +state merge 87.0 on GSM8K):

    vanilla              value critic only, read at the frontier after one step (step
                         expansion), each node expanded once, no state merge
    + adaptive branching progressive widening (the run's widen_c / widen_alpha / max_children)
    + PRM                the process critic joins the score
    + fast-rollout ORM   samples continue to the end (horizon = max_depth), the ORM scores them
    + state merge        equal steps are one node: this row is the run's own search
    + value bootstrap    rollouts stop after 2 steps and read the value there (horizon 2)

Two columns, never mixed: the run's LEARNED critics, and the label-free CHECKERS standing
in for the PRM and ORM (the value critic is the learned one in both; rows without a PRM
or ORM are shared). A row whose critic the run lacks (no learned PRM) is reported as
missing, not run. References at the same budget: majority vote and ORM-weighted best-of-N
(learned ORM), checker-filtered best-of-N. Every cell is one ``decode`` at ``--budget``
generated policy tokens per problem, with its standard error; settings come from the
run's recipe (``config.yaml``). ``--rows FILE`` resumes a partial run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import torch
from bench_decode import RowCache, add_run_arguments, checker_scorer, load_run
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from critics.compose import StepScorer
from treesearch.config import build_task
from treesearch.decode import search_config
from treesearch.search.strategies import evaluate
from treesearch.utils.atomic import write_text
from treesearch.utils.plots import bar_plot
from treesearch.utils.runs import portable_path

ROWS = ("vanilla", "+ adaptive branching", "+ PRM", "+ fast-rollout ORM", "+ state merge",
        "+ value bootstrap")
QUICK = {"problems": 40, "budget": 256}
# critics each row uses (the value critic is always there)
CRITICS = {"vanilla": ("value",), "+ adaptive branching": ("value",),
           "+ PRM": ("value", "process"), "+ fast-rollout ORM": ("value", "process", "outcome"),
           "+ state merge": ("value", "process", "outcome"),
           "+ value bootstrap": ("value", "process", "outcome")}


def row_search(name: str, base):
    """The SearchConfig of one row, from the run's own search (``base``)."""
    k = ROWS.index(name)
    search = base
    if k < ROWS.index("+ adaptive branching"):
        search = replace(search, widen_c=0.0)
    if k < ROWS.index("+ fast-rollout ORM"):
        search = replace(search, horizon=1)
    else:
        search = replace(search, horizon=base.max_depth)
    if k < ROWS.index("+ state merge"):
        search = replace(search, merge=False)
    if name == "+ value bootstrap":
        search = replace(search, horizon=min(2, base.max_depth))
    return search


def row_scorer(name: str, learned: StepScorer, checkers: StepScorer | None, column: str):
    """The StepScorer of one row in one column; None where the column lacks the critic the
    row adds (a critic an EARLIER row added and the column lacks is left out: a run without
    a learned PRM still gets its ORM rows)."""
    source = {"value": learned, "process": learned if column == "learned" else checkers,
              "outcome": learned if column == "learned" else checkers}
    k = ROWS.index(name)
    added = set(CRITICS[name]) - set(CRITICS[ROWS[k - 1]] if k else ())
    parts = {}
    for kind in CRITICS[name]:
        if source[kind] is None or not source[kind].has(kind):
            if kind in added or kind == "value":
                return None
            continue
        parts[kind] = source[kind].critics[kind]
    return StepScorer(parts.get("value"), parts.get("process"), parts.get("outcome"),
                      learned.weights)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, problems=300)
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--rows", default=None, help="JSONL of finished cells (resume)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['problems']} problems at {QUICK['budget']} tokens")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.budget = QUICK["problems"], QUICK["budget"]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, policy, learned, r = load_run(args)
    task = build_task(cfg)
    problems = task.problems(args.split, args.problems, seed=args.seed)
    base = search_config(OmegaConf.to_object(cfg.search), [])
    checkers = checker_scorer(task, problems, policy.tokenizer) if task.can_verify_answers else None
    what = {"run": portable_path(args.run), "round": r, "split": args.split,
            "problems": args.problems, "seed": args.seed, "budget": args.budget,
            "search": vars(base), "temperature": cfg.policy.temperature}
    cache = RowCache(args.rows, what)
    kw = {"temperature": cfg.policy.temperature, "seed": args.seed, "progress": False}
    start = time.perf_counter()

    def cell(table, label, strategy, scorer, search):
        """One decode, kept under (table, label); every MCTS row draws the same seeds."""
        row = cache.rows.get((table, label, args.budget))
        if row is None:
            row = evaluate(policy, scorer, task, problems, [strategy], [args.budget],
                           search=search, **kw)[0]
            row = cache.put(table, {**row, "strategy": label})
            tqdm.write(f"{table:>8} {label:<22} {row['accuracy']:.3f} +- {row['se']:.3f}  "
                       f"tokens {row['tokens']:.0f}")
        return row

    table = {"learned": {}, "checkers": {}}
    for name in tqdm(ROWS, desc="ablation", unit="row"):
        for column in ("learned", "checkers"):
            scorer = row_scorer(name, learned, checkers, column)
            if scorer is None:
                table[column][name] = None
                continue
            shared = CRITICS[name] == ("value",)
            table[column][name] = cell("learned" if shared else column, name, "mcts", scorer,
                                       row_search(name, base))
    refs = {"majority": cell("learned", "majority", "majority", learned, base)}
    if learned.has("outcome"):
        refs["weighted_bon"] = cell("learned", "weighted_bon", "weighted_bon", learned, base)
    if checkers is not None:
        refs["checker best_of_n"] = cell("checkers", "best_of_n", "best_of_n", checkers, base)
    print(format_ablation(table, refs, args))
    result = {"rows": list(ROWS), "budget": args.budget,
              "acc": {c: {n: (v["accuracy"] if v else None) for n, v in t.items()}
                      for c, t in table.items()},
              "se": {c: {n: (v["se"] if v else None) for n, v in t.items()}
                     for c, t in table.items()},
              "tokens": {c: {n: (v["tokens"] if v else None) for n, v in t.items()}
                         for c, t in table.items()},
              "references": {k: {"acc": v["accuracy"], "se": v["se"], "tokens": v["tokens"]}
                             for k, v in refs.items()},
              "settings": {**what, "rows": {n: vars(row_search(n, base)) for n in ROWS}},
              "wall_seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        write_text(args.json, json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.png:
        plot(result, args.png, f"{cfg.task}: {args.problems} {args.split} problems, "
                               f"{args.budget} tokens")
    return 0


def format_ablation(table, refs, args) -> str:
    lines = [(f"MCTS at {args.budget} generated tokens per problem ({args.problems} "
              f"{args.split} problems): accuracy +- standard error"),
             f"{'row':<22} {'learned critics':>17} {'checkers':>17}"]
    for name in ROWS:
        cells = []
        for column in ("learned", "checkers"):
            v = table[column][name]
            cells.append("missing" if v is None else f"{v['accuracy']:.3f} +- {v['se']:.3f}")
        lines.append(f"{name:<22} {cells[0]:>17} {cells[1]:>17}")
    for k, v in refs.items():
        lines.append(f"{'ref: ' + k:<22} {v['accuracy']:.3f} +- {v['se']:.3f}")
    return "\n".join(lines)


def plot(result, path, title) -> None:
    groups = {column: [(name, result["acc"][column][name], result["se"][column][name])
                       for name in ROWS if result["acc"][column][name] is not None]
              for column in ("learned", "checkers")}
    bar_plot(groups, path, ylabel="accuracy", title=title,
             lines={k: v["acc"] for k, v in result["references"].items()}, labels=ROWS)


if __name__ == "__main__":
    sys.exit(main())

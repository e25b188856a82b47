"""The decoding scoreboard: strategies at matched generated-token budgets on held-out problems.

    python benchmarks/bench_decode.py --run runs/selfplay-X --json out.json     # the full board
    python benchmarks/bench_decode.py --run runs/selfplay-X --quick --json q.json  # < 5 minutes
    python benchmarks/bench_decode.py --run R --quick search.horizon=1 --drop process   # ablation
    # a long board in two processes sharing a resumable rows file, then one that assembles:
    python benchmarks/bench_decode.py --run R --tables learned --rows rows.jsonl &
    python benchmarks/bench_decode.py --run R --tables checkers --rows rows.jsonl &
    python benchmarks/bench_decode.py --run R --tables oracle --oracle 0 0.2 0.5 --rows rows.jsonl
    wait; python benchmarks/bench_decode.py --run R --oracle 0 0.2 0.5 --rows rows.jsonl \
        --cached-only --json out.json --png out.png

It replays a self-play run: the policy and learned critics (value, PRM, ORM heads) of its
last round (``--round``), and its search settings (``config.yaml``), so the board measures
the search self-play uses. On ``--problems`` problems of ``--split`` (tune on val, report on
test) it decodes with greedy (a one-sample reference), majority vote, best-of-N and
ORM-weighted best-of-N by the ORM, step-level beam search and MCTS, each at every budget of
generated policy tokens per problem, and reports accuracy with its standard error, policy
and critic tokens and wall time per problem (``treesearch.search.strategies``: every
strategy stops at its budget, less than one step over).

A second table, never mixed with the first, uses label-free checkers
(``critics.checker``) instead of learned critics: checker-filtered best-of-N and MCTS with
the step and answer checkers (majority vote uses no critic: the first table's row is its
reference).

Critic quality on the held-out trees of one MCTS run (labels read only AFTER the search,
to score the critics): ORM AUROC on answer nodes, PRM step AUROC against "a correct
rollout passed below this node", and the value critic's skill (1 - MSE / MSE of a
constant) against the share of correct rollouts below each open node.

How good must a critic be? ``--oracle FLIP [FLIP ...]`` adds a curve: MCTS and ORM-weighted
best-of-N with an ``oracle`` ORM that READS THE LABELS (so it exists only here, and only
when asked for), each verdict flipped with probability FLIP (0: perfect, AUROC 1; 0.5:
noise, AUROC 0.5), at the middle budget, beside majority vote. Where the learned ORM's
AUROC falls on that curve says whether search can pay with it.

Can step information pay at all? ``--step-oracle FLIP [FLIP ...]`` searches with the step
oracle (``critics.oracle``: every step valid and the target still reachable, by the task's
exact solver; label-free, but no critic anyone has, so only here) as value, PRM and ORM:
MCTS, step-level beam search and weighted best-of-N at every budget with the first flip
rate (0: perfect), and at the middle budget for each flip rate, against the step critic's
AUROC (1 - flip). If the perfect oracle does not pay, the search is what falls short; if it
does and the learned critics do not, the critics are.

``--tables`` picks the parts to compute: ``learned``, ``checkers``, ``oracle`` (the curves,
with ``--oracle`` / ``--step-oracle``) and ``critics`` (critic quality); by default all of
them. Every decoded cell goes through ``--rows``, so the parts can run as separate
processes. A row keeps the settings it was made under: a row of other settings is refused,
except that a search field added to ``SearchConfig`` since, at its default, changes nothing.

JSON keys: ``budgets``, ``acc[strategy][budget]``, ``se[...]``, ``tokens[...]``,
``critic_tokens[...]``, ``seconds[...]`` (the references under budget "ref"),
``checkers`` (the same for the checker table), ``orm_auroc``, ``prm_auroc``,
``value_skill``, ``oracle_step`` (``flips``, ``acc`` / ``se`` / ``tokens`` [strategy][budget]
at the first flip rate, ``curve``: one point per flip rate), ``settings``, ``missing`` (cells
``--cached-only`` left out); each row of a task that grades its problems also has its
accuracy ``by_difficulty`` (``difficulty`` in the JSON). Paths in it are relative; ``--png``
plots accuracy against tokens, and beside it as ``<name>_oracle.png`` the step-oracle curve
(or, without ``--step-oracle``, the ORM oracle's; with both, the ORM's is
``<name>_orm_oracle.png``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from critics.calibration import auroc
from critics.compose import StepScorer
from critics.head import HeadCritic
from critics.oracle import StepOracle
from critics.train import live_nodes, node_state, rollout_shares
from policies.hf import HFPolicy
from policies.zoo import resolve
from treesearch.backends import build_critic
from treesearch.config import build_task, load_config
from treesearch.decode import search_config, split_overrides
from treesearch.search import SearchConfig, StepSearch
from treesearch.search.strategies import REFERENCES, evaluate, format_table
from treesearch.tasks import prompt_ids
from treesearch.tasks.base import stable_hash
from treesearch.utils.atomic import write_text
from treesearch.utils.plots import line_plot
from treesearch.utils.runs import portable_path

LEARNED = ("greedy", "majority", "best_of_n", "weighted_bon", "beam", "mcts")
CHECKED = ("best_of_n", "mcts")
TABLES = ("learned", "checkers", "oracle", "critics")
QUICK = {"problems": 40, "budgets": [128, 256], "strategies": ["greedy", "majority",
                                                                "weighted_bon", "mcts"]}


def add_run_arguments(parser, problems: int) -> None:
    """The options of a benchmark that replays a self-play run on held-out problems:
    --run, --round, --split, --problems (default ``problems``), --seed, --threads."""
    parser.add_argument("--run", required=True, help="a self-play run directory")
    parser.add_argument("--round", type=int, default=None, help="default: the last trained round")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--problems", type=int, default=problems)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, problems=500)
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--strategies", nargs="+", default=list(LEARNED))
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES),
                        help="which parts to compute: the two tables (the checker table only "
                             "where the task can verify answers), the oracle curve (with "
                             "--oracle) and the critics' quality on held-out trees")
    parser.add_argument("--rows", default=None,
                        help="a JSONL file of finished rows: each (table, strategy, budget) is "
                             "appended when done and skipped when already there, so a long "
                             "board resumes, and two processes (--tables learned / checkers) "
                             "can share it; a last run with every row there only assembles")
    parser.add_argument("--cached-only", action="store_true",
                        help="with --rows: assemble the rows already there and decode nothing "
                             "new (cells not there are left out of the board and listed)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['problems']} problems, budgets {QUICK['budgets']}, "
                             f"{', '.join(QUICK['strategies'])}")
    parser.add_argument("--drop", action="append", default=[],
                        choices=("value", "process", "outcome"),
                        help="a learned critic to leave out (ablations; repeatable)")
    parser.add_argument("--oracle", type=float, nargs="+", default=None, metavar="FLIP",
                        help="also the oracle-ORM curve at these flip rates (reads labels)")
    parser.add_argument("--step-oracle", type=float, nargs="+", default=None, metavar="FLIP",
                        help="also search with the step oracle (exact solver; benchmark only) "
                             "at every budget with the first flip rate, and a curve over them")
    parser.add_argument("--json", default=None)
    parser.add_argument("overrides", nargs="*",
                        help="search.KEY=VALUE on top of the run's search (ablations)")
    parser.add_argument("--png", default=None)
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
    args.overrides += overrides
    if args.tables == ["oracle"] and not (args.oracle or args.step_oracle):
        parser.error("--tables oracle needs the flip rates: --oracle FLIP [FLIP ...] or "
                     "--step-oracle FLIP [FLIP ...]")
    for flip in (args.oracle or []) + (args.step_oracle or []):
        if not 0.0 <= flip <= 1.0:
            parser.error(f"an oracle flip rate must be in [0, 1], got {flip}")
    if args.quick:
        args.problems, args.budgets, args.strategies = (QUICK["problems"], QUICK["budgets"],
                                                        QUICK["strategies"])
    return args


def last_round(run: Path) -> int:
    rounds = sorted(int(p.name.split("_")[1]) for p in run.glob("round_*")
                    if (p / "critics").is_dir())
    if not rounds:
        raise SystemExit(f"error: {run} holds no trained critics (round_*/critics); "
                         "run python -m treesearch.selfplay first")
    return rounds[-1]


def load_run(args):
    """(recipe, policy, learned StepScorer, round) of the self-play run."""
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    r = args.round if args.round is not None else last_round(run)
    policy_dir = next((run / f"round_{k}" / "policy" for k in range(r, 0, -1)
                       if (run / f"round_{k}" / "policy").is_dir()), resolve(cfg.policy.model))
    policy = HFPolicy(policy_dir, step_delimiter=build_task(cfg).step_delimiter,
                      temperature=cfg.policy.temperature, seed=args.seed)
    critics = {kind: HeadCritic.load(run / f"round_{r}" / "critics" / kind,
                                     policy_tokenizer=policy.tokenizer)
               for kind in ("value", "process", "outcome")
               if (run / f"round_{r}" / "critics" / kind).is_dir()}
    scorer = StepScorer(critics.get("value"), critics.get("process"), critics.get("outcome"))
    return cfg, policy, scorer, r


def checker_scorer(task, problems, tokenizer) -> StepScorer:
    return StepScorer(process=build_critic("process", "checker", task=task, problems=problems,
                                           policy_tokenizer=tokenizer),
                      outcome=build_critic("outcome", "checker", task=task, problems=problems,
                                           policy_tokenizer=tokenizer))


def critic_quality(policy, scorer, task, problems, search, budget) -> dict:
    """Score the learned critics on the trees of one MCTS run over held-out problems; the
    labels are read only after the search (see the module docstring)."""
    result = StepSearch(policy, scorer, task, policy.tokenizer,
                        replace(search, max_tokens=budget)).run(problems)
    forest = result.forest
    tree, node = live_nodes(result)
    ends = forest.terminal[tree, node] != 0
    correct = {}
    for t, n in zip(tree[ends], node[ends]):
        text = "".join(policy.tokenizer.decode(s.tolist(), skip_special_tokens=True)
                       for s in result.steps(int(t), int(n)))
        correct[(int(t), int(n))] = float(task.check_solution(problems[t], text))
    share, _ = rollout_shares(forest, correct)
    out = {"orm_auroc": None, "prm_auroc": None, "value_skill": None}
    answers = [k for k in correct if task.is_answer_step(
        policy.tokenizer.decode(result.steps(*k)[-1].tolist(), skip_special_tokens=True))]
    if scorer.has("outcome") and answers:
        p = scorer.run("outcome", [node_state(result, *k) for k in answers])
        out["orm_auroc"] = auroc(p, np.array([correct[k] for k in answers]))
    labelled = list(share)
    if scorer.has("process") and labelled:
        p = scorer.run("process", [node_state(result, *k) for k in labelled])
        out["prm_auroc"] = auroc(p, np.array([share[k] > 0 for k in labelled], float))
    opened = [k for k in labelled if not forest.terminal[k]]
    if scorer.has("value") and opened:
        v = scorer.run("value", [node_state(result, *k) for k in opened])
        y = np.array([share[k] for k in opened])
        constant = float(np.mean((y - y.mean()) ** 2))
        out["value_skill"] = 1 - float(np.mean((v - y) ** 2)) / constant if constant else None
    out["labelled_nodes"], out["answer_nodes"] = len(labelled), len(answers)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


class LabelOracle:
    """An ORM that reads the labels (benchmark only): 1.0 for a correct answer, 0.0 for a
    wrong one, each verdict flipped with probability ``flip``, decided by a hash of the
    state and ``seed`` so the same state always gets the same verdict."""

    kind = "outcome"

    def __init__(self, task, tokenizer, labelled_problems, flip: float, seed: int = 0):
        if not 0 <= flip <= 1:
            raise ValueError(f"oracle flip rate must be in [0, 1], got {flip}")
        self.task, self.tokenizer, self.flip, self.seed = task, tokenizer, flip, seed
        self.name = f"oracle(flip={flip})"
        self._by_prompt = {tuple(prompt_ids(tokenizer, task, p)): p for p in labelled_problems}

    def score(self, states):
        out = np.zeros(len(states), np.float32)
        for i, (prompt, steps) in enumerate(states):
            problem = self._by_prompt[tuple(int(t) for t in prompt)]
            text = "".join(self.tokenizer.decode([int(t) for t in s], skip_special_tokens=True)
                           for s in steps)
            right = self.task.check_solution(problem, text)
            key = stable_hash(self.seed, tuple(int(t) for t in prompt), text)
            flipped = (key % 1_000_000) / 1_000_000 < self.flip
            out[i] = float(right != flipped)
        return out


def oracle_curve(cache, policy, task, problems, flips, budget, kw) -> list[dict]:
    """MCTS and ORM-weighted best-of-N with the label oracle at each flip rate, one budget;
    each cell through ``cache`` (table ``oracle flip=F``). A flip with a cell missing from a
    ``--cached-only`` board is left out of the curve."""
    out = []
    for flip in flips:
        oracle = StepScorer(outcome=LabelOracle(task, policy.tokenizer, problems, flip))
        rows = cache.evaluate(f"oracle flip={flip:g}", policy, oracle, task, problems,
                              ["weighted_bon", "mcts"], [budget], **kw)
        if len(rows) < 2:
            continue
        out.append({"flip": flip, **{f"{r['strategy']}_acc": r["accuracy"] for r in rows},
                    **{f"{r['strategy']}_se": r["se"] for r in rows}})
        print(f"oracle flip {flip}: " + ", ".join(f"{r['strategy']} {r['accuracy']:.3f} "
                                                 f"+- {r['se']:.3f}" for r in rows))
    return out


STEP_ORACLE_STRATEGIES = ("mcts", "beam", "weighted_bon")


def step_oracle_scorer(task, tokenizer, problems, flip: float, seed: int) -> StepScorer:
    """The step oracle as value, PRM and ORM, each flipping at ``flip``."""
    return StepScorer(*(StepOracle(task, tokenizer, problems, kind, flip=flip, seed=seed)
                        for kind in ("value", "process", "outcome")))


def step_oracle_board(cache, policy, task, problems, flips, budgets, kw, seed) -> dict:
    """``oracle_step`` of the JSON: MCTS, beam and weighted best-of-N with the step oracle at
    every budget at ``flips[0]``, and a curve at the middle budget over ``flips``; every cell
    through ``cache`` (table ``step_oracle flip=F``)."""
    middle = budgets[len(budgets) // 2]
    full = cache.evaluate(f"step_oracle flip={flips[0]:g}", policy,
                          step_oracle_scorer(task, policy.tokenizer, problems, flips[0], seed),
                          task, problems, list(STEP_ORACLE_STRATEGIES), budgets, **kw)
    print(f"step oracle, flip {flips[0]:g} (benchmark only)\n" + format_table(full))
    curve = []
    for flip in flips:
        rows = full if flip == flips[0] else cache.evaluate(
            f"step_oracle flip={flip:g}", policy,
            step_oracle_scorer(task, policy.tokenizer, problems, flip, seed),
            task, problems, list(STEP_ORACLE_STRATEGIES), [middle], **kw)
        cell = {r["strategy"]: r for r in rows if r["budget"] == middle}
        if len(cell) < len(STEP_ORACLE_STRATEGIES):
            continue
        curve.append({"flip": flip, "auroc": 1.0 - flip, "budget": middle,
                      **{f"{s}_acc": cell[s]["accuracy"] for s in STEP_ORACLE_STRATEGIES},
                      **{f"{s}_se": cell[s]["se"] for s in STEP_ORACLE_STRATEGIES}})
    return {"flips": list(flips), **board(full), "difficulty": difficulty(full), "curve": curve}


def difficulty(rows) -> dict:
    """{strategy: {budget or "ref": by_difficulty}} of the rows that have one."""
    out = {}
    for r in rows:
        if "by_difficulty" in r:
            b = "ref" if r["budget"] is None else str(r["budget"])
            out.setdefault(r["strategy"], {})[b] = r["by_difficulty"]
    return out


def settings(args, cfg, search) -> dict:
    """What a cached row depends on: the run's round, split, problems, seed, search
    settings (every ``SearchConfig`` field), drops and temperature."""
    return {"run": portable_path(args.run), "round": args.round, "split": args.split,
            "problems": args.problems, "seed": args.seed, "search": vars(search),
            "dropped": sorted(args.drop), "temperature": cfg.policy.temperature}


def fingerprint(what: dict) -> str:
    """A short stable hash of a row's settings (``settings``' output)."""
    return f"{stable_hash(json.dumps(what, sort_keys=True, default=str)):016x}"


@functools.cache
def search_defaults() -> dict:
    """Every ``SearchConfig`` field at its default, as rows store settings (JSON values)."""
    return json.loads(json.dumps(vars(SearchConfig()), default=str))


def same_settings(stored: dict | None, now: dict) -> bool:
    """Whether a row made under ``stored`` settings holds for ``now``: every setting equal,
    except that a search field the row does not know (added to ``SearchConfig`` since) must
    be at its default, the behaviour before the field existed. None (a row written before
    rows kept their settings) never matches."""
    if not isinstance(stored, dict) or set(stored) != set(now):
        return False
    if any(stored[k] != now[k] for k in now if k != "search"):
        return False
    old, new = stored["search"], now["search"]
    default = search_defaults()
    return (set(old) <= set(new) and all(old[k] == new[k] for k in old)
            and all(new[k] == default.get(k) for k in set(new) - set(old)))


class RowCache:
    """Finished rows in a JSONL file (or nowhere: ``path`` None), keyed by table, strategy
    and budget, each with the settings it was made under (``settings``) and their
    ``fingerprint``; a row of other settings is an error, not a silent mix (a search field
    added since, at its default, is the same settings). Each row is appended with one
    write, so two processes can share the file."""

    def __init__(self, path, what: dict, cached_only: bool = False):
        what = json.loads(json.dumps(what, sort_keys=True, default=str))  # as rows store it
        self.path, self.settings, self.rows = (Path(path) if path else None), what, {}
        self.key = fingerprint(what)
        self.cached_only, self.missing = cached_only, []
        if self.path is not None and self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if (row.get("fingerprint") != self.key
                        and not same_settings(row.get("settings"), what)):
                    raise SystemExit(f"error: {self.path}:{n} holds a row of other settings "
                                     f"(fingerprint {row.get('fingerprint')}, this board "
                                     f"{self.key}); use another --rows file")
                self.rows[(row["table"], row["strategy"], row["budget"])] = row

    def evaluate(self, table, policy, critics, task, problems, strategies, budgets, **kw):
        jobs = list(dict.fromkeys((s, None if s in REFERENCES else int(b))
                                  for b in budgets for s in strategies))  # references once
        out = []
        bar = tqdm(jobs, desc=f"{table} board", unit="cell")
        for strategy, budget in bar:
            row = self.rows.get((table, strategy, budget))
            if row is None and self.cached_only:
                self.missing.append(f"{table}:{strategy}@{budget}")
                continue
            if row is None:
                bar.set_postfix(strategy=strategy, budget=budget)
                row = self.put(table, evaluate(
                    policy, critics, task, problems, [strategy],
                    [budget if budget is not None else budgets[0]], progress=False, **kw)[0])
            out.append(row)
        return out

    def put(self, table: str, row: dict) -> dict:
        """Keep a finished row (``evaluate``'s dict) under ``table`` and append it to the file."""
        row = {**row, "table": table, "fingerprint": self.key, "settings": self.settings}
        self.rows[(table, row["strategy"], row["budget"])] = row
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
        return row


def board(rows) -> dict:
    """{acc, se, tokens, critic_tokens, seconds}[strategy][budget or "ref"] from rows."""
    out = {key: {} for key in ("acc", "se", "tokens", "critic_tokens", "seconds")}
    for r in rows:
        b = "ref" if r["budget"] is None else str(r["budget"])
        for key, field in (("acc", "accuracy"), ("se", "se"), ("tokens", "tokens"),
                           ("critic_tokens", "critic_tokens"), ("seconds", "seconds")):
            out[key].setdefault(r["strategy"], {})[b] = r[field]
    return out


def plot(rows, checker_rows, path, title) -> None:
    series = {}
    for name, group in (("", rows), ("checker ", checker_rows)):
        for strategy in dict.fromkeys(r["strategy"] for r in group):
            pts = sorted((r["tokens"], r["accuracy"]) for r in group if r["strategy"] == strategy)
            series[name + strategy] = ([p[0] for p in pts], [p[1] for p in pts])
    line_plot(series, path, xlabel="policy tokens generated per problem", ylabel="accuracy",
              title=title, xscale="log")


def plot_step_oracle(curve, rows, prm_auroc, budget, path, title) -> None:
    """The step-oracle curve: accuracy of MCTS, beam and weighted best-of-N against the step
    oracle's AUROC (1 - flip rate), with majority vote at the same budget as a flat line
    and the learned critics' MCTS and beam at the learned PRM's AUROC (where there is one)."""
    auroc = [point["auroc"] for point in curve]
    series = {f"{s} with the step oracle": (auroc, [point[f"{s}_acc"] for point in curve])
              for s in STEP_ORACLE_STRATEGIES}
    cell = {r["strategy"]: r["accuracy"] for r in rows if r["budget"] == budget}
    if "majority" in cell:
        series["majority vote"] = ([min(auroc), max(auroc)], [cell["majority"]] * 2)
    for s in ("mcts", "beam"):
        if s in cell and prm_auroc is not None:
            series[f"{s} with the learned critics"] = ([prm_auroc], [cell[s]])
    line_plot(series, path, xlabel="step critic AUROC", ylabel="accuracy",
              title=f"{title}, {budget} tokens")


def plot_oracle(curve, rows, orm_auroc, budget, path, title) -> None:
    """The oracle curve: accuracy against the oracle ORM's AUROC (1 - flip rate, exactly,
    for a binary verdict flipped at random), with majority vote at the same budget as a flat
    line and the learned ORM's MCTS at the learned ORM's AUROC."""
    auroc = [1 - point["flip"] for point in curve]
    series = {f"{s} with the oracle ORM": (auroc, [point[f"{s}_acc"] for point in curve])
              for s in ("mcts", "weighted_bon")}
    cell = {r["strategy"]: r["accuracy"] for r in rows if r["budget"] == budget}
    if "majority" in cell:
        series["majority vote"] = ([min(auroc), max(auroc)], [cell["majority"]] * 2)
    if "mcts" in cell and orm_auroc is not None:
        series["mcts with the learned ORM"] = ([orm_auroc], [cell["mcts"]])
    line_plot(series, path, xlabel="ORM AUROC on answers", ylabel="accuracy",
              title=f"{title}, {budget} tokens")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.step_oracle \
            and not build_task(load_config(Path(args.run) / "config.yaml")).has_step_oracle:
        raise SystemExit(f"error: --step-oracle: the task of {args.run} has no exact solver, "
                         "so it has no step oracle")
    cfg, policy, scorer, r = load_run(args)
    task = build_task(cfg)
    problems = task.problems(args.split, args.problems, seed=args.seed)
    search = search_config(OmegaConf.to_object(cfg.search), args.overrides)
    for kind in args.drop:
        scorer.critics[kind] = None
    start = time.perf_counter()
    kw = {"temperature": cfg.policy.temperature, "search": search, "seed": args.seed}
    print(f"{policy.describe()}\n{len(problems)} {args.split} problems of {cfg.task}, "
          f"round {r} critics: {', '.join(k for k in scorer.critics if scorer.has(k))}")
    if args.cached_only and not args.rows:
        raise SystemExit("error: --cached-only needs --rows FILE")
    cache = RowCache(args.rows, settings(args, cfg, search), args.cached_only)
    rows = []
    if "learned" in args.tables:
        rows = cache.evaluate("learned", policy, scorer, task, problems, args.strategies,
                              args.budgets, **kw)
        print("learned critics\n" + format_table(rows))
    checker_rows = []
    if "checkers" in args.tables and task.can_verify_answers:
        checkers = checker_scorer(task, problems, policy.tokenizer)
        checker_rows = cache.evaluate(
            "checkers", policy, checkers, task, problems,
            [s for s in CHECKED if s in args.strategies or s == "best_of_n"], args.budgets, **kw)
        print("label-free checkers (not comparable with the table above)\n"
              + format_table(checker_rows))
    middle = args.budgets[len(args.budgets) // 2]
    quality = {}
    if "critics" in args.tables:
        quality = critic_quality(policy, scorer, task, problems, search, middle)
        print("critics on held-out trees: " + json.dumps(quality))
    curve, step = [], {}
    if "oracle" in args.tables and args.oracle:
        curve = oracle_curve(cache, policy, task, problems, args.oracle, middle, kw)
    if "oracle" in args.tables and args.step_oracle:
        step = step_oracle_board(cache, policy, task, problems, args.step_oracle, args.budgets,
                                 kw, args.seed)
    result = {"budgets": args.budgets, **board(rows), "difficulty": difficulty(rows),
              "checkers": {**board(checker_rows), "difficulty": difficulty(checker_rows)},
              **quality, "references": list(REFERENCES), "oracle": curve, "oracle_step": step,
              "missing": cache.missing,
              "settings": {"run": portable_path(args.run), "round": r, "task": cfg.task,
                           "split": args.split, "problems": len(problems), "seed": args.seed,
                           "search": vars(search), "dropped": args.drop,
                           "temperature": cfg.policy.temperature},
              "wall_seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        write_text(args.json, json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.png:
        title = f"{cfg.task}: {len(problems)} {args.split} problems"
        plot(rows, checker_rows, args.png, title)
        png = Path(args.png)
        if step.get("curve"):
            plot_step_oracle(step["curve"], rows, quality.get("prm_auroc"), middle,
                             png.with_name(png.stem + "_oracle.png"), title)
        if curve:
            plot_oracle(curve, rows, quality.get("orm_auroc"), middle,
                        png.with_name(png.stem + ("_orm_oracle.png" if step.get("curve")
                                                  else "_oracle.png")), title)
    return 0


if __name__ == "__main__":
    sys.exit(main())

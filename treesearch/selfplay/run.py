"""``python -m treesearch.selfplay``: rounds of search -> refit critics -> distill -> evaluate.

The round loop (the package docstring describes the stages): round 0 evaluates the
starting policy, then every round runs the stage table (``SelfPlay.stages``: search,
critics, distill, eval). Each finished stage is logged to metrics.jsonl and marked done
in the run directory, so ``--resume`` continues after the last finished stage; every
stage seeds itself from (seed, round, stage) and reloads its inputs from disk, so a
resumed run computes what an uninterrupted one would. ``main`` is the command line:
a new run, ``--resume`` (after sweeping what killed writes left, and ``--redo``) or
``--check`` (``heal``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from policies.distill import save_policy
from treesearch.config import (
    ConfigError,
    build_task,
    check_context,
    distill_config,
    load_config,
    stage_seed,
    train_problems,
)
from treesearch.distributed import DistributedError, cluster, shards
from treesearch.engine.export import write_jsonl
from treesearch.selfplay import heal
from treesearch.selfplay.models import CRITIC_KINDS, RunModels
from treesearch.selfplay.report import write_run_report
from treesearch.selfplay.shards import (
    StageShards,
    WorkItem,
    eval_items,
    eval_row,
    item_names,
    merge_search,
)
from treesearch.stages.critics import refit_critics
from treesearch.stages.evaluate import diversity, passk_fell
from treesearch.stages.harvest import harvest, own_samples, prior_examples, unit_mean_weight
from treesearch.stages.train import OPTIMIZERS, TrainData, distill_row
from treesearch.tasks.registry import code_paths
from treesearch.utils.cli import ArgumentParser, CLIError, blame
from treesearch.utils.heal import sweep
from treesearch.utils.recipes import shipped_recipes
from treesearch.utils.runs import RunDir, RunError


class SelfPlay:
    """One self-play run over a config (``treesearch.config.SelfPlayConfig``)."""

    def __init__(self, cfg, run: RunDir, pool=None, task=None):
        """``pool``: a ``treesearch.distributed.WorkerPool`` that runs the eval shards
        (None: everything runs in this process). ``task``: the recipe's task already built
        (``build_task``; None: built here), with the problem sets it has drawn."""
        self.cfg, self.run, self.pool = cfg, run, pool
        self._pool_ready, self._local = False, None
        self.task = task if task is not None else build_task(cfg)
        self.models = RunModels(cfg, run, self.task)
        torch.set_num_threads(cfg.policy.threads)
        self.eval_problems = self.task.problems_once(cfg.eval.split, cfg.eval.problems,
                                                     seed=cfg.seed)

    def train_problems(self, round_: int):
        return train_problems(self.cfg, self.task, round_)

    def seed(self, r: int, name: str) -> int:
        """The seed of ``name`` in round ``r`` (``config.stage_seed``)."""
        return stage_seed(self.cfg.seed, r, name)

    # -- stages ------------------------------------------------------------------------
    def stage_search(self, r: int) -> dict:
        """MCTS over the round's training problems; with ``distributed.shard_problems`` > 0
        in shards (here or on the Ray workers), seeded by (seed, round, shard index), the
        trees merged in problem order into the one trees file."""
        size = self.cfg.distributed.shard_problems
        if size or self.pool is not None:
            cuts = shards(self.cfg.train_problems, size)
            parts = self.run_items([WorkItem(r, "search", lo, hi, self.seed(r, f"search/{i}"))
                                    for i, (lo, hi) in enumerate(cuts)])
            return merge_search(parts, self.run.round_dir(r) / "trees.jsonl.gz")
        policy = self.models.load_policy(r - 1, self.seed(r, "search"))
        problems = self.train_problems(r)
        critics = self.models.load_critics(r - 1, policy.tokenizer)
        searched = self.models.search(policy, critics, problems, f"round {r} search",
                                      self.cfg.progress)
        write_jsonl(searched.result.forest, self.run.round_dir(r) / "trees.jsonl.gz")
        return {"train_solved": searched.solved_share,
                "tokens_per_problem": float(searched.generated.mean()),
                "nodes_per_tree": float(searched.nodes.mean()),
                "overhead_share": round(searched.result.stats.overhead_share, 4),
                "policy": policy.describe()}

    def stage_critics(self, r: int) -> dict:
        """Refit the learned critics on the round's trees (``stages.critics``)."""
        c = self.cfg.critics
        torch.manual_seed(self.seed(r, "critics"))
        policy = self.models.load_policy(r - 1, self.seed(r, "critics"))
        problems, result = self.models.trees(r, policy.tokenizer)
        critics = self.models.load_critics(r - 1, policy.tokenizer)
        return refit_critics(critics, result, problems, self.task, policy.tokenizer,
                             self.run.round_dir(r) / "critics", max_examples=c.max_examples,
                             epochs=c.epochs, lr=c.lr, train_trunk=c.train_trunk,
                             seed=lambda name: self.seed(r, name))

    def stage_distill(self, r: int) -> dict:
        """Train the policy with ``distill.method`` (an entry of ``stages.train.OPTIMIZERS``)
        on what it needs harvested from the round's trees (every round's with
        ``distill.cumulative``), and save it."""
        d = self.cfg.distill
        optimizer = OPTIMIZERS[d.method]
        seed = self.seed(r, "distill")
        # STaR-style (cumulative): restart from the starting model on every round's paths
        policy = self.models.load_learner(0 if d.cumulative else r - 1, seed)
        tok = policy.tokenizer
        data = TrainData(positive_weight=d.positive_weight)
        for k in range(1 if d.cumulative else r, r + 1):
            problems, result = self.models.trees(k, tok)
            got = harvest(optimizer.needs, result, problems, self.task, tok, d,
                          clean_steps=d.clean_steps, distinct=d.distinct,
                          unlikeliness=d.unlikeliness, passk_weight=d.passk_weight,
                          tree_baseline=d.tree_baseline)
            data.examples += got.examples
            data.pg += got.pg
            data.pairs = got.pairs  # sibling pairs: the last round's only
        if d.passk_weight:  # the mean weight back to 1: the same step size
            data.examples = unit_mean_weight(data.examples)
        if d.own_samples:  # the learner's own samples as it starts, seeded from the stage's
            s = self.cfg.search
            learner = self.models.load_policy(0 if d.cumulative else r - 1, seed)
            data.own = own_samples(learner, self.task, self.train_problems(r), d.own_samples,
                                   temperature=self.cfg.policy.temperature,
                                   max_steps=s.max_depth, max_step_tokens=s.max_step_tokens)
        if d.prior_samples:  # samples of the STARTING model, seeded per (seed, round)
            start, s = self.models.load_policy(0, self.seed(r, "prior")), self.cfg.search
            data.prior = prior_examples(start, self.task, self.train_problems(r),
                                        d.prior_samples, d.prior_weight,
                                        temperature=self.cfg.policy.temperature,
                                        max_steps=s.max_depth, max_step_tokens=s.max_step_tokens)
        model, stats = optimizer.train(policy.model, tok, data, distill_config(self.cfg, seed))
        save_policy(model, tok, self.run.round_dir(r) / "policy")
        return distill_row(stats, data, d)

    def stage_eval(self, r: int) -> dict:
        """Greedy accuracy, sampled pass@k and MCTS decoding on the held-out problems, as
        shards run here or on the Ray workers (``shards.eval_items``), gathered in problem
        order; with ``eval.passk_samples`` > 0 also what shrinks (``stages.evaluate.
        diversity`` on the first ``eval.passk_problems`` problems) and the share of them
        whose pass@max-k fell from round 0 (``passk_fell``)."""
        items = eval_items(self.cfg, r, self.eval_problems)
        e, s = self.cfg.eval, self.cfg.search
        row = eval_row(items, self.run_items(items), e.samples)
        if e.passk_samples:  # not sharded yet: runs here, on this round's policy
            if self._local is not None and self.cfg.distributed.shard_problems == 0:
                policy = self._local.policy  # the generator runs on, as it always did
            else:
                policy = self.models.load_policy(r, self.seed(r, "eval/diversity"))
            problems = self.eval_problems[: e.passk_problems or len(self.eval_problems)]
            row.update(diversity(policy, self.task, problems, e.passk_samples,
                                 temperature=self.cfg.policy.temperature,
                                 max_steps=s.max_depth, max_step_tokens=s.max_step_tokens,
                                 entropy_samples=e.entropy_samples))
            row["passk_fell"] = self.fell_share(r, row)
        return row

    def fell_share(self, r: int, row: dict) -> float | None:
        """Share of the pass@k problems whose pass@``eval.passk_samples`` fell from round 0
        to round ``r`` (``stages.evaluate.passk_fell`` of the eval rows' ``passk_counts``):
        0.0 at round 0, None when round 0's row holds no counts (a run from before them)."""
        if r == 0:
            return 0.0
        first = [m for m in self.run.metrics() if m["stage"] == "eval" and m["round"] == 0]
        if not first or "passk_counts" not in first[-1]:
            return None
        return passk_fell(first[-1]["passk_counts"], row["passk_counts"], row["passk_samples"])

    def run_items(self, items: list[WorkItem]) -> list:
        """``StageShards.run`` of every item, on the Ray workers when there is a pool (each
        set up once per run), else here in order; results in item order."""
        if self.pool is not None:
            if not self._pool_ready:
                self.pool.setup(_shard_worker, self.cfg, str(self.run.path))
                self._pool_ready = True
            names = item_names(items, self.train_problems, self.eval_problems)
            return self.pool.map("run", items, names=names,
                                 desc="shards" if self.cfg.progress else None)
        self._local = self._local or StageShards(self)
        return [self._local.run(item) for item in items]

    # -- the loop ----------------------------------------------------------------------
    def stages(self) -> dict[str, Callable[[int], dict]]:
        """The stage table: every round's stages in the order they run, each name (as the
        run directory marks it done and metrics.jsonl logs it) to its method, which takes
        the round and returns the stage's metrics row (the names and order:
        ``heal.STAGE_OUTPUTS``, with what each stage writes)."""
        return {"search": self.stage_search, "critics": self.stage_critics,
                "distill": self.stage_distill, "eval": self.stage_eval}

    def run_all(self) -> list[dict]:
        """Every stage not yet marked done (round 0: eval only), logged to metrics.jsonl
        and marked done in turn; then the report over every round's eval row."""
        stages, plan = self.stages(), heal.plan(self.cfg.rounds)
        todo = [(r, st) for r, st in plan if not self.run.is_done(r, st)]
        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="selfplay",
                   disable=not self.cfg.progress)
        for r, stage in todo:
            bar.set_postfix(round=r, stage=stage)
            start = time.perf_counter()
            row = stages[stage](r)
            self.run.log({"round": r, "stage": stage,
                          "seconds": round(time.perf_counter() - start, 2), **row})
            self.run.mark_done(r, stage)
            bar.update(1)
        bar.close()
        rows = [m for m in self.run.metrics() if m["stage"] == "eval"]
        write_run_report(self.run.path, rows, self.cfg.task)
        return rows


def _shard_worker(cfg, run_path: str) -> StageShards:
    """A Ray worker's state: the run's config and directory, read-only (no progress bars:
    the driver's log is shared)."""
    cfg.progress = False
    return StageShards(SelfPlay(cfg, RunDir(Path(run_path))))


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m treesearch.selfplay",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None,
                        help="YAML recipe: a file, or a shipped recipe by name "
                        f"({', '.join(shipped_recipes())}; default: default)")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="continue the run in this directory (what killed writes left "
                        "there is swept first)")
    parser.add_argument("--redo", default=None, metavar="ROUND/STAGE",
                        help="with --resume: re-run this stage (e.g. 1/distill) and every "
                        "later one from its inputs")
    parser.add_argument("--check", default=None, metavar="RUN",
                        help="verify the run's checkpoints, trees and metrics against its "
                        "state; exit 0 when healthy, 1 with a line per problem")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. rounds=5")
    return parser


def _open_run(args) -> tuple:
    """(config, run directory or None for a new run) for the command line; CLIError for a
    bad combination of flags, ConfigError / RunError for a bad config or directory. Changes
    nothing on disk."""
    if args.check and (args.resume or args.redo or args.config or args.overrides):
        raise CLIError("--check", "takes the run directory alone (no --resume, --redo, "
                       "--config or overrides)")
    if args.redo and not args.resume:
        raise CLIError("--redo", "needs --resume RUN (it re-runs a stage of that run)")
    where = args.check or args.resume
    if not where:
        return load_config(args.config or "default", args.overrides), None
    flag = "--check" if args.check else "--resume"
    if args.overrides or args.config:
        raise CLIError(flag, "takes no config or overrides: the run's config.yaml rules")
    try:
        run = RunDir.open(where)
    except RunError as exc:
        if not (args.check and (Path(where) / "config.yaml").is_file()):
            raise CLIError(flag, str(exc)) from None
        run = RunDir(Path(where))  # a corrupt state.json: --check names it
    return load_config(run.path / "config.yaml"), run


def _check(cfg, run: RunDir) -> int:
    """``--check``: the run's problems on stdout, one a line (exit 1), or ``ok`` (exit 0);
    temporaries of interrupted writes are noted on stderr (not problems: a resume sweeps
    them)."""
    heads = [k for k in CRITIC_KINDS if getattr(cfg.critics, k) == "head"]
    problems = heal.check(run, cfg.rounds, heads)
    for note in heal.leftover_notes(run):
        print(f"note: {note}", file=sys.stderr)
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"ok: {run.path}: {len(run.done())} stages done; their checkpoints, trees and "
          "metrics rows are in place")
    return 0


def _prepare(run: RunDir, rounds: int, redo: tuple[int, str] | None) -> None:
    """Before a resume's work: sweep the leftovers of killed writes, then ``--redo`` the
    stage ``redo`` (round, stage) and every later one."""
    for line in sweep(run.path):
        print(f"resume: {line}", file=sys.stderr)
    if redo is not None:
        for line in heal.redo(run, rounds, *redo):
            print(f"redo {redo[0]}/{redo[1]}: {line}", file=sys.stderr)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        try:
            cfg, run = _open_run(args)
        except ConfigError as exc:
            if not args.check:
                raise
            print(f"config.yaml: does not load, so nothing else was checked: {exc}")
            return 1  # a problem of the run, as --check reports them
        if args.check:
            return _check(cfg, run)
        redo = None
        if args.redo:
            with blame("--redo"):
                redo = heal.parse_stage(args.redo, cfg.rounds)
        task = build_task(cfg)
        check_context(cfg, task)  # the searches fit the model, before model work
        if run is not None:
            _prepare(run, cfg.rounds, redo)
    except CLIError as exc:
        return exc.exit()
    except (ConfigError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # the cluster first: an unreachable one leaves no run directory behind
        # a module:factory task: the workers import it too
        with cluster(cfg.distributed, code_paths=code_paths(cfg.task)) as pool:
            if run is None:
                cfg.out = cfg.out or f"runs/selfplay-{time.strftime('%Y%m%d-%H%M%S')}"
                run = RunDir.create(cfg.out, OmegaConf.to_yaml(cfg))
            SelfPlay(cfg, run, pool, task=task).run_all()
    except DistributedError as exc:
        where = (f" (the run directory {run.path} is intact; resume with --resume {run.path})"
                 if run else "")
        print(f"error: {exc}{where}", file=sys.stderr)
        return 2
    except RunError as exc:
        if run is None:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"error: {exc}\n(the run directory {run.path} is intact; fix the file and "
              f"resume with --resume {run.path})", file=sys.stderr)
        return 2
    return 0

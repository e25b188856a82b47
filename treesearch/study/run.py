"""``python -m treesearch.study``: does the prior bound what search and RL reach, more than
the optimizer does?

    python -m treesearch.study --quick                 # configs/study_quick.yaml, CPU, <= 30 min
    python -m treesearch.study --config configs/study.yaml   # the full grid (GPU-sized)
    python -m treesearch.study --resume runs/study-20261127-020000

For every prior (a model, or a pretraining run that differs from a reference prior in
one factor, built on first use and cached), every optimizer and every seed:

1. train the prior on LABELLED TRAINING problems with the optimizer, all at one budget
   of generated tokens (``budget_tokens``):
     mcts               one MCTS over the training problems (rule verifier on their
                        answers), then SFT on the best correct paths (this project)
     dpo                the same search trees, DPO on sibling steps whose Q differ
     grpo, expert_iteration, psr, nsr   on-policy, ``policies.rl``
   (mcts and dpo share the search of a (prior, seed); its generated tokens are their
   budget);
2. measure the trained policy and its prior on HELD-OUT problems, labels read only to
   count correct samples (``treesearch.study.measure.measure``): n >= 256 samples per
   problem, pass@k for k = 1..n, coverage, newly solved problems, distinct correct
   solutions, token entropy, calibration, solution formats; in distribution and on the
   out-of-distribution tasks (countdown with one fewer / one more number);
3. compare weights: share of unchanged parameters at several tolerances in fp32 and
   bf16, and the rank of every matrix's update (``policies.updates``).

Here: the grid (the plan of cells, run here or on Ray workers) and its cache (priors built
once; a finished search or cell is never redone). ``study.training`` trains a cell,
``study.cells`` measures it. Then ``treesearch.study.report`` writes ``report.md`` with
tables, eta squared of prior vs optimizer (pass@1, pass@n, OOD drop) and PNG plots (pass@k
crossover curves).

Run directory: ``config.yaml``; ``priors.json``; ``search/<prior>/seed<s>/`` (trees and
stats); ``cells/<prior>/<optimizer>/seed<s>/`` with ``train.json`` and ``measure.json``
(written last and atomically: a cell with it is done, so ``--resume`` skips it) and
``cells/<prior>/base/measure.json``. Policies are kept only while a cell is measured.

With ``distributed.backend=ray`` the cells run on Ray worker actors (``Study.run_on``),
in three waves: the priors (a variant after its reference), the (prior, seed) searches
the tree optimizers share, then every cell not yet measured, each on whichever worker is
free; every step is seeded by its own names (``training.cell_seed``), so the cells measure what a
local run measures, and each stays resumable on its own.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from policies.pretrain import PretrainConfig, pretrain
from policies.zoo import resolve
from treesearch.backends import build_policy
from treesearch.config import ConfigError
from treesearch.distributed import DistributedError, cluster
from treesearch.stages.train import from_trees
from treesearch.study.cells import Cells
from treesearch.study.config import (
    base_optimizer,
    check_context,
    load_study_config,
    optimizers_of,
    seeds_of,
)
from treesearch.study.report import write_report
from treesearch.study.training import CellTraining
from treesearch.tasks import get_task
from treesearch.tasks.base import stable_hash
from treesearch.tasks.registry import code_paths
from treesearch.utils.cli import ArgumentParser
from treesearch.utils.heal import sweep
from treesearch.utils.recipes import instantiate
from treesearch.utils.runs import RunDir, RunError, portable_path, read_json, write_json

__all__ = ["Study", "main"]

# pretraining knobs added after priors were first cached: left out of a prior's cache key
# while at their default, so a prior pretrained before a knob existed keeps its key
KEYED_WHEN_SET = ("stated_confidence", "walk_share", "eval_split")

QUICK_CONFIG = "study_quick"  # a shipped recipe (configs/study_quick.yaml)
BUDGET_KEYS = ("steps", "tokens", "time_budget_s")


class Study:
    """One study run over a ``StudyConfig`` in a run directory."""

    def __init__(self, cfg, run: RunDir, pool=None):
        """``pool``: a ``treesearch.distributed.WorkerPool`` that runs the cells (None:
        everything runs in this process)."""
        self.cfg, self.run, self.pool = cfg, run, pool
        torch.set_num_threads(cfg.threads)
        options = instantiate(cfg.task_options, "task_options")
        self.task = get_task(cfg.task, options=options, **OmegaConf.to_container(cfg.task_args))
        self.ood = {name: get_task(name, options=options) for name in cfg.ood_tasks}
        self.specs = {p.name: p for p in cfg.priors}
        self._prior_paths: dict[str, Path] = {}
        self.training, self.cells = CellTraining(self), Cells(self)

    # -- priors ----------------------------------------------------------------------
    def prior_path(self, name: str) -> Path:
        """The prior's model directory; a pretraining variant is built once and cached."""
        if name in self._prior_paths:
            return self._prior_paths[name]

        spec = self.specs[name]
        if spec.model:
            path = Path(resolve(spec.model))
        else:
            path = self._pretrained(spec)
        self._prior_paths[name] = path
        return path

    def pretrain_config(self, spec):
        """The reference's recorded pretraining config with ``spec.pretrain`` on top. A
        reference trained for a time budget is replayed by the tokens it actually saw, so
        a variant differs in the one factor it names, not in machine speed."""
        if not spec.reference:
            fields = {"task": self.cfg.task,
                      "task_args": OmegaConf.to_container(self.cfg.task_args),
                      **dict(spec.pretrain), "progress": self.cfg.progress}
            return PretrainConfig(**fields)
        ref = self.prior_path(spec.reference)
        try:
            recorded = read_json(ref / "metrics.json")
        except (OSError, ValueError) as exc:
            raise RunError(f"prior {spec.name!r}: reference {spec.reference!r} at {ref} has no "
                           f"readable metrics.json with its pretraining config ({exc})") from exc
        base = dict(recorded["config"])
        if base.get("time_budget_s") is not None:
            base.update(time_budget_s=None, steps=None, tokens=int(recorded["train"]["tokens"]))
        changes = dict(spec.pretrain)
        if any(k in changes for k in BUDGET_KEYS):  # a new budget replaces the old one
            base.update({k: None for k in BUDGET_KEYS})
        base.update(changes)
        base.update(progress=self.cfg.progress)
        return PretrainConfig(**base)

    def _pretrained(self, spec) -> Path:
        config = self.pretrain_config(spec)
        key = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "progress")}
        for k in KEYED_WHEN_SET:  # knobs added later: priors cached before keep their keys
            if key[k] == PretrainConfig.__dataclass_fields__[k].default:
                del key[k]
        cache = Path(self.cfg.prior_cache).expanduser()
        path = cache / f"{spec.name}-{stable_hash(json.dumps(key, sort_keys=True)) % 16**10:010x}"
        if not (path / "metrics.json").is_file():
            print(f"study: pretraining prior {spec.name!r} ({spec.factor or 'variant'}) -> {path}")
            pretrain(dataclasses.replace(config, out=str(path)))
        return path

    def policy(self, path_or_model, seed: int):
        """A policy to sample from (the study's eval temperature and device)."""
        return build_policy(path_or_model, step_delimiter=self.task.step_delimiter,
                            temperature=self.cfg.eval.temperature, seed=seed,
                            device=self.cfg.device)

    # -- the grid ----------------------------------------------------------------------
    def cell_dir(self, prior: str, optimizer: str, seed: int | None = None) -> Path:
        d = self.run.path / "cells" / prior / optimizer
        return d if seed is None else d / f"seed{seed}"

    def run_all(self) -> Path:
        c = self.cfg
        plan = [(p, "base", None) for p in self.specs]
        plan += [(p, o, s) for p, spec in self.specs.items() for s in seeds_of(c, spec)
                 for o in optimizers_of(c, spec)]
        if self.pool is not None:
            self.run_on(self.pool, plan)
            missing = [f"{p}/{o}" for p, o, s in plan
                       if not (self.cell_dir(p, o, s) / "measure.json").is_file()]
            if missing:
                raise DistributedError(f"the workers finished without measuring {missing}")
        bar = tqdm(plan if self.pool is None else [], desc="study", disable=not c.progress)
        for prior, optimizer, seed in bar:
            bar.set_postfix(prior=prior, optimizer=optimizer, seed=seed)
            if optimizer == "base":
                self.cells.run_base(prior)
            else:
                self.cells.run_cell(prior, optimizer, seed)
        write_json(self.run.path / "priors.json", {
            name: {"path": portable_path(self.prior_path(name)), "factor": spec.factor,
                   "reference": spec.reference, "pretrain": dict(spec.pretrain),
                   "grid": spec.trained and not (spec.optimizers or spec.seeds),
                   "trained": spec.trained,
                   "val": self.cells.prior_val_figures(name)}
            for name, spec in self.specs.items()})
        return write_report(self.run.path, c)

    def run_on(self, pool, plan) -> None:
        """The plan's unfinished work on the pool's workers, in waves whose items do not
        share files: priors (by depth of reference), the searches the tree optimizers
        share, the cells. A failing item stops the run naming it; a finished cell is never
        redone, a half-done one is redone from its start."""
        pool.setup(_study_worker, self.cfg, str(self.run.path))

        def bar(what):  # the driver's progress bars, one per wave
            return f"study {what}" if self.cfg.progress else None

        def depth(name):
            ref = self.specs[name].reference
            return 0 if not ref else 1 + depth(ref)

        todo = [(p, o, s) for p, o, s in plan
                if not (self.cell_dir(p, o, s) / "measure.json").is_file()]
        priors, names = set(), [p for p, _, _ in todo]
        while names:  # the priors the cells need, and the references they are built from
            name = names.pop()
            priors.add(name)
            names += [self.specs[name].reference] if self.specs[name].reference else []
        priors = sorted(priors, key=lambda n: (depth(n), n))
        for level in sorted({depth(n) for n in priors}):
            names = [n for n in priors if depth(n) == level]
            paths = pool.map("run_item", [("prior", n) for n in names],
                             names=[f"prior {n!r}" for n in names], desc=bar("priors"))
            self._prior_paths.update({n: Path(path) for n, path in zip(names, paths)})
        searches = sorted({(p, s) for p, o, s in todo
                           if o != "base" and from_trees(base_optimizer(self.cfg, o))
                           if not (self.run.path / "search" / p / f"seed{s}"
                                   / "search.json").is_file()})
        pool.map("run_item", [("search", p, s) for p, s in searches],
                 names=[f"search of prior {p!r} seed {s}" for p, s in searches],
                 desc=bar("searches"))
        pool.map("run_item", [("cell", p, o, s) for p, o, s in todo],
                 names=[f"cell {p}/{o}" + (f"/seed{s}" if s is not None else "")
                        for p, o, s in todo],
                 desc=bar("cells"))

    def run_item(self, item: tuple):
        """One work item of ``run_on`` (on a worker): ("prior", name) -> its model
        directory; ("search", prior, seed); ("cell", prior, optimizer, seed)."""
        kind, *rest = item
        if kind == "prior":
            return str(self.prior_path(*rest))
        if kind == "search":
            self.training.search(*rest)
            return None
        prior, optimizer, seed = rest
        if optimizer == "base":
            self.cells.run_base(prior)
        else:
            self.cells.run_cell(prior, optimizer, seed)
        return None


def _study_worker(cfg, run_path: str) -> Study:
    """A Ray worker's state: the study's config and run directory (no progress bars: the
    driver's log is shared)."""
    cfg.progress = False
    return Study(cfg, RunDir(Path(run_path)))


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m treesearch.study",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the small CPU grid (configs/study_quick.yaml)")
    parser.add_argument("--config", default=None, help="YAML study recipe")
    parser.add_argument("--resume", default=None, help="continue the study in this directory")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. seeds=[0,1]")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            if args.overrides or args.config or args.quick:
                parser.error("--resume takes no config or overrides: the run's config.yaml rules")
            run = RunDir.open(args.resume)
            cfg = load_study_config(run.path / "config.yaml")
            check_context(cfg)  # every search fits its prior's context
            for line in sweep(run.path):  # what killed atomic writes left behind
                print(f"resume: {line}", file=sys.stderr)
        else:
            if args.quick and args.config:
                parser.error("give --quick or --config, not both")
            config = QUICK_CONFIG if args.quick else args.config
            if config is None:
                parser.error("give --quick (the CPU grid) or --config FILE (e.g. "
                             "configs/study.yaml)")
            cfg = load_study_config(config, args.overrides)
            check_context(cfg)  # every search fits its prior's context, before a run directory
            cfg.out = cfg.out or f"runs/study-{time.strftime('%Y%m%d-%H%M%S')}"
            run = RunDir.create(cfg.out, OmegaConf.to_yaml(cfg))
    except (ConfigError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with cluster(cfg.distributed, code_paths=code_paths(cfg.task, *cfg.ood_tasks)) as pool:
            report = Study(cfg, run, pool).run_all()
    except DistributedError as exc:
        print(f"error: {exc}\n(the run directory {run.path} is intact; resume with "
              f"--resume {run.path})", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"error: {exc}\n(the run directory {run.path} is intact; fix the file and "
              f"resume with --resume {run.path})", file=sys.stderr)
        return 2
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    # run the importable module, not __main__, so Ray workers find its functions by name
    from treesearch.study import run as _module  # noqa: PLW0406 (the importable copy)

    sys.exit(_module.main())

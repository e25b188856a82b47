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

Then ``treesearch.study.report`` writes ``report.md`` with tables, eta squared of prior
vs optimizer (pass@1, pass@n, OOD drop) and PNG plots (pass@k crossover curves).

Run directory: ``config.yaml``; ``priors.json``; ``search/<prior>/seed<s>/`` (trees and
stats); ``cells/<prior>/<optimizer>/seed<s>/`` with ``train.json`` and ``measure.json``
(written last and atomically: a cell with it is done, so ``--resume`` skips it) and
``cells/<prior>/base/measure.json``. Policies are kept only while a cell is measured.

With ``distributed.backend=ray`` the cells run on Ray worker actors (``Study.run_on``),
in three waves: the priors (a variant after its reference), the (prior, seed) searches
the tree optimizers share, then every cell not yet measured, each on whichever worker is
free; every step is seeded by its own names (``cell_seed``), so the cells measure what a
local run measures, and each stays resumable on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from policies.distill import save_policy
from policies.pretrain import PretrainConfig, pretrain
from policies.rl import TreeBatch
from policies.updates import summarise_ranks, update_rank, update_sparsity
from policies.zoo import resolve
from treesearch.backends import build_learner, build_policy
from treesearch.config import ConfigError
from treesearch.distributed import DistributedError, cluster
from treesearch.engine.export import write_jsonl
from treesearch.search.harvest import load_result
from treesearch.stages import search_problems
from treesearch.stages.harvest import harvest
from treesearch.stages.train import OPTIMIZERS, TrainData, from_trees
from treesearch.study.config import (
    base_optimizer,
    load_study_config,
    optimizers_of,
    rl_of,
    seeds_of,
    train_config,
    tree_of,
)
from treesearch.study.measure import format_share, measure
from treesearch.study.report import write_report
from treesearch.study.routing import routing_probe
from treesearch.study.stats import HELDOUT_PREFIX
from treesearch.tasks import get_task, prompt_ids
from treesearch.tasks.base import stable_hash
from treesearch.utils.recipes import instantiate
from treesearch.utils.runs import RunDir, RunError, portable_path, read_json, write_json

# pretraining knobs added after priors were first cached: left out of a prior's cache key
# while at their default, so a prior pretrained before a knob existed keeps its key
KEYED_WHEN_SET = ("stated_confidence", "walk_share", "eval_split")

QUICK_CONFIG = "study_quick"  # a shipped recipe (configs/study_quick.yaml)
BUDGET_KEYS = ("steps", "tokens", "time_budget_s")


def cell_seed(*parts) -> int:
    return stable_hash("study", *parts) % 2**31


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
        self._eval_sets: dict | None = None  # drawn on first use (``eval_sets``)

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

    # -- problems ----------------------------------------------------------------------
    def train_problems(self, seed: int):
        return self.task.problems("train", self.cfg.train_problems, seed=seed)

    def eval_sets(self) -> dict:
        """{name: (task, problems)}: "id" and every OOD task, held-out problems, and with
        ``eval.heldout_strategy`` the set "heldout:<strategy>" of eval.split problems of
        the task solvable only with that strategy (``task.problems_needing``). Drawn once
        per Study (the held-out set takes many generator draws) and reused."""
        if self._eval_sets is not None:
            return self._eval_sets
        e = self.cfg.eval
        sets = {"id": (self.task, self.task.problems(e.split, e.problems, seed=0))}
        if e.ood_problems:
            for name, task in self.ood.items():
                sets[name] = (task, task.problems(e.split, e.ood_problems, seed=0))
        if e.heldout_strategy:
            try:
                needing = self.task.problems_needing(e.heldout_strategy, e.split,
                                                     e.heldout_problems, seed=0)
            except RuntimeError as exc:  # too rare in this task: the key to change
                raise ConfigError(f"config key 'eval.heldout_problems': {exc}") from exc
            sets[f"{HELDOUT_PREFIX}{e.heldout_strategy}"] = (self.task, needing)
        self._eval_sets = sets
        return sets

    # -- training ----------------------------------------------------------------------
    def _policy(self, path_or_model, seed: int):
        return build_policy(path_or_model, step_delimiter=self.task.step_delimiter,
                            temperature=self.cfg.eval.temperature, seed=seed,
                            device=self.cfg.device)

    def search(self, prior: str, seed: int):
        """The (prior, seed) MCTS over the training problems, run once and saved (trees
        first, then ``search.json``, so a kill in between redoes it). Returns (training
        problems, SearchResult rebuilt from disk, search stats dict, tokenizer)."""
        where = self.run.path / "search" / prior / f"seed{seed}"
        problems = self.train_problems(seed)
        policy = self._policy(self.prior_path(prior), cell_seed(prior, seed, "search"))
        if not (where / "search.json").is_file():
            s = OmegaConf.to_object(self.cfg.search)
            config = dataclasses.replace(
                s, max_tokens=max(s.max_step_tokens, self.cfg.budget_tokens // len(problems)))
            start = time.perf_counter()
            searched = search_problems(policy, self.task, problems, config, verify=True,
                                       progress=self.cfg.progress,
                                       desc=f"search {prior} seed {seed}")
            where.mkdir(parents=True, exist_ok=True)
            write_jsonl(searched.result.forest, where / "trees.jsonl.gz")
            write_json(where / "search.json", {
                "tokens_generated": int(searched.generated.sum()),
                "train_solved": searched.solved_share,
                "nodes_per_tree": float(searched.nodes.mean()),
                "seconds": round(time.perf_counter() - start, 2)})
        prompts = [prompt_ids(policy.tokenizer, self.task, p) for p in problems]
        result = load_result(where / "trees.jsonl.gz", prompts)
        return problems, result, read_json(where / "search.json"), policy.tokenizer

    def train(self, prior: str, optimizer: str, seed: int):
        """Train a fresh copy of the prior with ``optimizer`` (its base's entry of
        ``stages.train.OPTIMIZERS``); returns (model, tokenizer, stats)."""
        model, tokenizer = build_learner(self.prior_path(prior), device=self.cfg.device)
        entry = OPTIMIZERS[base_optimizer(self.cfg, optimizer)]
        if from_trees(base_optimizer(self.cfg, optimizer)):
            return self._train_from_trees(model, tokenizer, prior, optimizer, seed)

        config = train_config(self.cfg, optimizer, seed=cell_seed(prior, optimizer, seed))
        formats: list[dict] = []

        def on_samples(iteration, problems, texts, rewards):
            formats.append(format_share(self.task, [t for ts in texts for t in ts]))

        data = TrainData(task=self.task, problems=self.train_problems(seed),
                         on_samples=on_samples,
                         search=self._tree_searcher() if "search" in entry.needs else None)
        model, stats = entry.train(model, tokenizer, data, config)
        stats["format_over_training"] = formats
        return model, tokenizer, stats

    def _tree_searcher(self):
        """tree_rl's ``search(policy, problems, iteration) -> TreeBatch``: the study's
        ``search`` section over the problems with the rule verifier scoring answers (these
        are LABELLED TRAINING problems), at the mcts optimizer's per-problem token budget
        (``budget_tokens / train_problems``), so one pass over the problems costs about
        what the mcts optimizer's search does."""
        s = OmegaConf.to_object(self.cfg.search)
        config = dataclasses.replace(
            s, max_tokens=max(s.max_step_tokens,
                              self.cfg.budget_tokens // self.cfg.train_problems))

        def search(policy, problems, iteration):
            searched = search_problems(policy, self.task, problems, config, verify=True)
            result = searched.result
            return TreeBatch(result.forest, result.prompts, int(searched.generated.sum()),
                             searched.correct.astype(np.float64), [[a] for a in result.answers])

        return search

    def _train_from_trees(self, model, tokenizer, prior, optimizer, seed):
        """mcts (SFT on the best correct paths) or dpo (sibling steps) from the search of
        (prior, seed), with ``optimizer``'s tree section (``tree_of``)."""
        problems, result, search_stats, _ = self.search(prior, seed)
        t = tree_of(self.cfg, optimizer)
        entry = OPTIMIZERS[base_optimizer(self.cfg, optimizer)]
        data = harvest(entry.needs, result, problems, self.task, tokenizer, t)
        config = train_config(self.cfg, optimizer, seed=cell_seed(prior, optimizer, seed))
        model, stats = entry.train(model, tokenizer, data, config)
        if "paths" in entry.needs:
            texts = [tokenizer.decode(e.completion_ids, skip_special_tokens=True)
                     for e in data.examples]
            stats["format_over_training"] = [format_share(self.task, texts)] if texts else []
        if "pairs" in entry.needs:
            stats["pairs"] = len(data.pairs)
        stats["tokens_generated"] = search_stats["tokens_generated"]
        stats["search"] = search_stats
        return model, tokenizer, stats

    # -- measuring ---------------------------------------------------------------------
    def measure(self, model_or_path, seed: int, prior: str, optimizer: str = "base") -> dict:
        """{eval set name: Measurement dict} of one policy on every eval set; ``prior`` and
        ``optimizer`` (what trained it, "base": nothing) decide the stated-confidence line."""
        policy = self._policy(model_or_path, seed)
        stated = self.states_confidence(prior, optimizer)
        return {name: self._measure_set(policy, task, problems, f"measure {name}", stated)
                for name, (task, problems) in self.eval_sets().items()}

    def states_confidence(self, prior: str, optimizer: str) -> bool:
        """Whether the policy writes a confidence line after its answer, so that
        measurements sample it: its prior was pretrained to (``stated_confidence``), or
        ``optimizer`` is grpo with the Brier reward (RLCR)."""
        recorded = self.prior_path(prior) / "metrics.json"  # absent for a model from elsewhere
        if recorded.is_file() and read_json(recorded).get("config", {}).get("stated_confidence"):
            return True
        return (optimizer != "base" and base_optimizer(self.cfg, optimizer) == "grpo"
                and rl_of(self.cfg, optimizer).reward == "brier")

    def _measure_set(self, policy, task, problems, desc: str,
                     confidence_line: bool = False) -> dict:
        """One problem set measured with the study's eval settings (n samples, temperature,
        step limits; with ``confidence_line`` the line after the answer is sampled too)."""
        e = self.cfg.eval
        return measure(policy, task, problems, n=e.samples, temperature=e.temperature,
                       max_steps=self.cfg.search.max_depth,
                       max_step_tokens=self.cfg.search.max_step_tokens,
                       entropy_samples=e.entropy_samples, progress=self.cfg.progress,
                       desc=desc, confidence_line=confidence_line).to_dict()

    def cell_dir(self, prior: str, optimizer: str, seed: int | None = None) -> Path:
        d = self.run.path / "cells" / prior / optimizer
        return d if seed is None else d / f"seed{seed}"

    def run_base(self, prior: str) -> None:
        """The untrained prior: ``measure.json`` on the eval sets, then ``val.json``
        (``prior_val``); each is skipped when already written."""
        where = self.cell_dir(prior, "base")
        if not (where / "measure.json").is_file():
            self.eval_sets()  # a held-out set the task cannot fill fails here, before pretraining
            measured = self.measure(self.prior_path(prior), cell_seed(prior, "base", "measure"),
                                    prior)
            write_json(where / "measure.json", {"prior": prior, "optimizer": "base",
                                                "prior_path": portable_path(self.prior_path(prior)),
                                                "eval": measured})
        self.prior_val(prior)

    def prior_val(self, prior: str) -> dict:
        """The prior measured once in distribution on the VAL split (eval.problems problems
        x eval.samples samples, the eval settings of ``_measure_set``), stored in
        ``cells/<prior>/base/val.json`` as {"prior", "split": "val", "problems",
        "measure": Measurement dict} and read back when present. With eval.split = "val"
        the base cell's "id" set is these very problems, so its measurement is reused."""
        path = self.cell_dir(prior, "base") / "val.json"
        if path.is_file():
            return read_json(path)
        e = self.cfg.eval
        base = self.cell_dir(prior, "base") / "measure.json"
        if e.split == "val" and base.is_file():
            measured = read_json(base)["eval"]["id"]
        else:
            policy = self._policy(self.prior_path(prior), cell_seed(prior, "base", "val"))
            measured = self._measure_set(policy, self.task,
                                         self.task.problems("val", e.problems, seed=0),
                                         f"measure {prior} on val")
        record = {"prior": prior, "split": "val", "problems": e.problems, "measure": measured}
        write_json(path, record)
        return record

    def prior_val_figures(self, prior: str) -> dict[str, float]:
        """{"pass@1": x, "pass@<k>": y} of ``prior_val``: k = 256, or the largest k
        measured when eval.samples < 256 (keyed by that real k)."""
        pass_at = self.prior_val(prior)["measure"]["pass_at"]
        ks = sorted(int(k) for k in pass_at)
        top = 256 if 256 in ks else max(ks)
        return {"pass@1": pass_at["1"], f"pass@{top}": pass_at[str(top)]}

    def run_cell(self, prior: str, optimizer: str, seed: int) -> None:

        where = self.cell_dir(prior, optimizer, seed)
        if (where / "measure.json").is_file():
            return
        torch.manual_seed(cell_seed(prior, optimizer, seed, "torch"))
        start = time.perf_counter()
        model, tokenizer, stats = self.train(prior, optimizer, seed)
        train_s = time.perf_counter() - start
        save_policy(model, tokenizer, where / "policy")
        write_json(where / "train.json", {**_jsonable(stats), "seconds": round(train_s, 2)})
        before, _ = build_learner(self.prior_path(prior))
        b = before.state_dict()
        a = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ranks = update_rank(b, a)
        measured = self.measure(where / "policy",
                                cell_seed(prior, optimizer, seed, "measure"), prior, optimizer)
        extra = {}
        if self.cfg.eval.routing_samples > 0:  # when vs how: routing on the "id" problems
            task, problems = self.eval_sets()["id"]
            extra["routing"] = routing_probe(
                self.prior_path(prior), where / "policy", None, task, problems,
                n=self.cfg.eval.routing_samples, temperature=self.cfg.eval.temperature,
                max_steps=self.cfg.search.max_depth,
                max_step_tokens=self.cfg.search.max_step_tokens,
                seed=cell_seed(prior, optimizer, seed, "routing"), device=self.cfg.device)
        write_json(where / "measure.json", {
            "prior": prior, "optimizer": optimizer, "seed": seed,
            "train_tokens": int(stats.get("tokens_generated", 0)),
            "train_seconds": round(train_s, 2),
            "sparsity": {k: v for k, v in update_sparsity(b, a).items() if k != "per_tensor"},
            "rank": {**summarise_ranks(ranks),
                     "per_matrix": [{k: r[k] for k in ("name", "rank", "full_rank")}
                                    for r in ranks]},
            "eval": measured, **extra})
        shutil.rmtree(where / "policy", ignore_errors=True)

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
                self.run_base(prior)
            else:
                self.run_cell(prior, optimizer, seed)
        write_json(self.run.path / "priors.json", {
            name: {"path": portable_path(self.prior_path(name)), "factor": spec.factor,
                   "reference": spec.reference, "pretrain": dict(spec.pretrain),
                   "grid": spec.trained and not (spec.optimizers or spec.seeds),
                   "trained": spec.trained,
                   "val": self.prior_val_figures(name)}
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
            self.search(*rest)
            return None
        prior, optimizer, seed = rest
        if optimizer == "base":
            self.run_base(prior)
        else:
            self.run_cell(prior, optimizer, seed)
        return None


def _study_worker(cfg, run_path: str) -> Study:
    """A Ray worker's state: the study's config and run directory (no progress bars: the
    driver's log is shared)."""
    cfg.progress = False
    return Study(cfg, RunDir(Path(run_path)))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treesearch.study",
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
        else:
            if args.quick and args.config:
                parser.error("give --quick or --config, not both")
            config = QUICK_CONFIG if args.quick else args.config
            if config is None:
                parser.error("give --quick (the CPU grid) or --config FILE (e.g. "
                             "configs/study.yaml)")
            cfg = load_study_config(config, args.overrides)
            cfg.out = cfg.out or f"runs/study-{time.strftime('%Y%m%d-%H%M%S')}"
            run = RunDir.create(cfg.out, OmegaConf.to_yaml(cfg))
    except (ConfigError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with cluster(cfg.distributed) as pool:
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

"""Training one cell of the study's grid: a fresh copy of a prior trained with one
optimizer on LABELLED TRAINING problems at the study's budget of generated tokens. The
tree optimizers (mcts, dpo, ...) harvest the (prior, seed) search they share, run once and
saved under ``search/<prior>/seed<s>/``; the on-policy ones (grpo, ..., tree_rl) sample
(or search) on their own through ``stages.train.OPTIMIZERS``."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from omegaconf import OmegaConf

from policies.rl import TreeBatch
from treesearch.backends import build_learner
from treesearch.engine.export import write_jsonl
from treesearch.search.harvest import load_result
from treesearch.stages import search_problems
from treesearch.stages.harvest import harvest, own_samples
from treesearch.stages.train import OPTIMIZERS, TrainData, from_trees
from treesearch.study.config import base_optimizer, train_config, tree_of
from treesearch.study.measure import format_share
from treesearch.tasks import prompt_ids
from treesearch.tasks.base import stable_hash
from treesearch.utils.runs import read_json, write_json

__all__ = ["CellTraining", "cell_seed"]


def cell_seed(*parts) -> int:
    """The seed of one step of the study, keyed by its names (prior, optimizer, seed, ...)."""
    return stable_hash("study", *parts) % 2**31


class CellTraining:
    """The training half of the study's cells, over a ``treesearch.study.run.Study`` (its
    config, task, run directory, priors and policy builder)."""

    def __init__(self, study):
        self.study = study
        self.cfg, self.task = study.cfg, study.task

    def train_problems(self, seed: int):
        return self.task.problems("train", self.cfg.train_problems, seed=seed)

    def search(self, prior: str, seed: int):
        """The (prior, seed) MCTS over the training problems, run once and saved (trees
        first, then ``search.json``, so a kill in between redoes it). Returns (training
        problems, SearchResult rebuilt from disk, search stats dict, tokenizer)."""
        where = self.study.run.path / "search" / prior / f"seed{seed}"
        problems = self.train_problems(seed)
        policy = self.study.policy(self.study.prior_path(prior), cell_seed(prior, seed, "search"))
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
        model, tokenizer = build_learner(self.study.prior_path(prior), device=self.cfg.device)
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
        (prior, seed), with ``optimizer``'s tree section (``tree_of``); with its
        ``sft.own_samples`` > 0 also the prior's own samples for the own-KL term."""
        problems, result, search_stats, _ = self.search(prior, seed)
        t = tree_of(self.cfg, optimizer)
        entry = OPTIMIZERS[base_optimizer(self.cfg, optimizer)]
        data = harvest(entry.needs, result, problems, self.task, tokenizer, t)
        config = train_config(self.cfg, optimizer, seed=cell_seed(prior, optimizer, seed))
        own_tokens = 0
        if getattr(config, "own_samples", 0):
            data.own = self._own_samples(prior, optimizer, seed, problems, config.own_samples)
            own_tokens = sum(len(c) for _, c in data.own)
        model, stats = entry.train(model, tokenizer, data, config)
        if "paths" in entry.needs:
            texts = [tokenizer.decode(e.completion_ids, skip_special_tokens=True)
                     for e in data.examples]
            stats["format_over_training"] = [format_share(self.task, texts)] if texts else []
        if "pairs" in entry.needs:
            stats["pairs"] = len(data.pairs)
        stats["tokens_generated"] = search_stats["tokens_generated"] + own_tokens
        if own_tokens:
            stats["own_tokens"] = own_tokens
        stats["search"] = search_stats
        return model, tokenizer, stats

    def _own_samples(self, prior: str, optimizer: str, seed: int, problems, n: int) -> list:
        """The own-KL term's states for one cell (``stages.harvest.own_samples``): ``n``
        samples per training problem from the prior (the model the cell's SFT starts from),
        sampled at eval.temperature, seeded by the cell; their tokens are charged to the
        cell's generated tokens."""
        policy = self.study.policy(self.study.prior_path(prior),
                                   cell_seed(prior, optimizer, seed, "own"))
        return own_samples(policy, self.task, problems, n, temperature=self.cfg.eval.temperature,
                           max_steps=self.cfg.search.max_depth,
                           max_step_tokens=self.cfg.search.max_step_tokens)

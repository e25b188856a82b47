"""The search and eval stages' work, cut into typed work items (``WorkItem``) that run
here or on Ray worker actors (``treesearch.distributed``): ``StageShards`` runs one item
against its round's policy and critics, loaded from the run directory. Shards are seeded
by (seed, round, part, shard index), so the metrics equal a local run with the same shard
size, whatever the number of workers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from treesearch.config import stage_seed
from treesearch.distributed import shards
from treesearch.engine.export import merge_records, tree_records, write_records
from treesearch.search.strategies import restart
from treesearch.stages.evaluate import (
    greedy_correct,
    decoded_correct,
    pass_at_k,
    powers_of_two,
    sampled_counts,
)

# "majority": majority vote over samples at MCTS's token budget on MCTS's problems, the
# sampling MCTS must beat at equal tokens
EVAL_PARTS = ("greedy", "sampled", "mcts", "majority")

__all__ = ["EVAL_PARTS", "StageShards", "WorkItem", "eval_items", "eval_row", "item_names",
           "merge_search"]


@dataclass(frozen=True)
class WorkItem:
    """One shard of the search or eval stage, as ``StageShards.run`` takes it (picklable,
    so Ray workers get it as it is): ``part`` ("search" or one of ``EVAL_PARTS``) of round
    ``round`` over problems [lo, hi). ``seed`` keys the shard's generator by (seed, round,
    part, shard index); None: the policy's generator runs on from the previous item (one
    shard per part, as a single process always ran)."""

    round: int
    part: str
    lo: int
    hi: int
    seed: int | None


def eval_items(cfg, r: int, eval_problems: Sequence) -> list[WorkItem]:
    """The eval stage's work items: each part (greedy, sampled pass@k, MCTS decoding)
    over its problems, cut into shards of ``distributed.shard_problems`` (0: one shard
    per part, seed None: the policy's generator runs on from part to part, as a single
    process always did); a shard's seed is keyed by (seed, round, part, shard index),
    never by the worker."""
    e, n = cfg.eval, len(eval_problems)
    sizes = {"greedy": n, "sampled": len(eval_problems[: e.sample_problems or n]),
             "mcts": len(eval_problems[: e.mcts_problems]),
             "majority": len(eval_problems[: e.mcts_problems])}
    size = cfg.distributed.shard_problems
    items = []
    for part in EVAL_PARTS:
        cuts = shards(sizes[part], size) if size else [(0, sizes[part])]
        items += [WorkItem(r, part, lo, hi, stage_seed(cfg.seed, r, f"eval/{part}/{i}")
                           if size else None) for i, (lo, hi) in enumerate(cuts)]
    return items


def eval_row(items: list[WorkItem], results: list, samples: int) -> dict:
    """The eval stage's metrics row from its items' ``results`` (in item order), gathered
    in problem order: greedy accuracy, pass@k of ``samples`` samples for k = 1, 2, 4, ...,
    MCTS decoding accuracy and its tokens per problem, and majority vote's at the same
    budget (rows of runs from before it have no "majority"). ``greedy_flags``,
    ``mcts_flags`` and ``majority_flags`` keep the verdicts behind those accuracies, int
    0/1 [problems] in eval-problem order, so two strategies (or two rounds) on the same
    problems can be paired per problem (rows of runs from before them have none)."""
    got = {part: [] for part in EVAL_PARTS}
    for item, res in zip(items, results):
        got[item.part].append(res)
    greedy = [int(c) for res in got["greedy"] for c in res]
    row = {"greedy": float(np.mean(greedy)), "greedy_flags": greedy}
    counts = [c for res in got["sampled"] for c in res]
    passk = pass_at_k(counts, samples, powers_of_two(samples))
    row.update({f"pass@{k}": v for k, v in passk.items()})
    for part in ("mcts", "majority"):
        if got[part]:
            flags = [int(c) for res, _ in got[part] for c in res]
            row[part] = float(np.mean(flags))
            row[f"{part}_tokens"] = float(np.concatenate([t for _, t in got[part]]).mean())
            row[f"{part}_flags"] = flags
    return row


def merge_search(parts: list[dict], path: Path) -> dict:
    """The search shards' ``parts`` (in problem order): their trees merged into the one
    trees file at ``path``; returns the search stage's metrics row."""
    write_records(merge_records([p["records"] for p in parts]), path)
    wall = sum(p["wall"] for p in parts)
    return {"train_solved": float(np.mean([c for p in parts for c in p["correct"]])),
            "tokens_per_problem": float(np.concatenate([p["generated"] for p in parts]).mean()),
            "nodes_per_tree": float(np.concatenate([p["nodes"] for p in parts]).mean()),
            "overhead_share": round((wall - sum(p["model_seconds"] for p in parts)) / wall
                                    if wall else 0.0, 4),
            "policy": parts[0]["policy"]}


def item_names(items: list[WorkItem], train_problems: Callable[[int], Sequence],
               eval_problems: Sequence) -> list[str]:
    """The work items in words, for errors: round, stage part, shard and problem ids
    (``train_problems(round)``: the round's training problems)."""
    train = {it.round: train_problems(it.round) for it in items if it.part == "search"}
    names = []
    for it in items:
        source = train[it.round] if it.part == "search" else eval_problems
        problems = source[it.lo:it.hi]
        more = ", ..." if it.hi - it.lo > 4 else ""
        ids = ", ".join(str(p.id) for p in problems[:4]) + more
        stage = "search" if it.part == "search" else f"eval/{it.part}"
        names.append(f"round {it.round} {stage} problems [{it.lo}:{it.hi}] (ids {ids})")
    return names


class StageShards:
    """Runs the search and eval stages' work items (``SelfPlay.stage_search`` cuts the
    search's, ``eval_items`` the eval's) against one round's policy and critics, loaded
    from the run directory (``selfplay.models``) and kept while the round lasts. The same
    object serves the local backend (in this process) and every Ray worker. A seeded item
    starts from a fresh prefix cache and a reseeded generator, so what it computes does
    not depend on which worker runs it or what that worker ran before."""

    def __init__(self, selfplay):
        self.sp, self.policy_round, self.policy, self.critics = selfplay, None, None, {}
        self.train = (None, None)  # (round, its training problems): drawn once per round

    def _policy(self, r: int, seed: int):
        if self.policy_round != r:
            self.policy = self.sp.models.load_policy(r, seed)
            self.policy_round = r
        return self.policy

    def _critics(self, r: int, stage: str, sharded: bool):
        """The critics after round ``r`` for ``stage``; fresh heads (before a round trained
        them) start from a seed keyed by (seed, round, stage) when sharded."""
        key = (r, stage)
        if key not in self.critics:
            self.critics = {k: v for k, v in self.critics.items() if k[0] >= r}
            if sharded:
                torch.manual_seed(stage_seed(self.sp.cfg.seed, r, f"{stage}/critics"))
            self.critics[key] = self.sp.models.load_critics(r, self.policy.tokenizer)
        return self.critics[key]

    def run(self, item: WorkItem):
        """The item's part's results on its problems [lo, hi): search: tree records,
        correct flags and accounting of the training problems; greedy: correct flags;
        sampled: correct counts of eval.samples samples; mcts: (correct flags, int64 tokens
        spent) of the held-out problems. A seed of None: the policy's generator runs on
        from the previous item (one shard per part)."""
        r, part, lo, hi, seed = item.round, item.part, item.lo, item.hi, item.seed
        sp = self.sp
        if part == "search":
            policy = self._policy(r - 1, stage_seed(sp.cfg.seed, r, "search"))
        else:
            policy = self._policy(r, stage_seed(sp.cfg.seed, r, "eval"))
        if seed is not None:
            restart(policy, seed)
        task, e, s = sp.task, sp.cfg.eval, sp.cfg.search
        if part == "search":
            return self._search(r, policy, lo, hi, sharded=seed is not None)
        problems = sp.eval_problems[lo:hi]
        if part == "greedy":
            return greedy_correct(policy, task, problems, max_steps=s.max_depth,
                                  max_step_tokens=s.max_step_tokens)
        if part == "sampled":
            return sampled_counts(policy, task, problems, e.samples,
                                  temperature=sp.cfg.policy.temperature, max_steps=s.max_depth,
                                  max_step_tokens=s.max_step_tokens)
        if part == "mcts":  # learned critics (and checkers) only
            critics = self._critics(r, "eval", sharded=seed is not None)
            scorer = sp.models.scorer(critics, problems, policy.tokenizer)
            return decoded_correct(policy, scorer, task, problems, "mcts", e.mcts_budget,
                                   temperature=sp.cfg.policy.temperature,
                                   search=sp.models.search_config(),
                                   progress=sp.cfg.progress and sp.pool is None)
        if part == "majority":  # its own generator stream: the other parts' samples as ever
            with own_stream(policy, stage_seed(sp.cfg.seed, r, f"eval/majority/{lo}")):
                return decoded_correct(policy, None, task, problems, "majority",
                                       e.mcts_budget, temperature=sp.cfg.policy.temperature,
                                       search=sp.models.search_config())
        raise ValueError(f"unknown stage part {part!r}")

    def _search(self, r: int, policy, lo: int, hi: int, sharded: bool) -> dict:
        sp = self.sp
        if self.train[0] != r:
            self.train = (r, sp.train_problems(r))
        problems = self.train[1][lo:hi]
        critics = self._critics(r - 1, "search", sharded)
        searched = sp.models.search(policy, critics, problems, f"round {r} search [{lo}:{hi}]",
                                    sp.cfg.progress and sp.pool is None)
        return {"records": tree_records(searched.result.forest),
                "correct": [bool(c) for c in searched.correct],
                "generated": searched.generated, "nodes": searched.nodes,
                "wall": searched.result.stats.wall, "model_seconds": searched.model_seconds,
                "policy": policy.describe()}


@contextlib.contextmanager
def own_stream(policy, seed: int):
    """Run the block on the policy's generator reseeded at ``seed``, then put the
    generator back where it was: what the block samples changes nothing that is sampled
    after it (a policy without a generator: the block runs as it is)."""
    generator = getattr(policy, "generator", None)
    state = generator.get_state() if generator is not None else None
    if generator is not None:
        generator.manual_seed(int(seed))
    try:
        yield
    finally:
        if generator is not None:
            generator.set_state(state)

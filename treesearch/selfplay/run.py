"""``python -m treesearch.selfplay``: rounds of search -> refit critics -> distill -> evaluate.

    python -m treesearch.selfplay                                  # configs/default.yaml
    python -m treesearch.selfplay rounds=5 critics.process=none    # dotlist overrides
    python -m treesearch.selfplay --config configs/smollm2.yaml
    python -m treesearch.selfplay --resume runs/selfplay-20261126-221500

Round 0 evaluates the starting policy. Then every round:

    search    MCTS over this round's training problems (policy + learned value critic;
              outcomes scored by the rule verifier on these LABELLED TRAINING problems,
              or by the learned ORM with critics.train_outcome=learned); trees saved
    critics   value targets (node Q), PRM targets (share of each node's rollouts that
              ended correct: Math-Shepherd labels from the tree, no extra generation) and
              ORM targets (verifier labels of answer nodes) from the trees; each learned
              critic refit and its held-out calibration saved
    distill   SFT on the best verified-correct path of each problem (and DPO on sibling
              steps with distill.method=sft+dpo; a weighted REINFORCE pass with the
              failing siblings pushed down with wreinforce; step advantages from the tree
              with tree_pg; diversity options distill.distinct / unlikeliness /
              prior_samples, off by default); the policy checkpoint saved
    eval      on held-out problems, never labelled during decoding: greedy accuracy,
              sampled pass@k, and MCTS decoding at a fixed token budget with the learned
              critics only; with eval.passk_samples > 0 also pass@k for k up to it,
              distinct correct solutions, token entropy, format and strategy shares
              (``passk.png``, a second table in summary.md)

With ``distributed.backend=ray`` the search and eval stages run as shards of
``distributed.shard_problems`` problems on Ray worker actors (``treesearch.distributed``,
``StageShards``); shards are seeded by (seed, round, part, shard index), so the metrics
equal a local run with the same shard size, whatever the number of workers.

Everything lands in the run directory (``treesearch.utils.runs``): the resolved config,
metrics.jsonl, each round's trees (compressed JSONL), checkpoints, calibration plots,
``accuracy.png``, ``summary.md`` and ``report.html`` (the tree viewer over every round,
``treesearch.view``). A killed run continues with ``--resume`` from the last
finished stage; every stage seeds itself from (seed, round, stage) and reloads its inputs
from disk, so a resumed run computes what an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from critics.compose import RewardWeights, StepScorer
from critics.train import (
    fit_and_report,
    outcome_targets,
    process_targets_from_tree,
    value_targets,
)
from critics.verifier import RuleVerifier
from policies.distill import SFTExample, save_policy
from policies.hf import HFPolicy
from policies.rollout import generate_solutions
from policies.zoo import resolve
from treesearch.backends import (
    build_critics,
    build_policy,
    critic_slots,
    scorer_of,
)
from treesearch.config import (
    ConfigError,
    build_task,
    distill_config,
    load_config,
    stage_seed,
    train_problems,
)
from treesearch.distributed import DistributedError, cluster, shards
from treesearch.engine.export import (
    merge_records,
    tree_records,
    write_jsonl,
    write_records,
)
from treesearch.search import SearchConfig
from treesearch.search.harvest import load_result
from treesearch.stages import Searched, search_problems
from treesearch.stages.evaluate import (
    diversity,
    greedy_correct,
    mcts_correct,
    pass_at_k,
    powers_of_two,
    sampled_counts,
)
from treesearch.stages.harvest import harvest
from treesearch.stages.train import OPTIMIZERS, TrainData
from treesearch.tasks import prompt_ids
from treesearch.utils.atomic import write_text
from treesearch.utils.plots import line_plot
from treesearch.utils.recipes import instantiate, shipped_recipes
from treesearch.utils.runs import RunDir, RunError
from treesearch.view import ViewError, write_report

EVAL_PARTS = ("greedy", "sampled", "mcts")


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


class SelfPlay:
    """One self-play run over a config (``treesearch.config.SelfPlayConfig``)."""

    def __init__(self, cfg, run: RunDir, pool=None):
        """``pool``: a ``treesearch.distributed.WorkerPool`` that runs the eval shards
        (None: everything runs in this process)."""
        self.cfg, self.run, self.pool = cfg, run, pool
        self._pool_ready, self._local = False, None
        self.task = build_task(cfg)
        torch.set_num_threads(cfg.policy.threads)
        self.eval_problems = self.task.problems(cfg.eval.split, cfg.eval.problems, seed=cfg.seed)

    # -- checkpoints -------------------------------------------------------------------
    def policy_dir(self, round_: int) -> Path:
        """The policy after ``round_`` (round 0: the starting model)."""
        for r in range(round_, 0, -1):
            if self.run.is_done(r, "distill"):
                return self.run.path / f"round_{r}" / "policy"
        return resolve(self.cfg.policy.model)

    def critic_dir(self, round_: int, kind: str) -> Path | None:
        """The learned critic of ``kind`` after ``round_`` (None: not trained yet)."""
        for r in range(round_, 0, -1):
            if self.run.is_done(r, "critics"):
                return self.run.path / f"round_{r}" / "critics" / kind
        return None

    def load_policy(self, round_: int, seed: int):
        """The policy after ``round_`` on the configured backend (generation)."""
        return self._load(round_, seed, self.cfg.policy.backend)

    def load_learner(self, round_: int, seed: int) -> HFPolicy:
        """The round's checkpoint as a transformers policy to train (distillation), whatever
        backend generates: a vLLM engine holds no trainable model."""
        return self._load(round_, seed, "hf")

    def _load(self, round_: int, seed: int, backend: str):
        path, p = self.policy_dir(round_), self.cfg.policy
        try:
            return build_policy(path, backend=backend, step_delimiter=self.task.step_delimiter,
                                temperature=p.temperature, top_p=p.top_p, device=p.device,
                                dtype=p.dtype, seed=seed)
        except Exception as exc:  # safetensors, json, torch errors: name the checkpoint
            raise RunError(f"{path}: cannot load the policy checkpoint "
                           f"({type(exc).__name__}: {exc})") from exc

    def load_critics(self, round_: int, tokenizer):
        """{kind: critic} for the learned critics in the config (fresh heads on the trunk
        until a round has trained them)."""
        c = self.cfg.critics
        kinds = ("value", "process", "outcome")
        return build_critics({k: getattr(c, k) for k in kinds}, c.trunk or self.cfg.policy.model,
                             saved={k: self.critic_dir(round_, k) for k in kinds},
                             policy_tokenizer=tokenizer, device=c.device or self.cfg.policy.device,
                             judge=c.judge)

    def critic_slots(self, critics: dict, problems, tokenizer) -> dict:
        """The scorer's slots {kind: critic} on ``problems`` (``backends.critic_slots``):
        the learned ``critics`` and a label-free checker in each slot set to ``checker``."""
        c = self.cfg.critics
        return critic_slots(critics, checkers=[k for k in ("process", "outcome")
                                               if getattr(c, k) == "checker"],
                            task=self.task, problems=problems, policy_tokenizer=tokenizer)

    def weights(self) -> RewardWeights:
        """The ``critics.weights`` section as the dataclass the StepScorer takes."""
        return instantiate(self.cfg.critics.weights, "critics.weights")

    def scorer(self, critics: dict, problems, tokenizer) -> StepScorer:
        """The label-free StepScorer over ``critic_slots`` (held-out decoding)."""
        return scorer_of(self.critic_slots(critics, problems, tokenizer), self.weights())

    def search(self, policy, critics: dict, problems, desc: str, progress: bool) -> Searched:
        """``stages.search_problems`` over LABELLED TRAINING ``problems``: the critics'
        slots, and the rule verifier in the outcome slot with ``critics.train_outcome``
        = verifier."""
        c = self.cfg.critics
        return search_problems(policy, self.task, problems, self.search_config(),
                               critics=self.critic_slots(critics, problems, policy.tokenizer),
                               weights=self.weights(), verify=c.train_outcome == "verifier",
                               clean_steps=c.train_clean_steps, progress=progress, desc=desc)

    def search_config(self) -> SearchConfig:
        """The ``search`` section as the dataclass the search takes."""
        return OmegaConf.to_object(self.cfg.search)

    def train_problems(self, round_: int):
        return train_problems(self.cfg, self.task, round_)

    # -- stages ------------------------------------------------------------------------
    def stage_search(self, r: int) -> dict:
        """MCTS over the round's training problems; with ``distributed.shard_problems`` > 0
        in shards (here or on the Ray workers), seeded by (seed, round, shard index), the
        trees merged in problem order into the one trees file."""
        size = self.cfg.distributed.shard_problems
        if size or self.pool is not None:
            cuts = shards(self.cfg.train_problems, size)
            items = [WorkItem(r, "search", lo, hi, stage_seed(self.cfg.seed, r, f"search/{i}"))
                     for i, (lo, hi) in enumerate(cuts)]
            parts = self.run_items(items)
            write_records(merge_records([p["records"] for p in parts]),
                          self.run.round_dir(r) / "trees.jsonl.gz")
            wall = sum(p["wall"] for p in parts)
            return {"train_solved": float(np.mean([c for p in parts for c in p["correct"]])),
                    "tokens_per_problem": float(
                        np.concatenate([p["generated"] for p in parts]).mean()),
                    "nodes_per_tree": float(np.concatenate([p["nodes"] for p in parts]).mean()),
                    "overhead_share": round((wall - sum(p["model_seconds"] for p in parts)) / wall
                                            if wall else 0.0, 4),
                    "policy": parts[0]["policy"]}
        policy = self.load_policy(r - 1, stage_seed(self.cfg.seed, r, "search"))
        problems = self.train_problems(r)
        critics = self.load_critics(r - 1, policy.tokenizer)
        searched = self.search(policy, critics, problems, f"round {r} search", self.cfg.progress)
        write_jsonl(searched.result.forest, self.run.round_dir(r) / "trees.jsonl.gz")
        return {"train_solved": searched.solved_share,
                "tokens_per_problem": float(searched.generated.mean()),
                "nodes_per_tree": float(searched.nodes.mean()),
                "overhead_share": round(searched.result.stats.overhead_share, 4),
                "policy": policy.describe()}

    def _trees(self, r: int, policy):
        """The round's training problems and search result, rebuilt from its saved trees."""
        problems = self.train_problems(r)
        prompts = [prompt_ids(policy.tokenizer, self.task, p) for p in problems]
        return problems, load_result(self.run.path / f"round_{r}" / "trees.jsonl.gz", prompts)

    def stage_critics(self, r: int) -> dict:

        torch.manual_seed(stage_seed(self.cfg.seed, r, "critics"))
        policy = self.load_policy(r - 1, stage_seed(self.cfg.seed, r, "critics"))
        problems, result = self._trees(r, policy)
        verifier = RuleVerifier(self.task, policy.tokenizer, problems)
        critics = self.load_critics(r - 1, policy.tokenizer)
        out_dir = self.run.round_dir(r) / "critics"
        row = {}
        targets = {"value": lambda: value_targets(result),
                   "process": lambda: process_targets_from_tree(result, problems, self.task,
                                                                policy.tokenizer, verifier),
                   "outcome": lambda: outcome_targets(result, problems, self.task,
                                                      policy.tokenizer, verifier)}
        for kind, critic in critics.items():
            if kind not in targets or not hasattr(critic, "fit"):
                continue
            data = _limit(targets[kind](), self.cfg.critics.max_examples,
                          stage_seed(self.cfg.seed, r, f"{kind}-rows"), balance=kind == "outcome")
            if len(np.unique(data.tree)) < 2:
                # nothing to fit and hold out: the critic goes on unchanged, so every round
                # that finished this stage holds every learned critic
                row[kind] = {"skipped": f"targets from {len(np.unique(data.tree))} trees",
                             "carried_over": True}
                critic.save(out_dir / kind)
                continue
            report = fit_and_report(critic, data, seed=stage_seed(self.cfg.seed, r, kind),
                                    out_dir=out_dir, epochs=self.cfg.critics.epochs,
                                    lr=self.cfg.critics.lr,
                                    train_trunk=self.cfg.critics.train_trunk)
            critic.save(out_dir / kind)
            row[kind] = {k: report[k] for k in ("n_train", "n_heldout", "mse_critic",
                                                 "mse_constant", "skill")}
            if report.get("calibration"):
                row[kind].update({k: report["calibration"][k] for k in ("brier", "ece", "auroc")})
        return row

    def stage_distill(self, r: int) -> dict:
        """Train the policy with ``distill.method`` (an entry of ``stages.train.OPTIMIZERS``)
        on what it needs harvested from the round's trees (every round's with
        ``distill.cumulative``), and save it."""
        d = self.cfg.distill
        optimizer = OPTIMIZERS[d.method]
        seed = stage_seed(self.cfg.seed, r, "distill")
        # STaR-style (cumulative): restart from the starting model on every round's paths
        policy = self.load_learner(0 if d.cumulative else r - 1, seed)
        tok = policy.tokenizer
        data = TrainData(positive_weight=d.positive_weight)
        for k in range(1 if d.cumulative else r, r + 1):
            problems, result = self._trees(k, policy)
            got = harvest(optimizer.needs, result, problems, self.task, tok, d,
                          clean_steps=d.clean_steps, distinct=d.distinct,
                          unlikeliness=d.unlikeliness, passk_weight=d.passk_weight,
                          tree_baseline=d.tree_baseline)
            data.examples += got.examples
            data.pg += got.pg
            data.pairs = got.pairs  # sibling pairs: the last round's only
        if d.passk_weight and data.examples:  # the mean weight back to 1: same step size
            scale = len(data.examples) / sum(e.weight for e in data.examples)
            data.examples = [dataclasses.replace(e, weight=e.weight * scale)
                             for e in data.examples]
        data.prior = self._prior_examples(r) if d.prior_samples else []
        model, stats = optimizer.train(policy.model, tok, data, distill_config(self.cfg, seed))
        save_policy(model, tok, self.run.round_dir(r) / "policy")
        return self._distill_row(stats, data)

    def _distill_row(self, stats: dict, data: TrainData) -> dict:
        """The distill stage's metrics row from the trainer's ``stats``: a policy-gradient
        pass reports its positives and negatives, SFT its losses (and DPO's under "dpo")."""
        d = self.cfg.distill
        if "positives" in stats:
            return {"pg_examples": stats["examples"], "pg_positives": stats["positives"],
                    "pg_negatives": stats["negatives"], "pg_loss_first": stats["loss_first"],
                    "pg_loss_last": stats["loss_last"],
                    "pg_clipped_share_last": stats["clipped_share_last"],
                    "prior_examples": len(data.prior)}
        examples = data.examples
        row = {"sft_examples": len(examples), "sft_loss_first": stats.get("loss_first"),
               "sft_loss_last": stats.get("loss_last")}
        if d.anchor_kl:
            row["sft_anchor_kl_last"] = stats.get("anchor_kl_last")
        if d.prior_samples:
            row["prior_examples"] = len(data.prior)
        if d.distinct or d.unlikeliness or d.passk_weight:
            row["sft_weight_mean"] = (float(np.mean([e.weight for e in examples]))
                                      if examples else None)
        if "dpo" in stats:
            row.update({"dpo_pairs": len(data.pairs),
                        "dpo_loss_last": stats["dpo"].get("loss_last")})
        return row

    def _prior_examples(self, r: int) -> list:
        """The keep-the-prior term: ``distill.prior_samples`` samples per training problem
        of round ``r`` from the STARTING model (right or wrong, exact sampled token ids),
        as ``SFTExample``s of weight ``distill.prior_weight``; seeded per (seed, round)."""
        d, s = self.cfg.distill, self.cfg.search
        start = self.load_policy(0, stage_seed(self.cfg.seed, r, "prior"))
        problems = [p.without_label() for p in self.train_problems(r)]
        _, tokens = generate_solutions(start, start.tokenizer, self.task, problems,
                                       n=d.prior_samples, temperature=self.cfg.policy.temperature,
                                       max_steps=s.max_depth, max_step_tokens=s.max_step_tokens,
                                       return_tokens=True)
        out = []
        for p, per in zip(problems, tokens):
            prompt = prompt_ids(start.tokenizer, self.task, p)
            out += [SFTExample(list(prompt), list(t), float(d.prior_weight)) for t in per if t]
        return out

    def measure_diversity(self, policy) -> dict:
        """What shrinks (``eval.passk_samples`` > 0): ``stages.evaluate.diversity`` on the
        first ``eval.passk_problems`` held-out problems, ``passk_samples`` samples each at
        the policy temperature (entropy over the first ``eval.entropy_samples``)."""
        e, s = self.cfg.eval, self.cfg.search
        problems = self.eval_problems[: e.passk_problems or len(self.eval_problems)]
        return diversity(policy, self.task, problems, e.passk_samples,
                         temperature=self.cfg.policy.temperature, max_steps=s.max_depth,
                         max_step_tokens=s.max_step_tokens, entropy_samples=e.entropy_samples)

    def eval_items(self, r: int) -> list[WorkItem]:
        """The eval stage's work items: each part (greedy, sampled pass@k, MCTS decoding)
        over its problems, cut into shards of ``distributed.shard_problems`` (0: one shard
        per part, seed None: the policy's generator runs on from part to part, as a single
        process always did); a shard's seed is keyed by (seed, round, part, shard index),
        never by the worker."""
        e, n = self.cfg.eval, len(self.eval_problems)
        sizes = {"greedy": n, "sampled": len(self.eval_problems[: e.sample_problems or n]),
                 "mcts": len(self.eval_problems[: e.mcts_problems])}
        size = self.cfg.distributed.shard_problems
        items = []
        for part in EVAL_PARTS:
            cuts = shards(sizes[part], size) if size else [(0, sizes[part])]
            items += [WorkItem(r, part, lo, hi, stage_seed(self.cfg.seed, r, f"eval/{part}/{i}")
                               if size else None) for i, (lo, hi) in enumerate(cuts)]
        return items

    def run_items(self, items: list[WorkItem]) -> list:
        """``StageShards.run`` of every item, on the Ray workers when there is a pool (each
        set up once per run), else here in order; results in item order."""
        if self.pool is not None:
            if not self._pool_ready:
                self.pool.setup(_shard_worker, self.cfg, str(self.run.path))
                self._pool_ready = True
            return self.pool.map("run", items, names=self.item_names(items),
                                 desc="shards" if self.cfg.progress else None)
        self._local = self._local or StageShards(self)
        return [self._local.run(item) for item in items]

    def item_names(self, items: list[WorkItem]) -> list[str]:
        """The work items in words, for errors: round, stage part, shard and problem ids."""
        train = {it.round: self.train_problems(it.round) for it in items if it.part == "search"}
        names = []
        for it in items:
            source = train[it.round] if it.part == "search" else self.eval_problems
            problems = source[it.lo:it.hi]
            more = ", ..." if it.hi - it.lo > 4 else ""
            ids = ", ".join(str(p.id) for p in problems[:4]) + more
            stage = "search" if it.part == "search" else f"eval/{it.part}"
            names.append(f"round {it.round} {stage} problems [{it.lo}:{it.hi}] (ids {ids})")
        return names

    def stage_eval(self, r: int) -> dict:
        """Greedy accuracy, sampled pass@k and MCTS decoding on the held-out problems, as
        shards run here or on the Ray workers (``eval_items``), gathered in problem order."""
        items = self.eval_items(r)
        results = self.run_items(items)
        got = {part: [] for part in EVAL_PARTS}
        for item, res in zip(items, results):
            got[item.part].append(res)
        e = self.cfg.eval
        row = {"greedy": float(np.mean([c for res in got["greedy"] for c in res]))}
        counts = [c for res in got["sampled"] for c in res]
        passk = pass_at_k(counts, e.samples, powers_of_two(e.samples))
        row.update({f"pass@{k}": v for k, v in passk.items()})
        row["mcts"] = float(np.mean([c for res, _ in got["mcts"] for c in res]))
        row["mcts_tokens"] = float(np.concatenate([t for _, t in got["mcts"]]).mean())
        if e.passk_samples:  # not sharded yet: runs here, on this round's policy
            if self._local is not None and self.cfg.distributed.shard_problems == 0:
                policy = self._local.policy  # the generator runs on, as it always did
            else:
                policy = self.load_policy(r, stage_seed(self.cfg.seed, r, "eval/diversity"))
            row.update(self.measure_diversity(policy))
        return row

    # -- the loop ----------------------------------------------------------------------
    def stages(self) -> dict[str, Callable[[int], dict]]:
        """The stage table: every round's stages in the order they run, each name (as the
        run directory marks it done and metrics.jsonl logs it) to its method, which takes
        the round and returns the stage's metrics row."""
        return {"search": self.stage_search, "critics": self.stage_critics,
                "distill": self.stage_distill, "eval": self.stage_eval}

    def run_all(self) -> list[dict]:
        stages = self.stages()
        plan = [(0, "eval")] + [(r, st) for r in range(1, self.cfg.rounds + 1) for st in stages]
        todo = [(r, st) for r, st in plan if not self.run.is_done(r, st)]
        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="selfplay",
                   disable=not self.cfg.progress)
        for r, stage in todo:
            bar.set_postfix(round=r, stage=stage)
            start = time.perf_counter()
            row = stages[stage](r)
            self.run.log({"round": r, "stage": stage,
                          "seconds": round(time.perf_counter() - start, 2),
                          **row})
            self.run.mark_done(r, stage)
            bar.update(1)
        bar.close()
        rows = [m for m in self.run.metrics() if m["stage"] == "eval"]
        self.report(rows)
        try:  # the viewer over every round's trees; a finished run stays finished without it
            write_report(self.run.path)
        except ViewError as exc:
            print(f"selfplay: report.html not written: {exc}", file=sys.stderr)
        return rows

    def report(self, rows: list[dict]) -> None:
        keys = [k for k in rows[0] if k == "greedy" or k.startswith("pass@") or k == "mcts"]
        header = "| round | " + " | ".join(keys) + " |"
        lines = [header, "|" + "---|" * (len(keys) + 1)]
        for m in rows:
            lines.append(f"| {m['round']} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
        table = "\n".join(lines)
        text = f"# Self-play: held-out accuracy per round\n\n{table}\n"
        if all("passk" in m for m in rows):
            diversity = _diversity_table(rows)
            text += f"\n## What shrinks: diversity per round\n\n{diversity}\n"
            _passk_plot(rows, self.run.path / "passk.png", f"{self.cfg.task}: held-out pass@k")
        write_text(self.run.path / "summary.md", text)
        _plot(rows, keys, self.run.path / "accuracy.png", f"{self.cfg.task}: held-out accuracy")
        print(table)
        print(f"run directory: {self.run.path}")


class StageShards:
    """Runs the search and eval stages' work items (``WorkItem``s: ``SelfPlay.stage_search``
    cuts the search's, ``SelfPlay.eval_items`` the eval's) against one round's policy and
    critics, loaded from the run directory and kept while the round lasts. The same object
    serves the local backend (in this process) and every Ray worker (``_shard_worker``). A
    seeded item starts from a fresh prefix cache and a reseeded generator, so what it
    computes does not depend on which worker runs it or what that worker ran before."""

    def __init__(self, selfplay: SelfPlay):
        self.sp, self.policy_round, self.policy, self.critics = selfplay, None, None, {}
        self.train = (None, None)  # (round, its training problems): drawn once per round

    def _policy(self, r: int, seed: int):
        if self.policy_round != r:
            self.policy = self.sp.load_policy(r, seed)
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
            self.critics[key] = self.sp.load_critics(r, self.policy.tokenizer)
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
            _reseed(policy, seed)
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
            scorer = sp.scorer(critics, problems, policy.tokenizer)
            return mcts_correct(policy, scorer, task, problems, e.mcts_budget,
                                temperature=sp.cfg.policy.temperature, search=sp.search_config(),
                                progress=sp.cfg.progress and sp.pool is None)
        raise ValueError(f"unknown stage part {part!r}")

    def _search(self, r: int, policy, lo: int, hi: int, sharded: bool) -> dict:
        sp = self.sp
        if self.train[0] != r:
            self.train = (r, sp.train_problems(r))
        problems = self.train[1][lo:hi]
        critics = self._critics(r - 1, "search", sharded)
        searched = sp.search(policy, critics, problems, f"round {r} search [{lo}:{hi}]",
                             sp.cfg.progress and sp.pool is None)
        return {"records": tree_records(searched.result.forest),
                "correct": [bool(c) for c in searched.correct],
                "generated": searched.generated, "nodes": searched.nodes,
                "wall": searched.result.stats.wall, "model_seconds": searched.model_seconds,
                "policy": policy.describe()}


def _reseed(policy, seed: int) -> None:
    """Restart the policy at ``seed``: an empty prefix cache and its sampling generator
    reseeded (HF policies; a vLLM engine is seeded once at start, so its shards are not
    reproducible across workers)."""
    if hasattr(policy, "reset_cache"):
        policy.reset_cache()
    generator = getattr(policy, "generator", None)
    if generator is not None:
        generator.manual_seed(int(seed))


def _shard_worker(cfg, run_path: str) -> StageShards:
    """A Ray worker's state: the run's config and directory, read-only (no progress bars:
    the driver's log is shared)."""
    cfg.progress = False
    return StageShards(SelfPlay(cfg, RunDir(Path(run_path))))


def _limit(data, max_examples: int, seed: int, balance: bool = False):
    """At most ``max_examples`` rows of ``data`` (TreeTargets), drawn with ``seed``. With
    ``balance`` neither class (target >= 0.5 or not) drowns the other: each gets half the
    rows when both have enough, the smaller class all of its rows otherwise, and a rare
    class is joined by at most three rows of the other per row of its own."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(data.targets))
    if balance:
        pos, neg = rows[data.targets >= 0.5], rows[data.targets < 0.5]
        small, large = sorted((pos, neg), key=len)
        n_small = min(len(small), max_examples // 2)
        n_large = min(len(large), max_examples - n_small, 3 * n_small if n_small else max_examples)
        rows = np.sort(np.concatenate([rng.permutation(small)[:n_small],
                                       rng.permutation(large)[:n_large]]))
    elif len(rows) > max_examples:
        rows = np.sort(rng.permutation(rows)[:max_examples])
    return data.subset(rows)


def _plot(rows, keys, path, title) -> None:
    rounds = [m["round"] for m in rows]
    line_plot({k: (rounds, [m[k] for m in rows]) for k in keys}, path, xlabel="round",
              ylabel="held-out accuracy", title=title, xticks=rounds)


def _diversity_table(rows: list[dict]) -> str:
    """Markdown: per round, pass@k at k = 1, 8 (where measured) and the largest k, distinct
    correct solutions per problem, token entropy, format shares and strategy shares."""
    n = rows[0]["passk_samples"]
    ks = [k for k in ("1", "8", str(n)) if k in rows[0]["passk"]]
    ks = list(dict.fromkeys(ks))
    head = ([f"pass@{k}" for k in ks] + ["distinct correct", "entropy (nats)", "formats",
                                         "strategies (correct)"])
    lines = ["| round | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]

    def shares(d):
        return ", ".join(f"{k} {v:.2f}" for k, v in d.items()) or "-"

    for m in rows:
        cells = ([f"{m['passk'][k]:.3f}" for k in ks]
                 + [f"{m['distinct_correct']:.2f}", f"{m['entropy']:.3f}",
                    shares(m["format_share"]), shares(m["strategy_share"])])
        lines.append(f"| {m['round']} | " + " | ".join(cells) + " |")
    return (f"{rows[0]['passk_problems']} problems x {n} samples each.\n\n"
            + "\n".join(lines))


def _passk_plot(rows: list[dict], path, title) -> None:
    """pass@k against k (log scale), one line per round."""
    series = {}
    for m in rows:
        ks = sorted(int(k) for k in m["passk"])
        series[f"round {m['round']}"] = (ks, [m["passk"][str(k)] for k in ks])
    line_plot(series, path, xlabel="k (samples)", ylabel="pass@k", title=title, xscale="log")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treesearch.selfplay",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None,
                        help="YAML recipe: a file, or a shipped recipe by name "
                        f"({', '.join(shipped_recipes())}; default: default)")
    parser.add_argument("--resume", default=None, help="continue the run in this directory")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. rounds=5")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            if args.overrides or args.config:
                parser.error("--resume takes no config or overrides: the run's config.yaml rules")
            run = RunDir.open(args.resume)
            cfg = load_config(run.path / "config.yaml")
        else:
            cfg = load_config(args.config or "default", args.overrides)
            run = None
    except (ConfigError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # the cluster first: an unreachable one leaves no run directory behind
        with cluster(cfg.distributed) as pool:
            if run is None:
                cfg.out = cfg.out or f"runs/selfplay-{time.strftime('%Y%m%d-%H%M%S')}"
                run = RunDir.create(cfg.out, OmegaConf.to_yaml(cfg))
            SelfPlay(cfg, run, pool).run_all()
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


if __name__ == "__main__":
    # run the importable module, not __main__, so Ray workers find its functions by name
    from treesearch import selfplay as _module  # noqa: PLW0406 (the importable copy)

    sys.exit(_module.main())

"""On-policy optimizers at matched generated-token budgets: GRPO, expert iteration, PSR, NSR.

The optimizer baselines of the study. Each trains a transformers causal LM IN PLACE on
LABELLED TRAINING problems with the binary reward ``task.check_solution`` (1 or 0), and
stops once the tokens it has generated reach ``config.token_budget``, so that methods are
compared at equal sampling cost:

- ``grpo``: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath,
  arXiv 2402.03300). G samples per problem; advantage (r - mean_group) / (std_group + eps)
  on every token of a sample; PPO-style clipped ratio (Schulman et al. 2017) over
  ``updates_per_batch`` passes, optional k3 KL penalty to the frozen starting model.
- ``expert_iteration``: rejection-sampling fine-tuning (Anthony et al. 2017, "Thinking Fast
  and Slow with Deep Learning and Tree Search"; Yuan et al. 2023, RFT, arXiv 2308.01825;
  STaR, Zelikman et al. 2022): keep the correct samples, SFT on them (``distill.sft_loss``).
- ``psr``: positive sample reinforcement (Zhu et al. 2025, "The Surprising Effectiveness
  of Negative Reinforcement in LLM Reasoning", arXiv 2506.01347): REINFORCE with reward +1
  on the correct samples only; incorrect samples are ignored.
- ``nsr``: negative sample reinforcement (same paper): reward -1 on the incorrect samples
  only (push their log-probability down); correct samples are ignored.
- ``tree_rl``: tree-based policy optimization (in the line of TreeRL, arXiv 2506.11902, and
  Tree-GRPO, arXiv 2509.21240): each iteration runs a search over the problems with the
  current weights (a ``search`` callable the app builds: ``policies`` cannot build a
  search), takes STEP-level advantages from the tree's own statistics (a node's Q minus the
  mean Q of its visited siblings, or minus its parent's Q: ``tree_advantages``; no learned
  critic), and makes one policy-gradient update on the tree's steps (each step given its
  prefix). The search's generated tokens count against the budget.

``passk = K > 1`` (grpo only) replaces the group-normalised reward by pass@K advantages in
closed form (Chen et al. 2025, "Pass@k Training", arXiv 2508.10751; cf. PKPO, arXiv
2505.15201): the group's pass@K estimate and each sample's leave-one-out effect on it,
``passk_advantages``; K = 1 is GRPO's advantage.

Options on what the update sees:

- ``zero_success`` (difficulty): groups with no correct sample are kept as they are
  ("keep"), leave the update and its normalisation entirely ("drop": no gradient, not
  counted in the minibatch mean), or have their samples' loss scaled by
  ``zero_success_weight`` ("downweight"). GRPO's group-normalised binary advantage is
  already 0 on such a group; the option matters where they carry a signal: NSR's -1 on
  every wrong sample, the KL term (``kl_beta > 0`` keeps zero-advantage samples in the
  mean), and the Brier reward.
- ``reward = "brier"`` (calibration; RLCR, Damani et al. 2025, arXiv 2507.16806; grpo
  only): the policy states a confidence in a line after its answer ("confidence: 0.7"),
  read by ``policies.confidence.stated_confidence``, and the reward is correct -
  (c - correct)^2 (``policies.confidence.brier_reward``; a missing confidence is scored as
  the worst one). The sampler stops at the answer line, so one extra step is sampled after
  each complete answer line (``policies.confidence.add_confidence_lines``; its tokens
  count against the budget). Correctness is checked with the confidence lines removed.
- ``curriculum = "easy_first"`` (order): before the first iteration, ``curriculum_samples``
  solutions per training problem with the starting weights estimate the prior's success
  rate on each (these tokens are CHARGED to the budget: ``stats["curriculum"]``); every
  pass over the problems then goes from the highest success rate to the lowest, ties
  broken by fewer numbers (``len(problem.inputs["numbers"])`` when the problems carry
  them, e.g. countdown) and then by the seeded shuffle.

One iteration:

1. take ``problems_per_step`` problems, cycling through a shuffle of ``problems`` seeded by
   ``config.seed`` (reshuffled, with the same seeded generator, on every pass; with
   ``curriculum = "easy_first"`` the easy-to-hard order on every pass);
2. sample ``group_size`` solutions per problem at ``temperature`` with the CURRENT weights
   (``rollout.generate_solutions`` over an ``HFPolicy`` whose sampler is seeded from
   ``config.seed`` and the iteration), keeping the exact sampled token ids (EOS included
   when sampled; never re-tokenised from text);
3. reward = ``task.check_solution(problem, text)`` (the labels are read only here; with
   ``reward = "brier"`` the Brier-scored reward of that verdict and the stated confidence);
4. ``updates_per_batch`` passes over the samples that carry a gradient, in minibatches of
   ``batch_size`` shuffled by a seeded ``torch.Generator``, one AdamW step per minibatch
   (one optimizer for the whole run, its moments kept across iterations).

Policy-gradient loss (grpo, psr, nsr), per token t of sample i with advantage A_i:

    l_it = -min(rho_it * A_i, clip(rho_it, 1 - clip_eps, 1 + clip_eps) * A_i)
           + kl_beta * (exp(ref_it - logp_it) - (ref_it - logp_it) - 1)

averaged over the sample's tokens, then (times the sample's zero-success weight: 1 unless
``zero_success = "downweight"``) over the minibatch's samples. On the first pass
rho = exp(logp - logp.detach()) = 1 exactly (plain on-policy policy gradient, every
minibatch); on later passes rho = exp(logp - old) with ``old`` the per-token log-probs under
the weights that sampled the batch (one no-grad forward before the first update, only when
``updates_per_batch > 1``). psr uses A = +1 on correct samples, nsr A = -1 on incorrect
ones, GRPO the group-normalised reward. With ``kl_beta = 0`` (default) samples with A = 0
(e.g. every sample of a group whose rewards are all equal) are dropped from the gradient
batch and no reference forward is run; an iteration without any sample left makes no
optimizer step, so the weights stay exactly as they were.

Budget: every generated token of every sample counts. An iteration starts only while
``tokens_generated < token_budget``, so the run overshoots the budget by less than one
iteration's tokens; ``stats["tokens_generated"]`` is the actual count (the easy_first
probe's tokens included).

    from policies.rl import RLConfig, train
    model, stats = train(model, tok, get_task("countdown3"), task.problems("train", 256),
                         RLConfig(method="grpo", token_budget=200_000, lr=1e-5))

Deterministic on CPU for a fixed seed (and thread count); nothing reads or changes torch's
global random state. The model is left in eval mode.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from policies.confidence import (
    add_confidence_lines,
    brier_reward,
    stated_confidence,
    strip_confidence,
)
from policies.covariance import clip_bound_checks, clip_bounds, kl_penalty, restrict
from policies.distill import (
    PGExample,
    _is_int,
    _is_number,
    _pad_id,
    _threads,
    collate,
    sft_loss,
    token_logprobs,
)
from policies.hf import HFPolicy
from policies.rollout import generate_solutions
from treesearch.engine.forest import Forest
from treesearch.tasks import prompt_ids
from treesearch.utils.knobs import CURRICULA, REWARDS, TREE_BASELINES, ZERO_SUCCESS, KnobError
from treesearch.utils.knobs import RL_METHODS as METHODS

# the methods trained with the policy-gradient loss (``_pg_loss``): Clip-Cov / KL-Cov apply
PG_METHODS = tuple(m for m in METHODS if m != "expert_iteration")


# ----------------------------------------------------------------------------- config

@dataclass
class RLConfig:
    """Knobs of one ``train`` call.

    method: one of ``METHODS``. token_budget: generated tokens to spend (every sampled token
    counts; the run stops before an iteration that would start with the budget spent).
    group_size: samples per problem per iteration (G; >= 2 for grpo). problems_per_step:
    problems per iteration. lr: AdamW learning rate (constant, no weight decay).
    temperature: sampling temperature (> 0: on-policy sampling). max_steps /
    max_step_tokens: steps per solution (answer line included) and tokens per step, as in
    ``rollout.generate_solutions``. clip_eps: PPO clip range of the ratio. kl_beta: weight
    of the k3 KL penalty to the frozen starting model (0 = off, no reference model kept;
    policy-gradient methods only). updates_per_batch: passes over each iteration's samples
    (for expert_iteration: SFT epochs per iteration). batch_size: samples per gradient
    minibatch (one optimizer step each). grad_clip: max gradient norm (0 = off). passk: K of
    the pass@K advantage (grpo only; 1 = GRPO's own advantage; <= group_size).
    tree_baseline: tree_rl's step baseline, "siblings" (mean Q of the visited siblings) or
    "parent" (the parent's Q). zero_success: what happens to groups without a correct
    sample, "keep", "drop" (out of the update and its mean) or "downweight" (their
    samples' loss times zero_success_weight, in [0, 1]); "keep" for tree_rl.
    reward: "binary" (1 / 0) or "brier" (grpo, passk 1: correct - (c - correct)^2 with the
    stated confidence c). curriculum: "random" (seeded shuffle per pass) or "easy_first"
    (prior success rate, estimated from curriculum_samples samples per problem charged to
    the budget, high to low). cov_clip: Clip-Cov's share r of each minibatch's tokens: the
    ceil(r * N) with the largest positive (logp - mean)(A - mean) get no gradient
    (``policies.covariance``, arXiv 2505.22617; 0 = off); cov_clip_low, cov_clip_high:
    both 0, the top of that ranking; high > low, tokens drawn at random among those whose
    product lies between them (the paper's rule). cov_kl, cov_kl_top: KL-Cov's
    coefficient beta and share k: the ceil(k * N) such tokens get beta * |logp - logp_old|
    added, logp_old under the weights that sampled the batch (both 0 = off; > 0 together).
    Both for the policy-gradient methods (grpo, psr, nsr, tree_rl). seed:
    problem order, sampling and minibatch order. threads: torch CPU threads during the call
    (None = untouched). progress: a tqdm bar over the token budget.
    """

    method: str
    token_budget: int
    group_size: int = 8
    problems_per_step: int = 16
    lr: float = 1e-5
    temperature: float = 1.0
    max_steps: int = 8
    max_step_tokens: int = 48
    clip_eps: float = 0.2
    kl_beta: float = 0.0
    updates_per_batch: int = 1
    batch_size: int = 32
    grad_clip: float = 1.0
    passk: int = 1
    tree_baseline: str = TREE_BASELINES[0]
    zero_success: str = "keep"
    zero_success_weight: float = 0.1
    reward: str = "binary"
    curriculum: str = "random"
    curriculum_samples: int = 4
    cov_clip: float = 0.0
    cov_clip_low: float = 0.0
    cov_clip_high: float = 0.0
    cov_kl: float = 0.0
    cov_kl_top: float = 0.0
    seed: int = 0
    threads: int | None = None
    progress: bool = False


def validate(config: RLConfig) -> RLConfig:
    """Raise ValueError naming the first bad field; returns the config."""
    c = config
    pg, pg_only = c.method in PG_METHODS, f"> 0 only for {', '.join(PG_METHODS)} (policy gradient)"
    checks = [
        ("method", c.method in METHODS, f"one of {', '.join(METHODS)}"),
        ("token_budget", _is_int(c.token_budget) and c.token_budget >= 1, "an int >= 1"),
        ("group_size", _is_int(c.group_size) and c.group_size >= (2 if c.method == "grpo" else 1),
         "an int >= 1 (>= 2 for grpo: a group of one has zero advantage)"),
        ("problems_per_step", _is_int(c.problems_per_step) and c.problems_per_step >= 1,
         "an int >= 1"),
        ("lr", _is_number(c.lr) and c.lr > 0, "a finite number > 0"),
        ("temperature", _is_number(c.temperature) and c.temperature > 0,
         "a finite number > 0 (on-policy sampling)"),
        ("max_steps", _is_int(c.max_steps) and c.max_steps >= 1, "an int >= 1"),
        ("max_step_tokens", _is_int(c.max_step_tokens) and c.max_step_tokens >= 1,
         "an int >= 1"),
        ("clip_eps", _is_number(c.clip_eps) and c.clip_eps > 0, "a finite number > 0"),
        ("kl_beta", _is_number(c.kl_beta) and c.kl_beta >= 0
         and not (c.method == "expert_iteration" and c.kl_beta > 0),
         "a finite number >= 0 (0 for expert_iteration, which has no KL term)"),
        ("updates_per_batch", _is_int(c.updates_per_batch) and c.updates_per_batch >= 1,
         "an int >= 1"),
        ("batch_size", _is_int(c.batch_size) and c.batch_size >= 1, "an int >= 1"),
        ("grad_clip", _is_number(c.grad_clip) and c.grad_clip >= 0,
         "a finite number >= 0 (0 = off)"),
        ("passk", _is_int(c.passk) and c.passk >= 1
         and (c.passk == 1 or (c.method == "grpo" and c.passk <= c.group_size)),
         "an int >= 1; K > 1 only for grpo and at most group_size (pass@K of the group)"),
        ("tree_baseline", c.tree_baseline in TREE_BASELINES, f"one of {', '.join(TREE_BASELINES)}"),
        ("zero_success", c.zero_success in ZERO_SUCCESS
         and (c.method != "tree_rl" or c.zero_success == "keep"),
         (f"one of {', '.join(ZERO_SUCCESS)} ('keep' for tree_rl, whose batch is a search's "
          "steps, not groups of samples)")),
        ("zero_success_weight", _is_number(c.zero_success_weight)
         and 0 <= c.zero_success_weight <= 1, "a finite number in [0, 1]"),
        ("reward", c.reward in REWARDS
         and (c.reward == "binary" or (c.method == "grpo" and c.passk == 1)),
         (f"one of {', '.join(REWARDS)} ('brier' only for grpo with passk = 1: the other "
          "methods and pass@K read rewards as right / wrong)")),
        ("curriculum", c.curriculum in CURRICULA, f"one of {', '.join(CURRICULA)}"),
        ("curriculum_samples", _is_int(c.curriculum_samples) and c.curriculum_samples >= 1,
         "an int >= 1"),
        ("cov_clip", _is_number(c.cov_clip) and 0 <= c.cov_clip < 1 and (c.cov_clip == 0 or pg),
         f"a number in [0, 1) (Clip-Cov's share of tokens; 0 = off), {pg_only}"),
        *clip_bound_checks(c),
        ("cov_kl", _is_number(c.cov_kl) and c.cov_kl >= 0 and (c.cov_kl == 0 or pg),
         f"a finite number >= 0 (KL-Cov's coefficient; 0 = off), {pg_only}"),
        ("cov_kl_top", _is_number(c.cov_kl_top) and 0 <= c.cov_kl_top < 1 and (
            c.cov_kl_top > 0) == (c.cov_kl > 0), "a number in [0, 1), > 0 exactly when "
         "cov_kl > 0 (KL-Cov's share of tokens)"),
        ("seed", _is_int(c.seed) and c.seed >= 0, "an int >= 0"),
        ("threads", c.threads is None or (_is_int(c.threads) and c.threads >= 1),
         "None or an int >= 1"),
        ("progress", isinstance(c.progress, bool), "a bool"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise KnobError(f"rl: {name} must be {want}, got {getattr(c, name)!r}", name)
    return c


# ----------------------------------------------------------------------------- advantages

def group_advantages(rewards: np.ndarray, method: str, eps: float = 1e-6,
                     passk: int = 1) -> np.ndarray:
    """Per-sample advantages, float32 [P, G], from rewards float [P, G] (1 = correct).

    grpo: (r - mean of the group) / (population std of the group + eps), 0 for a group
    whose rewards are all equal (with ``passk`` K > 1: ``passk_advantages``); psr: 1 where
    r > 0 else 0; nsr: -1 where r <= 0 else 0; expert_iteration: 1 where r > 0 else 0 (the
    SFT selection mask).
    """
    r = np.asarray(rewards, np.float64)
    if passk != 1:
        if method != "grpo":
            raise ValueError(f"rl: passk > 1 is defined for grpo only, got method {method!r}")
        return passk_advantages(r, passk, eps)
    if method == "grpo":
        std = r.std(axis=1, keepdims=True)
        adv = (r - r.mean(axis=1, keepdims=True)) / (std + eps)
        adv[np.broadcast_to(std == 0, adv.shape)] = 0.0
    elif method in ("psr", "expert_iteration"):
        adv = (r > 0).astype(np.float64)
    elif method == "nsr":
        adv = -(r <= 0).astype(np.float64)
    else:
        raise ValueError(f"rl: method must be one of {', '.join(METHODS)}, got {method!r}")
    return adv.astype(np.float32)


def passk_advantages(rewards: np.ndarray, k: int, eps: float = 1e-6) -> np.ndarray:
    """pass@k advantages of binary rewards, float32 [P, G], in closed form.

    For a group of n = G samples with c correct (n_neg = n - c), the group's reward is the
    unbiased pass@k, R = 1 - C(n_neg, k) / C(n, k), with std s = sqrt(R (1 - R)); a correct
    sample gets (1 - R) / (s + eps), an incorrect one (1 - R - C(n_neg - 1, k - 1) /
    C(n - 1, k - 1)) / (s + eps) (Chen et al. 2025, arXiv 2508.10751, eq. for the analytic
    advantage). A group with s = 0 (all right, or k-subsets that all fail) gets 0. With
    k = 1 this is GRPO's (r - mean) / (std + eps). ValueError unless 1 <= k <= G.
    """
    r = np.asarray(rewards, np.float64)
    n = r.shape[1]
    if not (isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"rl: passk must be an int in [1, group size {n}], got {k!r}")
    out = np.zeros_like(r)
    total = math.comb(n, k)
    for i, row in enumerate(r):
        pos = row > 0
        n_neg = int((~pos).sum())
        mean = 1.0 - math.comb(n_neg, k) / total
        std = math.sqrt(max(mean * (1.0 - mean), 0.0))
        if std == 0:
            continue
        out[i, pos] = (1.0 - mean) / (std + eps)
        if n_neg:
            drop = math.comb(n_neg - 1, k - 1) / math.comb(n - 1, k - 1)
            out[i, ~pos] = (1.0 - mean - drop) / (std + eps)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- trees

def tree_advantages(forest: Forest, baseline: str = TREE_BASELINES[0], min_visits: int = 1,
                    gamma: float = 1.0):
    """Step-level advantages from a searched forest's own statistics (no critic).

    For every non-root node with at least ``min_visits`` visits, its Q (mean backed-up
    return, ``Forest.q``) minus a baseline: ``"siblings"`` the mean Q of the visited
    children of its parent (itself included), ``"parent"`` the parent's Q. Returns
    (tree int64 [N], node int64 [N], advantage float64 [N]), tree-major, node order.
    """
    if baseline not in TREE_BASELINES:
        raise ValueError(f"rl: tree baseline must be one of {', '.join(TREE_BASELINES)}, "
                         f"got {baseline!r}")
    q = forest.q(gamma)
    cap = forest.capacity
    idx = np.arange(cap)[None, :]
    used = (idx > 0) & (idx < forest.n_nodes[:, None]) & (forest.visits >= min_visits)
    used &= np.isfinite(q)
    tree, node = np.nonzero(used)
    parent = forest.parent[tree, node]
    if baseline == "parent":
        base = q[tree, parent]
    else:
        key = tree * cap + parent
        sums = np.zeros(forest.n_trees * cap)
        counts = np.zeros(forest.n_trees * cap)
        np.add.at(sums, key, q[tree, node])
        np.add.at(counts, key, 1.0)
        base = sums[key] / counts[key]
    adv = q[tree, node] - base
    ok = np.isfinite(adv)
    return tree[ok].astype(np.int64), node[ok].astype(np.int64), adv[ok]


def tree_examples(forest: Forest, prompts, baseline: str = TREE_BASELINES[0],
                  min_visits: int = 1,
                  gamma: float = 1.0, scale: float = 1.0) -> list[PGExample]:
    """``policies.distill.PGExample`` for every step of the forest with a nonzero
    ``tree_advantages`` advantage: prefix = the tree's prompt ids + the earlier steps'
    tokens, completion = the step's tokens, advantage = ``scale`` * the step advantage."""
    tree, node, adv = tree_advantages(forest, baseline, min_visits, gamma)
    out = []
    for b, c, a in zip(tree.tolist(), node.tolist(), adv.tolist()):
        if a == 0:
            continue
        path = []
        n = c
        while n > 0:
            path.append(n)
            n = int(forest.parent[b, n])
        spans = [forest.tokens.get(int(forest.payload[b, m])).tolist() for m in path[::-1]]
        if not spans[-1]:
            continue
        prefix = list(prompts[b]) + [t for s in spans[:-1] for t in s]
        out.append(PGExample(prefix, spans[-1], scale * a))
    return out


# ----------------------------------------------------------------------------- sampling

def _sampling_seed(seed: int, iteration: int) -> int:
    """The HFPolicy sampler seed of one iteration (distinct per seed and iteration)."""
    return (seed * 1_000_003 + iteration * 7919 + 1) % (1 << 63)


class _ProblemCycle:
    """Problems in a seeded shuffled order, reshuffled (same generator) after each pass;
    with ``fixed_order`` (indices into ``problems``), that order on every pass instead."""

    def __init__(self, problems: Sequence, seed: int, fixed_order: Sequence[int] | None = None):
        self.problems = list(problems)
        self.rng = random.Random(seed)
        self.fixed_order = None if fixed_order is None else list(fixed_order)
        self.order: list[int] = []

    def take(self, k: int) -> list:
        out = []
        while len(out) < k:
            if not self.order:
                if self.fixed_order is not None:
                    self.order = list(self.fixed_order)
                else:
                    self.order = list(range(len(self.problems)))
                    self.rng.shuffle(self.order)
            out.append(self.problems[self.order.pop(0)])
        return out


def _number_count(problem) -> int:
    """How many numbers a problem gives (countdown's ``inputs["numbers"]``), 0 if none."""
    numbers = getattr(problem, "inputs", {}).get("numbers")
    try:
        return len(numbers) if numbers is not None and not isinstance(numbers, str) else 0
    except TypeError:
        return 0


def _easy_first_order(model, policy, tokenizer, task, problems: list, config: RLConfig):
    """The easy_first curriculum: indices into ``problems``, easy to hard, and its probe.

    Samples ``config.curriculum_samples`` solutions per problem with the current (starting)
    weights, the sampler seeded from ``config.seed`` apart from every iteration's seed, and
    sorts by success rate (high first), then number count (few first), then the seeded
    shuffle. Returns (order: list of int, probe: {"tokens": generated tokens (charged to
    the budget), "order": problem ids easy to hard, "success": their success rates})."""
    model.eval()
    policy.reset_cache()
    policy.generator.manual_seed(_sampling_seed(config.seed, -1))
    texts, counts = generate_solutions(
        policy, tokenizer, task, problems, n=config.curriculum_samples,
        temperature=config.temperature, max_steps=config.max_steps,
        max_step_tokens=config.max_step_tokens, return_counts=True)
    success = _rewards(task, problems, texts).mean(axis=1)                 # [P]
    shuffled = list(range(len(problems)))
    random.Random(config.seed).shuffle(shuffled)
    tie_break = {index: rank for rank, index in enumerate(shuffled)}
    order = sorted(range(len(problems)),
                   key=lambda k: (-success[k], _number_count(problems[k]), tie_break[k]))
    probe = {"tokens": int(counts.sum()), "order": [problems[k].id for k in order],
             "success": [float(success[k]) for k in order]}
    return order, probe


# ----------------------------------------------------------------------------- losses

def _pg_loss(model, batch, adv, old, ref, first: bool, config: RLConfig, weight=None,
             sampled=None, draws: torch.Generator | None = None):
    """Clipped policy-gradient loss of a minibatch (scalar tensor).

    batch: ``collate`` output, B sequences of T tokens; adv: float [B] advantages;
    old / ref: float [B, T-1] per-token log-probs under the sampling weights / the
    reference (None when unused), aligned with ``token_logprobs``; first: ratio = 1
    exactly; config: clip_eps, kl_beta and the covariance restriction (cov_clip, cov_kl,
    cov_kl_top: ``policies.covariance``); weight: float [B] per-sequence loss weights
    (None = all 1); sampled: float [B, T-1] log-probs under the sampling weights, KL-Cov's
    reference (needed when cov_kl > 0, on every pass); draws: the generator of Clip-Cov's
    bounded draws (``cov_clip_low`` / ``cov_clip_high``). Per-token losses are averaged over
    each sequence's completion tokens, weighted, then averaged over the B sequences.
    """
    logp = token_logprobs(model, batch)                      # [B, T-1], 0 off-completion
    mask = (batch["labels"][:, 1:] != -100).to(logp.dtype)   # [B, T-1]
    a = adv.to(logp.device, logp.dtype)[:, None]
    logp, held, _ = restrict(logp, a, mask.bool(), clip=config.cov_clip,
                             kl_top=config.cov_kl_top, clip_bounds=clip_bounds(config),
                             generator=draws)
    ratio = torch.exp(logp - (logp.detach() if first else old))
    eps = config.clip_eps
    tok = -torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
    if config.cov_kl > 0:
        tok = tok + kl_penalty(logp, sampled, held, config.cov_kl)
    if config.kl_beta > 0:
        diff = ref - logp
        tok = tok + config.kl_beta * (torch.exp(diff) - diff - 1)
    per_seq = (tok * mask).sum(1) / mask.sum(1).clamp_min(1)
    if weight is not None:
        per_seq = per_seq * weight.to(per_seq.device, per_seq.dtype)
    return per_seq.mean()


def _scatter(values: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Per-sample 1-D per-token values -> float [B, T-1] at the completion positions."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    out[mask] = torch.cat(values).to(mask.device)
    return out


@torch.no_grad()
def _per_token_logprobs(model, sequences, batch_size: int, pad: int, device) -> list[torch.Tensor]:
    """For each (prompt, completion), float32 [len(completion)] log-probs of its tokens,
    in eval mode (the mode is restored after)."""
    was = model.training
    model.eval()
    out = []
    try:
        for lo in range(0, len(sequences), batch_size):
            batch = collate(sequences[lo:lo + batch_size], pad, device)
            logp = token_logprobs(model, batch)
            mask = batch["labels"][:, 1:] != -100
            out.extend(logp[b][mask[b]].cpu() for b in range(logp.shape[0]))
    finally:
        model.train(was)
    return out


# ----------------------------------------------------------------------------- training

@dataclass
class TreeBatch:
    """What a ``search`` callable of ``tree_rl`` returns for one iteration's P problems.

    forest: the searched trees (tree i = problem i); prompts: P lists of prompt token ids
    (``prompt_ids``); tokens_used: generated tokens the search spent (counted against the
    budget); solved float [P]: 1 where the search's answer is right (the reward, for the
    stats); texts: P lists of solution strings (e.g. the chosen answer path), for
    ``on_samples``.
    """

    forest: Forest
    prompts: list
    tokens_used: int
    solved: np.ndarray
    texts: list


def train(model, tokenizer, task, problems: Sequence, config: RLConfig,
          on_samples: Callable | None = None, search: Callable | None = None):
    """Train ``model`` in place with ``config.method`` until the token budget is spent.

    model: a transformers causal LM (any device; sampling and training run there).
    tokenizer: its tokenizer (prompts via ``rollout.prompt_ids``; padding id).
    task: gives prompts, step ends and ``check_solution`` (the only reward).
    problems: LABELLED TRAINING problems (ValueError for a held-out or unlabelled one).
    on_samples: optional ``on_samples(iteration, problems, texts, rewards)`` after each
        iteration's sampling, before its update: iteration int (0-based), problems the P
        problems sampled, texts P lists of G solution strings, rewards float32 [P, G]
        (tree_rl: the search's texts and solved [P, 1]; reward "brier": the Brier-scored
        rewards, texts with their confidence lines).
    search: tree_rl only (required there): ``search(policy, problems, iteration) ->
        TreeBatch``, a search over the problems with ``policy`` (an ``HFPolicy`` over the
        current weights, its sampler already seeded for the iteration), answers scored by
        the rule verifier on these labelled training problems.
    Returns ``(model, stats)`` with the model in eval mode and stats: method, iterations,
    tokens_generated (actual, >= token_budget, less than one iteration over it), budget,
    tokens_per_iteration (list of int), samples (total sampled solutions), trained_samples
    (samples that entered a gradient minibatch, counted once per iteration),
    mean_reward (list, per iteration, mean reward: the share of correct samples for the
    binary reward), mean_correct (list, per iteration, share of correct samples),
    zero_advantage_groups (groups whose rewards were all equal: zero GRPO advantage),
    zero_success_groups (groups without a correct sample), steps (optimizer steps),
    loss (list, per iteration: mean minibatch loss, None without a step), seconds; with
    reward "brier" also stated_share (list, per iteration, share of samples stating a
    confidence); with curriculum "easy_first" also curriculum ({"tokens", "order",
    "success"}, ``_easy_first_order``; its tokens are in tokens_generated but not in
    tokens_per_iteration).
    """
    config = validate(config)
    if config.method == "tree_rl" and search is None:
        raise ValueError("rl: method 'tree_rl' needs a search callable (search=...)")
    problems = _training_problems(problems)
    start = time.perf_counter()
    stats = _new_stats(config)
    with _threads(config.threads):
        _train_loop(model, tokenizer, task, problems, config, stats, on_samples, search)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return model, stats


def _train_loop(model, tokenizer, task, problems: list, config: RLConfig, stats: dict,
                on_samples: Callable | None, search: Callable | None) -> None:
    """``train``'s iterations until the token budget is spent: sample (or search) with the
    current weights, then update on the samples that carry a gradient; ``stats`` filled
    in place, the model left in eval mode."""
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    params, opt = _optimizer(model, config.lr)
    reference = _frozen_reference(model) if config.kl_beta > 0 else None
    policy = HFPolicy((model, tokenizer), temperature=config.temperature, device=str(device),
                      seed=config.seed)
    order = None
    if config.curriculum == "easy_first":
        order, stats["curriculum"] = _easy_first_order(model, policy, tokenizer, task,
                                                       problems, config)
        stats["tokens_generated"] += stats["curriculum"]["tokens"]
    cycle = _ProblemCycle(problems, config.seed, fixed_order=order)
    bar = tqdm(total=config.token_budget, initial=stats["tokens_generated"],
               desc=f"rl {config.method}", unit="tok",
               disable=not config.progress, dynamic_ncols=True)
    try:
        while stats["tokens_generated"] < config.token_budget:
            it = stats["iterations"]
            batch_problems = cycle.take(config.problems_per_step)
            seqs, sample_adv, sample_weight, used = _iteration_samples(
                model, policy, tokenizer, task, batch_problems, config, it, search, stats,
                on_samples)
            bar.update(used)
            losses: list[float] = []
            if seqs:
                losses = _update(model, opt, params, seqs, sample_adv, sample_weight,
                                 reference, config, it, pad, device)
            _record_update(stats, len(seqs), losses)
            bar.set_postfix(reward=f"{stats['mean_reward'][-1]:.3f}", steps=stats["steps"])
    finally:
        bar.close()
        model.eval()
        opt.zero_grad(set_to_none=True)


def _iteration_samples(model, policy, tokenizer, task, batch_problems, config: RLConfig,
                       it: int, search: Callable | None, stats: dict,
                       on_samples: Callable | None):
    """One iteration's samples with the current weights (tree_rl: the search's visited
    steps), recorded in ``stats`` and handed to ``on_samples``; returns (sequences,
    advantages, weights, tokens generated) of the samples that carry a gradient."""
    if config.method == "tree_rl":
        seqs, sample_adv, texts, rewards, used = _search_samples(
            model, policy, batch_problems, config, it, search)
        sample_weight = torch.ones(len(seqs))
        _record_samples(stats, rewards, rewards, used)
        stats["tree_steps"] = stats.get("tree_steps", 0) + len(seqs)
        if on_samples is not None:
            on_samples(it, batch_problems, texts, rewards)
        return seqs, sample_adv, sample_weight, used
    texts, tokens, used = _sample(model, policy, tokenizer, task, batch_problems, config, it)
    rewards, correct = _score(task, batch_problems, texts, config.reward)
    _record_samples(stats, rewards, correct, used)
    if config.reward == "brier":
        stats["stated_share"].append(_stated_share(texts))
    if on_samples is not None:
        on_samples(it, batch_problems, texts, rewards)
    seqs, sample_adv, sample_weight = _gradient_samples(
        tokenizer, task, batch_problems, tokens, rewards, correct, config)
    return seqs, sample_adv, sample_weight, used


def _training_problems(problems: Sequence) -> list:
    """The problems as a list; ValueError when empty or when one is held out or unlabelled."""
    problems = list(problems)
    if not problems:
        raise ValueError("rl: problems is empty; need at least one labelled training problem")
    for p in problems:
        if getattr(p, "held_out", False) or getattr(p, "label", None) is None:
            raise ValueError(f"rl: problem {getattr(p, 'id', p)!r} is held out or has no label; "
                             "train only on labelled training problems")
    return problems


def _new_stats(config: RLConfig) -> dict:
    """The run's stats before the first iteration (keys as documented in ``train``)."""
    return {"method": config.method, "iterations": 0, "tokens_generated": 0,
            "budget": config.token_budget, "tokens_per_iteration": [], "samples": 0,
            "trained_samples": 0, "mean_reward": [], "mean_correct": [],
            "zero_advantage_groups": 0, "zero_success_groups": 0, "steps": 0,
            "loss": [], "seconds": 0.0,
            **({"stated_share": []} if config.reward == "brier" else {})}


def _optimizer(model, lr: float):
    """(trainable parameters, AdamW over them): betas (0.9, 0.95), no weight decay; one
    optimizer for the whole run. ValueError when no parameter requires grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("rl: the model has no parameter that requires grad")
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    return params, opt


def _frozen_reference(model):
    """A frozen copy of the starting model (eval mode, no grad) for the KL penalty."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def _sample(model, policy, tokenizer, task, problems: list, config: RLConfig, iteration: int):
    """``group_size`` solutions per problem with the current weights, the sampler seeded
    from ``config.seed`` and the iteration (reward "brier": plus the confidence line after
    each complete answer line). Returns (texts: P lists of G strings, tokens: P lists of G
    lists of sampled token ids, used: int, generated tokens in all)."""
    model.eval()
    policy.reset_cache()
    policy.generator.manual_seed(_sampling_seed(config.seed, iteration))
    texts, counts, tokens = generate_solutions(
        policy, tokenizer, task, problems, n=config.group_size,
        temperature=config.temperature, max_steps=config.max_steps,
        max_step_tokens=config.max_step_tokens, return_counts=True,
        return_tokens=True)
    if config.reward == "brier":
        # the sampler stops at the answer line; the confidence line comes after it
        texts, tokens, counts = add_confidence_lines(
            policy, tokenizer, task, problems, texts, tokens, counts,
            config.max_step_tokens, config.temperature)
    used = int(counts.sum())
    if used == 0:
        raise ValueError("rl: an iteration generated no token (the prompts fill "
                         "the model's context)")
    return texts, tokens, used


def _search_samples(model, policy, problems: list, config: RLConfig, iteration: int,
                    search: Callable):
    """tree_rl's sampling: one search over the problems with the current weights (sampler
    seeded from ``config.seed`` and the iteration), then its steps with nonzero
    ``tree_advantages``. Returns (seqs: N (prefix ids, step ids), advantages float32
    tensor [N], texts P lists, rewards float32 [P, 1], used tokens)."""
    model.eval()
    policy.reset_cache()
    policy.generator.manual_seed(_sampling_seed(config.seed, iteration))
    batch = search(policy, problems, iteration)
    if batch.forest.n_trees != len(problems) or len(batch.prompts) != len(problems):
        raise ValueError(f"rl: the search returned {batch.forest.n_trees} trees for "
                         f"{len(problems)} problems")
    used = int(batch.tokens_used)
    if used <= 0:
        raise ValueError("rl: a tree_rl search generated no token")
    examples = tree_examples(batch.forest, batch.prompts, config.tree_baseline)
    seqs = [(e.prompt_ids, e.completion_ids) for e in examples]
    adv = torch.tensor([float(e.advantage) for e in examples], dtype=torch.float32)
    rewards = np.asarray(batch.solved, np.float32).reshape(len(problems), 1)
    return seqs, adv, list(batch.texts), rewards, used


def _rewards(task, problems: list, texts: list[list[str]]) -> np.ndarray:
    """float32 [P, G]: 1 where ``task.check_solution`` accepts the solution, else 0."""
    return np.asarray([[float(task.check_solution(p, t)) for t in row]
                       for p, row in zip(problems, texts)], np.float32)


def _score(task, problems: list, texts: list[list[str]], reward: str):
    """(rewards float32 [P, G], correct float32 [P, G] in {0, 1}) of sampled solutions.

    binary: the reward is the verdict. brier: the verdict is read with the confidence lines
    removed (a last-number answer fallback must not read the confidence), and the reward is
    ``policies.confidence.brier_reward`` of it and the stated confidence."""
    if reward != "brier":
        correct = _rewards(task, problems, texts)
        return correct, correct
    correct = _rewards(task, problems, [[strip_confidence(t) for t in row] for row in texts])
    stated = np.asarray([[_nan_if_none(stated_confidence(t)) for t in row] for row in texts],
                        np.float64)
    return brier_reward(correct, stated), correct


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _stated_share(texts: list[list[str]]) -> float:
    """Share of the solution texts that state a confidence."""
    flat = [t for row in texts for t in row]
    return float(np.mean([stated_confidence(t) is not None for t in flat])) if flat else 0.0


def _record_samples(stats: dict, rewards: np.ndarray, correct: np.ndarray, used: int) -> None:
    """Count one iteration's sampling in ``stats``: rewards and correct float32 [P, G],
    used tokens."""
    stats["iterations"] += 1
    stats["tokens_generated"] += used
    stats["tokens_per_iteration"].append(used)
    stats["samples"] += rewards.size
    stats["mean_reward"].append(float(rewards.mean()))
    stats["mean_correct"].append(float(correct.mean()))
    stats["zero_advantage_groups"] += int((rewards.std(axis=1) == 0).sum())
    stats["zero_success_groups"] += int((correct.max(axis=1) <= 0).sum())


def _gradient_samples(tokenizer, task, problems: list, tokens, rewards: np.ndarray,
                      correct: np.ndarray, config: RLConfig):
    """The samples that carry a gradient: non-empty ones with a nonzero advantage (every
    non-empty one when ``kl_beta > 0``), row-major over [P, G], without the groups that
    have no correct sample under ``zero_success = "drop"``. Returns (seqs: N (prompt ids,
    completion ids) pairs, advantages float32 tensor [N], loss weights float32 tensor [N]:
    ``zero_success_weight`` for a zero-success group's samples under "downweight", else
    1)."""
    adv = group_advantages(rewards, config.method, passk=config.passk)
    no_success = ~(np.asarray(correct) > 0).any(axis=1)                       # [P]
    group_weight = np.where(no_success & (config.zero_success == "downweight"),
                            float(config.zero_success_weight), 1.0)
    dropped = no_success & (config.zero_success == "drop")
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    keep = [(i, j) for i in range(len(problems)) for j in range(config.group_size)
            if tokens[i][j] and not dropped[i] and (adv[i, j] != 0 or config.kl_beta > 0)]
    seqs = [(prompts[i], tokens[i][j]) for i, j in keep]
    sample_adv = torch.tensor([float(adv[i, j]) for i, j in keep])
    sample_weight = torch.tensor([float(group_weight[i]) for i, _ in keep])
    return seqs, sample_adv, sample_weight


def _record_update(stats: dict, trained: int, losses: list[float]) -> None:
    """Count one iteration's update in ``stats``: samples trained on, per-step losses."""
    stats["trained_samples"] += trained
    stats["steps"] += len(losses)
    stats["loss"].append(float(np.mean(losses)) if losses else None)


def _update(model, opt, params, seqs, adv, weight, reference, config: RLConfig,
            iteration: int, pad: int, device) -> list[float]:
    """``updates_per_batch`` passes over seqs (N (prompt, completion) pairs, advantages
    float [N], per-sample loss weights float [N]) in seeded random minibatches; returns
    the per-step losses."""
    n = len(seqs)
    pg = config.method != "expert_iteration"
    old = ref = None
    if pg and (config.updates_per_batch > 1 or config.cov_kl > 0):
        old = _per_token_logprobs(model, seqs, config.batch_size, pad, device)
    if pg and reference is not None:
        ref = _per_token_logprobs(reference, seqs, config.batch_size, pad, device)
    generator = torch.Generator().manual_seed(_sampling_seed(config.seed, iteration) + 17)
    losses = []
    model.train()
    for epoch in range(config.updates_per_batch):
        order = torch.randperm(n, generator=generator).tolist()
        for lo in range(0, n, config.batch_size):
            idx = order[lo:lo + config.batch_size]
            batch = collate([seqs[i] for i in idx], pad, device)
            if pg:
                mask = batch["labels"][:, 1:] != -100
                sampled = _scatter([old[i] for i in idx], mask) if old else None
                loss = _pg_loss(model, batch, adv[idx], sampled if epoch else None,
                                _scatter([ref[i] for i in idx], mask) if ref else None,
                                epoch == 0, config, weight[idx], sampled=sampled,
                                draws=generator)
            else:
                loss, _ = sft_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            losses.append(loss.item())
    model.eval()
    return losses

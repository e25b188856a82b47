"""One optimizer registry: every name self-play's ``distill.method`` and the study's
``optimizers`` can hold, mapped to a function of one signature

    train(model, tokenizer, data: TrainData, config) -> (model, stats)

``config`` is the library config of the function's family: ``policies.distill.DistillConfig``
for the entries that train on harvested trees (sft / mcts, dpo, sft+dpo, wreinforce,
tree_pg), ``policies.rl.RLConfig`` (its ``method`` the entry's name) for the on-policy ones
(grpo, expert_iteration, psr, nsr, tree_rl). ``stats`` is what the library call reports,
unchanged. Each entry states what its ``TrainData`` must hold (``Optimizer.needs``), so a
caller harvests by need, not by name.

mcts and sft are one function: the study's name for SFT on the search's best verified
paths, self-play's for the same. tree_pg and tree_rl stay two entries because they are two
algorithms: tree_pg is one offline policy-gradient pass (``policies.distill.policy_gradient``,
PPO clip to the model as the pass starts) over every visited step of ONE finished search
(the round's saved trees), while tree_rl is the on-policy loop of ``policies.rl.train``,
searching again with the current weights every iteration (its own optimizer, KL and
batching). Their step advantages come from the same ``policies.rl.tree_examples``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from policies.distill import PGExample, dpo, policy_gradient, sft
from policies.rl import train as rl_train
from treesearch.utils.knobs import RL_METHODS

__all__ = ["NEEDS", "OPTIMIZERS", "Optimizer", "TrainData", "distill_row", "from_trees"]

# what a caller can be asked to put into TrainData (``Optimizer.needs``)
NEEDS = {
    "paths": "examples: SFTExamples of the best verified paths (weighted)",
    "pairs": "pairs: PreferencePairs of sibling steps whose Q differ by a margin",
    "siblings": "pg: PGExamples of failing siblings of verified steps (negative)",
    "tree_steps": "pg: PGExamples of every visited step, advantage from the tree",
    "problems": "task and problems: labelled training problems to sample on",
    "search": "search: a search(policy, problems, iteration) -> TreeBatch callable",
}
FROM_TREES = frozenset({"paths", "pairs", "siblings", "tree_steps"})


@dataclass
class TrainData:
    """What an optimizer trains on; each entry reads the fields its ``needs`` name.

    examples: SFTExamples to imitate (weights as harvested). prior: keep-the-prior
    SFTExamples (samples of the starting model), trained beside ``examples``. own: the
    learner's own samples as (prompt ids, completion ids) pairs, the states the SFT
    entries' ``own_kl`` term holds (``stages.harvest.own_samples``; drawn when the config's
    ``own_samples`` > 0, by every caller alike). pairs:
    PreferencePairs. pg: signed PGExamples (failing siblings, or tree steps).
    positive_weight: the factor a policy-gradient pass puts on ``examples``' weights.
    task, problems: the on-policy entries' training problems. on_samples, search: handed
    to ``policies.rl.train`` as they are.
    """

    examples: list = field(default_factory=list)
    prior: list = field(default_factory=list)
    own: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    pg: list = field(default_factory=list)
    positive_weight: float = 1.0
    task: object = None
    problems: Sequence = ()
    on_samples: Callable | None = None
    search: Callable | None = None


@dataclass(frozen=True)
class Optimizer:
    """A registry entry: ``train(model, tokenizer, data, config) -> (model, stats)`` and
    the ``TrainData`` fields it needs (keys of ``NEEDS``)."""

    train: Callable
    needs: frozenset


def _sft(model, tokenizer, data: TrainData, config):
    """SFT (``policies.distill.sft``) on ``examples`` then ``prior``, ``own`` held by the
    own-KL term (with ``config.own_kl``)."""
    return sft(model, tokenizer, data.examples + data.prior, config, own=data.own)


def _dpo(model, tokenizer, data: TrainData, config):
    """DPO (``policies.distill.dpo``) on ``pairs``."""
    return dpo(model, tokenizer, data.pairs, config)


def _sft_then_dpo(model, tokenizer, data: TrainData, config):
    """SFT as ``_sft``, then DPO on ``pairs`` with the same config; stats: SFT's, with
    DPO's under "dpo"."""
    model, stats = _sft(model, tokenizer, data, config)
    model, dstats = dpo(model, tokenizer, data.pairs, config)
    return model, {**stats, "dpo": dstats}


def _policy_gradient(model, tokenizer, data: TrainData, config):
    """One weighted policy-gradient pass (``policies.distill.policy_gradient``) over
    ``pg``, then ``examples`` (weights times ``positive_weight``), then ``prior``."""
    pg = list(data.pg)
    pg += [PGExample(e.prompt_ids, e.completion_ids, data.positive_weight * e.weight)
           for e in data.examples]
    pg += [PGExample(e.prompt_ids, e.completion_ids, e.weight) for e in data.prior]
    return policy_gradient(model, tokenizer, pg, config)


def _on_policy(model, tokenizer, data: TrainData, config):
    """``policies.rl.train`` on ``problems``; the method is ``config.method``."""
    return rl_train(model, tokenizer, data.task, data.problems, config,
                    on_samples=data.on_samples, search=data.search)


def _entry(train: Callable, *needs: str) -> Optimizer:
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}")
    return Optimizer(train, frozenset(needs))


OPTIMIZERS: dict[str, Optimizer] = {
    "sft": _entry(_sft, "paths"),
    "mcts": _entry(_sft, "paths"),
    "dpo": _entry(_dpo, "pairs"),
    "sft+dpo": _entry(_sft_then_dpo, "paths", "pairs"),
    "wreinforce": _entry(_policy_gradient, "paths", "siblings"),
    "tree_pg": _entry(_policy_gradient, "tree_steps"),
    **{name: _entry(_on_policy, "problems") for name in RL_METHODS if name != "tree_rl"},
    "tree_rl": _entry(_on_policy, "problems", "search"),
}


def from_trees(name: str) -> bool:
    """Whether optimizer ``name`` trains on the trees of one finished search (the caller
    searches first, then harvests), rather than sampling on its own."""
    return bool(OPTIMIZERS[name].needs & FROM_TREES)


def sampled_tokens(data: TrainData) -> dict:
    """{"sampled_tokens": n}: the completion tokens the stage generated for the prior and
    own-sample terms (what they cost beyond the search), {} when it drew none."""
    n = sum(len(e.completion_ids) for e in data.prior) + sum(len(c) for _, c in data.own)
    return {"sampled_tokens": n} if data.prior or data.own else {}


def distill_row(stats: dict, data: TrainData, distill) -> dict:
    """Self-play's distill-stage metrics row from a trainer's ``stats`` on ``data``
    (``distill``: the ``DistillConfig`` knobs it ran with): a policy-gradient pass reports
    its positives and negatives (and Clip-Cov / KL-Cov's token shares), SFT its losses
    (the anchor's and own-KL's last KL, and DPO's under "dpo"); both the tokens drawn for
    the prior and own-sample terms (``sampled_tokens``)."""
    d = distill
    row = sampled_tokens(data)
    if "positives" in stats:
        row |= {"pg_examples": stats["examples"], "pg_positives": stats["positives"],
                "pg_negatives": stats["negatives"], "pg_loss_first": stats["loss_first"],
                "pg_loss_last": stats["loss_last"],
                "pg_clipped_share_last": stats["clipped_share_last"],
                "prior_examples": len(data.prior)}
        if d.cov_clip:
            row["pg_cov_clipped_share_last"] = stats.get("cov_clipped_share_last")
        if d.cov_kl:
            row["pg_cov_kl_share_last"] = stats.get("cov_kl_share_last")
        return row
    examples = data.examples
    row |= {"sft_examples": len(examples), "sft_loss_first": stats.get("loss_first"),
            "sft_loss_last": stats.get("loss_last")}
    if d.anchor_kl:
        row["sft_anchor_kl_last"] = stats.get("anchor_kl_last")
    if d.prior_samples:
        row["prior_examples"] = len(data.prior)
    if d.own_kl:
        row.update(own_examples=len(data.own), sft_own_kl_last=stats.get("own_kl_last"))
    if d.distinct or d.unlikeliness or d.passk_weight:
        row["sft_weight_mean"] = (float(np.mean([e.weight for e in examples]))
                                  if examples else None)
    if "dpo" in stats:
        row.update({"dpo_pairs": len(data.pairs),
                    "dpo_loss_last": stats["dpo"].get("loss_last")})
    return row

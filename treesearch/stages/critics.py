"""Refit the learned critics from one finished search over LABELLED TRAINING problems:
value targets (node Q), PRM targets (the share of each node's rollouts that ended correct:
Math-Shepherd labels from the tree, no extra generation) and ORM targets (rule-verifier
labels of answer nodes), each critic fit on at most ``max_examples`` rows and its held-out
calibration reported (``critics.train.fit_and_report``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from critics.train import (
    fit_and_report,
    outcome_targets,
    process_targets_from_tree,
    value_targets,
)
from critics.verifier import RuleVerifier
from treesearch.search import SearchResult

__all__ = ["limit_rows", "refit_critics"]

REPORTED = ("n_train", "n_heldout", "mse_critic", "mse_constant", "skill")
CALIBRATION = ("brier", "ece", "auroc")


def refit_critics(critics: dict, result: SearchResult, problems: Sequence, task, tokenizer,
                  out_dir: Path, *, max_examples: int, epochs: int, lr: float,
                  train_trunk: bool, seed: Callable[[str], int]) -> dict:
    """Fit every critic in ``critics`` ({kind: critic}) that can be fit on its targets from
    ``result`` (the trees of ``problems``) and save it under ``out_dir/<kind>``; a critic
    with targets from fewer than two trees is saved unchanged (carried over). ``seed(name)``
    gives the seed of the "<kind>-rows" draw and of the "<kind>" fit. Returns {kind:
    metrics}."""
    verifier = RuleVerifier(task, tokenizer, problems)
    targets = {"value": lambda: value_targets(result),
               "process": lambda: process_targets_from_tree(result, problems, task, tokenizer,
                                                            verifier),
               "outcome": lambda: outcome_targets(result, problems, task, tokenizer, verifier)}
    row = {}
    for kind, critic in critics.items():
        if kind not in targets or not hasattr(critic, "fit"):
            continue
        data = limit_rows(targets[kind](), max_examples, seed(f"{kind}-rows"),
                          balance=kind == "outcome")
        if len(np.unique(data.tree)) < 2:
            # nothing to fit and hold out: the critic goes on unchanged, so every round
            # that finished this stage holds every learned critic
            row[kind] = {"skipped": f"targets from {len(np.unique(data.tree))} trees",
                         "carried_over": True}
            critic.save(out_dir / kind)
            continue
        report = fit_and_report(critic, data, seed=seed(kind), out_dir=out_dir, epochs=epochs,
                                lr=lr, train_trunk=train_trunk)
        critic.save(out_dir / kind)
        row[kind] = {k: report[k] for k in REPORTED}
        if report.get("calibration"):
            row[kind].update({k: report["calibration"][k] for k in CALIBRATION})
    return row


def limit_rows(data, max_examples: int, seed: int, balance: bool = False):
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

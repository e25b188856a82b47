"""Measuring the study's cells on HELD-OUT problems (``treesearch.study.measure``): the
untrained prior (``cells/<prior>/base/``, and once on the val split), and a trained copy
(``cells/<prior>/<optimizer>/seed<s>/``: trained by ``study.training``, its weights
compared with the prior's, measured, optionally routed). A cell's ``measure.json`` is
written last and atomically: a cell with it is done."""

from __future__ import annotations

import shutil
import time

import numpy as np
import torch

from policies.distill import save_policy
from policies.updates import summarise_ranks, update_rank, update_sparsity
from treesearch.backends import build_learner
from treesearch.config import ConfigError
from treesearch.study.config import base_optimizer, rl_of
from treesearch.study.measure import measure
from treesearch.study.routing import routing_probe
from treesearch.study.stats import HELDOUT_PREFIX
from treesearch.study.training import cell_seed
from treesearch.utils.runs import portable_path, read_json, write_json

__all__ = ["Cells"]


class Cells:
    """The measured cells of a ``treesearch.study.run.Study`` (its config, tasks, run
    directory, priors, policy builder and ``training``)."""

    def __init__(self, study):
        self.study = study
        self.cfg, self.task = study.cfg, study.task
        self._eval_sets: dict | None = None  # drawn on first use (``eval_sets``)

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
            for name, task in self.study.ood.items():
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

    def measure(self, model_or_path, seed: int, prior: str, optimizer: str = "base") -> dict:
        """{eval set name: Measurement dict} of one policy on every eval set; ``prior`` and
        ``optimizer`` (what trained it, "base": nothing) decide the stated-confidence line."""
        policy = self.study.policy(model_or_path, seed)
        stated = self.states_confidence(prior, optimizer)
        return {name: self._measure_set(policy, task, problems, f"measure {name}", stated)
                for name, (task, problems) in self.eval_sets().items()}

    def states_confidence(self, prior: str, optimizer: str) -> bool:
        """Whether the policy writes a confidence line after its answer, so that
        measurements sample it: its prior was pretrained to (``stated_confidence``), or
        ``optimizer`` is grpo with the Brier reward (RLCR)."""
        recorded = self.study.prior_path(prior) / "metrics.json"  # absent for outside models
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

    def run_base(self, prior: str) -> None:
        """The untrained prior: ``measure.json`` on the eval sets, then ``val.json``
        (``prior_val``); each is skipped when already written."""
        where = self.study.cell_dir(prior, "base")
        if not (where / "measure.json").is_file():
            self.eval_sets()  # a held-out set the task cannot fill fails here, before pretraining
            path = self.study.prior_path(prior)
            measured = self.measure(path, cell_seed(prior, "base", "measure"), prior)
            write_json(where / "measure.json", {"prior": prior, "optimizer": "base",
                                                "prior_path": portable_path(path),
                                                "eval": measured})
        self.prior_val(prior)

    def prior_val(self, prior: str) -> dict:
        """The prior measured once in distribution on the VAL split (eval.problems problems
        x eval.samples samples, the eval settings of ``_measure_set``), stored in
        ``cells/<prior>/base/val.json`` as {"prior", "split": "val", "problems",
        "measure": Measurement dict} and read back when present. With eval.split = "val"
        the base cell's "id" set is these very problems, so its measurement is reused."""
        path = self.study.cell_dir(prior, "base") / "val.json"
        if path.is_file():
            return read_json(path)
        e = self.cfg.eval
        base = self.study.cell_dir(prior, "base") / "measure.json"
        if e.split == "val" and base.is_file():
            measured = read_json(base)["eval"]["id"]
        else:
            policy = self.study.policy(self.study.prior_path(prior),
                                       cell_seed(prior, "base", "val"))
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
        """Train the prior with ``optimizer`` (``study.training``), compare its weights
        with the prior's, measure it (and route it with ``eval.routing_samples`` > 0);
        ``train.json``, then ``measure.json``. The policy is kept only while measured."""
        where = self.study.cell_dir(prior, optimizer, seed)
        if (where / "measure.json").is_file():
            return
        torch.manual_seed(cell_seed(prior, optimizer, seed, "torch"))
        start = time.perf_counter()
        model, tokenizer, stats = self.study.training.train(prior, optimizer, seed)
        train_s = time.perf_counter() - start
        save_policy(model, tokenizer, where / "policy")
        write_json(where / "train.json", {**_jsonable(stats), "seconds": round(train_s, 2)})
        before, _ = build_learner(self.study.prior_path(prior))
        b = before.state_dict()
        a = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ranks = update_rank(b, a)
        measured = self.measure(where / "policy",
                                cell_seed(prior, optimizer, seed, "measure"), prior, optimizer)
        extra = {}
        if self.cfg.eval.routing_samples > 0:  # when vs how: routing on the "id" problems
            extra["routing"] = self._routing(prior, where / "policy",
                                             cell_seed(prior, optimizer, seed, "routing"))
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

    def _routing(self, prior: str, trained, seed: int) -> dict:
        """The when-vs-how routing probe (``study.routing``) of the prior and the
        ``trained`` policy on the "id" problems."""
        task, problems = self.eval_sets()["id"]
        e, s = self.cfg.eval, self.cfg.search
        return routing_probe(self.study.prior_path(prior), trained, None, task, problems,
                             n=e.routing_samples, temperature=e.temperature,
                             max_steps=s.max_depth, max_step_tokens=s.max_step_tokens,
                             seed=seed, device=self.cfg.device)


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

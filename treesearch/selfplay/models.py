"""The self-play run's models and trees: which policy and learned critics hold after a
round (the last round that finished its distill or critics stage; the starting model and
fresh heads before any), loaded on the configured backends (``treesearch.backends``); the
scorer and search the search and eval stages build from them; each round's saved trees."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from critics.compose import RewardWeights, StepScorer
from policies.hf import HFPolicy
from policies.zoo import resolve
from treesearch.backends import build_critics, build_policy, critic_slots, scorer_of
from treesearch.config import train_problems
from treesearch.search import SearchConfig
from treesearch.search.harvest import load_result
from treesearch.stages import Searched, search_problems
from treesearch.tasks import prompt_ids
from treesearch.utils.recipes import instantiate
from treesearch.utils.runs import RunDir, RunError

CRITIC_KINDS = ("value", "process", "outcome")


class RunModels:
    """The policies and critics of one self-play run (``cfg``, a ``SelfPlayConfig``, over
    ``run``'s directory) on ``task``."""

    def __init__(self, cfg, run: RunDir, task):
        self.cfg, self.run, self.task = cfg, run, task

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
        return build_critics({k: getattr(c, k) for k in CRITIC_KINDS},
                             c.trunk or self.cfg.policy.model,
                             saved={k: self.critic_dir(round_, k) for k in CRITIC_KINDS},
                             policy_tokenizer=tokenizer, device=c.device or self.cfg.policy.device,
                             judge=c.judge, prm_format=c.prm_format or None)

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

    def trees(self, round_: int, tokenizer):
        """The round's training problems and search result, rebuilt from its saved trees."""
        problems = train_problems(self.cfg, self.task, round_)
        prompts = [prompt_ids(tokenizer, self.task, p) for p in problems]
        return problems, load_result(self.run.path / f"round_{round_}" / "trees.jsonl.gz",
                                     prompts)

"""One step search over a problem set: rule verifier -> StepScorer -> StepSearch -> run ->
verdicts and accounting. Self-play's search stage (whole, or one shard), the study's shared
(prior, seed) search and its tree_rl iterations all run through ``search_problems``, so the
scorer they search with and the way answers are judged cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from critics.compose import RewardWeights, StepScorer
from critics.verifier import RuleVerifier
from treesearch.search import SearchConfig, SearchResult, StepSearch

__all__ = ["Searched", "search_problems"]


@dataclass
class Searched:
    """A searched problem set: the ``SearchResult`` (trees, prompts, chosen answers,
    accounting) and ``correct``, bool [P]: the chosen answer of each problem checked against
    its label by the task (labels are read only here, after the search)."""

    result: SearchResult
    correct: np.ndarray

    @property
    def solved_share(self) -> float:
        """Share of the problems whose chosen answer is correct."""
        return float(np.mean(self.correct))

    @property
    def generated(self) -> np.ndarray:
        """int64 [P]: tokens the policy generated for each problem."""
        return np.asarray(self.result.stats.generated)

    @property
    def nodes(self) -> np.ndarray:
        """[P]: nodes in each problem's tree."""
        return np.asarray(self.result.forest.n_nodes)

    @property
    def model_seconds(self) -> float:
        """Wall seconds spent in policy and critic calls."""
        seconds = self.result.stats.seconds
        return seconds["propose"] + seconds["score"]


def search_problems(policy, task, problems: Sequence, config: SearchConfig, *,
                    critics: Mapping | None = None,
                    weights: RewardWeights | None = None, verify: bool = False,
                    clean_steps: bool = False, progress: bool = False,
                    desc: str = "mcts") -> Searched:
    """Search ``problems`` with ``policy`` (its tokenizer renders the prompts) and judge the
    chosen answers.

    critics: {"value" | "process" | "outcome": critic}, the scorer's slots, built for these
        problems (learned heads, label-free checkers); missing kinds stay empty.
    weights: how the StepScorer combines them (None: ``RewardWeights()``).
    verify: put the rule verifier in the outcome slot (over ``critics["outcome"]``): it
        reads the labels, so only for searches over LABELLED TRAINING problems that make
        training targets; ``clean_steps`` is its option (also require slip-free steps).
    """
    slots = dict(critics or {})
    if verify:
        slots["outcome"] = RuleVerifier(task, policy.tokenizer, problems,
                                        clean_steps=clean_steps)
    scorer = StepScorer(slots.get("value"), slots.get("process"), slots.get("outcome"),
                        weights if weights is not None else RewardWeights())
    result = StepSearch(policy, scorer, task, policy.tokenizer, config).run(
        problems, progress=progress, desc=desc)
    correct = np.array([bool(task.check_solution(p, a))
                        for p, a in zip(problems, result.answers)], dtype=bool)
    return Searched(result, correct)

"""What a step search returns: the trees, the chosen answers and the budget accounting."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from treesearch.engine.forest import Forest

STAGES = ("select", "propose", "score", "expand", "backup", "other")


@dataclass
class SearchStats:
    """Budget accounting of one search, per problem ([B] arrays) and in total.

    generated: tokens sampled for the problem; processed: tokens the policy ran through
    its model, shared out over problems in proportion to what each generated in the same
    call; critic_calls: critic evaluations (one per critic per state scored);
    critic_tokens: model tokens the critics processed for the problem; rounds: rounds the
    tree took part in; selected: nodes selected (leaves expanded, nodes widened, terminals
    backed up again); seconds: wall time per stage (whole search).
    """

    generated: np.ndarray
    processed: np.ndarray
    critic_calls: np.ndarray
    rounds: np.ndarray
    selected: np.ndarray
    critic_tokens: np.ndarray
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())

    @property
    def overhead_share(self) -> float:
        """Share of wall time outside policy and critic calls."""
        wall = self.wall
        return (wall - self.seconds["propose"] - self.seconds["score"]) / wall if wall else 0.0


@dataclass
class SearchResult:
    """What a step search returns.

    forest: the trees (extra fields ``EXTRA_FIELDS``; payloads are token-span ids).
    prompts: the prompt token ids of each problem (the roots' states).
    answers: per problem, the chosen solution's steps as text (answer line last when
        there is one); chosen_node: int64 [B], the node it ends at.
    stats: the budget accounting.
    """

    forest: Forest
    prompts: list[list[int]]
    answers: list[str]
    chosen_node: np.ndarray
    stats: SearchStats

    def path(self, tree: int, node: int) -> list[int]:
        """Node indices from the root to ``node`` (root first)."""
        return node_path(self.forest, tree, node)

    def steps(self, tree: int, node: int) -> list[np.ndarray]:
        """Token ids of each step on the path to ``node`` (int32 arrays)."""
        return [self.forest.tokens.get(int(self.forest.payload[tree, n]))
                for n in node_path(self.forest, tree, node)[1:]]


def node_path(forest: Forest, tree: int, node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(int(node))
        node = int(forest.parent[tree, node])
    return out[::-1]

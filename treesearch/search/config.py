"""``SearchConfig``: every option of one step search, defined once.

Self-play (``search.*`` keys), the study (``search.*``) and decoding (``search.*``
overrides on the command line) all use this dataclass as it is (omegaconf structured
configs accept it), so a knob has one name, one default and one check. The defaults are
the embedded default recipe's (``configs/default.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

from treesearch.engine.forest import MCTSParams

ANSWER_RULES = ("vote", "score", "visits")


@dataclass(frozen=True)
class SearchConfig:
    """Options of one step search (counts are per problem).

    simulations: rounds; each selects up to ``leaves_per_tree`` nodes per tree.
    branching: next-step samples per selected node.
    merge: AlphaLLM's state merge: a sampled step equal (up to whitespace) to an existing
        sibling joins that node instead of becoming a new one (False: every sample is a
        node of its own, the ablation's "vanilla" tree).
    horizon: steps each sample is continued for (1: step expansion; >= max_depth: full
        rollouts, every one kept in the tree).
    max_children, widen_c, widen_alpha: progressive widening (widen_c = 0: off, nodes are
        expanded once).
    reopen_fruitless: a node whose widening sampled nothing new is capped at the children
        it has; True re-opens it for widening each time its visits double after that (more
        samples where the search keeps going; the cap stays off otherwise).
    repeat_visits: a continuation that repeats a terminal step sampled earlier in the SAME
        round counts one more visit of it, as a repeat of a terminal from an earlier round
        always does (False: such a within-round repeat is merged without a visit).
    idle_rollouts: with a budget (``max_tokens``), a tree whose last round generated
        nothing (its selection landed on finished solutions or capped nodes) spends its
        next round on ``branching`` fresh continuations from the root instead, so the
        budget is spent rather than the tree going idle (False: it idles and stops after
        ``IDLE_ROUNDS`` such rounds). On by default: without it a tree stops widening
        well short of its budget, and the unspent tokens are accuracy that best-of-N
        at the same budget collects (figures in docs/design.md).
    max_depth: steps per solution, the answer line included; a step at this depth ends
        the episode (wrong unless it is an answer).
    max_step_tokens: tokens per step; a step cut there is malformed (terminal, wrong).
    c_explore, rule, first_play_mode, first_play, gamma: selection (``MCTSParams``).
    prior_temperature: softmax temperature turning step log-probs into priors.
    max_tokens: generated-token budget per problem (None: none); a tree stops once spent.
    early_stop: see the module docstring; early_stop_score: the composed score the
        answer ending the most visited descent needs for the tree to stop early (0: any
        answer settles it).
    prune_below: dead-end pruning (None: off). A new node that does not end the episode
        and whose composed score is at most this is closed where it is: a leaf becomes
        terminal (selecting it again backs up its score at no token cost) and a node that
        already has children (a continuation went past it) takes no more. With a step
        critic that can tell a dead end (score 0) this stops the search spending tokens
        below one; 0.0 closes only nodes scored exactly 0.
    backtrack: with ``prune_below``, selecting a dead end again (a terminal non-answer
        scored at most the threshold) also has its parent sample a new sibling in its
        place while the parent has room for one more child, as a rejection sampler
        resamples a rejected step (False: the visit only backs up the dead end's score).
    answer: how the tree answers. "vote" -- answers grouped by ``task.answer_key`` (what
        they claim, no label needed), each answer node weighted by visits x composed
        score; the heaviest group's best node (a sampled trajectory that repeats an
        existing solution counts as a visit, so this is majority voting over every
        trajectory the search sampled, steered by the critics). "score" -- the answer node
        with the best composed score (ties: more visits). "visits" -- the end of the most
        visited descent (else the best-scored answer).
    """

    simulations: int = 24
    leaves_per_tree: int = 1
    branching: int = 2
    merge: bool = True
    horizon: int = 6
    max_children: int = 6
    widen_c: float = 1.0
    widen_alpha: float = 0.5
    reopen_fruitless: bool = False
    repeat_visits: bool = True
    idle_rollouts: bool = True
    max_depth: int = 5
    max_step_tokens: int = 24
    c_explore: float = 1.25
    rule: str = "puct"
    first_play_mode: str = "critic"
    first_play: float = 0.0
    gamma: float = 1.0
    prior_temperature: float = 1.0
    max_tokens: int | None = None
    early_stop: bool = True
    early_stop_score: float = 0.0
    prune_below: float | None = None
    backtrack: bool = False
    answer: str = "vote"

    def __post_init__(self):
        positive = ("simulations", "leaves_per_tree", "branching", "horizon", "max_depth",
                    "max_step_tokens", "max_children")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be an int >= 1, got "
                                 f"{getattr(self, name)!r}")
        if not 0.0 <= self.early_stop_score <= 1.0:
            raise ValueError("SearchConfig.early_stop_score must be in [0, 1], got "
                             f"{self.early_stop_score}")
        if not self.prior_temperature > 0:
            raise ValueError("SearchConfig.prior_temperature must be > 0, got "
                             f"{self.prior_temperature}")
        if self.max_tokens is not None and self.max_tokens < self.max_step_tokens:
            raise ValueError(f"SearchConfig.max_tokens ({self.max_tokens}) cannot pay for one "
                             f"step of up to max_step_tokens ({self.max_step_tokens}) tokens")
        if self.prune_below is not None and not 0.0 <= self.prune_below < 1.0:
            raise ValueError("SearchConfig.prune_below must be None or in [0, 1), got "
                             f"{self.prune_below}")
        if self.backtrack and self.prune_below is None:
            raise ValueError("SearchConfig.backtrack needs prune_below (it resamples in place "
                             "of pruned dead ends)")
        if self.answer not in ANSWER_RULES:
            raise ValueError(f"SearchConfig.answer must be one of {ANSWER_RULES}, got "
                             f"{self.answer!r}")
        self.params  # validates the selection options

    @property
    def params(self) -> MCTSParams:
        return MCTSParams(rule=self.rule, c_explore=self.c_explore, first_play=self.first_play,
                          first_play_mode=self.first_play_mode, gamma=self.gamma,
                          leaves_per_tree=self.leaves_per_tree, widen_c=self.widen_c,
                          widen_alpha=self.widen_alpha, max_children=self.max_children)

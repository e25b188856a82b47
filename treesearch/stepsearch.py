"""MCTS over reasoning steps: a policy proposes steps, critics score them, kernels do the rest.

One node is one step (one line). Every round, for all problems at once:

    select K nodes per tree (kernels: PUCT/UCT, virtual loss, progressive widening)
    -> one batched ``policy.propose`` of ``branching`` next steps for every selected node
       that is not terminal, then each continued for up to ``horizon - 1`` more steps
       (one batched call per step): ``horizon = 1`` is classic step expansion, a horizon
       reaching ``max_depth`` makes every sample a fast rollout kept in the tree
    -> merge: a continuation follows the existing nodes while its steps match them (state
       merge: steps equal up to whitespace are one node) and only its new remainder
       becomes nodes
    -> one batched call per critic over all new nodes (``scorer``), composed into one
       score per node (the dense step reward, see ``critics.compose``)
    -> attach the new nodes (expand leaves, widen expanded nodes) and back up from the end
       of every continuation; a selected terminal node backs up its value again.

Adaptive branching (eta-MCTS): a node takes a new child once
``floor(widen_c * N ** widen_alpha)`` exceeds its children, up to ``max_children``;
a node whose widening found nothing new is capped where it is. Early stop: a tree
stops once its most visited root step cannot be overtaken in the rounds left and the
most visited descent ends in an answer, or when its token budget is spent.

The search sees problems WITHOUT labels (it strips them itself): only the policy and the
scorer's critics guide it. This module imports nothing from ``policies/`` or
``critics/``: the policy and the scorer arrive as objects (``treesearch.interfaces``,
``critics.compose.StepScorer``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from treesearch import kernels as K
from treesearch.forest import Forest, MCTSParams

STAGES = ("select", "propose", "score", "expand", "backup", "other")
# extra float fields of a search forest: the critics' parts, the running PRM aggregate,
# each step's log-probability (priors are renormalised from it after widening), and each
# node's cap on children (set once widening it found nothing new)
EXTRA_FIELDS = ("c_value", "c_process", "c_outcome", "prm_agg", "logprob", "child_cap")
ANSWER_RULES = ("vote", "score", "visits")


@dataclass(frozen=True)
class SearchConfig:
    """Options of one step search (counts are per problem).

    simulations: rounds; each selects up to ``leaves_per_tree`` nodes per tree.
    branching: next-step samples per selected node (identical ones merge).
    horizon: steps each sample is continued for (1: step expansion; >= max_depth: full
        rollouts, every one kept in the tree).
    max_children, widen_c, widen_alpha: progressive widening (widen_c = 0: off, nodes are
        expanded once).
    max_depth: steps per solution, the answer line included; a step at this depth ends
        the episode (wrong unless it is an answer).
    max_step_tokens: tokens per step; a step cut there is malformed (terminal, wrong).
    c_explore, rule, first_play_mode, first_play, gamma: selection (``MCTSParams``).
    prior_temperature: softmax temperature turning step log-probs into priors.
    max_tokens: generated-token budget per problem (None: none); a tree stops once spent.
    early_stop: see the module docstring.
    answer: how the tree answers. "vote" -- answers grouped by ``task.answer_key`` (what
        they claim, no label needed), each answer node weighted by visits x composed
        score; the heaviest group's best node (a sampled trajectory that repeats an
        existing solution counts as a visit, so this is majority voting over every
        trajectory the search sampled, steered by the critics). "score" -- the answer node
        with the best composed score (ties: more visits). "visits" -- the end of the most
        visited descent (else the best-scored answer).
    """

    simulations: int = 32
    leaves_per_tree: int = 1
    branching: int = 2
    horizon: int = 1
    max_children: int = 8
    widen_c: float = 1.0
    widen_alpha: float = 0.5
    max_depth: int = 6
    max_step_tokens: int = 32
    c_explore: float = 1.25
    rule: str = "puct"
    first_play_mode: str = "critic"
    first_play: float = 0.0
    gamma: float = 1.0
    prior_temperature: float = 1.0
    max_tokens: int | None = None
    early_stop: bool = True
    answer: str = "vote"

    def __post_init__(self):
        positive = ("simulations", "leaves_per_tree", "branching", "horizon", "max_depth",
                    "max_step_tokens", "max_children")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.prior_temperature > 0:
            raise ValueError(f"SearchConfig.prior_temperature must be > 0, got {self.prior_temperature}")
        if self.max_tokens is not None and self.max_tokens < self.max_step_tokens:
            raise ValueError(f"SearchConfig.max_tokens ({self.max_tokens}) cannot pay for one "
                             f"step of up to max_step_tokens ({self.max_step_tokens}) tokens")
        if self.answer not in ANSWER_RULES:
            raise ValueError(f"SearchConfig.answer must be one of {ANSWER_RULES}, got {self.answer!r}")
        self.params  # validates the selection options

    @property
    def params(self) -> MCTSParams:
        return MCTSParams(rule=self.rule, c_explore=self.c_explore, first_play=self.first_play,
                          first_play_mode=self.first_play_mode, gamma=self.gamma,
                          leaves_per_tree=self.leaves_per_tree, widen_c=self.widen_c,
                          widen_alpha=self.widen_alpha, max_children=self.max_children)


@dataclass
class SearchStats:
    """Budget accounting of one search, per problem ([B] arrays) and in total.

    generated: tokens sampled for the problem; processed: tokens the policy ran through
    its model, shared out over problems in proportion to what each generated in the same
    call; critic_calls: states scored; rounds: rounds the tree took part in; selected:
    nodes selected (leaves expanded, nodes widened, terminals backed up again); seconds:
    wall time per stage (whole search).
    """

    generated: np.ndarray
    processed: np.ndarray
    critic_calls: np.ndarray
    rounds: np.ndarray
    selected: np.ndarray
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
        return _path(self.forest, tree, node)

    def steps(self, tree: int, node: int) -> list[np.ndarray]:
        """Token ids of each step on the path to ``node`` (int32 arrays)."""
        return [self.forest.tokens.get(int(self.forest.payload[tree, n]))
                for n in _path(self.forest, tree, node)[1:]]


@dataclass
class _New:
    """A node to create this round: its parent is an existing node (``parent``) or another
    new node (``parent_new``, index into the round's list)."""

    tree: int
    parent: int
    parent_new: int
    tokens: list[int]
    logprob: float
    text: str
    depth: int
    answer: bool
    terminal: bool


class StepSearch:
    """Batched MCTS over reasoning steps for a batch of problems.

    policy: ``propose(prefixes, n, max_step_tokens)`` and ``counts`` (Policy protocol).
    scorer: ``raw``/``compose_raw``/``run``/``has`` (``critics.compose.StepScorer``), with
        at least one critic.
    task: prompts, answer lines (``is_answer_step``) -- the search reads nothing else.
    tokenizer: the policy's tokenizer (prompt ids, step text).
    """

    def __init__(self, policy, scorer, task, tokenizer, config: SearchConfig = SearchConfig()):
        if not scorer:
            raise ValueError("StepSearch needs at least one critic to score steps "
                             "(value, process or outcome)")
        self.policy, self.scorer, self.task, self.tokenizer = policy, scorer, task, tokenizer
        self.config = config

    # -- public ------------------------------------------------------------------------
    def run(self, problems: Sequence, *, progress: bool = False, desc: str = "mcts") -> SearchResult:
        """Search every problem; returns the trees, chosen answers and the accounting."""
        if not problems:
            raise ValueError("StepSearch.run: empty problem list")
        cfg = self.config
        problems = [p.without_label() for p in problems]  # labels never reach the search
        b = len(problems)
        self.prompts = [[self.tokenizer.bos_token_id] + list(
            self.tokenizer(self.task.prompt(p), add_special_tokens=False)["input_ids"])
            for p in problems]
        stats = SearchStats(*(np.zeros(b, np.int64) for _ in range(5)))
        forest = Forest(b, capacity=64, root_values=self._root_values(stats),
                        extra_fields=EXTRA_FIELDS)
        forest.extra("prm_agg")[:, 0] = np.nan
        active = np.ones(b, bool)
        params = cfg.params
        bar = tqdm(range(cfg.simulations), desc=desc, disable=not progress, leave=False)
        for r in bar:
            t0 = time.perf_counter()
            leaf_tree, leaf_node, _ = forest.select(params)
            forest.cancel(leaf_tree, leaf_node)  # new nodes carry the backups, not the leaves
            keep = active[leaf_tree]
            leaf_tree, leaf_node = leaf_tree[keep], leaf_node[keep]
            stats.rounds += active
            np.add.at(stats.selected, leaf_tree, 1)
            stats.seconds["select"] += time.perf_counter() - t0
            self._round(forest, stats, leaf_tree, leaf_node)
            t0 = time.perf_counter()
            active &= self._still_active(forest, stats, cfg.simulations - r - 1)
            if progress:
                bar.set_postfix(active=int(active.sum()), tokens=int(stats.generated.sum()))
            stats.seconds["other"] += time.perf_counter() - t0
            if not active.any():
                break
        bar.close()
        t0 = time.perf_counter()
        chosen = self.choose(forest)
        answers = ["".join(self._text(s) for s in self._steps(forest, t, int(n)))
                   for t, n in enumerate(chosen)]
        stats.seconds["other"] += time.perf_counter() - t0
        return SearchResult(forest, self.prompts, answers, chosen, stats)

    def choose(self, forest: Forest) -> np.ndarray:
        """The node each tree answers with (``SearchConfig.answer``), int64 [B]; the end of
        the most visited descent when a tree holds no answer at all."""
        out = np.zeros(forest.n_trees, np.int64)
        for b in range(forest.n_trees):
            descent = self._most_visited_descent(forest, b)
            if self.config.answer == "visits" and self._is_answer(forest, b, descent):
                out[b] = descent
                continue
            n = int(forest.n_nodes[b])
            live = np.flatnonzero((forest.terminal[b, :n] == 1) & (forest.depth[b, :n] > 0)
                                  & (forest.visits[b, :n] > 0))
            answers = [int(c) for c in live if self._is_answer(forest, b, int(c))]
            if not answers:
                out[b] = descent
                continue
            if self.config.answer == "vote":
                groups: dict = {}
                for c in answers:
                    claim = self.task.answer_key(self.task.extract_answer(self._node_text(forest, b, c)))
                    groups.setdefault(claim, []).append(c)
                weight = {k: sum(forest.visits[b, c] * max(forest.value[b, c], 1e-6) for c in cs)
                          for k, cs in groups.items()}
                answers = groups[max(weight, key=weight.get)]  # ties: the earliest group
            out[b] = max(answers, key=lambda c: (forest.value[b, c], forest.visits[b, c], -c))
        return out

    # -- one round ---------------------------------------------------------------------
    def _round(self, forest, stats, leaf_tree, leaf_node):
        cfg = self.config
        t0 = time.perf_counter()
        closed = forest.terminal[leaf_tree, leaf_node] == 1
        open_tree, open_node = leaf_tree[~closed], leaf_node[~closed]
        stats.seconds["other"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        forest.backup(leaf_tree[closed], leaf_node[closed], cfg.gamma)  # value again
        stats.seconds["backup"] += time.perf_counter() - t0
        open_tree, open_node = self._drop_full(forest, open_tree, open_node)
        if open_tree.size == 0:
            return
        paths = self._continuations(forest, stats, open_tree, open_node)

        t0 = time.perf_counter()
        new, ends, repeats, fruitless = self._merge(forest, open_tree, open_node, paths)
        for t, n in fruitless:  # widening found nothing new: cap it where it is
            forest.extra("child_cap")[t, n] = max(1, forest.n_children[t, n])
        stats.seconds["other"] += time.perf_counter() - t0
        if repeats:
            t0 = time.perf_counter()
            forest.backup(np.array([t for t, _ in repeats], np.int64),
                          np.array([n for _, n in repeats], np.int64), cfg.gamma)
            stats.seconds["backup"] += time.perf_counter() - t0
        if not new:
            return

        t0 = time.perf_counter()
        states = [(self.prompts[x.tree], self._new_steps(forest, new, i)) for i, x in enumerate(new)]
        answer = np.array([x.answer for x in new])
        terminal = np.array([x.terminal for x in new])
        calls = sum(self.scorer.calls.values())
        raw = self.scorer.raw(states, answer, terminal)
        per_state = (sum(self.scorer.calls.values()) - calls) / len(new)
        np.add.at(stats.critic_calls, [x.tree for x in new], int(round(per_state)))
        stats.seconds["score"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        index = self._attach(forest, new, raw, answer, terminal)
        stats.seconds["expand"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        end_tree = np.array([new[i].tree for i in ends], np.int64)
        end_node = np.array([index[i] for i in ends], np.int64)
        forest.backup(end_tree, end_node, cfg.gamma)
        stats.seconds["backup"] += time.perf_counter() - t0

    def _room(self) -> int:
        """Tokens a prefix may hold so that one more step still fits the policy's context."""
        limit = getattr(self.policy, "max_positions", None) or getattr(self.policy, "max_model_len", None)
        return int(limit) - self.config.max_step_tokens if limit else 1 << 62

    def _drop_full(self, forest, tree, node):
        """Nodes whose text leaves no room for another step in the policy's context: an
        unexpanded one ends there (terminal, value 0), an expanded one stops widening.
        Returns the (tree, node) that can still be continued."""
        room = self._room()
        keep = np.ones(tree.size, bool)
        for i, (t, n) in enumerate(zip(tree.tolist(), node.tolist())):
            if len(self.prompts[t]) + sum(len(s) for s in self._steps(forest, t, n)) > room:
                keep[i] = False
                if forest.n_children[t, n] == 0:
                    forest.terminal[t, n] = 1
                    forest.value[t, n] = 0.0
                else:
                    forest.extra("child_cap")[t, n] = forest.n_children[t, n]
        return tree[keep], node[keep]

    def _continuations(self, forest, stats, tree, node):
        """``branching`` sampled continuations of each open node, each of up to ``horizon``
        steps (stopping at a terminal step). Returns per open node a list of paths, each a
        list of (tokens, logprob, finished)."""
        cfg = self.config
        t0 = time.perf_counter()
        prefixes = [self._prefix(forest, int(t), int(n)) for t, n in zip(tree, node)]
        depth = forest.depth[tree, node]
        before = self.policy.counts.processed
        props = self.policy.propose(prefixes, cfg.branching, cfg.max_step_tokens)
        self._charge(stats, tree, [sum(p.n_tokens for p in per) for per in props], before)
        paths = [[[(list(map(int, p.tokens)), float(p.logprob), bool(p.finished))] for p in per]
                 for per in props]
        rows = [(i, j) for i in range(len(paths)) for j in range(cfg.branching)]
        for _ in range(cfg.horizon - 1):
            room = self._room()
            live = [(i, j) for i, j in rows
                    if not self._ends(paths[i][j][-1], int(depth[i]) + len(paths[i][j]))
                    and len(prefixes[i]) + sum(len(st[0]) for st in paths[i][j]) <= room]
            if not live:
                break
            pre = [prefixes[i] + [t for step in paths[i][j] for t in step[0]] for i, j in live]
            before = self.policy.counts.processed
            more = self.policy.propose(pre, 1, cfg.max_step_tokens)
            self._charge(stats, tree[[i for i, _ in live]], [m[0].n_tokens for m in more], before)
            for (i, j), m in zip(live, more):
                paths[i][j].append((list(map(int, m[0].tokens)), float(m[0].logprob),
                                    bool(m[0].finished)))
        stats.seconds["propose"] += time.perf_counter() - t0
        return paths

    def _ends(self, step, depth: int) -> bool:
        """Whether a step (tokens, logprob, finished) at ``depth`` ends the episode."""
        tokens, _, finished = step
        return (finished or depth >= self.config.max_depth or not self._delimited(tokens)
                or self.task.is_answer_step(self._text(tokens)))

    def _merge(self, forest, tree, node, paths):
        """Walk each continuation down the existing nodes and this round's new ones while
        its steps match; the rest becomes new nodes. Returns (new nodes in creation order,
        indices of the new nodes where continuations end, repeats: (tree, node) of existing
        terminal nodes a continuation repeated, fruitless: (tree, node) of widened nodes
        that got nothing new)."""
        new: list[_New] = []
        ends: list[int] = []
        repeats: list[tuple[int, int]] = []
        fruitless = []
        made: dict[tuple, int] = {}  # (tree, existing parent, new parent, key) -> new index
        for i, per in enumerate(paths):
            t, s = int(tree[i]), int(node[i])
            before = len(new)
            for path in per:
                parent, parent_new, depth = s, -1, int(forest.depth[t, s])
                last = -1
                for tokens, logprob, finished in path:
                    depth += 1
                    text = self._text(tokens)
                    key = self._key(text)
                    if parent_new < 0:
                        hit = self._existing_child(forest, t, parent, key)
                        if hit >= 0:
                            if forest.terminal[t, hit]:
                                repeats.append((t, hit))  # sampled again: one more visit
                                break
                            parent = hit
                            continue
                    slot = (t, parent, parent_new, key)
                    if slot in made:
                        parent_new = made[slot]
                        last = parent_new
                        if new[parent_new].terminal:
                            break
                        continue
                    is_answer = self.task.is_answer_step(text)
                    ends_here = self._ends((tokens, logprob, finished), depth)
                    new.append(_New(t, parent, parent_new, tokens, logprob, text, depth,
                                    is_answer, ends_here))
                    made[slot] = parent_new = last = len(new) - 1
                    if ends_here:
                        break
                if last >= 0 and last not in ends:
                    ends.append(last)
            if len(new) == before and forest.n_children[t, s] > 0:
                fruitless.append((t, s))
        return new, ends, repeats, fruitless

    def _existing_child(self, forest, tree, node, key) -> int:
        for kid in forest.children(tree, node):
            if self._key(self._text(forest.tokens.get(int(forest.payload[tree, kid])))) == key:
                return int(kid)
        return -1

    def _attach(self, forest, new, raw, answer, terminal) -> list[int]:
        """Create the new nodes level by level (children of existing nodes first, by expand
        or widen), writing scores, parts and priors. Returns each new node's index."""
        cfg = self.config
        payload = forest.tokens.add_many([x.tokens for x in new])
        index = [-1] * len(new)
        agg = np.full(len(new), np.nan)
        level = [i for i, x in enumerate(new) if x.parent_new < 0]
        while level:
            groups: dict[tuple[int, int], list[int]] = {}
            for i in level:
                x = new[i]
                parent = x.parent if x.parent_new < 0 else index[x.parent_new]
                groups.setdefault((x.tree, parent), []).append(i)
            rows = np.array([i for g in groups.values() for i in g], np.int64)
            parent_agg = np.array([forest.extra("prm_agg")[new[i].tree, p] if new[i].parent_new < 0
                                   else agg[new[i].parent_new]
                                   for (_, p), g in groups.items() for i in g])
            scored = self.scorer.compose_raw(raw, rows, answer[rows], terminal[rows], parent_agg,
                                             np.array([new[i].depth for i in rows]))
            agg[rows] = scored.prm_agg
            at = {int(r): k for k, r in enumerate(rows)}
            fresh = [(t, p) for (t, p) in groups if forest.n_children[t, p] == 0]
            grown = [(t, p) for (t, p) in groups if forest.n_children[t, p] > 0]
            # widen deepest first: a node moved by its parent's widening keeps its block
            grown.sort(key=lambda key: -forest.depth[key])
            for keys, attach in ((fresh, forest.expand), (grown, forest.widen)):
                if keys:
                    order = [i for key in keys for i in groups[key]]
                    offsets = np.zeros(len(keys) + 1, np.int64)
                    np.cumsum([len(groups[key]) for key in keys], out=offsets[1:])
                    zeros = np.zeros(len(order))
                    attach(np.array([t for t, _ in keys], np.int64),
                           np.array([p for _, p in keys], np.int64), offsets, zeros, zeros,
                           scored.score[[at[i] for i in order]], terminal[order].astype(np.int64),
                           np.array([payload[i] for i in order], np.int64))
            # new nodes are found by their payloads (widening moves blocks)
            for t in {new[i].tree for i in level}:
                mine = [i for i in level if new[i].tree == t]
                n = int(forest.n_nodes[t])
                found = np.flatnonzero(np.isin(forest.payload[t, :n], [payload[i] for i in mine])
                                       & (forest.depth[t, :n] >= 0))
                where = dict(zip(forest.payload[t, found].tolist(), found.tolist()))
                for i in mine:
                    index[i] = where[payload[i]]
            for (t, p), g in groups.items():
                p_now = forest.parent[t, index[g[0]]]
                nodes = np.array([index[i] for i in g], np.int64)
                for name, values in scored.parts.items():
                    forest.extra(name)[t, nodes] = values[[at[i] for i in g]]
                forest.extra("prm_agg")[t, nodes] = scored.prm_agg[[at[i] for i in g]]
                forest.extra("logprob")[t, nodes] = [new[i].logprob for i in g]
                kids = forest.children(t, int(p_now))
                forest.prior[t, kids] = K.priors_from_logprobs(
                    forest.extra("logprob")[t, kids], np.array([0, len(kids)], np.int64),
                    cfg.prior_temperature)
            placed = set(level)
            level = [i for i, x in enumerate(new) if x.parent_new in placed]
        return index

    # -- pieces ------------------------------------------------------------------------
    def _root_values(self, stats) -> np.ndarray:
        if not self.scorer.has("value"):
            return np.full(len(self.prompts), 0.5)
        t0 = time.perf_counter()
        values = self.scorer.run("value", [(p, []) for p in self.prompts])
        stats.critic_calls += 1
        stats.seconds["score"] += time.perf_counter() - t0
        return values

    @staticmethod
    def _key(text: str) -> str:
        return "".join(text.split())

    def _text(self, tokens) -> str:
        return self.tokenizer.decode([int(t) for t in tokens], skip_special_tokens=True)

    def _delimited(self, tokens) -> bool:
        """Whether a step ended at the delimiter (a step cut at max_step_tokens did not)."""
        return len(tokens) < self.config.max_step_tokens or \
            self.task.step_delimiter in self._text(tokens[-1:])

    def _steps(self, forest, tree, node) -> list[list[int]]:
        return [forest.tokens.get(int(forest.payload[tree, n])).tolist()
                for n in _path(forest, tree, node)[1:]]

    def _new_steps(self, forest, new, i) -> list[list[int]]:
        """Steps from the root to new node i: existing ancestors, then new ones."""
        tree, chain = new[i].tree, []
        while i >= 0:
            chain.append(new[i].tokens)
            parent, i = new[i].parent, new[i].parent_new
        return self._steps(forest, tree, parent) + chain[::-1]

    def _prefix(self, forest, tree, node) -> list[int]:
        out = list(self.prompts[tree])
        for step in self._steps(forest, tree, node):
            out.extend(step)
        return out

    def _node_text(self, forest, tree, node) -> str:
        return self._text(forest.tokens.get(int(forest.payload[tree, node])))

    def _is_answer(self, forest, tree, node) -> bool:
        if node <= 0 or forest.terminal[tree, node] == 0:
            return False
        return self.task.is_answer_step(self._text(forest.tokens.get(int(forest.payload[tree, node]))))

    @staticmethod
    def _most_visited_descent(forest, tree: int) -> int:
        node = 0
        while forest.n_children[tree, node] > 0:
            kids = forest.children(tree, node)
            node = int(kids[np.argmax(forest.visits[tree, kids])])
        return node

    def _charge(self, stats, trees, generated_per_request, processed_before) -> None:
        """Add a policy call's tokens to the problems it served."""
        gen = np.asarray(generated_per_request, np.float64)
        if gen.size == 0:
            return
        np.add.at(stats.generated, trees, gen.astype(np.int64))
        processed = self.policy.counts.processed - processed_before
        share = gen / gen.sum() if gen.sum() else np.full(gen.size, 1 / gen.size)
        np.add.at(stats.processed, trees, np.round(processed * share).astype(np.int64))

    def _still_active(self, forest, stats, rounds_left: int) -> np.ndarray:
        cfg = self.config
        alive = forest.terminal[:, 0] == 0  # a root with nothing to search
        if cfg.max_tokens is not None:
            alive &= stats.generated < cfg.max_tokens
        if cfg.early_stop:
            # settled: the most visited root step cannot be overtaken in the rounds left,
            # and the most visited descent already ends in an answer
            _, visits, _, _, _ = forest.root_stats(cfg.gamma)
            top2 = -np.sort(-np.maximum(visits, 0), axis=1)[:, :2]
            lead = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)
            settled = lead > rounds_left * cfg.leaves_per_tree * cfg.branching
            for b in np.flatnonzero(settled & alive):
                settled[b] = self._is_answer(forest, int(b), self._most_visited_descent(forest, int(b)))
            alive &= ~settled
        return alive


def _path(forest: Forest, tree: int, node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(int(node))
        node = int(forest.parent[tree, node])
    return out[::-1]

"""MCTS over reasoning steps: a policy proposes steps, critics score them, kernels do the rest.

One node is one step (one line). Every round, for all problems at once:

    select K leaves per tree (kernels, virtual loss)
    -> one batched ``policy.propose`` for every selected leaf and every node being widened
    -> merge identical sibling steps (state merge)
    -> fast rollouts from near-terminal children, when asked (policy, then the ORM)
    -> one batched call per critic (``scorer.score``), composed into one score per node
    -> expand the leaves, back up, widen the chosen nodes

eta-MCTS options (AlphaLLM): adaptive branching -- a node is widened with more samples
once its visits outgrow its children (``widen_after``), up to ``max_children``, until a
widening finds no new step; state merge; fast rollouts; early stop once the root's most
visited step cannot be overtaken in the rounds left. Budgets are counted per problem
(tokens generated and processed, critic calls) and wall time is split by stage.

The search sees problems WITHOUT labels (it strips them itself): only the policy and the
scorer's critics guide it. This module imports nothing from ``policies/`` or
``critics/``: the policy and the scorer arrive as objects (see ``treesearch.interfaces``
and ``critics.compose.StepScorer``).
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
# each step's log-probability (priors are renormalised from it after widening), and a
# flag set once widening a node found nothing new
EXTRA_FIELDS = ("c_value", "c_process", "c_outcome", "prm_agg", "logprob", "saturated")


@dataclass(frozen=True)
class SearchConfig:
    """Options of one step search (all counts per problem unless noted).

    simulations: rounds; each selects up to ``leaves_per_tree`` leaves per tree.
    branching: step samples per expansion and per widening (identical ones merge).
    max_children: cap on a node's distinct children after widening (= branching: no
        widening).
    widen_after: a node is widened when visits >= widen_after * its children.
    max_depth: steps per solution, the answer line included; a step at this depth ends
        the episode (wrong unless it is an answer).
    max_step_tokens: tokens per step; a step cut there is malformed (terminal, wrong).
    c_explore, rule, first_play_mode, first_play, gamma: selection (``MCTSParams``).
    prior_temperature: softmax temperature turning step log-probs into priors.
    rollouts: fast rollouts per new non-terminal child at depth >= rollout_min_depth,
        scored by the outcome critic (0 = off).
    max_tokens: generated-token budget per problem (None = none); a tree stops once spent.
    early_stop: stop a tree when its most visited root child leads by more visits than
        the rounds left could give the runner-up.
    """

    simulations: int = 32
    leaves_per_tree: int = 1
    branching: int = 4
    max_children: int = 8
    widen_after: float = 2.0
    max_depth: int = 6
    max_step_tokens: int = 32
    c_explore: float = 1.25
    rule: str = "puct"
    first_play_mode: str = "critic"
    first_play: float = 0.0
    gamma: float = 1.0
    prior_temperature: float = 1.0
    rollouts: int = 0
    rollout_min_depth: int = 1
    max_tokens: int | None = None
    early_stop: bool = True

    def __post_init__(self):
        positive = ("simulations", "leaves_per_tree", "branching", "max_depth", "max_step_tokens")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.max_children < self.branching:
            raise ValueError(f"SearchConfig.max_children ({self.max_children}) must be >= "
                             f"branching ({self.branching})")
        if not self.widen_after > 0:
            raise ValueError(f"SearchConfig.widen_after must be > 0, got {self.widen_after}")
        if not self.prior_temperature > 0:
            raise ValueError(f"SearchConfig.prior_temperature must be > 0, got {self.prior_temperature}")
        if self.rollouts < 0:
            raise ValueError(f"SearchConfig.rollouts must be >= 0, got {self.rollouts}")
        if self.max_tokens is not None and self.max_tokens < self.max_step_tokens:
            raise ValueError(f"SearchConfig.max_tokens ({self.max_tokens}) cannot pay for one "
                             f"expansion step of up to max_step_tokens ({self.max_step_tokens}) tokens")
        self.params  # validates the selection options

    @property
    def params(self) -> MCTSParams:
        return MCTSParams(rule=self.rule, c_explore=self.c_explore, first_play=self.first_play,
                          first_play_mode=self.first_play_mode, gamma=self.gamma,
                          leaves_per_tree=self.leaves_per_tree)


@dataclass
class SearchStats:
    """Budget accounting of one search, per problem ([B] arrays) and in total.

    generated: tokens sampled for the problem (expansions, widenings, rollouts);
    processed: tokens the policy ran through its model, shared out over problems in
    proportion to what each generated in the same call; critic_calls: states scored;
    rounds: rounds the tree took part in; seconds: wall time per stage (whole search).
    """

    generated: np.ndarray
    processed: np.ndarray
    critic_calls: np.ndarray
    rounds: np.ndarray
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
        out = []
        while node >= 0:
            out.append(int(node))
            node = int(self.forest.parent[tree, node])
        return out[::-1]

    def steps(self, tree: int, node: int) -> list[np.ndarray]:
        """Token ids of each step on the path to ``node`` (int32 arrays)."""
        return [self.forest.tokens.get(int(self.forest.payload[tree, n]))
                for n in self.path(tree, node)[1:]]


class StepSearch:
    """Batched MCTS over reasoning steps for a batch of problems.

    policy: ``propose(prefixes, n, max_step_tokens)`` and ``counts`` (Policy protocol).
    scorer: ``score(states, answer, terminal, parent_agg, depth, rollout_outcome)`` and
        ``has(kind)`` (``critics.compose.StepScorer``), with at least one critic.
    task: prompts, answer lines (``is_answer_step``) -- the search reads nothing else.
    tokenizer: the policy's tokenizer (prompt ids, step text).
    """

    def __init__(self, policy, scorer, task, tokenizer, config: SearchConfig = SearchConfig()):
        if not scorer:
            raise ValueError("StepSearch needs at least one critic to score steps "
                             "(value, process or outcome)")
        if config.rollouts and not scorer.has("outcome"):
            raise ValueError("SearchConfig.rollouts > 0 needs an outcome critic to score them")
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
        prompts = [[self.tokenizer.bos_token_id]
                   + list(self.tokenizer(self.task.prompt(p), add_special_tokens=False)["input_ids"])
                   for p in problems]
        stats = SearchStats(np.zeros(b, np.int64), np.zeros(b, np.int64), np.zeros(b, np.int64),
                            np.zeros(b, np.int64))
        root_values = self._root_values(prompts, stats)
        forest = Forest(b, capacity=max(16, 4 * cfg.branching), root_values=root_values,
                        extra_fields=EXTRA_FIELDS)
        forest.extra("prm_agg")[:, 0] = np.nan
        self._keys: list[dict[int, dict[str, int]]] = [dict() for _ in range(b)]
        active = np.ones(b, bool)
        params = cfg.params
        bar = tqdm(range(cfg.simulations), desc=desc, disable=not progress, leave=False)
        for r in bar:
            if not active.any():
                break
            t0 = time.perf_counter()
            leaf_tree, leaf_node, _ = forest.select(params)
            keep = active[leaf_tree]
            if not keep.all():
                forest.cancel(leaf_tree[~keep], leaf_node[~keep])
                leaf_tree, leaf_node = leaf_tree[keep], leaf_node[keep]
            stats.rounds += active
            widen_tree, widen_node = self._widen_candidates(forest, active)
            stats.seconds["select"] += time.perf_counter() - t0
            self._round(forest, prompts, stats, leaf_tree, leaf_node, widen_tree, widen_node)
            t0 = time.perf_counter()
            active &= self._still_active(forest, stats, cfg.simulations - r - 1)
            if progress:
                bar.set_postfix(active=int(active.sum()), tokens=int(stats.generated.sum()))
            stats.seconds["other"] += time.perf_counter() - t0
        bar.close()
        t0 = time.perf_counter()
        chosen = self.choose(forest)
        answers = []
        for tree, node in enumerate(chosen):
            steps = [forest.tokens.get(int(forest.payload[tree, n]))
                     for n in _path(forest, tree, int(node))[1:]]
            answers.append("".join(self._text(s) for s in steps))
        stats.seconds["other"] += time.perf_counter() - t0
        return SearchResult(forest, prompts, answers, chosen, stats)

    def choose(self, forest: Forest) -> np.ndarray:
        """The node each tree answers with: follow the most visited child from the root;
        if that ends short of an answer, the visited answer node of highest mean value.
        Returns int64 [B] (the root when the tree holds no answer at all)."""
        out = np.zeros(forest.n_trees, np.int64)
        for b in range(forest.n_trees):
            node = self._most_visited_descent(forest, b)
            if forest.terminal[b, node] and self._answer_node(forest, b, node):
                out[b] = node
                continue
            n = int(forest.n_nodes[b])
            best, best_q = 0, -np.inf
            for cand in range(1, n):
                v = forest.visits[b, cand]
                if forest.terminal[b, cand] and v > 0 and self._answer_node(forest, b, cand):
                    q = forest.value_sum[b, cand] / v
                    if q > best_q:
                        best, best_q = cand, q
            out[b] = best if best else node
        return out

    @staticmethod
    def _most_visited_descent(forest, tree: int) -> int:
        node = 0
        while forest.n_children[tree, node] > 0:
            kids = forest.children(tree, node)
            node = int(kids[np.argmax(forest.visits[tree, kids])])
        return node

    # -- one round ---------------------------------------------------------------------
    def _round(self, forest, prompts, stats, leaf_tree, leaf_node, widen_tree, widen_node):
        cfg = self.config
        t0 = time.perf_counter()
        open_leaf = forest.terminal[leaf_tree, leaf_node] == 0
        req_tree = np.concatenate([leaf_tree[open_leaf], widen_tree])
        req_node = np.concatenate([leaf_node[open_leaf], widen_node])
        prefixes = [self._prefix(forest, prompts, int(t), int(n)) for t, n in zip(req_tree, req_node)]
        stats.seconds["other"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        before = (self.policy.counts.processed, self.policy.counts.generated)
        proposals = self.policy.propose(prefixes, cfg.branching, cfg.max_step_tokens) if prefixes else []
        self._charge(stats, req_tree, [sum(p.n_tokens for p in props) for props in proposals], before)
        stats.seconds["propose"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        groups = [self._merge(forest, int(t), int(n), props)
                  for t, n, props in zip(req_tree, req_node, proposals)]
        child_parent = [(int(t), int(n)) for t, n, g in zip(req_tree, req_node, groups) for _ in g]
        children = [c for g in groups for c in g]
        states, answer, terminal, parent_agg, depth = [], [], [], [], []
        for (t, n), (tokens, _, text, finished) in zip(child_parent, children):
            d = int(forest.depth[t, n]) + 1
            is_answer = self.task.is_answer_step(text)
            ends = finished or is_answer or d >= cfg.max_depth or not self._delimited(tokens)
            states.append((prompts[t], self._steps(forest, t, n) + [tokens]))
            answer.append(is_answer)
            terminal.append(ends)
            parent_agg.append(forest.extra("prm_agg")[t, n])
            depth.append(d)
        answer, terminal = np.array(answer, bool), np.array(terminal, bool)
        stats.seconds["other"] += time.perf_counter() - t0

        rollout = self._rollouts(states, terminal, np.array(depth), child_parent, stats)
        t0 = time.perf_counter()
        calls_before = sum(self.scorer.calls.values())
        scored = self.scorer.score(states, answer, terminal, np.array(parent_agg, np.float64),
                                   np.array(depth, np.int64), rollout)
        if children:
            per_child = (sum(self.scorer.calls.values()) - calls_before) / len(children)
            np.add.at(stats.critic_calls, [t for t, _ in child_parent], per_child)
        stats.seconds["score"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        sizes = [len(g) for g in groups]
        offsets = np.zeros(len(groups) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        logprob = np.array([c[1] for c in children], np.float64)
        payload = np.array(forest.tokens.add_many([c[0] for c in children]), np.int64) \
            if children else np.zeros(0, np.int64)
        n_open = int(open_leaf.sum())
        split = offsets[n_open]
        # expansion of the open leaves (terminal leaves: zero children, value backed up again)
        lo = np.zeros(len(leaf_tree) + 1, np.int64)
        lo[1:][open_leaf] = np.diff(offsets[: n_open + 1])
        lo = np.cumsum(lo)
        prior = K.priors_from_logprobs(logprob[:split], lo, cfg.prior_temperature) if split else np.zeros(0)
        zeros = np.zeros(split)
        before_nodes = forest.n_nodes.copy()
        forest.expand(leaf_tree, leaf_node, lo, prior, zeros, scored.score[:split],
                      terminal[:split].astype(np.int64), payload[:split])
        self._write_extras(forest, leaf_tree, leaf_node, lo, before_nodes, scored, logprob, 0, split)
        stats.seconds["expand"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        forest.backup(leaf_tree, leaf_node, cfg.gamma)
        stats.seconds["backup"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        if len(widen_tree):
            wo = offsets[n_open:] - split
            for i in np.flatnonzero(np.diff(wo) == 0):  # nothing new: stop widening it
                forest.extra("saturated")[widen_tree[i], widen_node[i]] = 1.0
            old_n = forest.n_children[widen_tree, widen_node].copy()
            forest.widen(widen_tree, widen_node, wo, np.zeros(len(logprob) - split),
                         np.zeros(len(logprob) - split), scored.score[split:],
                         terminal[split:].astype(np.int64), payload[split:])
            for i, (t, n) in enumerate(zip(widen_tree, widen_node)):
                kids = forest.children(int(t), int(n))
                new = kids[old_n[i]:]
                rows = np.arange(split + wo[i], split + wo[i + 1])
                self._set_parts(forest, int(t), new, scored, rows, logprob)
                lp = forest.extra("logprob")[t, kids]
                forest.prior[t, kids] = K.priors_from_logprobs(
                    lp, np.array([0, len(kids)], np.int64), cfg.prior_temperature)
        stats.seconds["expand"] += time.perf_counter() - t0

    # -- pieces ------------------------------------------------------------------------
    def _root_values(self, prompts, stats) -> np.ndarray:
        if not self.scorer.has("value"):
            return np.full(len(prompts), 0.5)
        t0 = time.perf_counter()
        values = self.scorer.run("value", [(p, []) for p in prompts])
        stats.critic_calls += 1
        stats.seconds["score"] += time.perf_counter() - t0
        return values

    def _widen_candidates(self, forest, active):
        """Expanded, non-terminal, unsaturated nodes whose visits outgrew their children,
        at most one per tree (the most visited). Returns (tree, node) int64 [W]."""
        cfg = self.config
        if cfg.max_children <= cfg.branching:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cap = forest.capacity
        used = np.arange(cap)[None, :] < forest.n_nodes[:, None]
        n_children = forest.n_children
        ok = (used & active[:, None] & (n_children > 0) & (forest.terminal == 0)
              & (n_children < cfg.max_children) & (forest.extra("saturated") == 0)
              & (forest.visits >= cfg.widen_after * n_children))
        trees = np.flatnonzero(ok.any(axis=1))
        nodes = np.argmax(np.where(ok[trees], forest.visits[trees], -1), axis=1)
        return trees.astype(np.int64), nodes.astype(np.int64)

    def _merge(self, forest, tree, node, proposals):
        """Distinct new steps among ``proposals`` (and, for a widened node, not already
        among its children): list of (tokens, logprob, text, finished)."""
        seen = self._keys[tree].setdefault(node, {})
        if not seen and forest.n_children[tree, node] > 0:  # children moved by widen
            for kid in forest.children(tree, node):
                seen[self._key(self._text(forest.tokens.get(int(forest.payload[tree, kid]))))] = 1
        out = []
        for p in proposals:
            text = self._text(p.tokens)
            key = self._key(text)
            if key in seen:
                continue
            seen[key] = 1
            out.append(([int(t) for t in p.tokens], float(p.logprob), text, bool(p.finished)))
        return out

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

    def _prefix(self, forest, prompts, tree, node) -> list[int]:
        out = list(prompts[tree])
        for step in self._steps(forest, tree, node):
            out.extend(step)
        return out

    def _answer_node(self, forest, tree, node) -> bool:
        tokens = forest.tokens.get(int(forest.payload[tree, node])) if node else []
        return node > 0 and self.task.is_answer_step(self._text(tokens))

    def _charge(self, stats, trees, generated_per_request, before) -> None:
        """Add a policy call's tokens to the problems it served."""
        gen = np.asarray(generated_per_request, np.float64)
        if gen.size == 0:
            return
        np.add.at(stats.generated, trees, gen.astype(np.int64))
        processed = self.policy.counts.processed - before[0]
        share = gen / gen.sum() if gen.sum() else np.full(gen.size, 1 / gen.size)
        np.add.at(stats.processed, trees, np.round(processed * share).astype(np.int64))

    def _write_extras(self, forest, leaf_tree, leaf_node, lo, before_nodes, scored, logprob,
                      row0, row1):
        for i in range(len(leaf_tree)):
            count = lo[i + 1] - lo[i]
            if count == 0:
                continue
            t = int(leaf_tree[i])
            kids = forest.children(t, int(leaf_node[i]))
            self._set_parts(forest, t, kids, scored, np.arange(row0 + lo[i], row0 + lo[i + 1]),
                            logprob)

    @staticmethod
    def _set_parts(forest, tree, nodes, scored, rows, logprob) -> None:
        for name, values in scored.parts.items():
            forest.extra(name)[tree, nodes] = values[rows]
        forest.extra("prm_agg")[tree, nodes] = scored.prm_agg[rows]
        forest.extra("logprob")[tree, nodes] = logprob[rows]

    def _rollouts(self, states, terminal, depth, child_parent, stats) -> np.ndarray | None:
        """Mean ORM score of ``rollouts`` policy completions from each eligible child
        (float64 [N], NaN where none), or None when rollouts are off."""
        cfg = self.config
        if not cfg.rollouts or not states:
            return None
        t0 = time.perf_counter()
        eligible = np.flatnonzero(~terminal & (depth >= cfg.rollout_min_depth))
        out = np.full(len(states), np.nan)
        if eligible.size == 0:
            return out
        rows = [(int(i), list(states[i][1])) for i in eligible for _ in range(cfg.rollouts)]
        finished = [False] * len(rows)
        answered = [False] * len(rows)
        for _ in range(cfg.max_depth):
            live = [k for k in range(len(rows)) if not finished[k]
                    and len(rows[k][1]) < cfg.max_depth]
            if not live:
                break
            prefixes = []
            for k in live:
                i, steps = rows[k]
                prefixes.append(list(states[i][0]) + [t for s in steps for t in s])
            before = (self.policy.counts.processed, self.policy.counts.generated)
            props = self.policy.propose(prefixes, 1, cfg.max_step_tokens)
            trees = np.array([child_parent[rows[k][0]][0] for k in live], np.int64)
            self._charge(stats, trees, [p[0].n_tokens for p in props], before)
            for k, per in zip(live, props):
                step = [int(t) for t in per[0].tokens]
                rows[k][1].append(step)
                answered[k] = self.task.is_answer_step(self._text(step))
                finished[k] = per[0].finished or answered[k] or not self._delimited(step)
        stats.seconds["propose"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        done = [k for k in range(len(rows)) if answered[k]]
        scores = np.zeros(len(rows))
        if done:
            scores[done] = self.scorer.run("outcome", [(states[rows[k][0]][0], rows[k][1])
                                                       for k in done])
            np.add.at(stats.critic_calls,
                      [child_parent[rows[k][0]][0] for k in done], 1)
        out[eligible] = scores.reshape(len(eligible), cfg.rollouts).mean(axis=1)
        stats.seconds["score"] += time.perf_counter() - t0
        return out

    def _still_active(self, forest, stats, rounds_left: int) -> np.ndarray:
        cfg = self.config
        alive = np.ones(forest.n_trees, bool)
        if cfg.max_tokens is not None:
            alive &= stats.generated < cfg.max_tokens
        # a tree whose root is solved out (terminal) has nothing left to search
        alive &= forest.terminal[:, 0] == 0
        if cfg.early_stop:
            # settled: the most visited root step cannot be overtaken in the rounds left,
            # and the most visited descent already ends in an answer
            _, visits, _, _, _ = forest.root_stats(cfg.gamma)
            top2 = -np.sort(-np.maximum(visits, 0), axis=1)[:, :2]
            lead = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)
            settled = lead > rounds_left * cfg.leaves_per_tree
            for b in np.flatnonzero(settled & alive):
                node = self._most_visited_descent(forest, int(b))
                settled[b] = forest.terminal[b, node] == 1 and self._answer_node(forest, int(b), node)
            alive &= ~settled
        return alive


def _path(forest: Forest, tree: int, node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(node)
        node = int(forest.parent[tree, node])
    return out[::-1]

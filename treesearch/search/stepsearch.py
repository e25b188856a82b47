"""MCTS over reasoning steps: a policy proposes steps, critics score them, kernels do the rest.

One node is one step (one line). Every round, for all problems at once:

    select leaves_per_tree nodes per tree (kernels: PUCT/UCT, virtual loss, progressive widening)
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
       of every continuation; a selected terminal node backs up its score again.

Dead-end pruning (``prune_below``): a new node the critics score at or below the threshold
is closed where it is, so no tokens go below it; with ``backtrack`` selecting it again has
its parent sample a sibling in its place.

Adaptive branching (eta-MCTS): a node takes a new child once
``floor(widen_c * N ** widen_alpha)`` exceeds its children, up to ``max_children``;
a node whose widening found nothing new is capped where it is (re-opened each time its
visits double with ``reopen_fruitless``). Early stop: a tree
stops once its most visited root step cannot be overtaken in the rounds left and the
most visited descent ends in an answer, or when its token budget is spent, or (with a
budget) after ``IDLE_ROUNDS`` rounds in a row that generated nothing for it (with
``idle_rollouts`` such a tree samples fresh continuations from its root instead).

The search sees problems WITHOUT labels (it strips them itself): only the policy and the
scorer's critics guide it. This module imports nothing from ``policies/`` or
``critics/``: the policy and the scorer arrive as objects (``treesearch.engine.interfaces``,
``critics.compose.StepScorer``).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from treesearch.engine.forest import Forest
from treesearch.search.answer import choose_answers, most_visited_descent
from treesearch.search.attach import attach_nodes
from treesearch.search.budget import charge_critics
from treesearch.search.config import SearchConfig
from treesearch.search.continuations import sample_continuations
from treesearch.search.merge import merge_continuations
from treesearch.search.result import SearchResult, SearchStats, node_path
from treesearch.tasks import prompt_ids

# extra float fields of a search forest: the critics' parts, the running PRM aggregate,
# each step's log-probability (priors are renormalised from it after widening), and each
# node's cap on children (set once widening it found nothing new)
# a budgeted tree stops after this many rounds in a row that generate nothing for it
IDLE_ROUNDS = 8
EXTRA_FIELDS = ("c_value", "c_process", "c_outcome", "prm_agg", "logprob", "child_cap",
                "capped_at")


class StepSearch:
    """Batched MCTS over reasoning steps for a batch of problems.

    policy: ``propose(prefixes, n, max_step_tokens)`` and ``counts`` (Policy protocol).
    scorer: ``raw``/``compose_raw``/``run``/``has`` (``critics.compose.StepScorer``), with
        at least one critic.
    task: prompts, answer lines (``is_answer_step``) -- the search reads nothing else.
    tokenizer: the policy's tokenizer (prompt ids, step text).

    The helper modules (``continuations``, ``merge``, ``attach``, ``answer``) take the search
    they serve and read only its ``config``, ``task``, ``policy`` and ``scorer`` and the
    methods ``step_text``, ``merge_key``, ``node_text``, ``is_answer``, ``ends_episode``,
    ``prefix`` and ``room``.
    """

    def __init__(self, policy, scorer, task, tokenizer, config: SearchConfig | None = None):
        if not scorer:
            raise ValueError("StepSearch needs at least one critic to score steps "
                             "(value, process or outcome)")
        self.policy, self.scorer, self.task, self.tokenizer = policy, scorer, task, tokenizer
        self.config = config if config is not None else SearchConfig()

    # -- public ------------------------------------------------------------------------
    def run(self, problems: Sequence, *, progress: bool = False,
            desc: str = "mcts") -> SearchResult:
        """Search every problem; returns the trees, chosen answers and the accounting."""
        if not problems:
            raise ValueError("StepSearch.run: empty problem list")
        cfg = self.config
        problems = [p.without_label() for p in problems]  # labels never reach the search
        b = len(problems)
        self.prompts = [prompt_ids(self.tokenizer, self.task, p) for p in problems]
        stats = SearchStats(*(np.zeros(b, np.int64) for _ in range(6)))
        forest = Forest(b, capacity=64, root_scores=self._root_scores(stats),
                        extra_fields=EXTRA_FIELDS)
        forest.extra("prm_agg")[:, 0] = np.nan
        active = np.ones(b, bool)
        idle = np.zeros(b, np.int64)  # consecutive rounds in which a tree generated nothing
        params = cfg.params
        bar = tqdm(range(cfg.simulations), desc=desc, disable=not progress, leave=False)
        for r in bar:
            t0 = time.perf_counter()
            if cfg.reopen_fruitless:
                self._reopen(forest)
            leaf_tree, leaf_node, _ = forest.select(params)
            forest.cancel(leaf_tree, leaf_node)  # new nodes carry the backups, not the leaves
            keep = active[leaf_tree]
            leaf_tree, leaf_node = leaf_tree[keep], leaf_node[keep]
            if cfg.idle_rollouts and cfg.max_tokens is not None:
                leaf_tree, leaf_node = self._restart_idle(leaf_tree, leaf_node, active & (idle > 0))
            stats.rounds += active
            np.add.at(stats.selected, leaf_tree, 1)
            stats.seconds["select"] += time.perf_counter() - t0
            spent = stats.generated.copy()
            self._round(forest, stats, leaf_tree, leaf_node)
            t0 = time.perf_counter()
            idle = np.where(stats.generated == spent, idle + 1, 0)
            active &= self._still_active(forest, stats, cfg.simulations - r - 1)
            if cfg.max_tokens is not None:
                # a budgeted tree that keeps landing on finished solutions has nothing left
                # to open that its selection would reach: more rounds only re-count them
                active &= idle < IDLE_ROUNDS
            if progress:
                bar.set_postfix(active=int(active.sum()), tokens=int(stats.generated.sum()))
            stats.seconds["other"] += time.perf_counter() - t0
            if not active.any():
                break
        bar.close()
        t0 = time.perf_counter()
        chosen = self.choose(forest)
        answers = ["".join(self.step_text(s) for s in self._steps(forest, t, int(n)))
                   for t, n in enumerate(chosen)]
        stats.seconds["other"] += time.perf_counter() - t0
        return SearchResult(forest, self.prompts, answers, chosen, stats)

    def choose(self, forest: Forest) -> np.ndarray:
        """The node each tree answers with (``treesearch.search.answer``), int64 [B]."""
        return choose_answers(self, forest)

    # -- what the helpers read (merge, attach, answer): config, task, scorer and these --
    def step_text(self, tokens) -> str:
        """A step's text: its token ids decoded, special tokens dropped."""
        return self.tokenizer.decode([int(t) for t in tokens], skip_special_tokens=True)

    @staticmethod
    def merge_key(text: str) -> str:
        """The state-merge key of a step's text: steps equal up to whitespace are one node."""
        return "".join(text.split())

    def node_text(self, forest: Forest, tree: int, node: int) -> str:
        """The text of the step that leads into ``node`` of ``tree``."""
        return self.step_text(forest.tokens.get(int(forest.payload[tree, node])))

    def is_answer(self, forest: Forest, tree: int, node: int) -> bool:
        """Whether ``node`` is a terminal non-root node whose step is an answer line."""
        if node <= 0 or forest.terminal[tree, node] == 0:
            return False
        return self.task.is_answer_step(self.node_text(forest, tree, node))

    def ends_episode(self, step, depth: int) -> bool:
        """Whether a sampled step (tokens, logprob, finished) at ``depth`` ends the episode:
        the policy finished, the depth limit is reached, the step was cut before its
        delimiter, or it is an answer line."""
        tokens, _, finished = step
        return (finished or depth >= self.config.max_depth or not self._delimited(tokens)
                or self.task.is_answer_step(self.step_text(tokens)))

    # -- one round ---------------------------------------------------------------------
    def _round(self, forest, stats, leaf_tree, leaf_node):
        cfg = self.config
        t0 = time.perf_counter()
        closed = forest.terminal[leaf_tree, leaf_node] == 1
        open_tree, open_node = leaf_tree[~closed], leaf_node[~closed]
        stats.seconds["other"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        forest.backup(leaf_tree[closed], leaf_node[closed], cfg.gamma)  # score again
        stats.seconds["backup"] += time.perf_counter() - t0
        if cfg.backtrack:
            open_tree, open_node = self._backtrack(forest, leaf_tree[closed], leaf_node[closed],
                                                   open_tree, open_node)
        open_tree, open_node = self._drop_full(forest, open_tree, open_node)
        if open_tree.size == 0:
            return
        paths = sample_continuations(self, forest, stats, open_tree, open_node)

        t0 = time.perf_counter()
        new, ends, repeats, fruitless = merge_continuations(self, forest, open_tree, open_node,
                                                            paths)
        for t, n in fruitless:  # widening found nothing new: cap it where it is
            forest.extra("child_cap")[t, n] = max(1, forest.n_children[t, n])
            forest.extra("capped_at")[t, n] = max(1, forest.visits[t, n])
        stats.seconds["other"] += time.perf_counter() - t0
        if repeats:
            t0 = time.perf_counter()
            forest.backup(np.array([t for t, _ in repeats], np.int64),
                          np.array([n for _, n in repeats], np.int64), cfg.gamma)
            stats.seconds["backup"] += time.perf_counter() - t0
        if not new:
            return

        t0 = time.perf_counter()
        states = [(self.prompts[x.tree], self._new_steps(forest, new, i))
                  for i, x in enumerate(new)]
        answer = np.array([x.answer for x in new])
        terminal = np.array([x.terminal for x in new])
        raw = self.scorer.raw(states, answer, terminal)
        charge_critics(stats.critic_calls, stats.critic_tokens, self.scorer, [x.tree for x in new])
        stats.seconds["score"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        index = attach_nodes(self, forest, new, raw, answer, terminal)
        if cfg.prune_below is not None:
            self._prune(forest, np.array([x.tree for x in new], np.int64),
                        np.array(index, np.int64))
        stats.seconds["expand"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        end_tree = np.array([new[i].tree for i in ends], np.int64)
        end_node = np.array([index[i] for i in ends], np.int64)
        forest.backup(end_tree, end_node, cfg.gamma)
        stats.seconds["backup"] += time.perf_counter() - t0

    def room(self) -> int:
        """Tokens a prefix may hold so that one more step still fits the policy's context."""
        limit = (getattr(self.policy, "max_positions", None)
                 or getattr(self.policy, "max_model_len", None))
        return int(limit) - self.config.max_step_tokens if limit else 1 << 62

    def _prune(self, forest, tree, node) -> None:
        """``prune_below``: close every given node (int64 [N] each) that does not end the
        episode and whose composed score is at most the threshold: a leaf becomes terminal
        (its score kept), a node with children is capped at the children it has."""
        dead = ((forest.terminal[tree, node] == 0)
                & (forest.score[tree, node] <= self.config.prune_below))
        tree, node = tree[dead], node[dead]
        leaf = forest.n_children[tree, node] == 0
        forest.terminal[tree[leaf], node[leaf]] = 1
        inner_tree, inner_node = tree[~leaf], node[~leaf]
        forest.extra("child_cap")[inner_tree, inner_node] = forest.n_children[inner_tree,
                                                                              inner_node]
        forest.extra("capped_at")[inner_tree, inner_node] = 0.0  # never re-opened

    def _backtrack(self, forest, closed_tree, closed_node, open_tree, open_node):
        """``backtrack``: a selected dead end (terminal, not an answer, scored at most
        ``prune_below``) has its parent sample a new sibling in its place, as a rejection
        sampler resamples a rejected step, while the parent has room for one more child.
        Returns the open (tree, node) with those parents added, each once."""
        params, cap = self.config.params, forest.extra("child_cap")
        seen = set(zip(open_tree.tolist(), open_node.tolist()))
        add_tree, add_node = [], []
        for t, n in zip(closed_tree.tolist(), closed_node.tolist()):
            parent = int(forest.parent[t, n])
            if (n <= 0 or forest.score[t, n] > self.config.prune_below
                    or self.is_answer(forest, t, n) or (t, parent) in seen
                    or forest.n_children[t, parent] >= (cap[t, parent] or params.max_children)):
                continue
            seen.add((t, parent))
            add_tree.append(t)
            add_node.append(parent)
        return (np.concatenate([open_tree, np.array(add_tree, np.int64)]),
                np.concatenate([open_node, np.array(add_node, np.int64)]))

    @staticmethod
    def _reopen(forest) -> None:
        """Lift the widening cap of every fruitless node whose visits have doubled since
        it was capped (``reopen_fruitless``)."""
        cap, at = forest.extra("child_cap"), forest.extra("capped_at")
        due = (cap > 0) & (at > 0) & (forest.visits >= 2 * at)
        cap[due] = 0.0
        at[due] = 0.0

    @staticmethod
    def _restart_idle(leaf_tree, leaf_node, idle):
        """``idle_rollouts``: the selected leaves with every leaf of an idle tree (bool [B])
        replaced by that tree's root, once. Returns (leaf_tree, leaf_node), int64."""
        keep = ~idle[leaf_tree]
        roots = np.flatnonzero(idle).astype(np.int64)
        return (np.concatenate([leaf_tree[keep], roots]),
                np.concatenate([leaf_node[keep], np.zeros(roots.size, np.int64)]))

    def _drop_full(self, forest, tree, node):
        """Nodes whose text leaves no room for another step in the policy's context: an
        unexpanded one ends there (terminal, score 0), an expanded one stops widening.
        Returns the (tree, node) that can still be continued."""
        room = self.room()
        keep = np.ones(tree.size, bool)
        for i, (t, n) in enumerate(zip(tree.tolist(), node.tolist())):
            if len(self.prompts[t]) + sum(len(s) for s in self._steps(forest, t, n)) > room:
                keep[i] = False
                if forest.n_children[t, n] == 0:
                    forest.terminal[t, n] = 1
                    forest.score[t, n] = 0.0
                else:
                    forest.extra("child_cap")[t, n] = forest.n_children[t, n]
        return tree[keep], node[keep]

    # -- pieces ------------------------------------------------------------------------
    def _root_scores(self, stats) -> np.ndarray:
        if not self.scorer.has("value"):
            return np.full(len(self.prompts), 0.5)
        t0 = time.perf_counter()
        values = self.scorer.run("value", [(p, []) for p in self.prompts])
        charge_critics(stats.critic_calls, stats.critic_tokens, self.scorer,
                       np.arange(len(self.prompts)))
        stats.seconds["score"] += time.perf_counter() - t0
        return values

    def _delimited(self, tokens) -> bool:
        """Whether a step ended at the delimiter (a step cut at max_step_tokens did not); a
        delimiter of k characters may be spelt by the last k tokens ("\\n" + "\\n")."""
        delimiter = self.task.step_delimiter
        return (len(tokens) < self.config.max_step_tokens
                or delimiter in self.step_text(tokens[-len(delimiter):]))

    def _steps(self, forest, tree, node) -> list[list[int]]:
        return [forest.tokens.get(int(forest.payload[tree, n])).tolist()
                for n in node_path(forest, tree, node)[1:]]

    def _new_steps(self, forest, new, i) -> list[list[int]]:
        """Steps from the root to new node i: existing ancestors, then new ones."""
        tree, chain = new[i].tree, []
        while i >= 0:
            chain.append(new[i].tokens)
            parent, i = new[i].parent, new[i].parent_new
        return self._steps(forest, tree, parent) + chain[::-1]

    def prefix(self, forest, tree, node) -> list[int]:
        """Token ids of the tree's prompt followed by every step from the root to ``node``."""
        out = list(self.prompts[tree])
        for step in self._steps(forest, tree, node):
            out.extend(step)
        return out

    def _still_active(self, forest, stats, rounds_left: int) -> np.ndarray:
        cfg = self.config
        alive = forest.terminal[:, 0] == 0  # a root with nothing to search
        if cfg.max_tokens is not None:
            alive &= stats.generated < cfg.max_tokens
        if cfg.early_stop:
            # settled: the most visited root step cannot be overtaken in the rounds left,
            # and the most visited descent already ends in an answer scored at least
            # early_stop_score
            _, visits, _, _, _ = forest.root_stats(cfg.gamma)
            top2 = -np.sort(-np.maximum(visits, 0), axis=1)[:, :2]
            lead = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)
            settled = lead > rounds_left * cfg.leaves_per_tree * cfg.branching
            for b in np.flatnonzero(settled & alive):
                end = most_visited_descent(forest, int(b))
                settled[b] = (self.is_answer(forest, int(b), end)
                              and forest.score[b, end] >= cfg.early_stop_score)
            alive &= ~settled
        return alive


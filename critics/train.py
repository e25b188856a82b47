"""Training targets for critics, taken from search trees and samples, and a fit + report.

AlphaLLM trains its value, process and outcome critics on what the search itself
produced; Math-Shepherd labels each step by how often completions from it end correct.
Every function here returns a ``TreeTargets``: states (in the POLICY's token ids, see
``critics.base``), one target in [0, 1] per state, and where each state came from (tree =
problem index, node = node index in that tree, -1 for sampled solutions).

    value_targets(result)           V(s): mean backed-up value of every visited node
    outcome_targets(result, ...)    ORM: verifier label of every answer node of the trees
    outcome_targets_from_samples    ORM: verifier labels of freshly sampled solutions
    process_targets(result, ...)    PRM: share of policy completions from each node that
                                    end in a verified-correct answer (Math-Shepherd)
    fit_and_report(critic, targets) fit on some problems, measure on the others

Ground truth enters only through a verifier (``critics.verifier.RuleVerifier``), which
labels finished solutions of LABELLED TRAINING problems and raises ``CriticError`` on
anything else. Every function asks such a verifier about each tree's (or problem's)
prompt before doing anything, and functions given the problems check them too, so no
target is ever made for a held-out problem, even one whose states would all be wrong.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from critics.base import CriticError, State, check_kind
from critics.calibration import calibration_report, reliability_diagram
from treesearch.tasks import prompt_ids
from treesearch.utils.atomic import write_text

VALUE_SOURCES = ("q", "outcome")


@dataclass
class TreeTargets:
    """N training examples for one critic kind.

    kind: "value", "process" or "outcome" (the critic they train).
    states: N states ``(prompt ids, step id spans)`` in the policy's token ids.
    targets: float64 [N] in [0, 1].
    tree: int64 [N], the problem (tree) index each state belongs to; splits are by tree.
    node: int64 [N], the node index in that tree, -1 for a sampled solution.
    generated: tokens the policy generated to make these targets (rollouts, samples).
    extra: name -> array [N] of further per-example facts (e.g. process targets'
        ``soft``, ``hard`` and ``rollouts``).
    """

    kind: str
    states: list
    targets: np.ndarray
    tree: np.ndarray
    node: np.ndarray
    generated: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        check_kind(self.kind, "TreeTargets")
        n = len(self.states)
        self.targets = np.asarray(self.targets, np.float64).reshape(-1)
        self.tree = np.asarray(self.tree, np.int64).reshape(-1)
        self.node = np.asarray(self.node, np.int64).reshape(-1)
        for name, arr in [("targets", self.targets), ("tree", self.tree), ("node", self.node),
                          *self.extra.items()]:
            if len(arr) != n:
                raise ValueError(f"TreeTargets: {name} has {len(arr)} entries for {n} states")
        if not np.all((self.targets >= 0) & (self.targets <= 1)):
            raise ValueError("TreeTargets: targets must lie in [0, 1]")

    def __len__(self) -> int:
        return len(self.states)

    def subset(self, rows) -> "TreeTargets":
        """The examples at ``rows`` (int indices or a bool mask [N])."""
        rows = np.arange(len(self))[np.asarray(rows)] if len(self) else np.zeros(0, np.int64)
        return TreeTargets(self.kind, [self.states[i] for i in rows], self.targets[rows],
                           self.tree[rows], self.node[rows], self.generated,
                           {k: np.asarray(v)[rows] for k, v in self.extra.items()})

    @property
    def binary(self) -> bool:
        """Whether every target is exactly 0 or 1."""
        return bool(np.isin(self.targets, (0.0, 1.0)).all())


# -- reading the trees ----------------------------------------------------------------

def live_nodes(result, *, min_visits: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every live (depth >= 0: not detached by widening), non-root node with at least
    ``min_visits`` visits: (tree int64 [M], node int64 [M]), tree-major order."""
    forest = result.forest
    used = np.arange(forest.capacity)[None, :] < forest.n_nodes[:, None]
    ok = used & (forest.depth >= 0) & (forest.visits >= min_visits)
    ok[:, 0] = False
    tree, node = np.nonzero(ok)
    return tree.astype(np.int64), node.astype(np.int64)


def node_state(result, tree: int, node: int) -> State:
    """The state of a node: (prompt ids of its problem, token ids of the steps on its path)."""
    return (list(result.prompts[tree]), [s.tolist() for s in result.steps(int(tree), int(node))])


def _last_step_text(tokenizer, state: State) -> str:
    steps = state[1]
    return tokenizer.decode(list(steps[-1]), skip_special_tokens=True) if steps else ""


def _check_training(problems: Sequence, who: str) -> None:
    """CriticError unless every problem is a labelled training problem."""
    for p in problems:
        if getattr(p, "held_out", False) or p.label is None:
            why = "is held out" if getattr(p, "held_out", False) else "has no label"
            raise CriticError(f"{who}: problem {p.id!r} {why}; training targets are made "
                              "from labelled training problems only")


def _check_prompts(result, problems: Sequence, task, tokenizer, who: str) -> None:
    """ValueError unless ``problems[b]`` is the problem of tree b."""
    if len(problems) != len(result.prompts):
        raise ValueError(f"{who}: {len(problems)} problems for {len(result.prompts)} trees")
    for b, p in enumerate(problems):
        if list(result.prompts[b]) != prompt_ids(tokenizer, task, p):
            raise ValueError(f"{who}: tree {b} was not searched on problem {p.id!r} "
                             "(pass the problems in the order given to the search)")


def _check_verifier(verifier, prompts) -> None:
    """Ask a verifier that knows its problems (``problem_of``, as RuleVerifier) about every
    prompt up front, so a held-out or unknown problem raises CriticError even when none of
    its states would reach the verifier."""
    problem_of = getattr(verifier, "problem_of", None)
    if problem_of is not None:
        for prompt in prompts:
            problem_of((list(prompt), []))


def _check_labelled_trees(result, problems, task, tokenizer, verifier, who: str) -> None:
    """Labelled training problems, one per tree in the search's order, and a verifier
    that knows every one of them (CriticError / ValueError naming ``who`` otherwise)."""
    _check_training(problems, who)
    _check_prompts(result, problems, task, tokenizer, who)
    _check_verifier(verifier, result.prompts)


def _verify(verifier, states: list) -> np.ndarray:
    """Verifier labels float64 [len(states)] in {0, 1} (CriticError on a bad label)."""
    if not states:
        return np.zeros(0)
    labels = np.asarray(verifier.score(states), np.float64)
    if labels.shape != (len(states),) or not np.isin(labels, (0.0, 1.0)).all():
        raise CriticError(f"verifier {getattr(verifier, 'name', verifier)!r} must label "
                          "each state 0 or 1")
    return labels


# -- value targets ----------------------------------------------------------------------

def value_targets(result, *, min_visits: int = 1, source: str = "q", verifier=None,
                  task=None, tokenizer=None) -> TreeTargets:
    """V(s) targets: every live, visited (>= min_visits), non-root node of the search.

    target = value_sum / visits, the mean of the values backed up through the node. With
    node scores in [0, 1], zero edge rewards and gamma = 1 (what ``StepSearch`` does) this
    is the node's Q and lies in [0, 1]; it is clipped to [0, 1] so that a search run with
    other rewards still gives valid targets (then it is only an approximation of Q).
    source="outcome": terminal answer nodes get the verifier's 0/1 label instead (task and
    tokenizer, defaulting to the verifier's own, tell which nodes are answers).
    Returns TreeTargets of N examples, kind "value".
    """
    if source not in VALUE_SOURCES:
        raise ValueError(f"value_targets: source must be one of {VALUE_SOURCES}, got {source!r}")
    if min_visits < 1:
        raise ValueError(f"value_targets: min_visits must be >= 1, got {min_visits}")
    forest = result.forest
    tree, node = live_nodes(result, min_visits=min_visits)
    states = [node_state(result, t, n) for t, n in zip(tree, node)]
    targets = np.clip(forest.value_sum[tree, node] / forest.visits[tree, node], 0.0, 1.0)
    if source == "outcome":
        if verifier is None:
            raise ValueError("value_targets: source='outcome' needs a verifier")
        task = task or getattr(verifier, "task", None)
        tokenizer = tokenizer or getattr(verifier, "tokenizer", None)
        if task is None or tokenizer is None:
            raise ValueError("value_targets: source='outcome' needs the task and tokenizer")
        _check_verifier(verifier, result.prompts)
        rows = [i for i, (t, n, s) in enumerate(zip(tree, node, states))
                if forest.terminal[t, n] and task.is_answer_step(_last_step_text(tokenizer, s))]
        targets[rows] = _verify(verifier, [states[i] for i in rows])
    return TreeTargets("value", states, targets, tree, node)


# -- outcome targets --------------------------------------------------------------------

def outcome_targets(result, problems: Sequence, task, tokenizer, verifier) -> TreeTargets:
    """ORM targets from the trees: every live terminal node whose step is an answer line,
    with the verifier's label (1.0 correct, 0.0 wrong).

    problems: the labelled TRAINING problems the search ran on, in its order (CriticError
    on a held-out or unlabelled one). Returns TreeTargets, kind "outcome".
    """
    _check_labelled_trees(result, problems, task, tokenizer, verifier, "outcome_targets")
    forest = result.forest
    tree, node = live_nodes(result)
    keep = forest.terminal[tree, node] != 0
    tree, node = tree[keep], node[keep]
    states = [node_state(result, t, n) for t, n in zip(tree, node)]
    answer = [task.is_answer_step(_last_step_text(tokenizer, s)) for s in states]
    tree, node = tree[answer], node[answer]
    states = [s for s, a in zip(states, answer) if a]
    return TreeTargets("outcome", states, _verify(verifier, states), tree, node)


def outcome_targets_from_samples(policy, tokenizer, task, problems: Sequence, verifier,
                                 n: int, *, temperature: float | None = None,
                                 max_steps: int = 8, max_step_tokens: int = 32) -> TreeTargets:
    """ORM targets without trees: n sampled solutions per problem, verifier-labelled.

    Solutions are decoded step by step as in ``policies.rollout.generate_solutions`` (all
    unfinished samples in one ``propose`` call per step) but keep their token ids.
    temperature: the policy's sampling temperature during the call (None: as it is).
    Only samples that end in an answer line are kept (the ORM scores finished solutions);
    tree = problem index, node = -1. problems: labelled TRAINING problems (CriticError
    otherwise). Returns TreeTargets, kind "outcome", with ``generated`` tokens.
    """
    _check_training(problems, "outcome_targets_from_samples")
    if n < 1:
        raise ValueError(f"outcome_targets_from_samples: n must be >= 1, got {n}")
    prompts = [prompt_ids(tokenizer, task, p) for p in problems]
    _check_verifier(verifier, prompts)
    rows = [(list(prompt), []) for prompt in prompts for _ in range(n)]
    old = policy.temperature
    if temperature is not None:
        policy.temperature = float(temperature)
    try:
        answered, generated = complete(policy, tokenizer, task, rows, max_steps=max_steps,
                                       max_step_tokens=max_step_tokens)
    finally:
        policy.temperature = old
    keep = np.flatnonzero(answered)
    states = [rows[k] for k in keep]
    return TreeTargets("outcome", states, _verify(verifier, states), keep // n,
                       np.full(len(keep), -1), generated)


def complete(policy, tokenizer, task, rows: list, *, max_steps: int,
             max_step_tokens: int) -> tuple[np.ndarray, int]:
    """Continue each row ``(prompt ids, steps)`` IN PLACE until it writes an answer line.

    Each round sends every unfinished row to one ``policy.propose(prefixes, 1, ...)``
    call. A row stops at an answer line, EOS, a step cut at max_step_tokens (malformed),
    max_steps steps in all (those already there included) or a full context
    (``policy.max_positions``). Returns (answered bool [R]: the last step is an answer
    line, tokens generated).
    """
    if max_steps < 1 or max_step_tokens < 1:
        raise ValueError(f"complete: need max_steps, max_step_tokens >= 1, got "
                         f"{max_steps}, {max_step_tokens}")
    room = getattr(policy, "max_positions", None) or 1 << 62
    answered = np.array([_is_answer_row(tokenizer, task, r) for r in rows], bool)
    done = answered.copy()
    generated = 0
    for _ in range(max_steps):
        live = [k for k, (prompt, steps) in enumerate(rows) if not done[k]
                and len(steps) < max_steps
                and len(prompt) + sum(len(s) for s in steps) < room]
        if not live:
            break
        prefixes = [list(rows[k][0]) + [t for s in rows[k][1] for t in s] for k in live]
        for k, per in zip(live, policy.propose(prefixes, 1, max_step_tokens)):
            step = [int(t) for t in per[0].tokens]
            generated += len(step)
            rows[k][1].append(step)
            text = tokenizer.decode(step, skip_special_tokens=True)
            answered[k] = task.is_answer_step(text)
            # a k-character delimiter may be spelt by the last k tokens ("\n" + "\n")
            cut = len(step) >= max_step_tokens and task.step_delimiter not in \
                tokenizer.decode(step[-len(task.step_delimiter):], skip_special_tokens=True)
            done[k] = answered[k] or per[0].finished or cut
    return answered, generated


def _is_answer_row(tokenizer, task, row) -> bool:
    return bool(row[1]) and task.is_answer_step(_last_step_text(tokenizer, row))


# -- process targets (Math-Shepherd) ---------------------------------------------------

def process_targets(result, policy, tokenizer, task, verifier, *, problems=None,
                    rollouts: int = 4, max_steps: int = 6, max_step_tokens: int = 32,
                    hard: bool = False, max_nodes: int | None = None,
                    seed: int = 0) -> TreeTargets:
    """PRM targets (Math-Shepherd): how often policy completions from a node end correct.

    For every live non-root node of the trees (a seeded sample of ``max_nodes`` of them
    when given), ``rollouts`` completions are decoded from its state with ``complete``
    (all rows of all nodes in one ``propose`` call per step; max_steps counts the steps
    already on the node's path). Labels, float64 in [0, 1]:
        soft = share of the completions whose answer the verifier accepts;
        hard = 1.0 if any completion is accepted, else 0.0.
    A terminal node is labelled directly (no rollouts): the verifier's 0/1 for an answer
    line, 0.0 for any other terminal step (malformed, too deep).
    targets = hard if ``hard`` else soft; both are in ``extra`` ("soft", "hard"), with
    "rollouts" (int [N], completions run per node). problems: optional, the search's
    problems, checked to be labelled training problems (a RuleVerifier refuses others
    anyway). Returns TreeTargets, kind "process", ``generated`` = rollout tokens.
    """
    if rollouts < 1:
        raise ValueError(f"process_targets: rollouts must be >= 1, got {rollouts}")
    if problems is not None:
        _check_training(problems, "process_targets")
        _check_prompts(result, problems, task, tokenizer, "process_targets")
    _check_verifier(verifier, result.prompts)
    tree, node = _sample_nodes(result, max_nodes, seed)
    states = [node_state(result, t, n) for t, n in zip(tree, node)]
    terminal = result.forest.terminal[tree, node] != 0
    soft = np.zeros(len(states))
    # terminal nodes: answer lines are labelled by the verifier, other dead ends are wrong
    ends = [i for i in np.flatnonzero(terminal) if _is_answer_row(tokenizer, task, states[i])]
    soft[ends] = _verify(verifier, [states[i] for i in ends])
    # open nodes: rollouts
    open_rows = np.flatnonzero(~terminal)
    rows = [(list(states[i][0]), [list(s) for s in states[i][1]])
            for i in open_rows for _ in range(rollouts)]
    answered, generated = complete(policy, tokenizer, task, rows, max_steps=max_steps,
                                   max_step_tokens=max_step_tokens)
    correct = np.zeros(len(rows))
    done = np.flatnonzero(answered)
    correct[done] = _verify(verifier, [rows[k] for k in done])
    soft[open_rows] = correct.reshape(len(open_rows), rollouts).mean(axis=1)
    hard_labels = (soft > 0).astype(np.float64)
    used = np.where(terminal, 0, rollouts)
    return TreeTargets("process", states, hard_labels if hard else soft, tree, node, generated,
                       {"soft": soft, "hard": hard_labels, "rollouts": used})


def process_targets_from_tree(result, problems: Sequence, task, tokenizer,
                              verifier) -> TreeTargets:
    """PRM targets from the search's own rollouts (Math-Shepherd soft labels, no extra
    generation): for every live non-root node with a terminal node below it (itself
    included), the share of the rollouts that passed through it and ended correct.

    Each terminal node counts with its visits (every rollout that ended there, or
    repeated it, is one visit); it is correct when it is an answer line the verifier
    accepts, wrong when it is any other terminal (malformed, too deep). Labels, float64
    [N] in [0, 1]: sum over terminal descendants d of visits_d * correct_d / sum of
    visits_d. Nodes with no terminal below them get no label. ``extra``: "rollouts" (the
    summed visits, int [N]). Labelled TRAINING problems only (``problems[b]`` is tree b's).
    """
    _check_labelled_trees(result, problems, task, tokenizer, verifier, "process_targets_from_tree")
    forest = result.forest
    tree, node = live_nodes(result)
    ends = forest.terminal[tree, node] != 0
    states = {(int(t), int(n)): node_state(result, t, n) for t, n in zip(tree[ends], node[ends])}
    answers = [k for k, s in states.items() if _is_answer_row(tokenizer, task, s)]
    verdict = dict(zip(answers, _verify(verifier, [states[k] for k in answers])))
    share, weight = rollout_shares(forest, {k: verdict.get(k, 0.0) for k in states})
    keys = [(int(t), int(n)) for t, n in zip(tree, node) if (int(t), int(n)) in share]
    return TreeTargets("process", [node_state(result, t, n) for t, n in keys],
                       [share[k] for k in keys], [t for t, _ in keys], [n for _, n in keys], 0,
                       {"rollouts": np.array([weight[k] for k in keys], np.int64)})


def rollout_shares(forest, correct: dict) -> tuple[dict, dict]:
    """Visit-weighted share of correct rollouts below each node, from the trees alone.

    correct: {(tree, terminal node): 0.0 or 1.0}, the verdict on every terminal node that
    counts (each weighs its visits). Returns ({(tree, node): share in [0, 1]},
    {(tree, node): summed visits}) for every non-root node with such a terminal at or
    below it. Pure arithmetic on the forest: the caller decides where verdicts come from
    (a rule verifier for training targets; labels read after the search to score critics).
    """
    weight: dict[tuple[int, int], float] = {}
    good: dict[tuple[int, int], float] = {}
    for (t, n), verdict in correct.items():  # a terminal adds its rollouts to every ancestor
        visits = float(forest.visits[t, n])
        while n > 0:
            weight[(t, n)] = weight.get((t, n), 0.0) + visits
            good[(t, n)] = good.get((t, n), 0.0) + visits * verdict
            n = int(forest.parent[t, n])
    return {k: good[k] / w for k, w in weight.items() if w > 0}, weight


def _sample_nodes(result, max_nodes: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    tree, node = live_nodes(result)
    if max_nodes is not None and len(tree) > max_nodes:
        pick = np.sort(np.random.default_rng(seed).choice(len(tree), max_nodes, replace=False))
        tree, node = tree[pick], node[pick]
    return tree, node


# -- fit and report ---------------------------------------------------------------------

def split_by_tree(tree, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of examples by their tree (problem): held-out trees are a
    seeded random ``holdout`` share of the distinct trees (at least one, at most all but
    one). tree: int [N]. Returns (train, held_out) bool masks [N]."""
    tree = np.asarray(tree, np.int64)
    ids = np.unique(tree)
    if not 0 < holdout < 1:
        raise ValueError(f"split_by_tree: holdout must be in (0, 1), got {holdout}")
    if len(ids) < 2:
        raise ValueError(f"split_by_tree: need examples from >= 2 trees, got {len(ids)}")
    n_held = min(max(1, round(holdout * len(ids))), len(ids) - 1)
    held_ids = np.random.default_rng(seed).permutation(ids)[:n_held]
    held = np.isin(tree, held_ids)
    return ~held, held


def fit_and_report(critic, targets: TreeTargets, *, holdout: float = 0.2, seed: int = 0,
                   out_dir=None, epochs: int = 3, lr: float = 1e-3, batch_size: int = 32,
                   train_trunk: bool = True, balance: bool = False,
                   calibration: bool | None = None, progress: bool = False) -> dict:
    """Fit ``critic`` on the training trees of ``targets`` and measure it on the others.

    The split is by tree (problem; ``split_by_tree`` with holdout and seed), so no problem
    is in both parts; epochs, lr, batch_size, train_trunk and seed go to ``critic.fit``
    (``HeadCritic.fit``). balance: weight the examples so that targets >= 0.5 and < 0.5
    carry equal total weight (for rare positives, e.g. a weak prior's correct answers).
    On the held-out part: mse_critic, the critic's mean squared error,
    and mse_constant, that of the constant predictor (the mean train target), with
    skill = 1 - mse_critic / mse_constant. calibration (None: only when every target is 0
    or 1): ``calibration_report`` (Brier, ECE over 10 bins, AUROC) of the scores against
    targets >= 0.5. out_dir: also write ``reliability_<kind>.png`` and
    ``calibration_<kind>.json`` (atomically; nan written as null).
    Returns a JSON-writable dict of every figure, the fit's own (``fit``) and the paths.
    """
    train, held = split_by_tree(targets.tree, holdout, seed)
    tr, te = targets.subset(train), targets.subset(held)
    weights = _balanced(tr.targets) if balance else None
    fit = critic.fit(tr.states, tr.targets, epochs=epochs, lr=lr, batch_size=batch_size,
                     weights=weights, train_trunk=train_trunk, seed=seed, progress=progress)
    p = np.asarray(critic.score(te.states), np.float64)
    constant = float(tr.targets.mean())
    mse_critic = float(np.mean((p - te.targets) ** 2))
    mse_constant = float(np.mean((constant - te.targets) ** 2))
    report = {"kind": targets.kind, "n_train": len(tr), "n_heldout": len(te),
              "trees_train": int(len(np.unique(tr.tree))),
              "trees_heldout": int(len(np.unique(te.tree))),
              "target_mean_train": constant, "target_mean_heldout": float(te.targets.mean()),
              "mse_critic": mse_critic, "mse_constant": mse_constant,
              "skill": 1.0 - mse_critic / mse_constant if mse_constant > 0 else float("nan"),
              "fit": fit, "calibration": None, "files": {}}
    if calibration if calibration is not None else targets.binary:
        y = (te.targets >= 0.5).astype(np.float64)
        report["calibration"] = calibration_report(p, y, bins=10)
        if out_dir is not None:
            report["files"] = _write_calibration(out_dir, targets.kind, p, y, report)
    return _jsonable(report)


def _balanced(targets: np.ndarray) -> np.ndarray:
    """float64 [N] weights, mean 1, giving both classes (target >= 0.5 or not) equal total
    weight; uniform when one class is missing."""
    pos = targets >= 0.5
    if pos.all() or not pos.any():
        return np.ones(len(targets))
    return np.where(pos, 0.5 / pos.mean(), 0.5 / (1 - pos.mean()))


def _write_calibration(out_dir, kind: str, p, y, report: dict) -> dict:
    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    png = reliability_diagram(p, y, out / f"reliability_{kind}.png",
                              title=f"{kind} critic, held-out trees")
    path = out / f"calibration_{kind}.json"
    files = {"reliability": str(png), "calibration": str(path)}
    _write_json(path, _jsonable({**report, "files": files}))
    return files


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _jsonable(obj):
    """obj with numpy scalars as Python numbers and nan/inf as None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj

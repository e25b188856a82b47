"""Critic targets from real search trees of the tiny countdown prior, and fitting on them.

Everything runs the real ``tiny-countdown`` prior (policies/priors) through HFPolicy with
fixed seeds, and a real StepSearch whose only critic is the RuleVerifier on TRAINING
problems. Run with ``-s`` to see the measured figures.
"""

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from critics.base import CriticError  # noqa: E402
from critics.compose import StepScorer  # noqa: E402
from critics.head import HeadCritic  # noqa: E402
from critics.train import (  # noqa: E402
    TreeTargets,
    fit_and_report,
    live_nodes,
    outcome_targets,
    outcome_targets_from_samples,
    process_targets,
    process_targets_from_tree,
    split_by_tree,
    value_targets,
)
from critics.verifier import RuleVerifier  # noqa: E402
from policies.hf import HFPolicy  # noqa: E402
from policies.zoo import resolve  # noqa: E402
from treesearch.engine.interfaces import StepProposal  # noqa: E402
from treesearch.search import SearchConfig, StepSearch  # noqa: E402
from treesearch.tasks import get_task  # noqa: E402

N_TREES = 24
CONFIG = SearchConfig(simulations=8, branching=4, max_children=8, max_depth=5,
                      max_step_tokens=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prior():
    return resolve("tiny-countdown")


@pytest.fixture(scope="module")
def task():
    return get_task("countdown")


@pytest.fixture(scope="module")
def policy(prior):
    return HFPolicy(prior, temperature=1.0, seed=0)


@pytest.fixture(scope="module")
def problems(task):
    return task.problems("train", N_TREES, seed=0)


@pytest.fixture(scope="module")
def verifier(task, policy, problems):
    return RuleVerifier(task, policy.tokenizer, problems)


@pytest.fixture(scope="module")
def result(policy, task, problems, verifier):
    return StepSearch(policy, StepScorer(outcome=verifier), task, policy.tokenizer,
                      CONFIG).run(problems)


def last_text(tok, state):
    return tok.decode(list(state[1][-1]), skip_special_tokens=True)


# -- value targets --------------------------------------------------------------------

def test_value_targets_match_the_trees(result, policy, task, verifier):
    vt = value_targets(result)
    f = result.forest
    n = len(vt)
    assert vt.kind == "value" and n > 100
    assert vt.targets.shape == (n,) and vt.targets.dtype == np.float64
    assert vt.tree.dtype == np.int64 and vt.node.dtype == np.int64
    assert np.all((vt.targets >= 0) & (vt.targets <= 1))
    assert np.all(vt.node > 0) and np.all(f.depth[vt.tree, vt.node] >= 0)
    assert np.all(f.visits[vt.tree, vt.node] >= 1)
    expected = sum(int(((f.depth[b, 1:f.n_nodes[b]] >= 0)
                        & (f.visits[b, 1:f.n_nodes[b]] >= 1)).sum())
                   for b in range(f.n_trees))
    assert n == expected  # every live visited non-root node, once
    for (prompt, steps), t, node, y in zip(vt.states, vt.tree, vt.node, vt.targets):
        assert prompt == list(result.prompts[t])
        want = result.steps(int(t), int(node))
        assert len(steps) == f.depth[t, node] == len(want)
        assert all(list(a) == b.tolist() for a, b in zip(steps, want))
        assert y == pytest.approx(min(1.0, f.value_sum[t, node] / f.visits[t, node]))
    # the tree's spread of values is there to learn from
    assert vt.targets.std() > 0.05

    # source="outcome": answer nodes carry the verifier's label, the rest are unchanged
    vo = value_targets(result, source="outcome", verifier=verifier)
    answer = np.array([f.terminal[t, n] == 1 and task.is_answer_step(last_text(policy.tokenizer, s))
                       for s, t, n in zip(vt.states, vt.tree, vt.node)])
    assert answer.any()
    np.testing.assert_array_equal(vo.targets[answer],
                                  verifier.score([s for s, a in zip(vo.states, answer) if a]))
    np.testing.assert_array_equal(vo.targets[~answer], vt.targets[~answer])
    assert len(value_targets(result, min_visits=2)) < n


def test_outcome_targets_are_answer_nodes(result, policy, task, problems, verifier):
    ot = outcome_targets(result, problems, task, policy.tokenizer, verifier)
    assert ot.kind == "outcome" and len(ot) > 0 and ot.binary
    f = result.forest
    assert np.all(f.terminal[ot.tree, ot.node] == 1) and np.all(f.depth[ot.tree, ot.node] > 0)
    assert all(task.is_answer_step(last_text(policy.tokenizer, s)) for s in ot.states)
    np.testing.assert_array_equal(ot.targets, verifier.score(ot.states))
    tree, node = live_nodes(result)
    n_answers = sum(f.terminal[t, n] == 1 and task.is_answer_step(policy.tokenizer.decode(
        result.steps(int(t), int(n))[-1].tolist(), skip_special_tokens=True))
        for t, n in zip(tree, node))
    assert len(ot) == n_answers
    with pytest.raises(ValueError, match="order"):
        outcome_targets(result, problems[::-1], task, policy.tokenizer, verifier)


# -- process targets ------------------------------------------------------------------

def test_process_targets_on_real_trees(result, policy, task, problems, verifier):
    pt = process_targets(result, policy, policy.tokenizer, task, verifier, problems=problems,
                         rollouts=2, max_steps=CONFIG.max_depth, max_nodes=60, seed=1)
    f = result.forest
    soft, hard = pt.extra["soft"], pt.extra["hard"]
    assert pt.kind == "process" and len(pt) == 60
    assert np.all((soft >= 0) & (soft <= 1)) and np.isin(hard, (0.0, 1.0)).all()
    np.testing.assert_array_equal(pt.targets, soft)
    assert np.all(hard >= soft) and np.array_equal(hard == 1, soft > 0)
    assert np.all(f.depth[pt.tree, pt.node] > 0)
    terminal = f.terminal[pt.tree, pt.node] == 1
    assert np.all(pt.extra["rollouts"][terminal] == 0)
    assert np.all(pt.extra["rollouts"][~terminal] == 2)
    assert (~terminal).any() and pt.generated > 0
    answer = np.array([task.is_answer_step(last_text(policy.tokenizer, s)) for s in pt.states])
    ends = terminal & answer
    assert ends.any()
    np.testing.assert_array_equal(soft[ends],
                                  verifier.score([pt.states[i] for i in np.flatnonzero(ends)]))
    assert np.all(soft[terminal & ~answer] == 0)
    # same seed, same nodes; hard=True gives the hard labels as targets
    again = process_targets(result, policy, policy.tokenizer, task, verifier, rollouts=1,
                            max_steps=CONFIG.max_depth, max_nodes=60, seed=1, hard=True)
    np.testing.assert_array_equal(again.node, pt.node)
    np.testing.assert_array_equal(again.targets, again.extra["hard"])


class ScriptedPolicy:
    """Answers every prefix with one answer line: alternately right and wrong (row 0 of a
    call right, row 1 wrong, ...), so two rollouts per node give soft labels of 1/2."""

    max_positions = 256

    def __init__(self, tokenizer, task, problems):
        self.tokenizer, self.temperature = tokenizer, 1.0
        self.label = {tuple([tokenizer.bos_token_id] + tokenizer(task.prompt(p),
                                                                 add_special_tokens=False)
                            ["input_ids"]): p.label for p in problems}
        self.calls = 0

    def propose(self, prefixes, n, max_step_tokens):
        self.calls += 1
        out = []
        for i, prefix in enumerate(prefixes):
            label = next(v for k, v in self.label.items() if tuple(prefix[:len(k)]) == k)
            text = f"A:{label}\n" if i % 2 == 0 else f"A:({label})+1\n"
            ids = np.array(self.tokenizer(text, add_special_tokens=False)["input_ids"], np.int32)
            out.append([StepProposal(ids, -1.0, len(ids), False)] * n)
        return out


def test_process_labels_count_correct_completions(result, policy, task, problems, verifier):
    scripted = ScriptedPolicy(policy.tokenizer, task, problems)
    pt = process_targets(result, scripted, policy.tokenizer, task, verifier, rollouts=2,
                         max_steps=CONFIG.max_depth + 1, max_nodes=40, seed=0)
    open_ = result.forest.terminal[pt.tree, pt.node] == 0
    assert open_.any() and scripted.calls == 1  # one batched propose for all rows of all nodes
    np.testing.assert_array_equal(pt.extra["soft"][open_], 0.5)
    np.testing.assert_array_equal(pt.extra["hard"][open_], 1.0)
    hard = process_targets(result, scripted, policy.tokenizer, task, verifier, rollouts=2,
                           max_steps=CONFIG.max_depth + 1, max_nodes=40, seed=0, hard=True)
    np.testing.assert_array_equal(hard.targets[open_], 1.0)


# -- held-out problems ------------------------------------------------------------------

class ConstantCritic:
    kind, name = "outcome", "constant"

    def score(self, states):
        return np.full(len(states), 0.5, np.float32)


def test_process_targets_from_the_trees_own_rollouts(result, policy, task, problems, verifier):
    """Math-Shepherd labels without extra generation: an answer node's label is the
    verifier's verdict, and every open node's label is the visit-weighted mean of its
    children's (all its rollouts pass through them)."""
    data = process_targets_from_tree(result, problems, task, policy.tokenizer, verifier)
    assert data.kind == "process" and len(data) > 0 and data.generated == 0
    assert np.all((data.targets >= 0) & (data.targets <= 1))
    forest = result.forest
    label = {(int(t), int(n)): y for t, n, y in zip(data.tree, data.node, data.targets)}
    weight = {(int(t), int(n)): w for t, n, w in zip(data.tree, data.node, data.extra["rollouts"])}
    checked = 0
    for (t, n), y in label.items():
        if forest.terminal[t, n]:
            state = data.states[list(label).index((t, n))]
            answer = task.is_answer_step(last_text(policy.tokenizer, state))
            assert y == (verifier.score([state])[0] if answer else 0.0)
            continue
        kids = [(t, int(c)) for c in forest.children(t, n) if (t, int(c)) in label]
        assert sum(weight[k] for k in kids) == weight[(t, n)]
        assert y == pytest.approx(sum(weight[k] * label[k] for k in kids) / weight[(t, n)])
        checked += 1
    assert checked > 0
    assert 0 < data.targets.mean() < 1  # both right and wrong rollouts on these trees


def test_held_out_problems_are_refused(policy, task, problems, verifier):
    test = task.problems("test", 3, seed=0)
    with pytest.raises(CriticError, match="held out"):
        RuleVerifier(task, policy.tokenizer, test)
    cfg = SearchConfig(simulations=2, branching=2, max_children=2, max_depth=3)
    held = StepSearch(policy, StepScorer(outcome=ConstantCritic()), task, policy.tokenizer,
                      cfg).run(test)
    with pytest.raises(CriticError, match="held out"):
        outcome_targets(held, test, task, policy.tokenizer, verifier)
    with pytest.raises(CriticError, match="held out"):
        process_targets(held, policy, policy.tokenizer, task, verifier, problems=test)
    with pytest.raises(CriticError):  # the verifier itself refuses their states
        process_targets(held, policy, policy.tokenizer, task, verifier, rollouts=1, max_steps=3)
    with pytest.raises(CriticError):
        value_targets(held, source="outcome", verifier=verifier)
    with pytest.raises(CriticError, match="held out"):
        outcome_targets_from_samples(policy, policy.tokenizer, task, test, verifier, n=1)
    with pytest.raises(CriticError, match="no label"):
        outcome_targets_from_samples(policy, policy.tokenizer, task,
                                     [p.without_label() for p in problems[:2]], verifier, n=1)


# -- splitting and fitting --------------------------------------------------------------

def test_split_by_tree_is_deterministic_and_disjoint():
    tree = np.repeat(np.arange(10), 3)
    train, held = split_by_tree(tree, 0.2, seed=3)
    assert np.array_equal(train, ~held) and len(np.unique(tree[held])) == 2
    assert not set(tree[train]) & set(tree[held])
    assert np.array_equal(held, split_by_tree(tree, 0.2, seed=3)[1])
    with pytest.raises(ValueError):
        split_by_tree(np.zeros(5, np.int64))
    with pytest.raises(ValueError):
        TreeTargets("value", [([1], [])], [1.5], [0], [1])


def test_value_head_beats_constant_on_held_out_trees(prior, policy, result):
    vt = value_targets(result)
    critic = HeadCritic(prior, "value", policy_tokenizer=policy.tokenizer)
    start = time.perf_counter()
    rep = fit_and_report(critic, vt, holdout=0.25, seed=0, epochs=2, lr=1e-3)
    print(f"\nvalue head: {rep['n_train']} train states ({rep['trees_train']} trees), "
          f"{rep['n_heldout']} held-out ({rep['trees_heldout']} trees): MSE critic "
          f"{rep['mse_critic']:.4f} vs constant {rep['mse_constant']:.4f} "
          f"(skill {rep['skill']:.2f}), {time.perf_counter() - start:.1f}s")
    assert rep["trees_train"] + rep["trees_heldout"] == N_TREES
    assert rep["calibration"] is None  # soft targets: no report unless asked
    assert rep["mse_critic"] < rep["mse_constant"]


class MeanCritic:
    """A model-free critic: fit remembers the mean target per first prompt token parity,
    score returns it (enough to exercise fit_and_report without a trunk)."""

    kind, name = "outcome", "mean"

    def fit(self, states, targets, **kw):
        self.kw = kw
        key = np.array([s[0][1] % 2 for s in states])
        self.table = {k: float(np.mean(targets[key == k])) for k in (0, 1)}
        return {"examples": len(states)}

    def score(self, states):
        return np.array([self.table[s[0][1] % 2] for s in states], np.float32)


def test_fit_and_report_figures_and_files(tmp_path):
    rng = np.random.default_rng(0)
    tree = np.repeat(np.arange(20), 10)
    first = rng.integers(0, 50, len(tree))
    targets = (rng.random(len(tree)) < np.where(first % 2 == 1, 0.8, 0.2)).astype(float)
    tt = TreeTargets("outcome", [([1, int(f)], [[3, 4]]) for f in first], targets, tree,
                     np.full(len(tree), -1))
    critic = MeanCritic()
    rep = fit_and_report(critic, tt, holdout=0.25, seed=0, out_dir=tmp_path, epochs=2, lr=0.5,
                         balance=True)
    train, held = split_by_tree(tree, 0.25, seed=0)
    assert rep["n_train"] == train.sum() and rep["n_heldout"] == held.sum() == 50
    assert rep["trees_heldout"] == 5 and critic.kw["epochs"] == 2 and critic.kw["lr"] == 0.5
    w = critic.kw["weights"]
    assert w[targets[train] == 1].sum() == pytest.approx(w[targets[train] == 0].sum())
    assert rep["target_mean_train"] == pytest.approx(targets[train].mean())
    assert rep["mse_constant"] == pytest.approx(
        np.mean((targets[train].mean() - targets[held]) ** 2))
    assert rep["mse_critic"] < rep["mse_constant"]
    cal = rep["calibration"]
    assert cal["n"] == 50 and cal["auroc"] > 0.7 and 0 <= cal["ece"] <= 1
    assert (tmp_path / "reliability_outcome.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "calibration_outcome.json").read_text())
    assert saved["mse_critic"] == pytest.approx(rep["mse_critic"])
    assert saved["calibration"]["brier"] == pytest.approx(cal["brier"])
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


ORM_TEMPERATURE = 0.7  # more correct answers than at 1.0 for the 4-number prior
ORM_PROBLEMS, ORM_SAMPLES = 128, 8


@pytest.fixture(scope="module")
def orm_report(prior, task, tmp_path_factory):
    policy = HFPolicy(prior, temperature=ORM_TEMPERATURE, seed=0)
    problems = task.problems("train", ORM_PROBLEMS, seed=1)
    verifier = RuleVerifier(task, policy.tokenizer, problems)
    start = time.perf_counter()
    ot = outcome_targets_from_samples(policy, policy.tokenizer, task, problems, verifier,
                                      ORM_SAMPLES, max_steps=6, max_step_tokens=32)
    sampled = time.perf_counter() - start
    train, held = split_by_tree(ot.tree, 0.4, seed=0)
    positives = (int(ot.targets[train].sum()), int(ot.targets[held].sum()))
    print(f"\nORM data: {len(ot)} answered samples of {ORM_PROBLEMS * ORM_SAMPLES} "
          f"(T={ORM_TEMPERATURE}), positives train/held-out {positives}, {sampled:.1f}s")
    if min(positives) < 5:
        pytest.skip(f"the prior solved too few problems for an ORM test (positives "
                    f"train/held-out {positives}); it needs a prior with a few % accuracy")
    critic = HeadCritic(prior, "outcome", policy_tokenizer=policy.tokenizer)
    start = time.perf_counter()
    rep = fit_and_report(critic, ot, holdout=0.4, seed=0, epochs=2, lr=1e-3,
                         out_dir=tmp_path_factory.mktemp("orm"))
    cal = rep["calibration"]
    print(f"ORM: held-out AUROC {cal['auroc']:.3f} Brier {cal['brier']:.4f} ECE {cal['ece']:.4f}"
          f"; MSE critic {rep['mse_critic']:.4f} vs constant {rep['mse_constant']:.4f}; "
          f"{rep['n_train']} train / {rep['n_heldout']} held-out, "
          f"fit {time.perf_counter() - start:.1f}s")
    return rep


@pytest.mark.slow
def test_orm_report_on_sampled_solutions(orm_report):
    cal = orm_report["calibration"]
    assert cal["positives"] >= 5 and cal["n"] == orm_report["n_heldout"]
    assert all(np.isfinite([cal["brier"], cal["ece"], cal["auroc"]]))
    assert set(orm_report["files"]) == {"reliability", "calibration"}


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "not reached on 4 numbers: a HeadCritic ORM fitted for 2 epochs on ~600 "
    "verifier-labelled samples of the shipped 4-number prior scored AUROC 0.51 on other "
    "problems (0.51-0.57 with class-balanced weights, 160 problems or 3000 synthetic "
    "traces added); telling right from wrong here means checking arithmetic and number "
    "use, which needs far more data or a larger trunk. On the 3-number prior's tree "
    "answers it is at chance too: see test_orm_on_tree_answers_beats_chance"))
def test_orm_separates_right_from_wrong_answers(orm_report):
    assert orm_report["calibration"]["auroc"] > 0.6


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "the tiny trunk's ORM is at chance on tree answers too (the missed critic "
    "target): held-out AUROC over problem seeds 21 / 22 was 0.636 / 0.369 with the old "
    "search (repeat_visits off) and 0.427 / 0.467 with the default; 0.636 was one lucky "
    "seed. The scoreboard's held-out ORM AUROC is 0.541"))
def test_orm_on_tree_answers_beats_chance(tmp_path):
    """The self-play route: an ORM fitted on the answer nodes of verifier-guided search trees
    of the 3-number prior (class-balanced, as treesearch.selfplay does), measured on the
    answer nodes of OTHER problems' trees."""
    from treesearch.stages.critics import limit_rows

    task = get_task("countdown3")
    policy = HFPolicy(resolve("tiny-countdown3"), temperature=1.0, seed=0)
    problems = task.problems("train", 160, seed=21)
    verifier = RuleVerifier(task, policy.tokenizer, problems)
    config = SearchConfig(simulations=24, branching=2, horizon=6, max_children=6,
                          max_depth=6, max_step_tokens=24)
    start = time.perf_counter()
    result = StepSearch(policy, StepScorer(outcome=verifier), task, policy.tokenizer,
                        config).run(problems)
    data = limit_rows(outcome_targets(result, problems, task, policy.tokenizer, verifier), 768,
                      seed=0, balance=True)
    critic = HeadCritic(resolve("tiny-countdown3"), "outcome", policy_tokenizer=policy.tokenizer)
    report = fit_and_report(critic, data, seed=0, epochs=2, lr=1e-3, out_dir=tmp_path)
    cal = report["calibration"]
    print(f"\nORM on tree answers (3 numbers): {report['n_train']} train / "
          f"{report['n_heldout']} held-out answers ({data.targets.sum():.0f} correct in all), "
          f"held-out AUROC {cal['auroc']:.3f} Brier {cal['brier']:.3f} ECE {cal['ece']:.3f}, "
          f"{time.perf_counter() - start:.0f}s")
    assert report["n_heldout"] >= 50
    assert cal["auroc"] > 0.55
    assert (tmp_path / "reliability_outcome.png").is_file()

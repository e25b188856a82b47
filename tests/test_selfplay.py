"""Self-play: config refusals, kill + resume reproducing an uninterrupted run, corrupt
checkpoints named in the error."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treesearch.config import ConfigError, SelfPlayConfig, load_config
from treesearch.utils.recipes import valid_keys

ROOT = Path(__file__).resolve().parent.parent
TINY = ["rounds=2", "train_problems=6", "eval.problems=8", "eval.samples=2",
        "eval.mcts_problems=3", "eval.mcts_budget=96", "search.simulations=6",
        "critics.epochs=1", "progress=false"]


def _selfplay(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "treesearch.selfplay", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def _eval_rows(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows if r["stage"] == "eval"]


def test_overrides_and_unknown_keys():
    cfg = load_config(None, ["rounds=5", "policy.backend=hf", "critics.process=none"])
    assert cfg.rounds == 5 and cfg.critics.process == "none"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["serch.simulations=3"])
    assert "serch" in str(err.value) and "search.simulations" in str(err.value)
    assert "search.simulations" in valid_keys(schema=SelfPlayConfig)


@pytest.mark.parametrize("override, key", [
    ("search.simulations=-3", "search.simulations"),
    ("policy.backend=tpu", "policy.backend"),
    ("policy.model=/no/such/model", "policy.model"),
    ("eval.mcts_budget=4", "eval.mcts_budget"),
    ("critics.value=oracle", "critics.value"),
    ("eval.sample_problems=-1", "eval.sample_problems"),
    ("eval.mcts_problems=0", "eval.mcts_problems"),
])
def test_bad_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_cli_refuses_bad_config_before_any_work(tmp_path):
    proc = _selfplay("rounds=0", f"out={tmp_path / 'run'}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "rounds" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_kill_and_resume_match_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    proc = _selfplay(*TINY, f"out={straight}")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert (straight / "accuracy.png").is_file() and (straight / "summary.md").is_file()
    page = (straight / "report.html").read_text()  # the viewer over every trained round
    rounds = {int(p.name.split("_")[1]) for p in straight.glob("round_*")} - {0}
    assert all(f'id="data-round-{i}"' in page for i in range(len(rounds))), sorted(rounds)
    assert (straight / "round_1" / "trees.jsonl.gz").is_file()
    for row in _eval_rows(straight):  # majority vote at MCTS's budget, on MCTS's problems
        # (a sample started within the budget runs to its end: at most one solution over)
        assert 0 <= row["majority"] <= 1 and 0 < row["majority_tokens"] <= 96 + 6 * 24
        for part in ("greedy", "mcts", "majority"):  # the verdicts behind each accuracy
            flags = row[f"{part}_flags"]
            assert set(flags) <= {0, 1} and row[part] == pytest.approx(sum(flags) / len(flags))
        assert len(row["mcts_flags"]) == len(row["majority_flags"]) < len(row["greedy_flags"])
    assert "majority" in (straight / "summary.md").read_text()

    killed = tmp_path / "killed"
    proc = _selfplay(*TINY, f"out={killed}")
    deadline = time.time() + 600
    while time.time() < deadline:  # kill in the middle of round 1, after its search
        state = killed / "state.json"
        if state.is_file() and "1/search" in state.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = json.loads((killed / "state.json").read_text())["done"]
    assert "2/eval" not in done
    proc = _selfplay("--resume", str(killed))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert _eval_rows(killed) == _eval_rows(straight)
    assert len(_eval_rows(killed)) == 3  # rounds 0, 1, 2


@pytest.mark.slow
def test_corrupt_checkpoint_is_named_and_nothing_else_is_lost(tmp_path):
    run = tmp_path / "run"
    proc = _selfplay(*TINY, "rounds=1", f"out={run}")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    weights = run / "round_1" / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    state = json.loads((run / "state.json").read_text())
    state["done"].remove("1/eval")
    (run / "state.json").write_text(json.dumps(state))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = _selfplay("--resume", str(run))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2
    assert "round_1/policy" in err and "cannot load the policy checkpoint" in err
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_a_critic_without_enough_targets_is_carried_over(tmp_path):
    """One training problem gives targets from one tree: nothing to fit and hold out, so each
    critic goes on unchanged, saved in the round, and the round's eval can load it."""
    run = tmp_path / "run"
    proc = _selfplay(*TINY, "rounds=2", "train_problems=1", f"out={run}")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    critics = [r for r in rows if r["stage"] == "critics"]
    assert len(critics) == 2
    for row in critics:
        for kind in ("value", "outcome"):
            assert row[kind]["carried_over"] is True
    for r in (1, 2):
        for kind in ("value", "outcome"):
            assert (run / f"round_{r}" / "critics" / kind / "critic.json").is_file()


@pytest.mark.parametrize("name", ["default", "smollm2", "vllm"])
def test_shipped_recipes_load(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.rounds >= 1 and cfg.policy.model


def test_the_learner_is_a_trainable_model_whatever_backend_generates(tmp_path):
    """configs/vllm.yaml: distillation trains a transformers copy of the checkpoint (a vLLM
    engine holds no trainable model), built without starting an engine."""
    from policies.hf import HFPolicy
    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    cfg = load_config(ROOT / "configs" / "vllm.yaml")
    learner = SelfPlay(cfg, RunDir(tmp_path)).models.load_learner(0, seed=0)
    assert isinstance(learner, HFPolicy) and learner.model.training is False
    assert any(p.requires_grad for p in learner.model.parameters())


def test_class_balanced_limit_keeps_both_classes():
    """The ORM's examples: when correct answers outnumber the cap (later rounds), the wrong
    ones must still make up half (they once were dropped, leaving one class)."""
    import numpy as np

    from critics.train import TreeTargets
    from treesearch.stages.critics import limit_rows

    def data(n_pos, n_neg):
        y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
        return TreeTargets("outcome", [([0], [])] * len(y), y, np.arange(len(y)),
                           np.zeros(len(y)))

    many = limit_rows(data(900, 300), 512, seed=0, balance=True)
    assert len(many) == 512 and many.targets.sum() == 256
    rare = limit_rows(data(10, 900), 512, seed=0, balance=True)
    assert rare.targets.sum() == 10 and len(rare) == 40  # three others per rare one
    few = limit_rows(data(5, 0), 512, seed=0, balance=True)
    assert len(few) == 5


def test_a_part_on_its_own_stream_leaves_later_samples_as_they_were():
    """``own_stream``: the majority-vote part samples from its own seed, and the samples
    drawn after it are those drawn without it (older runs' figures stay reproducible)."""
    import torch

    from treesearch.selfplay.shards import own_stream

    class Sampler:
        generator = torch.Generator().manual_seed(5)

    def draw(policy):
        return torch.rand(4, generator=policy.generator).tolist()

    plain, with_part = Sampler(), Sampler()
    plain.generator = torch.Generator().manual_seed(5)
    with_part.generator = torch.Generator().manual_seed(5)
    expected = draw(plain)
    with own_stream(with_part, 11):
        inside = draw(with_part)
    assert draw(with_part) == expected
    assert inside == torch.rand(4, generator=torch.Generator().manual_seed(11)).tolist()
    with own_stream(object(), 11):  # no generator: nothing to do
        pass


def test_eval_row_keeps_each_problems_verdict_in_problem_order():
    """Sharded results are gathered in problem order, and each accuracy is the mean of the
    flags logged beside it (what lets a reader pair MCTS with majority vote per problem)."""
    import numpy as np

    from treesearch.selfplay.shards import WorkItem, eval_row

    items = [WorkItem(1, "greedy", 0, 2, 1), WorkItem(1, "greedy", 2, 3, 2),
             WorkItem(1, "sampled", 0, 3, 3), WorkItem(1, "mcts", 0, 2, 4),
             WorkItem(1, "majority", 0, 1, 5), WorkItem(1, "majority", 1, 2, 6)]
    results = [[True, False], [True], [2, 0, 1], ([False, True], np.array([90, 100])),
               ([True], np.array([96])), ([True], np.array([98]))]
    row = eval_row(items, results, samples=2)
    assert row["greedy_flags"] == [1, 0, 1] and row["greedy"] == pytest.approx(2 / 3)
    assert row["mcts_flags"] == [0, 1] and row["mcts"] == 0.5 and row["mcts_tokens"] == 95
    assert row["majority_flags"] == [1, 1] and row["majority"] == 1.0
    assert row["pass@1"] == pytest.approx(0.5) and row["pass@2"] == pytest.approx(2 / 3)

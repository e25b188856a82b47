"""Runs that heal (``treesearch.utils.heal``, ``treesearch.selfplay.heal``): a process
SIGKILLed in the middle of an atomic write leaves temporaries that a resume sweeps (a
directory moved aside goes back), and the resumed self-play run writes an uninterrupted
run's metrics, trees and policy; ``--redo R/STAGE`` re-runs a stage and what follows from
its inputs, losing nothing written before it; ``--check`` names every missing or corrupt
output of a stage marked done; bad ``--redo`` / ``--check`` input is one ``error:`` line.

Every kill case prints what was left before the resume and after it (``pytest -s``)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from treesearch.selfplay.heal import parse_stage, plan
from treesearch.utils.atomic import ASIDE_DIR, TEMP_DIR, TEMP_FILE, atomic_dir
from treesearch.utils.checkpoints import checkpoint_problems
from treesearch.utils.heal import leftovers, sweep

ROOT = Path(__file__).resolve().parent.parent
TINY = ["rounds=1", "train_problems=6", "eval.problems=8", "eval.samples=2",
        "eval.mcts_problems=3", "eval.mcts_budget=96", "search.simulations=6",
        "critics.epochs=1", "progress=false"]
WALL_CLOCK = ("seconds", "overhead_share", "policy")


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def _selfplay(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "treesearch.selfplay", *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _rows(run: Path, wall_clock: bool = False):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows if wall_clock else [{k: v for k, v in r.items() if k not in WALL_CLOCK}
                                    for r in rows]


def _listing(run: Path) -> list[str]:
    """What an interrupted write left under ``run`` (the leftovers and what they hold)."""
    out = []
    for path in leftovers(run):
        rel = path.relative_to(run).as_posix()
        inside = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                        if p.is_file()) if path.is_dir() else []
        out.append(f"{rel}/ [{', '.join(inside)}]" if path.is_dir() else rel)
    return out


def _no_temporaries(run: Path) -> None:
    names = [p for p in run.rglob("*")
             if TEMP_FILE.match(p.name) or TEMP_DIR.match(p.name) or ASIDE_DIR.match(p.name)]
    assert not names, names


def _kill_at(run: Path, step: str, pattern: str, *args, after: Path | None = None,
             timeout: float = 600) -> str:
    """Self-play (``args``; a new run in ``run`` or a resume) paused at ``step`` of the write
    of a path matching ``pattern`` (``tests/killpoint.py``), then SIGKILLed there. Returns
    where it paused."""
    marker = run.parent / f"paused-{step}-{time.monotonic_ns()}"
    env = _env(KILLPOINT_STEP=step, KILLPOINT_PATH=pattern, KILLPOINT_MARKER=str(marker),
               KILLPOINT_AFTER=str(after or ""))
    with open(run.parent / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "killpoint.py"),
                                 "treesearch.selfplay", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert marker.exists(), (run.parent / "killed.log").read_text()[-3000:]
    return marker.read_text().strip()


# -- leftovers of single writes -----------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import treesearch.utils.atomic as atomic

    step, target, marker = sys.argv[1:]
    def pause(at, path):
        if at == step:
            Path(marker).write_text(at)
            time.sleep(600)
    atomic._step = pause
    if step == "file":
        atomic.write_text(target, "new\\n")
    else:
        with atomic.atomic_dir(target) as tmp:
            (tmp / "weights").write_text("new")
""")


@pytest.mark.parametrize("step", ["file", "dir", "aside"])
def test_a_write_killed_at_each_step_leaves_what_sweep_clears(tmp_path, step, capsys):
    """The old version stays readable at every step; sweep removes the temporaries, and a
    directory moved aside while its target is gone is put back, whole (the new one, not
    yet renamed in, goes: its stage was never marked done)."""
    target = tmp_path / ("state.json" if step == "file" else "policy")
    if step == "file":
        target.write_text("old\n")
    else:
        target.mkdir()
        (target / "weights").write_text("old")
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, step, str(target), str(marker)],
                            env=_env())
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    before = _listing(tmp_path)
    done = sweep(tmp_path)
    after = _listing(tmp_path)
    with capsys.disabled():
        print(f"\n[kill at {step}] left: {before}; sweep: {done}; after: {after}")
    left = 2 if step == "aside" else 1  # aside: the filled new one is still a temporary
    assert len(before) == left and len(done) == left and after == []
    assert (target.read_text() if step == "file" else (target / "weights").read_text()) \
        .strip() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["paused", target.name])
    if step == "aside":
        assert "put back" in done[0] and ".policy.tmp-" in done[1]


def test_a_saved_checkpoint_gets_the_umask_modes(tmp_path):
    """safetensors creates its file 0600; atomic_dir gives every file the mode a plain open
    would, and the directory mkdir's, under the process umask."""
    from safetensors.torch import save_file
    import torch

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "policy") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "policy").iterdir()}
    assert modes == {"model.safetensors": 0o644, "config.json": 0o644}
    assert (tmp_path / "policy").stat().st_mode & 0o777 == 0o755


def test_sweep_leaves_other_files_alone(tmp_path):
    for name in ("notes.tmp", "trees.jsonl.gz", "a.b.tmp", ".hidden-dir"):
        (tmp_path / name).write_text("x")
    (tmp_path / "round_1").mkdir()
    (tmp_path / "round_1" / "trees.jsonl.gz.k3j_a9q2.tmp").write_text("half")
    assert [p.name for p in leftovers(tmp_path)] == ["trees.jsonl.gz.k3j_a9q2.tmp"]
    assert len(sweep(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hidden-dir", "a.b.tmp", "notes.tmp", "round_1", "trees.jsonl.gz"]


def test_redo_stages_and_checkpoint_checks(tmp_path):
    assert plan(2) == [(0, "eval"), (1, "search"), (1, "critics"), (1, "distill"),
                       (1, "eval"), (2, "search"), (2, "critics"), (2, "distill"), (2, "eval")]
    assert parse_stage("2/distill", 2) == (2, "distill")
    for bad, why in (("3/eval", "beyond the run"), ("1/train", "unknown stage 'train'"),
                     ("0/search", "round 0 has only"), ("distill", "expected ROUND/STAGE"),
                     ("-1/eval", "expected ROUND/STAGE")):
        with pytest.raises(ValueError, match=why):
            parse_stage(bad, 2)
    assert checkpoint_problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: checkpoint "
                                                      "directory missing"]
    (tmp_path / "config.json").write_text("{")
    got = checkpoint_problems(tmp_path)
    assert any("config.json: corrupt JSON" in p for p in got)
    assert any("no weights file" in p for p in got)


# -- self-play ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted tiny run every healed one must equal."""
    run = tmp_path_factory.mktemp("straight") / "run"
    proc = _selfplay(*TINY, f"out={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def _same_as(run: Path, straight: Path) -> None:
    assert _rows(run) == _rows(straight)
    assert [(r["round"], r["stage"]) for r in _rows(run)] == plan(1)
    for name in ("round_1/trees.jsonl.gz", "round_1/policy/model.safetensors"):
        assert (run / name).read_bytes() == (straight / name).read_bytes(), name
    for kind in ("value", "outcome"):
        assert (run / f"round_1/critics/{kind}/head.safetensors").is_file()
    _no_temporaries(run)


def _resume(run: Path, case: str, before: list[str], capsys) -> str:
    proc = _selfplay("--resume", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = _listing(run)
    swept = [line for line in proc.stderr.splitlines() if line.startswith("resume: ")]
    with capsys.disabled():
        print(f"\n[{case}] left before resume: {before}\n  the resume: {swept}\n"
              f"  left after resume: {after}")
    assert after == []
    return proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case, step, pattern", [
    ("search's trees file", "file", "*/round_1/trees.jsonl.gz"),
    ("distill's policy directory", "dir", "*/round_1/policy"),
])
def test_killed_in_a_stage_write_the_resume_sweeps_and_matches(straight, tmp_path, case, step,
                                                              pattern, capsys):
    run = tmp_path / "run"
    where = _kill_at(run, step, pattern, *TINY, f"out={run}")
    before = _listing(run)
    assert len(before) == 1 and where.endswith(pattern.lstrip("*")), (where, before)
    err = _resume(run, case, before, capsys)
    assert "removed (a" in err
    _same_as(run, straight)


@pytest.mark.slow
def test_killed_writing_the_state_after_distill_then_the_redo_replaces_the_policy(
        straight, tmp_path, capsys):
    """Killed while state.json is written to mark 1/distill done: the policy is saved but
    the stage is not done; the resume sweeps state.json's temporary, runs distill again
    (replacing the saved policy: a directory moved aside) and ends as the straight run."""
    run = tmp_path / "run"
    _kill_at(run, "file", "*/state.json", *TINY, f"out={run}",
             after=run / "round_1" / "policy")
    before = _listing(run)
    assert [Path(p).name.startswith("state.json.") for p in before] == [True]
    assert "1/distill" not in json.loads((run / "state.json").read_text())["done"]
    _resume(run, "state.json after distill", before, capsys)
    _same_as(run, straight)


@pytest.mark.slow
def test_killed_twice_in_the_critics_stage_the_moved_aside_critic_comes_back(
        straight, tmp_path, capsys):
    """First kill: the outcome critic's directory filled, not renamed (the value critic is
    saved, the stage not done). Second kill, in the resume that re-runs the stage: the saved
    value critic moved aside, the new one not yet in place. The next resume puts the value
    critic back, sweeps the rest, and the run ends as the straight one."""
    run = tmp_path / "run"
    _kill_at(run, "dir", "*/round_1/critics/outcome", *TINY, f"out={run}")
    first = _listing(run)
    assert len(first) == 1 and "/.outcome.tmp-" in f"/{first[0]}"
    _kill_at(run, "aside", "*/round_1/critics/value", "--resume", str(run))
    before = _listing(run)
    assert not (run / "round_1" / "critics" / "value").exists()
    assert len(before) == 2, before  # the old value critic aside, the new one not renamed in
    assert ".value.old-" in before[0] and "value/head.safetensors" in before[0], before
    assert ".value.tmp-" in before[1] and "head.safetensors" in before[1], before
    with capsys.disabled():
        print(f"\n[critics, first kill] left: {first} (swept by the second run)")
    err = _resume(run, "critics directory moved aside", before, capsys)
    assert "the previous value put back in place" in err
    _same_as(run, straight)


@pytest.mark.slow
def test_redo_reruns_a_stage_and_what_follows_and_keeps_what_came_before(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    trees = (run / "round_1" / "trees.jsonl.gz").stat()
    proc = _selfplay("--resume", str(run), "--redo", "1/critics")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("marked not done: 1/critics, 1/distill, 1/eval",
                 "metrics rows dropped: 1/critics, 1/distill, 1/eval",
                 "removed round_1/critics", "removed round_1/policy", "removed summary.md"):
        assert f"redo 1/critics: {line}" in proc.stderr, proc.stderr[-3000:]
    # what came before the stage is untouched: its rows (wall-clock included) and trees
    assert _rows(run, wall_clock=True)[:2] == _rows(straight, wall_clock=True)[:2]
    assert (run / "round_1" / "trees.jsonl.gz").stat().st_mtime_ns == trees.st_mtime_ns
    assert _rows(run, wall_clock=True)[2:] != _rows(straight, wall_clock=True)[2:]  # redone
    _same_as(run, straight)
    assert (run / "summary.md").is_file() and (run / "report.html").is_file()


@pytest.mark.slow
def test_check_passes_a_healthy_run_and_names_each_problem(straight, tmp_path):
    proc = _selfplay("--check", str(straight))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"ok: {straight}: 5 stages done")

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    weights = run / "round_1" / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # cut short: the header still parses
    (run / "round_1" / "critics" / "value" / "config.json").unlink()
    (run / "round_1" / "trees.jsonl.gz").write_bytes(b"not gzip")
    rows = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(r for r in rows if '"eval"' not in r
                                                 or '"round": 1' not in r) + "\n")
    (run / "round_1" / "policy.k3j_a9q2.tmp").write_text("half")
    proc = _selfplay("--check", str(run))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) == 4, proc.stdout + proc.stderr
    expect = [("round_1/trees.jsonl.gz: corrupt gzip", "1/search"),
              ("round_1/critics/value/config.json: missing", "1/critics"),
              ("round_1/policy/model.safetensors: truncated", "1/distill"),
              ("metrics.jsonl: no row for stage 1/eval", None)]
    for (what, stage), line in zip(expect, sorted(lines, key=lambda s: "metrics" in s)):
        assert what in line and (stage is None or f"stage {stage} is marked done" in line), line
    assert "note: " in proc.stderr and "policy.k3j_a9q2.tmp" in proc.stderr

    (run / "state.json").write_text('{"done": ["0/eval", "1/critics"]}')
    proc = _selfplay("--check", str(run))
    assert proc.returncode == 1
    assert "1/critics is marked done but 1/search, before it, is not" in proc.stdout


def test_check_names_a_config_that_does_not_load(tmp_path, capsys):
    from omegaconf import OmegaConf

    from treesearch import selfplay
    from treesearch.config import load_config
    from treesearch.utils.runs import RunDir

    run = RunDir.create(tmp_path / "run", OmegaConf.to_yaml(load_config(None, TINY)))
    (run.path / "config.yaml").write_text("rounds: [unclosed\n")
    rc = selfplay.main(["--check", str(run.path)])
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("config.yaml: does not load"), out


@pytest.mark.parametrize("argv, message", [
    (["--redo", "1/distill"], "error: --redo: needs --resume RUN"),
    (["--resume", "{run}", "--redo", "1/bogus"], "error: --redo: '1/bogus': unknown stage"),
    (["--resume", "{run}", "--redo", "5/eval"], "error: --redo: '5/eval': round 5 is beyond"),
    (["--resume", "{run}", "--redo", "0/distill"], "error: --redo: '0/distill': round 0 has"),
    (["--resume", "{run}", "--redo", "one/eval"], "error: --redo: 'one/eval': expected"),
    (["--resume", "{run}", "rounds=3"], "error: --resume: takes no config or overrides"),
    (["--check", "{run}", "--resume", "{run}"], "error: --check: takes the run directory"),
    (["--check", "{run}/nope"], "error: --check: {run}/nope: not a run directory"),
    (["--resume", "{run}/nope"], "error: --resume: {run}/nope: not a run directory"),
])
def test_bad_redo_and_check_input_is_one_error_line(tmp_path, capsys, argv, message):
    from omegaconf import OmegaConf

    from treesearch import selfplay
    from treesearch.config import load_config
    from treesearch.utils.runs import RunDir

    run = RunDir.create(tmp_path / "run", OmegaConf.to_yaml(load_config(None, TINY)))
    state = (run.path / "state.json").read_bytes()
    rc = selfplay.main([a.format(run=run.path) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(message.format(run=run.path)), lines[0]
    assert (run.path / "state.json").read_bytes() == state  # nothing changed

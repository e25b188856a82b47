"""Healing a self-play run: redo a stage, check a run against its state.

    python -m treesearch.selfplay --resume RUN                     # sweeps, then continues
    python -m treesearch.selfplay --resume RUN --redo 2/distill    # re-runs 2/distill on
    python -m treesearch.selfplay --check RUN                      # exit 0: healthy

A resume first sweeps what killed atomic writes left in the run directory
(``treesearch.utils.heal.sweep``). ``--redo R/STAGE`` re-runs that stage from its inputs,
and with it every stage that depends on it (the later stages of round R and every later
round): ``redo`` takes them off the done list, drops their metrics rows and removes their
outputs (``STAGE_OUTPUTS``) and the end-of-run report, in that order, so a kill anywhere in
between leaves a run that resumes to the same place; nothing written before the stage is
touched. ``check`` verifies every stage marked done against what it wrote: its metrics
row, its trees (gzip JSONL that parses), its checkpoints (``save_pretrained`` directories
with config and weights, safetensors headers that parse and promise no more data than the
file holds), and names each problem on a line of its own.

The stage table lives here (``STAGE_OUTPUTS``: every round's stages in the order they run,
each with the files it writes under ``round_<R>``); ``SelfPlay.stages`` maps the same names
to the methods that run them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import zlib
from pathlib import Path

from treesearch.utils.checkpoints import checkpoint_problems
from treesearch.utils.heal import leftovers
from treesearch.utils.runs import RunDir, RunError

# every round's stages in order, each with what it writes in round_<R> (round 0: eval only)
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "search": ("trees.jsonl.gz",),
    "critics": ("critics",),
    "distill": ("policy",),
    "eval": (),
}
# written at the end of a run from every eval row: stale once any stage is redone
REPORT_FILES = ("summary.md", "accuracy.png", "passk.png", "report.html")
# a saved head critic (``critics.head.HeadCritic.save``) beside its trunk's config
CRITIC_FILES = ("config.json", "critic.json", "head.safetensors")


def plan(rounds: int) -> list[tuple[int, str]]:
    """Every (round, stage) of a run of ``rounds`` rounds, in the order they run."""
    return [(0, "eval")] + [(r, s) for r in range(1, rounds + 1) for s in STAGE_OUTPUTS]


def parse_stage(text: str, rounds: int) -> tuple[int, str]:
    """``R/STAGE`` as (R, STAGE), a stage of a run of ``rounds`` rounds; ValueError saying
    what is wrong (the form, an unknown stage, a round the run does not have)."""
    where, _, stage = str(text).partition("/")
    if not where.strip().isdigit() or not stage:
        raise ValueError(f"{text!r}: expected ROUND/STAGE, e.g. 1/distill")
    r = int(where)
    if stage not in STAGE_OUTPUTS:
        raise ValueError(f"{text!r}: unknown stage {stage!r}; the stages are "
                         f"{', '.join(STAGE_OUTPUTS)}")
    if r > rounds:
        raise ValueError(f"{text!r}: round {r} is beyond the run (rounds = {rounds})")
    if r == 0 and stage != "eval":
        raise ValueError(f"{text!r}: round 0 has only the eval stage (of the starting model)")
    return r, stage


def redo(run: RunDir, rounds: int, round_: int, stage: str) -> list[str]:
    """Make ``round_``/``stage`` and every stage after it not done: off the done list
    first, then their metrics rows, then their outputs and the report. Returns one line
    per thing removed (paths relative to the run)."""
    todo = plan(rounds)
    later = [f"{r}/{s}" for r, s in todo[todo.index((round_, stage)):]]
    done = []
    undone = [s for s in run.done() if s in later]
    run.unmark(later)
    if undone:
        done.append(f"marked not done: {', '.join(undone)}")
    rows = [f"{m.get('round')}/{m.get('stage')}" for m in run.metrics()]
    run.drop_rows(later)
    dropped = [s for s in rows if s in later]
    if dropped:
        done.append(f"metrics rows dropped: {', '.join(dropped)}")
    outputs = [run.path / f"round_{r}" / name for r, s in todo[todo.index((round_, stage)):]
               for name in STAGE_OUTPUTS[s]]
    for path in outputs + [run.path / name for name in REPORT_FILES]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        done.append(f"removed {path.relative_to(run.path).as_posix()}")
    return done


def check(run: RunDir, rounds: int, head_critics: list[str]) -> list[str]:
    """Problems of ``run`` (a run of ``rounds`` rounds whose ``head_critics`` kinds save
    checkpoints), one line each naming the file and the stage: empty when every stage
    marked done has its metrics row and readable outputs."""
    try:
        done = run.done()
    except RunError as exc:
        return [str(exc)]
    problems = _order_problems(run, done, plan(rounds))
    try:
        logged = {f"{m.get('round')}/{m.get('stage')}" for m in run.metrics()}
    except RunError as exc:
        problems.append(str(exc))
        logged = None
    for key in done:
        if key not in {f"{r}/{s}" for r, s in plan(rounds)}:
            continue
        if logged is not None and key not in logged:
            problems.append(f"{run.path / 'metrics.jsonl'}: no row for stage {key}, which "
                            "state.json marks done")
        r, stage = key.split("/")
        problems += [f"{p} (stage {key} is marked done)"
                     for p in _output_problems(run.path / f"round_{r}", stage, head_critics)]
    return problems


def _order_problems(run: RunDir, done: list[str], order: list[tuple[int, str]]) -> list[str]:
    """Done stages the run cannot have: unknown ones, and ones after a stage not done (a
    run finishes its stages in order)."""
    names = [f"{r}/{s}" for r, s in order]
    state = run.path / "state.json"
    problems = [f"{state}: unknown stage {key!r} marked done (this run's stages: "
                f"{names[0]} ... {names[-1]})" for key in done if key not in names]
    missing = None
    for key in names:
        if key not in done:
            missing = missing or key
        elif missing:
            problems.append(f"{state}: {key} is marked done but {missing}, before it, is not")
    return problems


def _output_problems(round_dir: Path, stage: str, head_critics: list[str]) -> list[str]:
    """What is missing or corrupt among the outputs ``stage`` wrote in ``round_dir``."""
    if stage == "search":
        return _trees_problems(round_dir / "trees.jsonl.gz")
    if stage == "distill":
        return checkpoint_problems(round_dir / "policy")
    if stage == "critics":
        return [p for kind in head_critics
                for p in checkpoint_problems(round_dir / "critics" / kind, needs=CRITIC_FILES)]
    return []


def _trees_problems(path: Path) -> list[str]:
    """A trees file that is missing, not gzip, cut short, or holds a line that is not JSON."""
    if not path.is_file():
        return [f"{path}: missing"]
    lineno = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    json.loads(line)
    except (OSError, EOFError, zlib.error) as exc:
        return [f"{path}: corrupt gzip ({type(exc).__name__}: {exc})"]
    except (ValueError, UnicodeDecodeError):
        return [f"{path}: line {lineno}: corrupt JSON"]
    return []


def leftover_notes(run: RunDir) -> list[str]:
    """One line per temporary an interrupted write left (not a problem: a resume sweeps
    them)."""
    return [f"{p}: left by an interrupted write (--resume removes it)"
            for p in leftovers(run.path)]

"""The README's figures for the embedded default, made by the README's own command.

    python benchmarks/default_run.py                 # runs (or resumes) seeds 0, 1, 2, then tables
    python benchmarks/default_run.py --no-run        # tables the finished runs only
    python benchmarks/default_run.py --config countdown3 --runs runs/countdown3   # another recipe

Seed 0 is exactly the quickstart's ``python -m treesearch.selfplay`` (the default seed is 0;
only ``out=`` is added, which changes no computation); seeds 1 and 2 add ``seed=S``. Each
run lives in ``RUNS/s<seed>`` (default ``runs/default``) and is resumed with ``--resume``
when it exists unfinished, so the script can be killed and started again. Before tabling,
each run's saved config is checked against the embedded default (or ``--config``'s recipe,
whose command then names it and whose file is ``default_run_<recipe>.json``): a run made
with any other knob is refused by name (``out``, ``seed`` and ``progress`` change nothing
computed).

``benchmarks/results/default_run.json`` holds the command, the held-out problems per round
(``problems``) and, per eval metric (greedy, pass@1 .. pass@8, mcts, mcts_tokens, majority,
majority_tokens: those every run logged) and per round: the quickstart run's value
(``quickstart``, seed 0), every seed's (``seeds``), and their mean and standard error
(``mean``, ``se``; ddof 1, n = 3).
``tests/test_default_figures.py`` holds the README's quickstart sentence equal to this file;
``--sentence`` prints that sentence as the README should say it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesearch.config import ConfigError, load_config  # noqa: E402
from treesearch.utils.estimators import standard_error  # noqa: E402
from treesearch.utils.runs import write_json  # noqa: E402

METRICS = ("greedy", "pass@1", "pass@2", "pass@4", "pass@8", "mcts", "mcts_tokens", "majority",
           "majority_tokens")
COMMAND = "python -m treesearch.selfplay"
DEFAULT = "default"
# keys a default run may differ in: where it is written, the seed of seeds 1 and 2, and
# whether it draws progress bars
FREE_KEYS = {"out", "seed", "progress"}


def recipe_args(recipe: str = DEFAULT) -> list[str]:
    """The command-line arguments that pick ``recipe`` (none for the embedded default)."""
    return [] if recipe == DEFAULT else ["--config", recipe]


def command(seed: int, run: Path, recipe: str = DEFAULT) -> list[str]:
    """The self-play command of one seed: the quickstart's (with ``--config`` for another
    recipe), plus ``out=`` (and ``seed=``)."""
    extra = [] if seed == 0 else [f"seed={seed}"]
    return [sys.executable, "-m", "treesearch.selfplay", *recipe_args(recipe), *extra,
            f"out={run}"]


def finished(run: Path, rounds: int) -> bool:
    """Whether ``run`` logged an eval row for every round 0..rounds."""
    return len(eval_rows(run)) == rounds + 1 if (run / "metrics.jsonl").is_file() else False


def ensure_run(seed: int, run: Path, rounds: int, recipe: str = DEFAULT) -> None:
    """Run seed ``seed`` into ``run``, or resume it there; a CalledProcessError on failure."""
    if finished(run, rounds):
        return
    argv = ([sys.executable, "-m", "treesearch.selfplay", "--resume", str(run)]
            if (run / "config.yaml").is_file() else command(seed, run, recipe))
    print("+", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, check=True, cwd=ROOT)


def check_default(run: Path, seed: int, recipe: str = DEFAULT) -> None:
    """A ValueError naming every key in which ``run``'s saved config departs from the
    embedded default or ``recipe`` (apart from ``FREE_KEYS``; a key added since the run was
    made counts at its default), or a seed that is not ``seed``."""
    saved = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    default = OmegaConf.to_container(load_config(recipe), resolve=True)

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    got, want = dict(leaves(saved)), dict(leaves(default))
    # a key the saved config lacks came after the run was made: the run had its default
    differ = sorted(k for k in set(got) | set(want)
                    if k not in FREE_KEYS and got.get(k, want.get(k)) != want.get(k, "<missing>"))
    if differ:
        name = "the embedded default" if recipe == DEFAULT else f"recipe {recipe}"
        raise ValueError(f"{run}: not {name}; differs in {', '.join(differ)}")
    if got.get("seed") != seed:
        raise ValueError(f"{run}: seed {got.get('seed')}, expected {seed}")


def eval_rows(run: Path) -> list[dict]:
    """The eval rows of ``run``'s metrics.jsonl, by round."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    return sorted((r for r in rows if r.get("stage") == "eval"), key=lambda r: r["round"])


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``estimators.standard_error``: ddof 1; 0.0 for
    one value)."""
    return sum(values) / len(values), standard_error(values)


def table(runs: dict[int, Path], recipe: str = DEFAULT) -> dict:
    """The figures file's content over ``runs`` ({seed: run directory}) of ``recipe``, seed
    0 first."""
    per_seed = {s: eval_rows(run) for s, run in runs.items()}
    rounds = {len(rows) for rows in per_seed.values()}
    if len(rounds) != 1:
        raise ValueError(f"runs of unequal length: {sorted(rounds)} eval rounds")
    out = {"command": " ".join([COMMAND, *recipe_args(recipe)]),
           "problems": load_config(recipe).eval.problems,
           "seeds": sorted(runs), "rounds": rounds.pop() - 1,
           "runs": {f"s{s}": run.name for s, run in sorted(runs.items())},
           "quickstart": {}, "per_seed": {}, "mean": {}, "se": {}}
    for key in (k for k in METRICS if all(k in r for rows in per_seed.values() for r in rows)):
        series = {s: [round(float(r[key]), 4) for r in rows] for s, rows in per_seed.items()}
        out["quickstart"][key] = series[min(series)]
        out["per_seed"][key] = {f"s{s}": v for s, v in sorted(series.items())}
        stats = [mean_se([series[s][i] for s in sorted(series)]) for i in range(out["rounds"] + 1)]
        out["mean"][key] = [round(m, 4) for m, _ in stats]
        out["se"][key] = [round(e, 4) for _, e in stats]
    return out


def sentence(fig: dict) -> str:
    """The README's quickstart figures, as the README says them (tests hold it to this)."""
    q, m, e = fig["quickstart"], fig["mean"], fig["se"]
    arrow = lambda xs, nd: " -> ".join(f"{x:.{nd}f}" for x in xs)  # noqa: E731
    n = len(fig["seeds"])
    return (f"greedy accuracy on {fig['problems']} test problems goes {arrow(q['greedy'], 3)} "
            f"over four rounds and pass@8 {arrow([q['pass@8'][0], q['pass@8'][-1]], 2)}; over "
            f"{n} seeds the last round's greedy is {m['greedy'][-1]:.3f} ± "
            f"{e['greedy'][-1]:.3f} (from {m['greedy'][0]:.3f}), pass@8 {m['pass@8'][-1]:.2f} "
            f"± {e['pass@8'][-1]:.2f} (from {m['pass@8'][0]:.2f}) and held-out MCTS "
            f"{m['mcts'][-1]:.2f} ± {e['mcts'][-1]:.2f} (from {m['mcts'][0]:.2f}) against "
            f"majority vote's {m['majority'][-1]:.2f} ± {e['majority'][-1]:.2f} (from "
            f"{m['majority'][0]:.2f}) at the same tokens")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=DEFAULT,
                        help="the recipe whose runs these are (default: the embedded default)")
    parser.add_argument("--runs", type=Path, default=None, help="default: runs/<config>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None,
                        help="default: benchmarks/results/default_run.json (default_run_"
                             "<config>.json for another recipe)")
    parser.add_argument("--no-run", action="store_true", help="table finished runs only")
    parser.add_argument("--sentence", action="store_true", help="print the README sentence")
    args = parser.parse_args(argv)
    if 0 not in args.seeds:
        parser.error("--seeds must include 0 (the quickstart's own run)")
    try:
        rounds = load_config(args.config).rounds
    except ConfigError as err:
        parser.error(f"--config {args.config}: {err}")
    suffix = "" if args.config == DEFAULT else f"_{args.config}"
    args.runs = args.runs or ROOT / "runs" / args.config
    args.json = args.json or ROOT / f"benchmarks/results/default_run{suffix}.json"
    runs = {s: args.runs / f"s{s}" for s in args.seeds}
    for s, run in runs.items():
        if not args.no_run:
            ensure_run(s, run, rounds, args.config)
        if not finished(run, rounds):
            parser.error(f"{run}: unfinished (run without --no-run to finish it)")
        check_default(run, s, args.config)
    fig = table(runs, args.config)
    write_json(args.json, fig)
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    if args.sentence:
        print(sentence(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())

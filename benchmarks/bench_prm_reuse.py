"""PRM tokens processed per scored state, with and without prefix reuse, side by side.

For each published PRM format (``critics.prm_formats.FORMATS``) a tiny random checkpoint
of that format (``tests/tiny_models.save_tiny_prm``; or ``--prm FORMAT=DIR`` for a real
one) is the process critic of one MCTS decode of countdown3 problems by the tiny prior
(``--budget`` generated tokens per problem). Every call the search made to the critic is
recorded (the states, in the order and batches the search sent them) and then replayed
on two fresh critics over the same checkpoint: one with the prefix cache (the default)
and one without (``cache_tokens=0``: every state runs its rendered ids up to its last read
position). The script checks that both give the same scores, and reports per format:

    states            states scored (the PRM's calls in the search, and the states in them)
    rendered_tokens   mean rendered length of a state in the PRM's format (all its ids)
    stem_tokens       mean ids up to the last read position (what a state needs run)
    reuse / no_reuse  mean PRM tokens processed per scored state, with / without reuse
    ratio             no_reuse / reuse
    sample            one state: its rendered text and the read positions (one per step)

    python benchmarks/bench_prm_reuse.py --quick          # 4 problems, 128 tokens each
    python benchmarks/bench_prm_reuse.py --json benchmarks/results/prm_reuse.json

The tiny checkpoints are random: their scores mean nothing, the token counts are what a
real PRM of the same format would process for the same states (the formats, not the
weights, set them). Paths in the JSON are relative.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny checkpoint builders

from critics.compose import StepScorer  # noqa: E402
from critics.prm import PRMCritic  # noqa: E402
from critics.prm_formats import FORMATS  # noqa: E402
from policies.hf import HFPolicy  # noqa: E402
from policies.zoo import resolve  # noqa: E402
from tiny_models import save_tiny_prm  # noqa: E402
from treesearch.search import SearchConfig  # noqa: E402
from treesearch.search.strategies import decode  # noqa: E402
from treesearch.tasks import get_task  # noqa: E402


class Recorder:
    """A critic that records every batch of states it is asked to score."""

    def __init__(self, critic: PRMCritic):
        self.critic, self.kind, self.name = critic, critic.kind, critic.name
        self.counts = critic.counts
        self.batches: list[list] = []

    def score(self, states):
        self.batches.append([(list(p), [list(s) for s in steps]) for p, steps in states])
        return self.critic.score(states)


def replay(path, fmt: str, batches, task, problems, tokenizer, cache_tokens: int):
    """(processed tokens, seconds, last-step scores float32 [states]) of a fresh critic
    scoring ``batches`` in order."""
    critic = PRMCritic(path, "process", prm_format=fmt, policy_tokenizer=tokenizer,
                       cache_tokens=cache_tokens, step_delimiter=task.step_delimiter)
    critic.set_problems(task, problems)
    start = time.perf_counter()
    scores = np.concatenate([critic.score(b) for b in batches])
    return critic.counts.processed, time.perf_counter() - start, scores


def measure(fmt: str, path: Path, policy, task, problems, budget: int, search) -> dict:
    critic = PRMCritic(path, "process", prm_format=fmt, policy_tokenizer=policy.tokenizer,
                       step_delimiter=task.step_delimiter)
    critic.set_problems(task, problems)
    recorder = Recorder(critic)
    policy.reset_cache()
    policy.generator.manual_seed(0)
    decode(policy, StepScorer(process=recorder), problems, "mcts", budget, task=task,
           search=search, temperature=0.7)
    states = [s for b in recorder.batches for s in b]
    runs = {label: replay(path, fmt, recorder.batches, task, problems, policy.tokenizer, cache)
            for label, cache in (("reuse", 1 << 16), ("no_reuse", 0))}
    diff = float(np.abs(runs["reuse"][2] - runs["no_reuse"][2]).max())
    assert diff < 1e-4, f"{fmt}: scores with and without reuse differ by {diff}"
    rendered = [critic.render(s) for s in states]
    sample_state = max(states, key=lambda s: len(s[1]))
    sample = critic.render(sample_state)
    n = len(states)
    return {"format": fmt, "checkpoint": str(path.name), "calls": len(recorder.batches),
            "states": n, "rendered_tokens": float(np.mean([len(r.ids) for r in rendered])),
            "stem_tokens": float(np.mean([r.read[-1] + 1 for r in rendered])),
            "reuse": runs["reuse"][0] / n, "no_reuse": runs["no_reuse"][0] / n,
            "ratio": runs["no_reuse"][0] / max(runs["reuse"][0], 1),
            "seconds_reuse": round(runs["reuse"][1], 3),
            "seconds_no_reuse": round(runs["no_reuse"][1], 3),
            "max_score_diff": diff,
            "sample": {"text": critic.tokenizer.decode(sample.ids), "read": sample.read,
                       "tokens": len(sample.ids),
                       "read_tokens": critic.tokenizer.convert_ids_to_tokens(
                           [sample.ids[j] for j in sample.read])}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 problems at 128 tokens")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--budget", type=int, default=256)
    parser.add_argument("--prm", action="append", default=[],
                        help="FORMAT=DIR: a checkpoint of that format instead of a tiny one")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.budget = 4, 128
    torch.set_num_threads(1)
    task = get_task("countdown3")
    problems = task.problems("val", args.problems, seed=0)
    policy = HFPolicy(resolve("tiny-countdown3"), step_delimiter=task.step_delimiter,
                      temperature=0.7, seed=0)
    given = dict(item.split("=", 1) for item in args.prm)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            path = Path(given[fmt]) if fmt in given else save_tiny_prm(Path(tmp) / fmt, fmt)
            rows.append(measure(fmt, path, policy, task, problems, args.budget,
                                SearchConfig(max_depth=6)))  # as prm_reuse.json was made
            r = rows[-1]
            print(f"{fmt:14s} states {r['states']:5d}  rendered {r['rendered_tokens']:6.1f}  "
                  f"stem {r['stem_tokens']:6.1f}  tokens/state: reuse {r['reuse']:6.1f}  "
                  f"no reuse {r['no_reuse']:6.1f}  ratio {r['ratio']:.2f}")
            print(f"{'':14s} sample read positions {r['sample']['read']} "
                  f"(tokens {r['sample']['read_tokens']}) of {r['sample']['tokens']}: "
                  f"{r['sample']['text']!r}")
    if args.json:
        out = {"args": {"problems": args.problems, "budget": args.budget, "task": "countdown3",
                        "policy": "tiny-countdown3", "strategy": "mcts"}, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HFPolicy's decoding against plain ``model.generate``, side by side in one process.

``HFPolicy._decode`` keeps each call's KV in buffers allocated once (``policies.hf._StepCache``:
new columns written in place, rows selected in place) and the KV of every prefix and
unfinished step in its prefix cache. The baseline (``GenerateSteps``) proposes the same
steps with ``model.generate`` on the same model: every call prefills its whole prefixes and
keeps nothing between calls. Both decode the same ``generate_solutions`` workload, in
alternating repeats, and the script prints samples/s and generated tokens/s of each and the
ratio of tokens/s to the baseline. The two sample with different generators, so their
samples (and lengths) differ: compare tokens/s (greedy, ``--temperature 0``, they write
the same tokens, which the script checks). The old comparison against the
concatenating ``DynamicCache`` path is gone with that path; the tests hold the step buffers
to an uncached forward pass instead.

    python benchmarks/bench_decode_cache.py                  # tiny-countdown3, 32 x 64
    python benchmarks/bench_decode_cache.py --problems 8 --n 16 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from policies.hf import HFPolicy
from policies.rollout import generate_solutions
from policies.zoo import resolve
from treesearch.engine.interfaces import StepProposal
from treesearch.tasks import get_task


class GenerateSteps:
    """The policy shape ``generate_solutions`` needs, over plain ``model.generate`` on an
    ``HFPolicy``'s model: steps end at EOS (finished) or at a token holding the step
    delimiter, as the policy's own do (a delimiter spelt across tokens is not detected)."""

    def __init__(self, policy: HFPolicy):
        self.model, self.tokenizer = policy.model, policy.tokenizer
        self.max_positions, self.pad_id = policy.max_positions, policy.pad_id
        self.temperature = policy.temperature
        self.is_eos = policy.is_eos
        self.stop = torch.nonzero(policy.is_eos | policy.is_delim).flatten().tolist()

    def propose(self, prefixes, n: int, max_step_tokens: int) -> list[list[StepProposal]]:
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prefixes):  # left-padded
            ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
        room = self.max_positions - width if self.max_positions else max_step_tokens
        sampling = (dict(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0)
                    if self.temperature > 0 else dict(do_sample=False))
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.repeat_interleave(n, 0),
                                      attention_mask=mask.repeat_interleave(n, 0),
                                      max_new_tokens=min(max_step_tokens, room),
                                      eos_token_id=self.stop,
                                      pad_token_id=self.pad_id, return_dict_in_generate=True,
                                      output_logits=True, **sampling)
        new = out.sequences[:, width:]
        logp = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)
        logp = logp.gather(2, new[:, :, None]).squeeze(2)
        rows, stop = [], set(self.stop)
        for r in range(new.shape[0]):
            toks = new[r].tolist()
            end = next((k + 1 for k, x in enumerate(toks) if x in stop), len(toks))
            rows.append(StepProposal(np.asarray(toks[:end], np.int32),
                                     float(logp[r, :end].sum()), end,
                                     bool(self.is_eos[toks[end - 1]])))
        return [rows[i * n:(i + 1) * n] for i in range(len(prefixes))]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-countdown3", help="policies.zoo name or dir")
    parser.add_argument("--task", default="countdown3")
    parser.add_argument("--problems", type=int, default=32, help="val problems")
    parser.add_argument("--n", type=int, default=64, help="samples per problem")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-step-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--compact-below", type=float, default=None,
                        help="also time HFPolicy with this HFPolicy._compact_below")
    return parser.parse_args(argv)


def build(name: str, path, step_delimiter: str, compact_below: float | None):
    """The side called ``name``: an HFPolicy (seed 0) or the generate baseline on one."""
    policy = HFPolicy(path, step_delimiter=step_delimiter, seed=0)
    if name == "generate":
        torch.manual_seed(0)  # generate samples from torch's global generator
        return GenerateSteps(policy)
    if compact_below is not None:
        policy._compact_below = compact_below
    return policy


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    problems = task.problems("val", args.problems, seed=0)
    path = resolve(args.model)
    variants = {"generate": None, "hf": None}
    if args.compact_below is not None:
        variants[f"hf@{args.compact_below}"] = args.compact_below
    seconds = {name: [] for name in variants}
    tokens, generated = {}, {}
    for _ in range(args.repeats):
        for name, compact in variants.items():
            policy = build(name, path, task.step_delimiter, compact)
            start = time.perf_counter()
            _, counts, toks = generate_solutions(policy, policy.tokenizer, task, problems,
                                                 n=args.n, temperature=args.temperature,
                                                 max_steps=args.max_steps,
                                                 max_step_tokens=args.max_step_tokens,
                                                 return_counts=True, return_tokens=True)
            seconds[name].append(time.perf_counter() - start)
            tokens[name], generated[name] = toks, int(counts.sum())
    samples = args.problems * args.n
    print(f"{args.model} on {args.task}: {args.problems} problems x {args.n} samples, "
          f"temperature {args.temperature}, max_steps {args.max_steps}, "
          f"max_step_tokens {args.max_step_tokens}, {args.threads} thread(s), "
          f"best of {args.repeats}")
    best = {name: min(s) for name, s in seconds.items()}
    rate = {name: generated[name] / best[name] for name in variants}
    for name in variants:
        same = "" if name == "hf" else f"  same tokens as hf: {tokens[name] == tokens['hf']}"
        print(f"  {name:>10}: {samples / best[name]:8.1f} samples/s  {rate[name]:8.1f} tok/s  "
              f"({best[name]:.2f} s; runs {', '.join(f'{s:.2f}' for s in seconds[name])})  "
              f"tok/s ratio to generate {rate[name] / rate['generate']:.2f}{same}")


if __name__ == "__main__":
    main()

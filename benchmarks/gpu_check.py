"""The GPU check's measurements (run by ``benchmarks/gpu_check.sh``; see its header).

    python benchmarks/gpu_check.py --out DIR [--device cuda] [--dtype bfloat16] [--dry-run]

Sections, each timed and recorded even when another fails (its error is kept):

- ``env``: torch, CUDA, the device's name and memory;
- ``hf_tiny``: ``HFPolicy`` step proposals with the tiny prior (tiny-countdown3) on the
  device in ``--dtype``: generated tokens/s at batch 1, 16 and 64 (distinct countdown
  prompts, n = 1, steps of up to 24 tokens; ``benchmarks/bench_policies.py``'s measure);
- ``hf_smollm2_shape``: the same with a randomly initialised Llama of SmolLM2-135M's shape
  (30 layers, hidden 576, 9 heads, 3 KV heads, MLP 1536, vocabulary 49152; built from
  its config, nothing downloaded; for speed only: it talks the tiny prior's character
  tokenizer, and the logits of ids beyond that vocabulary are masked after the full
  49152-wide head has been computed);
- ``critics``: a value ``HeadCritic`` on the tiny trunk on the device (float32, as the
  critic loads; then its trunk cast to ``--dtype``): states scored per second (256 states,
  batches of 64), and one fit epoch on 256 states in float32;
- ``selfplay``: one short self-play round (``python -m treesearch.selfplay`` with the
  policy and critics on the device in ``--dtype``): its metrics rows and wall time.

``--dry-run`` shrinks every size (the SmolLM2 shape to 2 layers of 64, few problems) so
the script's plumbing can be checked on a CPU in a minute. Writes ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

BATCHES = (1, 16, 64)
SMOLLM2 = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
           "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
           "max_position_embeddings": 8192, "rope_theta": 100000.0,
           "tie_word_embeddings": True}
DRY_SMOLLM2 = {**SMOLLM2, "vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def section(results: dict, name: str, fn) -> None:
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 (keep going: the other sections still report)
        results[name] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-3000:]}
    results[name]["seconds"] = round(time.perf_counter() - start, 2)
    print(f"{name}: {json.dumps(results[name])[:600]}", flush=True)


def env(device: str) -> dict:
    import torch

    out = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
           "python": sys.version.split()[0], "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1))
    return out


def rates(policy, args) -> dict:
    from bench_policies import countdown_prompts, tokens_per_second

    count = sum(BATCHES) * args.repeats + 8
    prompts = iter(countdown_prompts(policy.tokenizer, count, seed=1))
    tokens_per_second(policy, prompts, 4, args.step_tokens, 1)  # warm-up (kernels, allocator)
    return {f"tokens_per_s_batch{b}": round(tokens_per_second(policy, prompts, b,
                                                              args.step_tokens, args.repeats), 1)
            for b in BATCHES}


def hf_tiny(args) -> dict:
    from policies.hf import HFPolicy
    from policies.zoo import resolve

    policy = HFPolicy(resolve("tiny-countdown3"), device=args.device, dtype=args.dtype,
                      temperature=1.0, seed=0)
    return {"model": "tiny-countdown3", "dtype": str(next(policy.model.parameters()).dtype),
            **rates(policy, args)}


def hf_smollm2_shape(args) -> dict:
    import torch
    import transformers

    from policies.hf import HFPolicy
    from policies.zoo import resolve

    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve("tiny-countdown3"),
                                                           local_files_only=True)
    shape = DRY_SMOLLM2 if args.dry_run else SMOLLM2
    config = transformers.LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    known = len(tokenizer)

    def mask(module, inputs, logits):  # the tokenizer's ids only (after the full matmul)
        logits[..., known:] = float("-inf")
        return logits

    model.lm_head.register_forward_hook(mask)
    params = sum(p.numel() for p in model.parameters())
    policy = HFPolicy((model, tokenizer), device=args.device, dtype=args.dtype,
                      temperature=1.0, seed=0)
    return {"shape": shape, "params_m": round(params / 1e6, 1), **rates(policy, args)}


def critics(args) -> dict:
    import numpy as np
    import torch
    from bench_policies import countdown_prompts

    from critics.head import HeadCritic
    from policies.zoo import resolve

    path = resolve("tiny-countdown3")
    critic = HeadCritic(path, "value", device=args.device)
    prompts = countdown_prompts(critic.tokenizer, 64, seed=2)
    states = [(p, [p[-8:]] * k) for p in prompts for k in (1, 2, 3, 4)]  # 256 states
    out = {}
    for label, dtype in (("float32", None), (args.dtype, args.dtype)):
        if dtype not in (None, "float32"):  # the trunk; the head reads its features in fp32
            critic.trunk.to(getattr(torch, dtype))
        critic.score(states[:64])  # warm-up
        start = time.perf_counter()
        scores = critic.score(states)
        seconds = time.perf_counter() - start
        out[f"states_per_s_{label}"] = round(len(states) / seconds, 1)
        out[f"finite_{label}"] = bool(np.isfinite(scores).all())
    critic.trunk.to(torch.float32)
    start = time.perf_counter()
    critic.fit(states, [0.5] * len(states), epochs=1)
    out["fit_epoch_s_256_states"] = round(time.perf_counter() - start, 2)
    return out


def selfplay(args) -> dict:
    run = Path(args.out) / "selfplay"
    size = (["train_problems=4", "eval.problems=4", "eval.mcts_problems=2",
             "search.simulations=4"] if args.dry_run else
            ["train_problems=64", "eval.problems=64", "eval.mcts_problems=16",
             "search.simulations=24"])
    cmd = [sys.executable, "-m", "treesearch.selfplay", "rounds=1", *size, "eval.samples=4",
           "critics.epochs=1", "progress=false", f"policy.device={args.device}",
           f"critics.device={args.device}", f"out={run}"]
    if args.dtype != "float32":
        cmd.append(f"policy.dtype={args.dtype}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                   os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=args.selfplay_timeout, check=False)
    out = {"command": " ".join(cmd[1:]).replace(str(run), "$OUT/selfplay"),
           "returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 1)}
    if proc.returncode != 0:
        out["stderr_tail"] = proc.stderr[-3000:]
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        out["metrics"] = [json.loads(line) for line in metrics.read_text().splitlines()]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes (CPU plumbing check)")
    parser.add_argument("--selfplay-timeout", type=int, default=300)
    args = parser.parse_args(argv)
    args.repeats, args.step_tokens = (1, 8) if args.dry_run else (3, 24)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    results = {"dry_run": args.dry_run, "dtype": args.dtype}
    section(results, "env", lambda: env(args.device))
    section(results, "hf_tiny", lambda: hf_tiny(args))
    section(results, "hf_smollm2_shape", lambda: hf_smollm2_shape(args))
    section(results, "critics", lambda: critics(args))
    section(results, "selfplay", lambda: selfplay(args))
    path = Path(args.out) / "gpu_check.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    failed += ["selfplay"] if results["selfplay"].get("returncode") not in (0, None) else []
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

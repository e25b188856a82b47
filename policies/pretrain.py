"""Train a tiny Llama prior from scratch on synthetic step-by-step traces of a task.

    python -m policies.pretrain --task countdown --hidden 128 --layers 4 --heads 4 \\
        --time-budget 300 --out runs/prior-countdown

The model is a ``LlamaForCausalLM`` over the character tokenizer
(``policies.tokenization.build_char_tokenizer``). Each training sequence is

    <bos> + task.prompt(problem) + task.solution_trace(problem, rng, flawed, style) + <eos>

over TRAIN problems only; a trace is drawn afresh each time a problem is used (the
countdown solver shuffles its search, so a problem gets varied solutions), flawed with
probability ``flawed_share`` (or, with probability ``walk_share``, an honest random
attempt: ``walk_trace``), in a style drawn from the ``n_styles_used`` styles kept
(``held_out_style`` is never shown). With ``stated_confidence`` every trace ends with one
more line, "confidence: 0.D" with D drawn uniformly from 1-9 whatever the trace: a prior
that states a confidence which says nothing (the starting point of RLCR's calibration
reward, ``policies.confidence``). The loss covers the solution tokens and EOS
(``loss_on="solution"``, default) or every token after BOS (``"all"``). Plain AdamW,
linear warmup then cosine decay to ``min_lr_ratio * lr``; batches of right-padded
sequences (padding never reaches a real token under causal attention, and is out of the
loss). Training stops at the first of ``steps``, ``tokens`` and ``time_budget_s``
(``tokens=DEFAULT_TOKENS`` when none is given); the schedule follows whichever budget is
furthest along, so a time-limited run still ends its cosine. Deterministic on CPU for a
seed (a time budget makes the stop point depend on speed; ``steps``/``tokens`` do not).

The run ends by evaluating the saved model through ``HFPolicy`` on held-out problems of
``eval_split`` (test by default; val while choosing a prior): greedy accuracy and pass@k
from ``eval_samples`` samples at temperature ``eval_temperature`` (unbiased estimator), and
how many of the sampled steps are valid (``treesearch.tasks.validity``: valid-step share,
correct answers reached through valid steps only). The output directory then holds a standard
Hugging Face checkpoint (config.json, model.safetensors, tokenizer files), plus
``metrics.json`` and ``pretrain_command.txt`` (the command line that reproduces it). It is
written to a temporary sibling and renamed into place, so a killed run leaves any
earlier directory of that name intact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

from policies.hf import HFPolicy
from policies.rollout import generate_solutions, pass_at_k
from policies.tokenization import build_char_tokenizer
from treesearch.tasks import get_task
from treesearch.tasks.validity import step_validity
from treesearch.utils.atomic import atomic_dir, write_text
from treesearch.utils.cli import ArgumentParser, CLIError, blame, dotted_args
from treesearch.utils.runs import portable_path

DEFAULT_TOKENS = 4_000_000  # training tokens when no budget is given


@dataclass
class PretrainConfig:
    """Every knob of a pretraining run (the CLI flags are these names with dashes)."""

    # any form get_task takes: a built-in, rg:<dataset>, package.module:factory
    task: str = "countdown"
    # the task's own arguments (the CLI's task_args.KEY=VALUE items); unknown keys are errors
    task_args: dict = field(default_factory=dict)
    out: str = "runs/prior"
    # model
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None          # None: = heads
    intermediate: int | None = None      # None: 4 * hidden
    max_positions: int = 256
    # data
    train_problems: int = 4000
    flawed_share: float = 0.2
    # share of honest random attempts (``walk_trace``: valid random steps, an answer that is
    # right only by chance), so the prior learns that a step's result is its arithmetic
    walk_share: float = 0.0
    n_styles_used: int | None = None     # None: every style not held out
    held_out_style: int | None = None
    held_out_strategy: str | None = None  # e.g. "division": no trace ever uses it
    stated_confidence: bool = False      # a "confidence: 0.D" line (uniform D) after each trace
    loss_on: str = "solution"            # "solution" or "all"
    # budget: the first reached stops training; none set means tokens=DEFAULT_TOKENS
    steps: int | None = None
    tokens: int | None = None
    time_budget_s: float | None = None
    # optimisation
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1
    # evaluation on held-out problems of eval_split ("val" to choose a prior, "test" to report)
    eval_split: str = "test"
    eval_problems: int = 100
    eval_samples: int = 16
    eval_temperature: float = 1.0
    eval_max_steps: int = 8
    eval_max_step_tokens: int = 48
    progress: bool = True


class Refusal(ValueError):
    """A request that turns out impossible once the data is made (too few distinct
    problems, a sequence longer than the model takes, a strategy that cannot be held
    out); ``cli_flag`` names the flag to change."""

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.cli_flag = flag


@dataclass
class PretrainResult:
    out: str
    metrics: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- checks

def _positive_int(name, value, allow_none=False, minimum=1):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"pretrain: {name} must be an int >= {minimum}, got {value!r}")


def validate(config: PretrainConfig):
    """Check every knob before any work; returns (task, styles used). ValueError names the
    knob; an unknown task raises the task registry's ValueError."""
    c = config
    for name in ("hidden", "layers", "heads", "max_positions", "train_problems",
                 "batch_size", "threads", "eval_samples", "eval_max_steps",
                 "eval_max_step_tokens"):
        _positive_int(name, getattr(c, name))
    for name in ("kv_heads", "intermediate", "steps", "tokens"):
        _positive_int(name, getattr(c, name), allow_none=True)
    _positive_int("warmup_steps", c.warmup_steps, minimum=0)
    _positive_int("eval_problems", c.eval_problems, minimum=0)
    _positive_int("seed", c.seed, minimum=0)
    if c.hidden % c.heads:
        raise ValueError(f"pretrain: hidden ({c.hidden}) must be a multiple of heads ({c.heads})")
    kv = c.kv_heads or c.heads
    if c.heads % kv:
        raise ValueError(f"pretrain: heads ({c.heads}) must be a multiple of kv_heads ({kv})")
    for name in ("lr", "weight_decay", "grad_clip", "eval_temperature"):
        v = getattr(c, name)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"pretrain: {name} must be a finite number >= 0, got {v!r}")
    if c.lr <= 0:
        raise ValueError(f"pretrain: lr must be > 0, got {c.lr!r}")
    for name in ("flawed_share", "walk_share", "min_lr_ratio"):
        v = getattr(c, name)
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"pretrain: {name} must be in [0, 1], got {v!r}")
    if c.flawed_share + c.walk_share > 1.0:
        raise ValueError(f"pretrain: flawed_share + walk_share must be <= 1, got "
                         f"{c.flawed_share} + {c.walk_share}")
    if c.time_budget_s is not None and not (isinstance(c.time_budget_s, (int, float))
                                            and 0 < c.time_budget_s < math.inf):
        raise ValueError(f"pretrain: time_budget_s must be a finite number > 0, got "
                         f"{c.time_budget_s!r}")
    if not isinstance(c.stated_confidence, bool):
        raise ValueError("pretrain: stated_confidence must be true or false, "
                         f"got {c.stated_confidence!r}")
    if c.eval_split not in ("val", "test"):
        raise ValueError(f"pretrain: eval_split must be 'val' or 'test', got {c.eval_split!r}")
    if c.loss_on not in ("solution", "all"):
        raise ValueError(f"pretrain: loss_on must be 'solution' or 'all', got {c.loss_on!r}")
    if not c.out:
        raise ValueError("pretrain: out (the output directory) must be set")
    return _validate_task(c)


def _validate_task(c: PretrainConfig):
    """``validate``'s task knobs: the task writes traces (random walks with walk_share),
    the held-out style and strategy exist; returns (task, styles used)."""
    task = get_task(c.task, **(c.task_args or {}))  # the registry's errors name the task or the key
    if not task.writes_traces:
        raise ValueError(f"pretrain: task {c.task!r} has no solver, so there are no solution "
                         "traces to pretrain a prior on; start from an existing model instead")
    if c.walk_share and not hasattr(task, "walk_trace"):
        raise ValueError(f"pretrain: walk_share: task {c.task!r} writes no random-walk traces "
                         "(walk_trace); use walk_share=0")
    n = task.n_styles
    if c.held_out_style is not None:
        if (isinstance(c.held_out_style, bool) or not isinstance(c.held_out_style, int)
                or not 0 <= c.held_out_style < n):
            raise ValueError(f"pretrain: held_out_style must be an int in [0, {n}) for task "
                             f"{c.task!r} ({n} styles), got {c.held_out_style!r}")
        if n == 1:
            raise ValueError(f"pretrain: held_out_style: task {c.task!r} has one style only")
    if c.held_out_strategy is not None and c.held_out_strategy not in task.strategies:
        raise ValueError(f"pretrain: held_out_strategy must be one of task {c.task!r}'s "
                         f"strategies {list(task.strategies)}, got {c.held_out_strategy!r}")
    kept = [s for s in range(n) if s != c.held_out_style]
    used = len(kept) if c.n_styles_used is None else c.n_styles_used
    if isinstance(used, bool) or not isinstance(used, int) or not 1 <= used <= len(kept):
        raise ValueError(f"pretrain: n_styles_used must be an int in [1, {len(kept)}] for task "
                         f"{c.task!r} ({n} styles, held out: {c.held_out_style}), got {used!r}")
    return task, kept[:used]


# ----------------------------------------------------------------------------- data

def encode_example(tokenizer, task, problem, rng: random.Random, flawed: bool, style: int,
                   loss_on: str = "solution",
                   trace: str | None = None) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one sequence; labels are -100 where there is no loss.
    ``trace``: the solution text (default: drawn with ``task.solution_trace``)."""
    prompt = tokenizer(task.prompt(problem), add_special_tokens=False)["input_ids"]
    if trace is None:
        trace = task.solution_trace(problem, rng, flawed=flawed, style=style)
    trace = tokenizer(trace, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.bos_token_id] + prompt + trace + [tokenizer.eos_token_id]
    if loss_on == "all":
        labels = [-100] + ids[1:]
    else:
        labels = [-100] * (1 + len(prompt)) + ids[1 + len(prompt):]
    return ids, labels


class TraceSampler:
    """Batches of freshly drawn traces over the train problems, deterministic for a seed."""

    def __init__(self, tokenizer, task, problems, styles, flawed_share, loss_on, seed,
                 max_positions, held_out_strategy: str | None = None,
                 stated_confidence: bool = False, walk_share: float = 0.0):
        self.tokenizer, self.task, self.problems = tokenizer, task, problems
        self.walk_share = walk_share
        self.stated_confidence = stated_confidence
        self.styles, self.flawed_share, self.loss_on = list(styles), flawed_share, loss_on
        self.rng = random.Random(f"pretrain-data:{seed}")
        self.max_positions = max_positions
        self.held_out_strategy = held_out_strategy
        self.order: list[int] = []

    def _next_problem(self):
        if not self.order:  # epochs over a shuffled order
            self.order = list(range(len(self.problems)))
            self.rng.shuffle(self.order)
        return self.problems[self.order.pop()]

    def _draw(self, tries: int = 200):
        """(problem, flawed, style, trace); a trace using the held-out strategy is drawn
        again (another problem, or another of the shuffled solver's solutions)."""
        for _ in range(tries):
            problem = self._next_problem()
            u = self.rng.random()
            flawed = u < self.flawed_share
            walk = not flawed and u < self.flawed_share + self.walk_share
            style = self.rng.choice(self.styles)
            if walk:
                trace = self.task.walk_trace(problem, self.rng, style=style)
            else:
                trace = self.task.solution_trace(problem, self.rng, flawed=flawed, style=style)
            if (self.held_out_strategy is None
                    or not self.task.uses_strategy(trace, self.held_out_strategy)):
                if self.stated_confidence:
                    trace += f"confidence: 0.{self.rng.randint(1, 9)}{self.task.step_delimiter}"
                return problem, flawed, style, trace
        raise Refusal("--held-out-strategy",
                      f"pretrain: {tries} traces in a row used the held-out strategy "
                         f"{self.held_out_strategy!r}; it cannot be held out of {self.task.name}")

    def batch(self, size: int):
        """(input ids long [B, T], labels long [B, T], real tokens), right-padded."""
        seqs = []
        for _ in range(size):
            problem, flawed, style, trace = self._draw()
            ids, labels = encode_example(self.tokenizer, self.task, problem, self.rng, flawed,
                                         style, self.loss_on, trace=trace)
            if len(ids) > self.max_positions:
                raise Refusal("--max-positions",
                              f"pretrain: a {self.task.name} sequence of {len(ids)} tokens "
                                 f"exceeds max_positions={self.max_positions}; raise it")
            seqs.append((ids, labels))
        width = max(len(ids) for ids, _ in seqs)
        pad = self.tokenizer.pad_token_id
        x = torch.full((size, width), pad, dtype=torch.long)
        y = torch.full((size, width), -100, dtype=torch.long)
        for b, (ids, labels) in enumerate(seqs):
            x[b, :len(ids)] = torch.tensor(ids)
            y[b, :len(labels)] = torch.tensor(labels)
        return x, y, sum(len(ids) for ids, _ in seqs)


# ----------------------------------------------------------------------------- model

def build_model(config: PretrainConfig, tokenizer, seed: int):
    """A fresh LlamaForCausalLM of the configured shape, initialised from ``seed``."""
    heads = config.heads
    llama = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden,
        intermediate_size=config.intermediate or 4 * config.hidden,
        num_hidden_layers=config.layers, num_attention_heads=heads,
        num_key_value_heads=config.kv_heads or heads,
        max_position_embeddings=config.max_positions, rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        initializer_range=0.02)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(llama)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def lr_at(progress: float, step: int, config: PretrainConfig) -> float:
    """Linear warmup over warmup_steps (cut short at 10% of the budget, so a short run
    is not all warmup), then cosine from lr to min_lr_ratio * lr as ``progress``
    (fraction of the budget used) goes from 0 to 1."""
    if step < config.warmup_steps and progress < 0.1:
        return config.lr * max((step + 1) / config.warmup_steps, progress / 0.1)
    p = min(max(progress, 0.0), 1.0)
    floor = config.min_lr_ratio * config.lr
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------- evaluation

def evaluate(model_dir, task, problems, config: PretrainConfig, seed: int,
             policy=None) -> dict:
    """Greedy accuracy, pass@k and the sampled steps' validity
    (``treesearch.tasks.validity``) on ``problems`` with the model in ``model_dir``."""
    if policy is None:
        policy = HFPolicy(model_dir, seed=seed)
    tok = policy.tokenizer
    if not problems:
        return {"n_problems": 0}
    start = time.perf_counter()
    kw = dict(max_steps=config.eval_max_steps, max_step_tokens=config.eval_max_step_tokens)
    greedy = generate_solutions(policy, tok, task, problems, n=1, temperature=0.0, **kw)
    sampled = generate_solutions(policy, tok, task, problems, n=config.eval_samples,
                                 temperature=config.eval_temperature, **kw)
    g_ok = [task.check_solution(p, s[0]) for p, s in zip(problems, greedy)]
    verdicts = [[task.check_solution(p, s) for s in sols] for p, sols in zip(problems, sampled)]
    counts = [sum(v) for v in verdicts]
    n = config.eval_samples
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, n) if k <= n})
    passes = {f"pass@{k}": sum(pass_at_k(n, c, k) for c in counts) / len(problems) for k in ks}
    answered = sum(task.extract_answer(s) is not None for sols in sampled for s in sols)
    return {
        "n_problems": len(problems), "n_samples": n, "temperature": config.eval_temperature,
        "greedy_acc": sum(g_ok) / len(problems), **passes,
        "answer_rate": answered / (len(problems) * n),
        "split": problems[0].split,
        **step_validity(task, [p.inputs for p in problems], sampled, verdicts).as_dict(),
        "greedy_example": greedy[0][0],
        "seconds": round(time.perf_counter() - start, 2),
    }


# ----------------------------------------------------------------------------- run

def command_line(config: PretrainConfig) -> str:
    """The ``python -m policies.pretrain`` command that reproduces ``config`` (paths as
    ``portable_path`` writes them: results get committed)."""
    args = ["python", "-m", "policies.pretrain"]
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name == "task_args":
            args += [f"task_args.{k}={json.dumps(x) if not isinstance(x, str) else x}"
                     for k, x in sorted((v or {}).items())]
            continue
        if v == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else "--no-" + f.name.replace("_", "-"))
        else:
            args += [flag, portable_path(v) if f.name == "out" else str(v)]
    return shlex.join(args)


def pretrain(config: PretrainConfig, command: str | None = None) -> PretrainResult:
    """Train, save, evaluate. ``command``: the command line to record (default: the
    equivalent of ``config``)."""
    task, styles = validate(config)
    c = _with_default_budget(config)
    torch.set_num_threads(c.threads)
    out = Path(c.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    tokenizer = build_char_tokenizer()
    try:
        train = task.problems("train", c.train_problems, seed=c.seed)
        test = task.problems(c.eval_split, c.eval_problems, seed=c.seed + 1_000_003)
    except (ValueError, RuntimeError) as exc:
        raise Refusal("--train-problems / --eval-problems",
                      f"pretrain: task {c.task!r} cannot give the problems asked for: "
                      f"{exc}") from None
    data_s = time.perf_counter() - t0
    sampler = TraceSampler(tokenizer, task, train, styles, c.flawed_share, c.loss_on, c.seed,
                           c.max_positions, c.held_out_strategy, c.stated_confidence,
                           c.walk_share)
    model = build_model(c, tokenizer, c.seed)
    n_params = sum(p.numel() for p in model.parameters())
    opt = _build_optimizer(model, c)
    _print_setup(task, styles, c, len(train), len(test), data_s, model, n_params)

    run = _train_loop(model, opt, sampler, c)
    _print_training(run)

    with atomic_dir(out) as tmp:
        _save_checkpoint(tmp, model, tokenizer)
        metrics = {
            "task": task.name, "config": {**dataclasses.asdict(c), "out": portable_path(c.out)},
            "styles_used": styles,
            "params": n_params, "train": _train_metrics(run, data_s),
        }
        metrics["eval"] = evaluate(tmp, task, test, c, c.seed)
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        write_text(tmp / "pretrain_command.txt", (command or command_line(c)) + "\n")
    print_table(metrics)
    print(f"pretrain: saved to {out}")
    return PretrainResult(out=str(out), metrics=metrics)


def _with_default_budget(config: PretrainConfig) -> PretrainConfig:
    """``config``, with ``tokens=DEFAULT_TOKENS`` when it sets no budget at all."""
    if config.steps is None and config.tokens is None and config.time_budget_s is None:
        return dataclasses.replace(config, tokens=DEFAULT_TOKENS)
    return config


def _build_optimizer(model, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (parameters of >= 2 dims) only."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=(0.9, 0.95), eps=1e-8)


def _print_setup(task, styles, c: PretrainConfig, n_train: int, n_test: int, data_s: float,
                 model, n_params: int) -> None:
    """Two lines: the data (task, styles, problem counts, seconds to make them) and the model."""
    head = model.config
    print(f"pretrain: task={task.name} styles={styles} flawed_share={c.flawed_share} "
          f"train_problems={n_train} test_problems={n_test} (generated in {data_s:.1f}s)")
    print(f"pretrain: LlamaForCausalLM params={n_params / 1e6:.3f}M hidden={head.hidden_size} "
          f"layers={head.num_hidden_layers} heads={head.num_attention_heads} "
          f"head_dim={head.hidden_size // head.num_attention_heads} vocab={head.vocab_size} "
          f"device=cpu dtype=float32 threads={c.threads}")


# ----------------------------------------------------------------------------- training loop

@dataclass
class _TrainingRun:
    """What ``_train_loop`` did: optimizer steps, real (unpadded) training tokens seen, the
    loss of every step (mean token cross-entropy, nats), wall-clock seconds."""

    steps: int
    tokens: int
    losses: list[float]
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tail(self) -> list[float]:
        """The last 10% of the step losses (1 to 50 of them): the final loss's window."""
        return self.losses[-max(1, min(50, len(self.losses) // 10)):]


def _budget_progress(config: PretrainConfig, step: int, seen: int, elapsed: float) -> float:
    """Fraction of the budget used: the furthest along of steps, tokens and seconds (those
    set); training stops at 1."""
    fractions = [0.0]
    if config.steps is not None:
        fractions.append(step / config.steps)
    if config.tokens is not None:
        fractions.append(seen / config.tokens)
    if config.time_budget_s is not None:
        fractions.append(elapsed / config.time_budget_s)
    return max(fractions)


def _train_step(model, opt, sampler: TraceSampler, config: PretrainConfig,
               lr: float) -> tuple[float, int]:
    """One AdamW step at learning rate ``lr`` on a fresh batch of ``config.batch_size``
    sequences. Returns (the batch's loss before the step, real tokens in the batch)."""
    for group in opt.param_groups:
        group["lr"] = lr
    x, y, n_tok = sampler.batch(config.batch_size)
    loss = model(input_ids=x, labels=y).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    return loss.item(), n_tok


def _train_loop(model, opt, sampler: TraceSampler, config: PretrainConfig) -> _TrainingRun:
    """Train until the budget is used (``_budget_progress`` reaches 1), the learning rate
    following ``lr_at``; a tqdm bar shows the mean of the last 10 losses, lr and tokens/s."""
    model.train()
    step, seen, losses = 0, 0, []
    start = time.perf_counter()
    bar = tqdm(total=config.steps, disable=not config.progress, unit="step", dynamic_ncols=True)
    while True:
        progress = _budget_progress(config, step, seen, time.perf_counter() - start)
        if progress >= 1.0:
            break
        lr = lr_at(progress, step, config)
        loss, n_tok = _train_step(model, opt, sampler, config, lr)
        step += 1
        seen += n_tok
        losses.append(loss)
        bar.update(1)
        if step % 10 == 0 or step == 1:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}",
                            lr=f"{lr:.1e}", tok_s=f"{rate:.0f}")
    bar.close()
    return _TrainingRun(step, seen, losses, time.perf_counter() - start)


def _print_training(run: _TrainingRun) -> None:
    """One line: steps, tokens, seconds, throughput and the final (tail-mean) loss."""
    tail = run.tail
    print(f"pretrain: {run.steps} steps, {run.tokens} tokens in {run.seconds:.1f}s = "
          f"{run.tokens_per_s:.0f} tokens/s (training throughput), final loss "
          f"{sum(tail) / len(tail):.4f}")


# ----------------------------------------------------------------------------- saving

def _save_checkpoint(directory: Path, model, tokenizer) -> None:
    """The model (in eval mode) and tokenizer as a Hugging Face checkpoint in ``directory``."""
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _train_metrics(run: _TrainingRun, data_s: float) -> dict:
    """metrics.json's "train" entry (seconds rounded to 0.01, tokens/s to 0.1)."""
    tail = run.tail
    return {"steps": run.steps, "tokens": run.tokens, "seconds": round(run.seconds, 2),
            "tokens_per_s": round(run.tokens_per_s, 1),
            "final_loss": sum(tail) / len(tail) if tail else None,
            "data_seconds": round(data_s, 2)}


def print_table(metrics: dict) -> None:
    ev = metrics["eval"]
    if not ev.get("n_problems"):
        print("eval: no held-out problems")
        return
    keys = ["greedy_acc"] + sorted((k for k in ev if k.startswith("pass@")),
                                   key=lambda k: int(k[5:])) + ["answer_rate"]
    print(f"eval on {ev['n_problems']} held-out {metrics['task']} "
          f"{ev.get('split', 'test')} problems "
          f"({ev['n_samples']} samples at T={ev['temperature']}, {ev['seconds']}s):")
    print("  " + "  ".join(f"{k:>10}" for k in keys))
    print("  " + "  ".join(f"{ev[k]:>10.3f}" for k in keys))
    if "valid_step_share" in ev:
        def shown(key):
            return "n/a" if ev[key] is None else f"{ev[key]:.3f}"

        print(f"  sampled steps valid {shown('valid_step_share')}, first step valid "
              f"{shown('first_step_valid_share')}, correct answers through valid steps only "
              f"{shown('correct_through_valid_share')} ({ev['correct']} correct)")


# ----------------------------------------------------------------------------- CLI

def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m policies.pretrain",
                       description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("task_args", nargs="*", metavar="task_args.KEY=VALUE",
                   help="the task's own arguments (a reasoning-gym dataset's config keys, a "
                        "factory's arguments), values read as YAML")
    for f in dataclasses.fields(PretrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "task_args":
            continue
        if f.type in ("bool",) or isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        kind = {"int": int, "int | None": int, "float": float, "float | None": float,
                "str": str, "str | None": str}[f.type]
        p.add_argument(flag, type=kind, default=f.default, dest=f.name)
    return p


def main(argv: list[str] | None = None) -> PretrainResult:
    """The CLI: every refusal is one line naming its flag (``error: --hidden: ...``,
    ``--task: ...``, ``task_args.KEY: ...``) on stderr and exit status 2 (SystemExit), never a
    traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = parser().parse_args(argv)
    command = shlex.join(["python", "-m", "policies.pretrain", *argv])
    try:
        task_args, rest = dotted_args(ns.task_args)
        if rest:
            raise CLIError(rest[0],
                           "unexpected argument (the task's arguments are task_args.KEY=VALUE)")
        config = PretrainConfig(**{**vars(ns), "task_args": task_args})
        with blame("--task"):
            try:
                validate(config)
            except ValueError as exc:
                knob = _KNOB.match(str(exc))
                if knob is None or knob[1] not in PretrainConfig.__dataclass_fields__:
                    raise
                raise CLIError("--" + knob[1].replace("_", "-"), str(exc)) from None
    except CLIError as exc:
        raise SystemExit(exc.exit()) from None  # "error: ..." on stderr, exit status 2
    try:
        with blame(None, (Refusal,)):
            return pretrain(config, command=command)
    except CLIError as exc:
        raise SystemExit(exc.exit()) from None


_KNOB = re.compile(r"pretrain: (\w+)")


if __name__ == "__main__":
    main()

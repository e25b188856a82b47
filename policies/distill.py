"""Distil what the search found back into the policy: SFT on ranked paths, DPO on siblings.

The self-improvement step of AlphaLLM-style training. After a round of search:

- the good root-to-leaf paths (correct answers, high values) become ``SFTExample``s:
  prompt tokens (``<bos>`` + task prompt) and completion tokens (the steps, ending with
  the answer line, then EOS), each with a weight (e.g. 1, or the path's value);
- (signed) ``PGExample``s: sequences to push up or down with an advantage (failing
  siblings, step advantages from a tree), for ``policy_gradient``;
- pairs of sibling steps that the search ranked (one led to a better value than the
  other) become ``PreferencePair``s: the shared prefix (prompt + earlier steps), the
  chosen step and the rejected step.

``sft`` minimises the weighted token cross-entropy of the completions; ``dpo`` minimises
the Direct Preference Optimization loss (Rafailov et al. 2023) against a frozen
reference (by default the model as it is when the call starts). Both train the given
model IN PLACE and leave it in eval mode:

    from policies.distill import DistillConfig, sft, sft_example, dpo, save_policy
    examples = [sft_example(tok, prompt_ids(tok, task, p), path_step_tokens) for ...]
    model, stats = sft(policy.model, tok, examples, DistillConfig(epochs=2))
    model, stats = dpo(model, tok, pairs, DistillConfig(dpo_beta=0.1))
    save_policy(model, tok, "runs/round-1/policy")

Both return ``(model, stats)``. ``model`` is the very object passed in, updated, also with
``lora=True``: the LoRA adapters (peft) are trained with the base weights frozen, then
merged into the base weights and removed, so the caller always holds a plain transformers
model (peft restores the original module objects; the parameters' ``requires_grad``
flags are restored too). Use the returned model all the same: it is the one guaranteed
to hold the result.

An ``HFPolicy`` built on the model keeps a prefix KV cache computed with the OLD
weights: after distilling into ``policy.model``, build a new ``HFPolicy((model, tok))``
(or give it a fresh ``PrefixKVCache``) before searching again.

Batches: the sequences prompt + completion of a minibatch are right-padded to the
longest one (padding is masked out of attention and out of the loss; under causal
attention it never reaches a real token). Plain AdamW at a constant learning rate
(fine-tuning runs here are short), gradient-norm clipping, minibatches in an order
shuffled per epoch by a ``torch.Generator`` seeded from ``config.seed``: the same seed,
data and starting weights give the same weights (on CPU). Nothing reads or changes torch's
global random state (the LoRA initialisation draws from a forked, seeded CPU one).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from policies.covariance import clip_bound_checks, clip_bounds, kl_penalty, restrict
from policies.offpath import OwnStates, completion_kl
from treesearch.utils.atomic import atomic_dir
from treesearch.utils.knobs import KnobError

# ----------------------------------------------------------------------------- data

@dataclass
class SFTExample:
    """One sequence to imitate, in the policy's token ids.

    prompt_ids: the conditioning prefix, ``<bos>`` included (no loss on it).
    completion_ids: the tokens to learn (the solution steps, ending with the answer line,
        plus EOS when the caller wants the model to stop there).
    weight: multiplies this example's token losses (>= 0; 1 = plain SFT).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    weight: float = 1.0


@dataclass
class PGExample:
    """One sequence to push up or down (``policy_gradient``), in the policy's token ids.

    prompt_ids: the conditioning prefix, ``<bos>`` included (no loss on it).
    completion_ids: the tokens whose log-probability moves (a whole solution, or one step
        of a search tree after its prefix).
    advantage: signed weight: > 0 raises the completion's log-probability, < 0 lowers it.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float


@dataclass
class PreferencePair:
    """Two sibling continuations of one prefix, the first preferred (for DPO).

    prompt_ids: the shared prefix: ``<bos>`` + prompt + the earlier steps.
    chosen_ids / rejected_ids: the two sibling steps' tokens.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def _ids(span, tokenizer=None) -> list[int]:
    """Token ids from a sequence of ints (list, tuple, numpy or torch 1-D) or, with a
    tokenizer, from text (tokenized without special tokens)."""
    if isinstance(span, str):
        if tokenizer is None:
            raise TypeError("distill: a text span needs a tokenizer")
        return list(tokenizer(span, add_special_tokens=False)["input_ids"])
    if isinstance(span, torch.Tensor):
        span = span.tolist()
    return [int(t) for t in span]


def sft_example(tokenizer, prompt_ids, step_spans, add_eos: bool = True,
                weight: float = 1.0) -> SFTExample:
    """An ``SFTExample`` from a prompt and the steps of a path.

    prompt_ids: token ids of the prefix, ``<bos>`` included (``rollout.prompt_ids``).
    step_spans: the path's steps in order, each a sequence of token ids (e.g. a
        ``StepProposal.tokens`` array) or a text; concatenated into the completion.
    add_eos: append ``tokenizer.eos_token_id`` after the last step.
    """
    completion = [t for span in step_spans for t in _ids(span, tokenizer)]
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("sft_example: add_eos=True but the tokenizer has no eos_token_id")
        completion.append(int(tokenizer.eos_token_id))
    return SFTExample(_ids(prompt_ids), completion, float(weight))


# ----------------------------------------------------------------------------- config

@dataclass
class DistillConfig:
    """Knobs of one ``sft`` or ``dpo`` call.

    lr: AdamW learning rate (constant). epochs: passes over the data. batch_size:
    examples (SFT) or pairs (DPO) per optimizer step. weight_decay: AdamW decay on the
    matrices (not on norms/biases). grad_clip: max gradient norm (0 = off). seed: the
    shuffling (and LoRA init) seed. threads: torch CPU threads during the call (None =
    leave torch's setting; the old setting is restored after). dpo_beta: DPO's beta, the
    strength of the KL anchor to the reference. lora: train LoRA adapters (rank lora_r,
    scale lora_alpha / lora_r, dropout lora_dropout) on the modules named lora_targets,
    then merge them. progress: a tqdm bar. max_steps: stop after this many optimizer
    steps even if epochs are left (None = no cap). pg_clip: ``policy_gradient``'s PPO-style
    clip epsilon on each token's probability ratio to the model as the call starts (0 =
    off: plain REINFORCE, which can push a negative's log-probability down without bound).
    anchor_kl: ``sft``'s weight beta of KL(p_start || p) per completion token, p_start the
    model as the call starts (a frozen copy; 0 = off). Over the whole vocabulary at every
    imitated position, so at one example the optimum is p = (onehot + beta p_start) /
    (1 + beta): the imitated token gains, and the other tokens keep the start's proportions.
    own_kl: ``sft``'s weight beta of KL(p_start || p) over the whole vocabulary at EVERY
    completion position of the policy's own samples (``sft(own=...)``; ``policies.offpath``),
    states off the imitated paths included (0 = off). own_samples: how many own samples per
    training problem the caller draws from the model as the call starts, for own_kl (> 0
    exactly when own_kl > 0; ``sft`` reads the samples it is handed, never this count).
    cov_clip: ``policy_gradient``'s Clip-Cov share r of each minibatch's tokens: the
    ceil(r * N) with the largest positive (logp - mean)(A - mean) get no gradient (0 = off;
    ``policies.covariance``). cov_clip_low, cov_clip_high: both 0, Clip-Cov takes the top
    of that ranking; high > low, it draws its tokens at random among those whose product
    lies between them, the paper's rule (seeded from ``seed``). cov_kl, cov_kl_top:
    ``policy_gradient``'s KL-Cov coefficient beta and share k: the ceil(k * N) tokens with
    the largest positive product get beta * |logp - logp_start| added to their loss (both
    0 = off; > 0 together). ``dpo`` trains
    none of these four objectives: it refuses cov_clip / cov_kl and ignores own_kl (the
    SFT half's term under sft+dpo), as it ignores anchor_kl.
    """

    lr: float = 3e-4
    epochs: int = 1
    batch_size: int = 16
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    threads: int | None = None
    dpo_beta: float = 0.1
    lora: bool = False
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    progress: bool = False
    max_steps: int | None = None
    pg_clip: float = 0.2
    anchor_kl: float = 0.0
    own_kl: float = 0.0
    own_samples: int = 0
    cov_clip: float = 0.0
    cov_clip_low: float = 0.0
    cov_clip_high: float = 0.0
    cov_kl: float = 0.0
    cov_kl_top: float = 0.0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(config: DistillConfig) -> DistillConfig:
    """Raise ValueError naming the first bad field; returns the config."""
    c = config
    checks = [
        ("lr", _is_number(c.lr) and c.lr > 0, "a finite number > 0"),
        ("epochs", _is_int(c.epochs) and c.epochs >= 1, "an int >= 1"),
        ("batch_size", _is_int(c.batch_size) and c.batch_size >= 1, "an int >= 1"),
        ("weight_decay", _is_number(c.weight_decay) and c.weight_decay >= 0,
         "a finite number >= 0"),
        ("grad_clip", _is_number(c.grad_clip) and c.grad_clip >= 0,
         "a finite number >= 0 (0 = off)"),
        ("seed", _is_int(c.seed) and c.seed >= 0, "an int >= 0"),
        ("threads", c.threads is None or (_is_int(c.threads) and c.threads >= 1),
         "None or an int >= 1"),
        ("dpo_beta", _is_number(c.dpo_beta) and c.dpo_beta > 0, "a finite number > 0"),
        ("lora", isinstance(c.lora, bool), "a bool"),
        ("lora_r", _is_int(c.lora_r) and c.lora_r >= 1, "an int >= 1"),
        ("lora_alpha", _is_number(c.lora_alpha) and c.lora_alpha > 0, "a finite number > 0"),
        ("lora_dropout", _is_number(c.lora_dropout) and 0 <= c.lora_dropout < 1,
         "a number in [0, 1)"),
        ("lora_targets", isinstance(c.lora_targets, (list, tuple)) and len(c.lora_targets) > 0
         and all(isinstance(t, str) and t for t in c.lora_targets),
         "a non-empty list of module names"),
        ("progress", isinstance(c.progress, bool), "a bool"),
        ("max_steps", c.max_steps is None or (_is_int(c.max_steps) and c.max_steps >= 1),
         "None or an int >= 1"),
        ("pg_clip", _is_number(c.pg_clip) and 0 <= c.pg_clip < 1, "a number in [0, 1)"),
        ("anchor_kl", _is_number(c.anchor_kl) and c.anchor_kl >= 0,
         "a finite number >= 0 (0 = off)"),
        ("own_kl", _is_number(c.own_kl) and c.own_kl >= 0, "a finite number >= 0 (0 = off)"),
        ("own_samples", _is_int(c.own_samples) and c.own_samples >= 0
         and (c.own_samples > 0) == (c.own_kl > 0),
         "an int >= 0, > 0 exactly when own_kl > 0 (own samples per training problem: "
         "the states the own-KL term holds)"),
        ("cov_clip", _is_number(c.cov_clip) and 0 <= c.cov_clip < 1,
         "a number in [0, 1) (Clip-Cov's share of tokens; 0 = off)"),
        *clip_bound_checks(c),
        ("cov_kl", _is_number(c.cov_kl) and c.cov_kl >= 0, "a finite number >= 0 (0 = off)"),
        ("cov_kl_top", _is_number(c.cov_kl_top) and 0 <= c.cov_kl_top < 1
         and (c.cov_kl_top > 0) == (c.cov_kl > 0),
         "a number in [0, 1), > 0 exactly when cov_kl > 0 (KL-Cov's share of tokens)"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise KnobError(f"distill: {name} must be {want}, got {getattr(c, name)!r}", name)
    return c


# the objectives one trainer alone trains: field -> the trainer
OBJECTIVES = {"own_kl": "sft", "cov_clip": "policy_gradient", "cov_kl": "policy_gradient"}


def refuse_objectives(config: DistillConfig, trainer: str, ignores: Sequence[str] = ()) -> None:
    """KnobError naming the first objective of ``OBJECTIVES`` switched on in ``config``
    that ``trainer`` ("sft", "policy_gradient", "dpo") cannot train (``ignores``: those it
    leaves alone instead)."""
    for name, owner in OBJECTIVES.items():
        if getattr(config, name) and owner != trainer and name not in ignores:
            raise KnobError(f"distill: {name} = {getattr(config, name)!r} is an objective of "
                            f"{owner}, which {trainer} cannot train (0 = off)", name)


def _check_sequences(model, what: str, sequences) -> None:
    """Every (prompt, completion) has a prompt, a completion, ids in the vocabulary and
    fits the model's context; ValueError naming the item otherwise."""
    vocab = model.get_input_embeddings().num_embeddings
    room = getattr(model.config, "max_position_embeddings", None)
    for i, (prompt, completion) in enumerate(sequences):
        if not prompt or not completion:
            raise ValueError(f"distill: {what} {i} has an empty "
                             f"{'prompt' if not prompt else 'completion'}")
        bad = [t for t in (*prompt, *completion) if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"distill: {what} {i} has token id {bad[0]} outside the "
                             f"model's vocabulary of {vocab}")
        if room is not None and len(prompt) + len(completion) > room:
            raise ValueError(f"distill: {what} {i} has {len(prompt) + len(completion)} tokens, "
                             f"more than the model's max_position_embeddings={room}")


# ----------------------------------------------------------------------------- batches

def collate(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = 0,
            device="cpu") -> dict[str, torch.Tensor]:
    """Right-padded batch of prompt + completion sequences.

    Returns input_ids long [B, T], attention_mask long [B, T] (1 on real tokens) and
    labels long [B, T]: the input id on completion tokens, -100 on prompt and padding.
    """
    width = max(len(p) + len(c) for p, c in sequences)
    B = len(sequences)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.long)
    labels = torch.full((B, width), -100, dtype=torch.long)
    for b, (prompt, completion) in enumerate(sequences):
        n, m = len(prompt), len(completion)
        ids[b, :n + m] = torch.tensor([*prompt, *completion], dtype=torch.long)
        mask[b, :n + m] = 1
        labels[b, n:n + m] = torch.tensor(completion, dtype=torch.long)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "labels": labels.to(device)}


def token_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(token | earlier tokens) of every completion token, float32 [B, T-1]
    (column t scores token t+1), 0 on prompt and padding positions."""
    return _logits_and_logprobs(model, batch)[1]


def _logits_and_logprobs(model, batch):
    """(next-token logits float32 [B, T-1, V], ``token_logprobs`` [B, T-1]) of a batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    # cross_entropy wants the classes in dim 1: [B, V, T-1]; ignored targets give 0
    return logits, -F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                    reduction="none")


def sft_loss(model, batch: dict[str, torch.Tensor], weights: torch.Tensor | None = None,
             anchor=None, anchor_kl: float = 0.0):
    """(loss, completion tokens) of a batch from ``collate``.

    loss = sum over examples b and completion tokens t of weights[b] * -log p(token)
    divided by the number of completion tokens in the batch (with unit weights: the mean
    token cross-entropy in nats). weights: float [B] (None = ones). anchor: a frozen model
    with the same vocabulary; with it, ``anchor_kl`` times the mean over completion tokens
    of KL(p_anchor || p) (nats, whole vocabulary) is added (unweighted: it holds at every
    imitated position alike).
    """
    cross_entropy, kl, n_tokens = _sft_terms(model, batch, weights,
                                             anchor if anchor_kl > 0 else None)
    return (cross_entropy if kl is None else cross_entropy + anchor_kl * kl), n_tokens


def _sft_terms(model, batch, weights, anchor):
    """(weighted cross-entropy, mean KL(p_anchor || p) or None without an anchor, completion
    tokens) of a batch: ``sft_loss``'s two terms, each per completion token (nats)."""
    logits, logp = _logits_and_logprobs(model, batch)                      # [B, T-1, V], [B, T-1]
    mask = batch["labels"][:, 1:] != -100
    n_tokens = int(mask.sum())
    if weights is not None:
        logp = logp * weights.to(logp.device, logp.dtype)[:, None]
    cross_entropy = -logp.sum() / max(n_tokens, 1)
    if anchor is None:
        return cross_entropy, None, n_tokens
    with torch.no_grad():
        ref = anchor(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=False).logits[:, :-1].float().log_softmax(-1)
    kl = (ref.exp() * (ref - logits.log_softmax(-1))).sum(-1)                # [B, T-1]
    return cross_entropy, (kl * mask).sum() / max(n_tokens, 1), n_tokens


@torch.no_grad()
def completion_logprobs(model, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                        batch_size: int = 16, pad_id: int = 0) -> torch.Tensor:
    """Summed log-probability (nats) of each completion given its prompt, float32 [N] on
    CPU, computed in eval mode (the model's train/eval mode is restored after)."""
    out = [logp.sum(-1) for logp in _eval_logprobs(model, list(sequences), batch_size, pad_id)]
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def _eval_logprobs(model, sequences, batch_size: int, pad_id: int) -> list[torch.Tensor]:
    """``token_logprobs`` (float32 [b, T-1], CPU) of each consecutive minibatch of
    ``sequences``, in eval mode (the model's train/eval mode is restored after)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return [token_logprobs(model, collate(sequences[lo:lo + batch_size], pad_id, device)).cpu()
                for lo in range(0, len(sequences), batch_size)]
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- training

@contextlib.contextmanager
def _threads(n: int | None):
    """torch CPU threads set to n inside the block (None: untouched)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _start(model, config: DistillConfig):
    """(module to train, finish). Without ``config.lora`` the module is the model and
    ``finish(merge)`` returns it. With it, the module is the model wrapped with fresh
    LoRA adapters (base weights frozen) and ``finish(merge=True)`` merges the adapters
    into the base weights and removes them, ``finish(merge=False)`` (after an error)
    removes them unmerged, leaving the base weights as they were. Either way it returns
    the plain transformers model, with its requires_grad flags as before."""
    if not config.lora:
        return model, lambda merge: model
    from peft import (  # lazy: peft takes seconds to import, LoRA only
        LoraConfig,
        get_peft_model,
    )

    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=list(config.lora_targets),
                      bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):  # peft initialises adapters on the CPU
        torch.random.default_generator.manual_seed(config.seed)
        wrapped = get_peft_model(model, lora)

    def finish(merge: bool):
        base = wrapped.merge_and_unload() if merge else wrapped.unload()
        for name, p in base.named_parameters():
            p.requires_grad_(flags.get(name, True))
        return base.eval()

    return wrapped, finish


def _fit(model, config: DistillConfig, n: int, batch_loss: Callable, what: str) -> dict:
    """The shared loop: ``config.epochs`` passes over n items in seeded random order,
    minibatches of ``config.batch_size``, AdamW on the parameters that require grad,
    gradient clipping, at most ``config.max_steps`` steps; model left in eval mode.

    batch_loss(model, indices: list[int]) -> (scalar loss tensor, dict of floats).
    Returns {"losses": the per-step losses, "last": the last step's dict,
    "steps": optimizer steps taken}.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("distill: the model has no parameter that requires grad")
    opt = torch.optim.AdamW([
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ], lr=config.lr, betas=(0.9, 0.95), eps=1e-8)
    total = config.epochs * math.ceil(n / config.batch_size)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    generator = torch.Generator().manual_seed(config.seed)

    losses, last = [], {}
    bar = tqdm(total=total, desc=what, unit="step", disable=not config.progress,
               dynamic_ncols=True)
    model.train()
    try:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator).tolist()
            for lo in range(0, n, config.batch_size):
                if len(losses) >= total:
                    break
                loss, last = batch_loss(model, order[lo:lo + config.batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
    finally:
        bar.close()
        model.eval()
        opt.zero_grad(set_to_none=True)  # free the gradients
    return {"losses": losses, "last": last, "steps": len(losses)}


def _train(model, config: DistillConfig, n: int, batch_loss: Callable, what: str):
    """``_fit`` on the model or its LoRA wrapper; returns (plain model, ``_fit`` result)."""
    with _threads(config.threads):
        trainee, finish = _start(model, config)
        try:
            run = _fit(trainee, config, n, batch_loss, what)
        except BaseException:
            finish(merge=False)
            raise
        return finish(merge=True), run


def _frozen_copy(model):
    """A deep copy of ``model`` in eval mode with no parameter requiring grad."""
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def _pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def sft(model, tokenizer, examples: Sequence[SFTExample], config: DistillConfig | None = None,
        own: Sequence[tuple[Sequence[int], Sequence[int]]] = ()):
    """Supervised fine-tuning on completions, in place. Returns ``(model, stats)``.

    model: a transformers causal LM (e.g. ``HFPolicy.model``), on any device.
    tokenizer: gives the padding id (any id works: padding is masked).
    examples: the ``SFTExample``s; the loss of a batch is ``sft_loss`` (weighted token
        cross-entropy on completion tokens only, per completion token of the batch).
    own: the policy's own samples, (prompt ids, completion ids) pairs drawn from the model
        as the call starts (right or wrong); with ``config.own_kl`` = beta every optimizer
        step adds beta times the mean over the completion positions of a minibatch of them
        (``config.batch_size``, a seeded cycle: ``policies.offpath.OwnStates``) of
        KL(p_start || p), nats; unused without own_kl.
    stats: loss_first / loss_last (the first and last optimizer step's batch loss, nats
        per token; None without steps), examples, tokens (completion tokens seen, all
        epochs), steps (optimizer steps), seconds; with ``config.anchor_kl``:
        anchor_kl_last (the last batch's mean KL(p_start || p), nats per token); with
        ``config.own_kl``: own_sequences (own samples held) and own_kl_last (the last own
        minibatch's mean KL(p_start || p), nats per position; None without own samples).
    Empty ``examples``: nothing happens (steps 0), as when a round found no correct path.
    """
    config = validate(config or DistillConfig())
    refuse_objectives(config, "sft")
    examples = list(examples)
    own = [(list(p), list(c)) for p, c in own] if config.own_kl > 0 else []
    start = time.perf_counter()
    stats = {"loss_first": None, "loss_last": None, "examples": len(examples), "tokens": 0,
             "steps": 0, "seconds": 0.0}
    if config.own_kl > 0:
        stats.update(own_sequences=len(own), own_kl_last=None)
    if not examples:
        return model, stats
    _check_sequences(model, "example", [(e.prompt_ids, e.completion_ids) for e in examples])
    _check_sequences(model, "own sample", own)
    for i, e in enumerate(examples):
        if not _is_number(e.weight) or e.weight < 0:
            raise ValueError(f"distill: example {i} has weight {e.weight!r}; need a finite "
                             f"number >= 0")
    anchor = _frozen_copy(model) if config.anchor_kl > 0 or own else None
    own_states = OwnStates(own, config.batch_size, config.seed) if own else None
    batch_loss, seen = _sft_batch_loss(examples, config, anchor, own_states,
                                       _pad_id(tokenizer), next(model.parameters()).device)
    model, run = _train(model, config, len(examples), batch_loss, "sft")
    losses = run["losses"]
    stats.update(loss_first=losses[0] if losses else None,
                 loss_last=losses[-1] if losses else None, tokens=seen[0], steps=run["steps"],
                 seconds=round(time.perf_counter() - start, 3))
    if config.anchor_kl > 0:
        stats["anchor_kl_last"] = run["last"].get("anchor_kl_nats")
    if own_states is not None:
        stats["own_kl_last"] = run["last"].get("own_kl_nats")
    return model, stats


def _sft_batch_loss(examples: Sequence[SFTExample], config: DistillConfig, anchor,
                    own_states: OwnStates | None, pad: int, device):
    """``sft``'s minibatch loss ``batch_loss(module, idx) -> (loss, info)`` and a one-item
    list counting the completion tokens it has seen: weighted cross-entropy, plus
    ``anchor_kl`` times the KL to ``anchor`` at the imitated positions, plus ``own_kl``
    times the KL at every position of the next own minibatch (``own_states``; None: off)."""
    seen = [0]

    def batch_loss(module, idx):
        chunk = [examples[i] for i in idx]
        batch = collate([(e.prompt_ids, e.completion_ids) for e in chunk], pad, device)
        cross_entropy, kl, n_tokens = _sft_terms(
            module, batch, torch.tensor([float(e.weight) for e in chunk]),
            anchor if config.anchor_kl > 0 else None)
        seen[0] += n_tokens
        loss, info = cross_entropy, {}
        if kl is not None:
            loss = loss + config.anchor_kl * kl
            info["anchor_kl_nats"] = kl.item()
        if own_states is not None:
            own_kl = completion_kl(module, anchor, collate(own_states.take(), pad, device))
            loss = loss + config.own_kl * own_kl
            info["own_kl_nats"] = own_kl.item()
        return loss, info

    return batch_loss, seen


def dpo(model, tokenizer, pairs: Sequence[PreferencePair], config: DistillConfig | None = None,
        reference=None):
    """Direct Preference Optimization on sibling pairs, in place. Returns ``(model, stats)``.

    For a pair with summed completion log-probs logp_c, logp_r under the model and
    ref_c, ref_r under the reference, the loss is

        -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))

    averaged over the pairs of a batch; beta * (logp - ref) is the implicit reward.
    reference: a frozen causal LM with the same tokenizer; None = the model as it is when
        the call starts (like a frozen deepcopy: its log-probs never change, so they are
        computed once, before training, and no copy is kept). The reference log-probs of
        every pair are computed up front in eval mode, in either case.
    stats: loss_first / loss_last (nats; the first is log 2 when the reference is the
        starting model and the model has no dropout), reward_margin_last (mean implicit
        reward of chosen minus rejected on the last batch, nats), reward_accuracy_last
        (share of the last batch's pairs with a positive margin), pairs, steps, seconds.
    Empty ``pairs``: nothing happens (steps 0).
    """
    config = validate(config or DistillConfig())
    refuse_objectives(config, "dpo", ignores=("own_kl",))
    pairs = list(pairs)
    start = time.perf_counter()
    stats = {"loss_first": None, "loss_last": None, "reward_margin_last": None,
             "reward_accuracy_last": None, "pairs": len(pairs), "steps": 0, "seconds": 0.0}
    if not pairs:
        return model, stats
    chosen = [(p.prompt_ids, p.chosen_ids) for p in pairs]
    rejected = [(p.prompt_ids, p.rejected_ids) for p in pairs]
    _check_sequences(model, "pair (chosen)", chosen)
    _check_sequences(model, "pair (rejected)", rejected)
    pad = _pad_id(tokenizer)
    device = next(model.parameters()).device
    beta = float(config.dpo_beta)
    with _threads(config.threads):
        ref = model if reference is None else reference
        ref_c = completion_logprobs(ref, chosen, config.batch_size, pad).to(device)
        ref_r = completion_logprobs(ref, rejected, config.batch_size, pad).to(device)

    def batch_loss(module, idx):
        # the batch's chosen and rejected sequences in one forward: rows [0, B) and [B, 2B)
        batch = collate([chosen[i] for i in idx] + [rejected[i] for i in idx], pad, device)
        logp = token_logprobs(module, batch).sum(-1)
        B = len(idx)
        margin = beta * ((logp[:B] - ref_c[idx]) - (logp[B:] - ref_r[idx]))
        loss = -F.logsigmoid(margin).mean()
        return loss, {"reward_margin": margin.mean().item(),
                      "reward_accuracy": (margin > 0).float().mean().item()}

    model, run = _train(model, config, len(pairs), batch_loss, "dpo")
    losses = run["losses"]
    stats.update(loss_first=losses[0] if losses else None,
                 loss_last=losses[-1] if losses else None,
                 reward_margin_last=run["last"].get("reward_margin"),
                 reward_accuracy_last=run["last"].get("reward_accuracy"),
                 steps=run["steps"], seconds=round(time.perf_counter() - start, 3))
    return model, stats


def policy_gradient(model, tokenizer, examples: Sequence[PGExample],
                    config: DistillConfig | None = None):
    """One REINFORCE-style pass over fixed examples with signed advantages, in place.
    Returns ``(model, stats)``.

    Per minibatch of B examples the loss is the clipped surrogate of PPO, token-mean per
    sequence:

        -(1 / B) * sum_b mean_t min(r_bt * A_b, clip(r_bt, 1 - eps, 1 + eps) * A_b)

    with r_bt = p(token t of b) / p_start(token t of b), p_start the model as the call
    starts (eval mode) and eps = ``config.pg_clip``. At the start r = 1 and the gradient
    is that of A_b * mean_t log p, plain REINFORCE; a token whose probability has moved by
    more than eps in the advantage's direction stops pulling, so negatives cannot drive
    their tokens' log-probabilities (and the shared tokens with them) to minus infinity.
    ``pg_clip`` = 0 turns the clip off (loss -(1 / B) * sum_b A_b * mean_t log p).

    Covariance-restricted updates (``policies.covariance``, arXiv 2505.22617), per
    minibatch: ``cov_clip`` = r detaches the ceil(r * N) tokens whose centred product
    (log p - mean)(A - mean) is largest and positive (Clip-Cov), ``cov_kl`` = beta with
    ``cov_kl_top`` = k adds beta * |log p - log p_start| to the ceil(k * N) largest
    (KL-Cov): the tokens whose updates sharpen the policy most are held back.

    Used for W-REINFORCE-style updates (positives weighted by a small lambda, negatives
    pushed down: Zhu et al. 2025, arXiv 2506.01347) and for step-level advantages taken
    from a search tree (``policies.rl.tree_examples``). Examples with a zero advantage
    carry no gradient and are dropped. stats: loss_first / loss_last (None without
    steps), examples (kept), positives, negatives, clipped_share_last (share of the last
    minibatch's tokens whose ratio was clipped), steps, seconds; with cov_clip or cov_kl
    also cov_clipped_share_last / cov_kl_share_last (share of the last minibatch's tokens
    Clip-Cov detached / KL-Cov held).
    """
    config = validate(config or DistillConfig())
    refuse_objectives(config, "policy_gradient")
    examples = [e for e in examples if e.advantage != 0]
    start = time.perf_counter()
    stats = {"loss_first": None, "loss_last": None, "examples": len(examples),
             "positives": sum(e.advantage > 0 for e in examples),
             "negatives": sum(e.advantage < 0 for e in examples),
             "clipped_share_last": None, "steps": 0, "seconds": 0.0}
    if not examples:
        return model, stats
    sequences = _check_pg_examples(model, examples)
    pad = _pad_id(tokenizer)
    start_logps = (_start_token_logprobs(model, sequences, config.batch_size, pad)
                   if config.pg_clip > 0 or config.cov_kl > 0 else None)
    batch_loss = _pg_batch_loss(examples, start_logps, config, pad,
                                next(model.parameters()).device)
    model, run = _train(model, config, len(examples), batch_loss, "pg")
    losses = run["losses"]
    stats.update(loss_first=losses[0] if losses else None,
                 loss_last=losses[-1] if losses else None, steps=run["steps"],
                 clipped_share_last=run["last"].get("clipped_share"),
                 seconds=round(time.perf_counter() - start, 3))
    for key in ("cov_clipped_share", "cov_kl_share"):
        if key in run["last"]:
            stats[f"{key}_last"] = run["last"][key]
    return model, stats


def _check_pg_examples(model, examples: Sequence[PGExample]) -> list:
    """The examples' (prompt, completion) pairs, checked (``_check_sequences``, finite
    advantages); ValueError naming the first bad one."""
    sequences = [(e.prompt_ids, e.completion_ids) for e in examples]
    _check_sequences(model, "example", sequences)
    for i, e in enumerate(examples):
        if not _is_number(e.advantage):
            raise ValueError(f"distill: example {i} has advantage {e.advantage!r}; need a "
                             f"finite number")
    return sequences


def _pg_batch_loss(examples: Sequence[PGExample], start_logps, config: DistillConfig,
                   pad: int, device):
    """``policy_gradient``'s minibatch loss ``batch_loss(module, idx) -> (loss, info)``:
    the surrogate clipped at ``config.pg_clip`` against ``start_logps`` (per example,
    float [len(completion)]; pg_clip 0: plain REINFORCE), restricted by Clip-Cov /
    KL-Cov (``config.cov_clip``, ``cov_kl``, ``cov_kl_top``)."""
    eps = float(config.pg_clip)
    draws = torch.Generator().manual_seed(int(config.seed))  # Clip-Cov's bounded draws

    def batch_loss(module, idx):
        chunk = [examples[i] for i in idx]
        batch = collate([(e.prompt_ids, e.completion_ids) for e in chunk], pad, device)
        logp = token_logprobs(module, batch)
        mask = (batch["labels"][:, 1:] != -100).to(logp.dtype)
        adv = torch.tensor([float(e.advantage) for e in chunk], dtype=logp.dtype,
                           device=logp.device)[:, None]
        logp, held, cov = restrict(logp, adv, mask.bool(), clip=config.cov_clip,
                                   kl_top=config.cov_kl_top, clip_bounds=clip_bounds(config),
                                   generator=draws)
        old = None if start_logps is None else _scatter_start(start_logps, examples, idx, logp)
        if eps == 0:
            per_token = adv * logp
            info = {}
        else:
            ratio = torch.exp(logp - old)
            clipped = ratio.clamp(1 - eps, 1 + eps)
            per_token = torch.minimum(ratio * adv, clipped * adv)
            share = ((ratio != clipped).to(logp.dtype) * mask).sum() / mask.sum().clamp_min(1)
            info = {"clipped_share": float(share)}
        if config.cov_kl > 0:
            per_token = per_token - kl_penalty(logp, old, held, config.cov_kl)
        if cov:
            info.update(cov_clipped_share=cov["cov_clipped"] / max(cov["tokens"], 1),
                        cov_kl_share=cov["cov_kl_tokens"] / max(cov["tokens"], 1))
        per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp_min(1)
        return -per_seq.mean(), info

    return batch_loss


def _scatter_start(start_logps, examples: Sequence[PGExample], idx, like: torch.Tensor):
    """The minibatch ``idx``'s start log-probs laid out like ``token_logprobs`` (float
    [B, T-1] like ``like``, 0 off the completions)."""
    old = torch.zeros_like(like.detach())
    for b, i in enumerate(idx):
        n, m = len(examples[i].prompt_ids), len(examples[i].completion_ids)
        old[b, n - 1:n - 1 + m] = start_logps[i].to(like.device)
    return old


def _start_token_logprobs(model, sequences, batch_size: int, pad_id: int) -> list:
    """Per sequence, float32 [len(completion)] on CPU: log p of each completion token under
    the model as it is now (eval mode; the mode is restored after)."""
    out = []
    for lo, logp in zip(range(0, len(sequences), batch_size),
                        _eval_logprobs(model, sequences, batch_size, pad_id)):
        for b, (prompt, completion) in enumerate(sequences[lo:lo + batch_size]):
            n, m = len(prompt), len(completion)
            out.append(logp[b, n - 1:n - 1 + m].clone())
    return out


# ----------------------------------------------------------------------------- saving

def save_policy(model, tokenizer, path) -> str:
    """Write model + tokenizer with ``save_pretrained`` to ``path``, atomically.

    Everything goes to a temporary sibling directory first; only when it is complete
    does it replace ``path`` (an existing directory there is moved aside, then removed),
    so a crash leaves either the old directory or the new one. The result loads with
    ``policies.hf.load_model`` / ``HFPolicy(path)``. Returns the path as a string.
    """
    if type(model).__module__.split(".")[0] == "peft":
        raise TypeError("save_policy: got a peft model; merge its adapters first "
                        "(sft/dpo return merged models)")
    out = Path(path).expanduser()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return str(out)

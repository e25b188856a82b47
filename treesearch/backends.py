"""Every model the apps build: the policy that generates (``build_policy``: transformers
or vLLM), the learner a trainer updates (``build_learner``), the critics (by name, or a
round's saved heads: ``build_critics``) and the scorer over them (``critic_slots``,
``scorer_of``, ``build_scorer``). Self-play, the study and decode build here; the stages
and the search below take what is built.

Critics by name: ``critics.value``, ``critics.process`` and ``critics.outcome`` in a
config each choose an implementation and a model, or ``none``.

    build_critic("outcome", "head", "runs/x/critics/outcome", policy_tokenizer=tok)
    build_scorer({"value": "head:tiny-countdown", "outcome": "none"}, policy_tokenizer=tok)

Implementations: ``head`` (``critics.head.HeadCritic``: a saved critic directory, or any
local model / zoo name as a fresh trunk), ``generative`` (``critics.generative``: an LM
asked True/False, or with ``judge="chat"`` asked Yes/No in its own chat template),
``verifier`` (``critics.verifier.RuleVerifier``: labelled TRAINING problems only; needs
``task`` and ``problems``), ``checker`` (``critics.checker.Checker``: label-free step and
answer checks from the problem's text; needs ``task`` and ``problems``, held-out ones
included), ``prm`` (``critics.prm.PRMCritic``: a published process reward model, a local
directory or a name of ``critics.prm_formats.KNOWN`` found in the Hugging Face cache, read
in its own step format, ``prm_format`` or detected; process and outcome slots only) and
``none``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from critics.base import KINDS, CriticError, check_kind
from critics.checker import Checker
from critics.compose import RewardWeights, StepScorer
from critics.generative import GenerativeCritic
from critics.head import HeadCritic
from critics.prm import PRMCritic
from critics.prm_formats import find_known, known_prm
from critics.verifier import RuleVerifier
from policies.hf import HFPolicy, load_model
from policies.zoo import MODELS, resolve
from treesearch.utils.runs import RunError

IMPLEMENTATIONS = ("head", "generative", "verifier", "checker", "prm", "none")

__all__ = ["IMPLEMENTATIONS", "build_critic", "build_critics", "build_learner", "build_policy",
           "build_scorer", "check_critic", "critic_slots", "parse_spec", "scorer_of"]


def build_policy(model, *, backend: str = "hf", step_delimiter: str = "\n",
                 temperature: float = 1.0, top_p: float = 1.0, device: str = "cpu",
                 dtype=None, seed: int | None = None):
    """The policy that generates: ``policies.hf.HFPolicy`` over ``model`` (a directory, or
    a (model, tokenizer) pair), or with ``backend="vllm"`` a ``policies.vllm.VLLMPolicy``
    over the directory (its engine picks device and dtype)."""
    if backend == "vllm":
        from policies.vllm import VLLMPolicy  # lazy: vllm is optional

        return VLLMPolicy(model, step_delimiter=step_delimiter, temperature=temperature,
                          top_p=top_p, seed=seed)
    return HFPolicy(model, step_delimiter=step_delimiter, temperature=temperature, top_p=top_p,
                    device=device, dtype=dtype, seed=seed)


def build_learner(path, *, device: str = "cpu", dtype=None):
    """(model, tokenizer) of the checkpoint at ``path`` as a trainable transformers model,
    whatever backend generates (a vLLM engine holds no trainable model)."""
    return load_model(path, device, dtype)


def build_critics(implementations: Mapping[str, str], trunk, *,
                  saved: Mapping[str, Path | None] | None = None, policy_tokenizer=None,
                  device: str = "cpu", judge: str = "plain", prm_format: str | None = None) -> dict:
    """{kind: critic} of the learned critics: for each kind whose implementation is neither
    ``none`` nor ``checker`` (checkers are built per problem set, ``critic_slots``), the
    head saved at ``saved[kind]`` when there is one, else a fresh critic on ``trunk``; a
    ``prm:<dir or name>`` implementation is that PRM. A saved head that cannot be loaded is
    a RunError naming its directory."""
    saved = saved or {}
    out = {}
    for kind in ("value", "process", "outcome"):
        impl = implementations[kind]
        if impl in ("none", "checker"):
            continue
        name, model = parse_spec(impl)
        if name == "prm":  # a published PRM: built from its own checkpoint, never trained
            out[kind] = build_critic(kind, name, model, policy_tokenizer=policy_tokenizer,
                                     device=device, prm_format=prm_format)
            continue
        where = saved.get(kind)
        if impl == "head" and where is not None:
            try:
                out[kind] = HeadCritic.load(where, policy_tokenizer=policy_tokenizer,
                                            device=device)
            except Exception as exc:
                raise RunError(f"{where}: cannot load the {kind} critic checkpoint "
                               f"({exc})") from exc
        else:
            out[kind] = build_critic(kind, impl, trunk, policy_tokenizer=policy_tokenizer,
                                     device=device, judge=judge)
    return out


def critic_slots(critics: Mapping, *, checkers: Sequence[str] = (), task=None, problems=None,
                 policy_tokenizer=None) -> dict:
    """A scorer's slots {kind: critic} for ``problems``: the ``critics`` (a chat judge told
    these problems' questions) and a label-free checker in each slot of ``checkers``."""
    slots = dict(critics)
    for critic in slots.values():  # a chat judge shows these problems' questions
        if hasattr(critic, "set_problems"):
            critic.set_problems(task, problems)
    for kind in checkers:
        slots[kind] = build_critic(kind, "checker", task=task, problems=problems,
                                   policy_tokenizer=policy_tokenizer)
    return slots


def scorer_of(slots: Mapping, weights: RewardWeights = RewardWeights()) -> StepScorer:
    """The StepScorer over the slots {kind: critic} (kinds left out stay empty)."""
    return StepScorer(slots.get("value"), slots.get("process"), slots.get("outcome"), weights)


def parse_spec(spec) -> tuple[str, str | None]:
    """"impl:model", "impl" or "none" (or None) -> (impl, model or None)."""
    if spec is None:
        return "none", None
    text = str(spec).strip()
    impl, _, model = text.partition(":")
    return impl.strip(), (model.strip() or None)


def check_critic(kind: str, implementation: str, model: str | None = None) -> None:
    """Refuse a critic that ``build_critic`` cannot build, without loading a model: an
    unknown kind or implementation, the step oracle, a learned critic without a model or
    with a model that is neither a zoo name nor a model directory (CriticError, or
    ``policies.zoo.resolve``'s error naming the model)."""
    check_kind(kind, "build_critic")
    if implementation == "oracle":
        raise CriticError(f"critics.{kind}: the step oracle is for benchmarks only "
                          "(benchmarks/bench_decode.py --step-oracle), never a critic of "
                          "self-play or decode")
    if implementation not in IMPLEMENTATIONS:
        raise CriticError(f"critics.{kind}: unknown critic {implementation!r}; known: "
                          f"{', '.join(IMPLEMENTATIONS)}")
    if implementation in ("none", "verifier", "checker"):
        return
    if not model:
        raise CriticError(f"critics.{kind}: implementation {implementation!r} needs a model "
                          f"(write '{implementation}:<model dir or zoo name>')")
    if implementation == "prm":  # a published PRM's name or directory: critics.prm_formats
        return
    if model not in MODELS or MODELS[model].build is None:  # never converts a zoo model
        resolve(model)


def build_critic(kind: str, implementation: str, model: str | None = None, *,
                 policy_tokenizer=None, device: str = "cpu", task=None, problems=None,
                 judge: str = "plain", prm_format: str | None = None):
    """One critic of ``kind``, or None for ``none``. Unknown names raise, listing the known.

    ``judge`` ("plain" or "chat", ``critics.judge`` in a recipe) is how a ``generative``
    critic asks its model; with ``task`` and ``problems`` a chat judge shows their questions.
    ``prm_format`` (``critics.prm_format``; None or "": detected) is how a ``prm`` reads its
    checkpoint; with ``task`` a PRM drops the task's step delimiter from each step, with
    ``problems`` it shows their questions.

    ``verifier`` and ``checker`` need the task and the problems they will score:
    labelled TRAINING problems for the verifier, any problems for the label-free checker.
    """
    check_critic(kind, implementation, model)
    if implementation == "none":
        return None
    if implementation in ("verifier", "checker"):
        if task is None or problems is None:
            raise CriticError(f"critics.{kind}: the {implementation} needs the task and the "
                              "problems it will score")
        if implementation == "checker":
            return Checker(task, policy_tokenizer, problems, kind=kind)
        return RuleVerifier(task, policy_tokenizer, problems, kind=kind)
    if implementation == "prm":
        return _build_prm(kind, model, policy_tokenizer=policy_tokenizer, device=device,
                          task=task, problems=problems, prm_format=prm_format)
    path = resolve(model)
    if implementation == "head":
        return HeadCritic(path, kind, policy_tokenizer=policy_tokenizer, device=device)
    critic = GenerativeCritic(path, kind, policy_tokenizer=policy_tokenizer, device=device,
                              judge=judge)
    if task is not None and problems is not None:
        critic.set_problems(task, problems)
    return critic


def _build_prm(kind: str, model: str, *, policy_tokenizer, device: str, task, problems,
               prm_format: str | None) -> PRMCritic:
    """``build_critic``'s ``prm``: the checkpoint of ``model`` (a known PRM's name in the
    local Hugging Face cache, a directory or a zoo name)."""
    if kind == "value":
        raise CriticError("critics.value: a PRM scores steps (process) or finished solutions "
                          "(outcome), not values; put prm: in the process or outcome slot")
    path = find_known(model) or resolve(model)
    known = known_prm(model)  # a published PRM's name says its format
    critic = PRMCritic(path, kind, prm_format=prm_format or (known.format if known else None),
                       policy_tokenizer=policy_tokenizer, device=device,
                       step_delimiter=task.step_delimiter if task is not None else "\n")
    if task is not None and problems is not None:
        critic.set_problems(task, problems)
    return critic


def build_scorer(specs: Mapping[str, object], *, weights: RewardWeights = RewardWeights(),
                 policy_tokenizer=None, device: str = "cpu", task=None,
                 problems=None, judge: str = "plain", prm_format: str | None = None) -> StepScorer:
    """A StepScorer from {kind: spec}; kinds left out are ``none``."""
    unknown = set(specs) - set(KINDS)
    if unknown:
        raise CriticError(f"unknown critic slot(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    built = {}
    for kind in KINDS:
        impl, model = parse_spec(specs.get(kind))
        built[kind] = build_critic(kind, impl, model, policy_tokenizer=policy_tokenizer,
                                   device=device, task=task, problems=problems, judge=judge,
                                   prm_format=prm_format)
    return StepScorer(built["value"], built["process"], built["outcome"], weights)

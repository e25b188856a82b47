"""Critics by name: ``critics.value``, ``critics.process`` and ``critics.outcome`` in a
config each choose an implementation and a model, or ``none``.

    build_critic("outcome", "head", "runs/x/critics/outcome", policy_tokenizer=tok)
    build_scorer({"value": "head:tiny-countdown", "outcome": "none"}, policy_tokenizer=tok)

Implementations: ``head`` (``critics.head.HeadCritic``: a saved critic directory, or any
local model / zoo name as a fresh trunk), ``generative`` (``critics.generative``: an LM
asked True/False, or with ``judge="chat"`` asked Yes/No in its own chat template),
``verifier`` (``critics.verifier.RuleVerifier``: labelled TRAINING problems only; needs
``task`` and ``problems``), ``checker`` (``critics.checker.Checker``: label-free step and
answer checks from the problem's text; needs ``task`` and ``problems``, held-out ones
included) and ``none``.
"""

from __future__ import annotations

from typing import Mapping

from critics.base import KINDS, CriticError, check_kind
from critics.checker import Checker
from critics.compose import RewardWeights, StepScorer
from critics.generative import GenerativeCritic
from critics.head import HeadCritic
from critics.verifier import RuleVerifier
from policies.zoo import resolve

IMPLEMENTATIONS = ("head", "generative", "verifier", "checker", "none")


def parse_spec(spec) -> tuple[str, str | None]:
    """"impl:model", "impl" or "none" (or None) -> (impl, model or None)."""
    if spec is None:
        return "none", None
    text = str(spec).strip()
    impl, _, model = text.partition(":")
    return impl.strip(), (model.strip() or None)


def build_critic(kind: str, implementation: str, model: str | None = None, *,
                 policy_tokenizer=None, device: str = "cpu", task=None, problems=None,
                 judge: str = "plain"):
    """One critic of ``kind``, or None for ``none``. Unknown names raise, listing the known.

    ``judge`` ("plain" or "chat", ``critics.judge`` in a recipe) is how a ``generative``
    critic asks its model; with ``task`` and ``problems`` a chat judge shows their questions.

    ``verifier`` and ``checker`` need the task and the problems they will score:
    labelled TRAINING problems for the verifier, any problems for the label-free checker.
    """
    check_kind(kind, "build_critic")
    if implementation == "oracle":
        raise CriticError(f"critics.{kind}: the step oracle is for benchmarks only "
                          "(benchmarks/bench_decode.py --step-oracle), never a critic of "
                          "self-play or decode")
    if implementation not in IMPLEMENTATIONS:
        raise CriticError(f"critics.{kind}: unknown critic {implementation!r}; known: "
                          f"{', '.join(IMPLEMENTATIONS)}")
    if implementation == "none":
        return None
    if implementation in ("verifier", "checker"):
        if task is None or problems is None:
            raise CriticError(f"critics.{kind}: the {implementation} needs the task and the "
                              "problems it will score")
        if implementation == "checker":
            return Checker(task, policy_tokenizer, problems, kind=kind)
        return RuleVerifier(task, policy_tokenizer, problems, kind=kind)
    if not model:
        raise CriticError(f"critics.{kind}: implementation {implementation!r} needs a model "
                          f"(write '{implementation}:<model dir or zoo name>')")
    path = resolve(model)
    if implementation == "head":
        return HeadCritic(path, kind, policy_tokenizer=policy_tokenizer, device=device)
    critic = GenerativeCritic(path, kind, policy_tokenizer=policy_tokenizer, device=device,
                              judge=judge)
    if task is not None and problems is not None:
        critic.set_problems(task, problems)
    return critic


def build_scorer(specs: Mapping[str, object], *, weights: RewardWeights = RewardWeights(),
                 policy_tokenizer=None, device: str = "cpu", task=None,
                 problems=None, judge: str = "plain") -> StepScorer:
    """A StepScorer from {kind: spec}; kinds left out are ``none``."""
    unknown = set(specs) - set(KINDS)
    if unknown:
        raise CriticError(f"unknown critic slot(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    built = {}
    for kind in KINDS:
        impl, model = parse_spec(specs.get(kind))
        built[kind] = build_critic(kind, impl, model, policy_tokenizer=policy_tokenizer,
                                   device=device, task=task, problems=problems, judge=judge)
    return StepScorer(built["value"], built["process"], built["outcome"], weights)

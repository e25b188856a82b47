"""Sample-based measurements of one policy on one problem set, for ``treesearch.study``.

``measure(policy, task, problems, n=256)`` draws n solutions per problem at the sampling
temperature (labels are read only AFTER decoding, to count correct samples) and returns
a ``Measurement``:

- ``counts`` int [P]: correct samples per problem (the input of every pass@k, coverage
  and newly-solved figure; kept per problem so two policies compare problem by problem);
- pass@k for k = 1, 2, 4, ..., n by the unbiased estimator
  (``treesearch.stages.evaluate.pass_at_k``, which self-play's eval uses too);
- diversity: distinct correct solutions per problem (whitespace-insensitive), and the
  mean token entropy in nats, computed EXACTLY (entropy of the full next-token
  distribution at every generated position, one teacher-forced forward pass) over the
  first ``entropy_samples`` samples of each problem;
- calibration of the policy's own confidence, label-free: a problem's confidence is the
  share of its n samples that give the modal answer (grouped by ``task.answer_key``),
  its outcome whether that modal answer is right; Brier score and ECE (10 bins) over
  problems;
- ``format_share``: share of samples in each solution format (``task.style_of``;
  "none" for no step line or an unknown format);
- ``answer_rule_share``: share of samples by the rule their answer was read with
  (``task.read_answer``: "line", "boxed", "answer_is", "last_number"; "none" for no answer);
- ``strategy_share``: for each of the task's named strategies (countdown: "division",
  "subtraction"), the share of CORRECT samples that use it (nan without correct ones):
  does a policy whose pretraining never showed a strategy come to use it?
- ``strategy_use``: for each named strategy, the share of ALL samples (correct or not)
  that use it: does the policy try it at all?
- stated calibration (``stated_calibration``): the confidence a sample STATES in a
  "confidence: 0.7" line (``policies.confidence.stated_confidence``; the convention of
  ``policies.rl``'s Brier reward) against that sample's correctness, Brier score and ECE
  (10 bins) over the samples that state one (nan when none does), and ``stated_share``,
  the share of samples that state one. The sampler stops at the answer line, so pass
  ``confidence_line=True`` to sample the line after it (its tokens then count in
  ``tokens_per_sample``); the label-free modal-answer calibration above is unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from critics.calibration import auroc, brier, ece
from policies.confidence import (
    add_confidence_lines,
    stated_confidence,
    strip_confidence,
)
from policies.diversity import (  # one definition, shared with self-play's eval
    answer_rule_share,
    format_share,
    strategy_share,
    strategy_use_share,
    token_entropy,
)
from policies.rollout import generate_solutions
from treesearch.stages.evaluate import judge, pass_at_k
from treesearch.tasks import prompt_ids
from treesearch.utils.estimators import coverage, distinct_correct


@dataclass
class Measurement:
    """What ``measure`` found on one problem set (all floats are shares or nats)."""

    n: int                                   # samples per problem
    counts: list[int]                        # [P] correct samples per problem
    pass_at: dict[str, float]                # {"k": pass@k}, k = 1, 2, 4, ..., n
    coverage: float                          # share of problems with a correct sample
    distinct_correct: float                  # mean distinct correct solutions per problem
    entropy: float                           # mean next-token entropy, nats per token
    brier: float                             # modal-answer confidence vs its correctness
    ece: float
    confidence: float                        # mean modal-answer share
    format_share: dict[str, float] = field(default_factory=dict)
    answer_rule_share: dict[str, float] = field(default_factory=dict)
    strategy_share: dict[str, float] = field(default_factory=dict)   # among correct samples
    strategy_use: dict[str, float] = field(default_factory=dict)     # among all samples
    tokens_per_sample: float = 0.0
    stated_brier: float = float("nan")       # stated confidence vs the sample's correctness
    stated_ece: float = float("nan")
    stated_auroc: float = float("nan")       # does the stated confidence rank right above wrong?
    stated_share: float = 0.0                # share of samples stating a confidence

    def to_dict(self) -> dict:
        return asdict(self)


def measure(policy, task, problems: Sequence, n: int = 256, *, temperature: float = 1.0,
            max_steps: int = 6, max_step_tokens: int = 24, entropy_samples: int = 16,
            batch_rows: int = 1024, progress: bool = False, desc: str = "measure",
            confidence_line: bool = False) -> Measurement:
    """Sample ``n`` solutions per problem with ``policy`` (an ``HFPolicy``: the entropy
    pass needs ``policy.model``) and measure them; see the module docstring. Problems are
    decoded in chunks of about ``batch_rows`` samples (a tqdm bar with ``progress``).
    ``confidence_line``: sample one more step after each complete answer line (the
    stated-confidence line) and read correctness with the confidence lines removed."""
    if n < 1 or not problems:
        raise ValueError(f"measure: need n >= 1 and at least one problem, got n={n}, "
                         f"{len(problems)} problems")
    blind = [p.without_label() for p in problems]
    texts, used, tokens = [], [], []
    per_chunk = max(1, batch_rows // n)
    with tqdm(total=len(blind), desc=desc, unit="problem", disable=not progress,
              leave=False) as bar:
        for lo in range(0, len(blind), per_chunk):
            chunk = blind[lo:lo + per_chunk]
            t, u, k = generate_solutions(
                policy, policy.tokenizer, task, chunk, n=n, temperature=temperature,
                max_steps=max_steps, max_step_tokens=max_step_tokens, batch_rows=batch_rows,
                return_counts=True, return_tokens=True)
            if confidence_line:
                t, k, u = add_confidence_lines(policy, policy.tokenizer, task, chunk, t, k, u,
                                               max_step_tokens, temperature)
            texts += t
            used.append(u)
            tokens += k
            bar.update(len(chunk))
    used = np.concatenate(used)
    stated_texts = texts
    if confidence_line:
        texts = [[strip_confidence(t) for t in ts] for ts in texts]
    correct, counts = judge(task, problems, texts)

    confidence, outcome = modal_confidence(task, problems, texts, n)
    formats = format_share(task, [t for ts in texts for t in ts])
    rules = answer_rule_share(task, [t for ts in texts for t in ts])

    strategy = strategy_share(task, [t for ts, cs in zip(texts, correct)
                                     for t, c in zip(ts, cs) if c])

    prompts = [prompt_ids(policy.tokenizer, task, p) for p in blind]
    pairs = [(prompts[i], tokens[i][j]) for i in range(len(problems))
             for j in range(min(n, entropy_samples)) if tokens[i][j]]
    return Measurement(
        n=n, counts=counts.tolist(),
        pass_at=pass_at_k(counts, n),
        coverage=coverage(counts),
        distinct_correct=float(np.mean([distinct_correct(ts, cs)
                                        for ts, cs in zip(texts, correct)])),
        entropy=token_entropy(policy.model, pairs, temperature=temperature),
        brier=brier(confidence, outcome), ece=ece(confidence, outcome),
        confidence=float(np.mean(confidence)), format_share=formats, answer_rule_share=rules,
        strategy_share=strategy,
        strategy_use=strategy_use_share(task, [t for ts in texts for t in ts]),
        tokens_per_sample=float(used.mean()),
        **stated_calibration([t for ts in stated_texts for t in ts],
                             [c for cs in correct for c in cs]))


def modal_confidence(task, problems: Sequence, texts: Sequence[Sequence[str]],
                     n: int) -> tuple[list[float], list[int]]:
    """Label-free confidence per problem: the share of its ``n`` samples that give the
    modal answer (grouped by ``task.answer_key``; 0 when none gives an answer), and the
    outcome, whether that modal answer is right (0 without one)."""
    confidence, outcome = [], []
    for p, ts in zip(problems, texts):
        keys = [task.answer_key(task.extract_answer(t)) for t in ts]
        votes = Counter(k for k in keys if k is not None)
        if not votes:
            confidence.append(0.0)
            outcome.append(0)
            continue
        key, count = votes.most_common(1)[0]
        modal = next(t for t, k in zip(ts, keys) if k == key)
        confidence.append(count / n)
        outcome.append(int(task.check_solution(p, modal)))
    return confidence, outcome


def stated_calibration(texts: Sequence[str], correct: Sequence) -> dict:
    """Calibration of the confidences the samples state, per sample.

    texts: N solution texts; correct: N verdicts (bool or 0/1). Returns {"stated_brier",
    "stated_ece" (10 bins), "stated_auroc" (discrimination: 0.5 for a confidence that says
    nothing about which samples are right, nan with one class): over the samples whose
    text states a confidence (``policies.confidence.stated_confidence``), nan when none
    does; "stated_share": share of the N samples that state one (0.0 for N = 0)}.
    """
    if len(texts) != len(correct):
        raise ValueError(f"stated_calibration: {len(texts)} texts but {len(correct)} verdicts")
    pairs = [(c, int(bool(y))) for c, y in
             zip((stated_confidence(t) for t in texts), correct) if c is not None]
    if not pairs:
        return {"stated_brier": float("nan"), "stated_ece": float("nan"),
                "stated_auroc": float("nan"), "stated_share": 0.0}
    confidence, outcome = zip(*pairs)
    return {"stated_brier": brier(confidence, outcome), "stated_ece": ece(confidence, outcome),
            "stated_auroc": auroc(confidence, outcome), "stated_share": len(pairs) / len(texts)}


__all__ = ["Measurement", "answer_rule_share", "format_share", "measure", "stated_calibration",
           "strategy_share", "token_entropy"]

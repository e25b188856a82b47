"""A published process reward model as a critic, read the way it was trained to be read.

    critic = PRMCritic("path/to/Qwen2.5-Math-PRM-7B", "process", policy_tokenizer=tok)
    critic.score(states)        # float32 [N]: the score of each state's LAST step
    critic.step_scores(states)  # float32 [k_i] per state: every step's score

Each state (prompt ids, step id spans, in the policy's tokenizer) is written in the PRM's
own format (``critics.prm_formats``: the problem as the PRM expects it, every step
cleaned of the task's step delimiter and placed in the PRM's step layout), tokenized once
with the PRM's tokenizer, and run ONCE: every step's score is read from that one pass
(one read position per step). Only the ids up to the last read position run (later ones,
such as a chat template's closing tokens, cannot change a causal model's output there).

Prefix reuse (``critics.prm_engine``): the states of one tree share their problem text
and their earlier steps, so their rendered ids share a prefix; its KV states are cached
(``cache_tokens``, 0: off) and only the rest of a state runs. ``counts.processed`` is the
tokens run through the PRM, the scoreboard's critic-token column.

``kind`` is "process" (the last step's score: P(that step is correct)) or "outcome" (the
same read on a finished solution: its last step is the answer); a PRM is not a value
critic. The problem shown is the problem's question when ``set_problems`` knows the
state's prompt (label-free: only ``question`` is read), else the prompt's text.

``backend="vllm"`` runs the same rendered ids on a vLLM pooling engine
(``critics.prm_vllm``) where the installed vLLM serves the format; HF otherwise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from critics.base import CriticError, State, check_kind, check_scores
from critics.prm_engine import HFEngine, load_prm_model
from critics.prm_formats import HEADS, Rendered, clean_step, open_format, read_checkpoint
from treesearch.tasks import prompt_ids
from treesearch.utils.checkpoints import model_directory

BACKENDS = ("hf", "vllm")


class PRMCritic:
    """Process or outcome critic over a published PRM checkpoint.

    model_dir: a local checkpoint directory (config.json, weights, tokenizer).
    kind: "process" or "outcome" ("value" is refused: a PRM judges steps).
    prm_format: one of ``critics.prm_formats.FORMATS``, or None to detect it from the
        checkpoint; a checkpoint the format cannot read is refused by name.
    policy_tokenizer: the tokenizer of the states' ids (None: the PRM's own).
    step_delimiter: the task's step delimiter, dropped from the end of each step.
    device, dtype: where and in what the PRM runs (default float32).
    batch_size: sequences per forward; cache_tokens: the prefix cache's bound in tokens
        (0: every state runs whole). backend: "hf" or "vllm". name: for messages.

    Attributes: kind, name, format (the adapter; ``format.name``), max_positions (the
    PRM's context), counts (``TokenCounts``: processed = tokens run), calls (score calls),
    scored (states scored).
    """

    def __init__(self, model_dir, kind: str, *, prm_format: str | None = None,
                 policy_tokenizer=None, step_delimiter: str = "\n", device: str = "cpu",
                 dtype=None, batch_size: int = 16, cache_tokens: int = 1 << 16,
                 backend: str = "hf", name: str | None = None):
        self.kind = check_kind(kind, "PRMCritic")
        path = model_directory("PRMCritic", model_dir)
        self.name = name or f"prm-{kind}({path.name})"
        if kind == "value":
            raise CriticError(f"critic {self.name}: a PRM scores steps (process) or finished "
                              "solutions (outcome), not values; put prm: in the process or "
                              "outcome slot")
        if backend not in BACKENDS:
            raise CriticError(f"critic {self.name}: unknown backend {backend!r}; known: "
                              f"{', '.join(BACKENDS)}")
        ckpt = read_checkpoint(path)
        self.format = open_format(ckpt, prm_format)
        self.name = name or f"prm-{kind}:{self.format.name}({path.name})"
        self.tokenizer = ckpt.tokenizer
        self.policy_tokenizer = policy_tokenizer
        self.max_positions = ckpt.max_positions
        self.step_delimiter = step_delimiter
        self.path, self.backend, self.device = path, backend, device
        if backend == "vllm":
            from critics.prm_vllm import VLLMEngine  # lazy: vllm is optional

            self.engine = VLLMEngine(path, self.format, HEADS[self.format.name], dtype=dtype,
                                     cache=cache_tokens > 0)
        else:
            trunk, head = load_prm_model(path, self.format, HEADS[self.format.name],
                                         device=device, dtype=dtype)
            self.engine = HFEngine(trunk, head, batch_size=batch_size, cache_tokens=cache_tokens)
        self.counts = self.engine.counts
        self.calls = self.scored = 0
        self._questions: dict[tuple[int, ...], str] = {}

    # -- what the PRM reads -----------------------------------------------------------

    def set_problems(self, task, problems) -> None:
        """Show these problems' questions (never their labels) for states whose prompt ids
        are ``prompt_ids(policy tokenizer, task, problem)``."""
        tok = self.policy_tokenizer or self.tokenizer
        self._questions = {tuple(prompt_ids(tok, task, p.without_label())): p.question
                           for p in problems}

    def parts(self, state: State) -> tuple[str, list[str]]:
        """(problem text, cleaned step texts) of a state, decoded with the policy's
        tokenizer (special tokens dropped)."""
        tok = self.policy_tokenizer or self.tokenizer
        prompt, steps = state

        def text(ids) -> str:
            return tok.decode([int(i) for i in ids], skip_special_tokens=True,
                              clean_up_tokenization_spaces=False)

        question = self._questions.get(tuple(int(i) for i in prompt))
        problem = question if question is not None else text(prompt).strip()
        return problem, [clean_step(text(s), self.step_delimiter, self.format.flatten)
                         for s in steps]

    def render(self, state: State) -> Rendered:
        """The state in the PRM's format: its ids and one read position per step."""
        return self.format.render(*self.parts(state))

    # -- scoring ----------------------------------------------------------------------

    def step_scores(self, states: Sequence[State]) -> list[np.ndarray]:
        """float32 [k_i] per state: the score of each of its k_i >= 1 steps, from one pass
        per state. CriticError naming the critic for a state without steps, one longer
        than the PRM's context, or NaN/inf scores."""
        self.calls += 1
        self.scored += len(states)
        rendered = []
        for i, state in enumerate(states):
            if not len(state[1]):
                raise CriticError(f"critic {self.name}: state {i} has no step to score")
            try:
                r = self.render(state)
            except CriticError:
                raise
            except Exception as exc:
                raise CriticError(f"critic {self.name}: cannot write state {i} in the "
                                  f"{self.format.name} format ({exc})") from exc
            stem = r.read[-1] + 1
            if self.max_positions is not None and stem > self.max_positions:
                raise CriticError(f"critic {self.name}: state {i} is {stem} PRM tokens long "
                                  f"(to its last read position), over the PRM's context of "
                                  f"{self.max_positions} positions")
            rendered.append(r)
        runs = self.engine.run([r.ids[:r.read[-1] + 1] for r in rendered])
        out = [check_scores(self.name, run[r.read], len(r.read)) for r, run in zip(rendered, runs)]
        return out

    def score(self, states: Sequence[State]) -> np.ndarray:
        """float32 [len(states)] in [0, 1]: each state's last-step score."""
        if not len(states):
            return np.zeros(0, np.float32)
        last = [s[-1] for s in self.step_scores(states)]
        return check_scores(self.name, last, len(states))

    def reset_cache(self) -> None:
        """Forget every cached prefix."""
        self.engine.reset()

    def check_fits(self, problems, max_steps: int, max_step_tokens: int,
                   max_state_tokens: int | None = None) -> None:
        """Refuse, before any search, a search whose states could outgrow the PRM's
        context: for each problem, its text with ``max_steps`` empty steps plus every step
        token a state may hold (``max_steps * max_step_tokens`` policy tokens, at most
        ``max_state_tokens`` when given), each counted at the most PRM tokens any policy
        token encodes to, plus two per step for merges at the step edges."""
        if self.max_positions is None:
            return
        ratio = self._tokens_per_policy_token()
        budget = max_steps * max_step_tokens
        if max_state_tokens is not None:
            budget = min(budget, max_state_tokens)
        for p in problems:
            base = self.format.render(p.question, [""] * max_steps).ids
            bound = len(base) + budget * ratio + 2 * max_steps
            if bound > self.max_positions:
                raise CriticError(
                    f"critic {self.name}: a state of problem {p.id} may reach {bound} PRM "
                    f"tokens ({len(base)} for its problem and {max_steps} step frames, "
                    f"{budget} step tokens of the policy at up to {ratio} PRM tokens each), "
                    f"over the PRM's context of {self.max_positions} positions; lower "
                    "search.max_depth or search.max_step_tokens, or use a PRM with a longer "
                    "context")

    def _tokens_per_policy_token(self) -> int:
        """The most PRM tokens any (non-special) policy token's text encodes to (1 when
        the PRM reads the policy's own vocabulary)."""
        policy = self.policy_tokenizer
        if policy is None or policy.get_vocab() == self.tokenizer.get_vocab():
            return 1
        special = set(getattr(policy, "all_special_ids", []) or [])
        ids = [i for i in range(len(policy)) if i not in special]
        texts = policy.batch_decode([[i] for i in ids], skip_special_tokens=True,
                                    clean_up_tokenization_spaces=False)
        most = 1
        for text in texts:
            try:
                most = max(most, len(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
            except Exception:  # a character the PRM's tokenizer cannot write
                continue
        return most

    def describe(self) -> str:
        return (f"prm critic {self.name} kind={self.kind} format={self.format.name} "
                f"backend={self.backend} device={self.device} checkpoint={self.path.name} "
                f"calls={self.calls} states={self.scored} processed={self.counts.processed}")


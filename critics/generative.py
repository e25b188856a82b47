"""A generative critic: a causal language model asked whether a state is correct.

For each state the critic writes a prompt from a template (the state's text in place of
``{solution}``), runs the model once, and reads the next-token logits of the two verdict
tokens (the first tokens of ``true_word`` and ``false_word``):

    score = P(True) / (P(True) + P(False)) = sigmoid(logit_True - logit_False)  in [0, 1]

The default templates use only characters of the tiny priors' character tokenizer, so
every model in the zoo can serve as a critic.

``judge="chat"`` asks an instruction-tuned model in its OWN chat template instead: one user
message (the problem, the solution so far, and the kind's question, ``CHAT_QUESTIONS``),
rendered with ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``, and the
verdict words "Yes" / "No" read right after the assistant header:

    score = P(Yes) / (P(Yes) + P(No)) = sigmoid(logit_Yes - logit_No)

The problem is the policy prompt's text with special tokens dropped, or, for the problems
given with ``set_problems`` (label-free: only ``question`` is read), the problem's question,
so a chat-style policy prompt's own system and instruction text is not judged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from critics.base import CriticError, State, TokenBridge, check_kind, check_scores
from treesearch.engine.interfaces import TokenCounts
from treesearch.tasks import prompt_ids
from treesearch.utils.checkpoints import load_model

TEMPLATES = {
    "process": "{solution}\nCheck the last step above. "
               "Answer True if it is correct, False if not.\nAnswer:",
    "value": "{solution}\nCheck the partial solution above. "
             "Answer True if it can still reach a correct answer, False if not.\nAnswer:",
    "outcome": "{solution}\nCheck the solution above. "
               "Answer True if its final answer is correct, False if not.\nAnswer:",
}
_MARK = "\x00solution\x00"
JUDGES = ("plain", "chat")
CHAT_QUESTIONS = {
    "process": "Is the last step of this solution correct? Answer Yes or No.",
    "value": "Can this partial solution still reach the correct answer? Answer Yes or No.",
    "outcome": "Is the final answer of this solution correct? Answer Yes or No.",
}


def chat_turn(kind: str, problem: str, solution: str) -> list[dict[str, str]]:
    """The chat judge's one user message: the problem, the solution so far, the question."""
    return [{"role": "user", "content": f"Problem:\n{problem.strip()}\n\nSolution:\n"
                                        f"{solution.strip()}\n\n{CHAT_QUESTIONS[kind]}"}]


def template_tokens(tokenizer, kind: str, judge: str = "plain") -> int:
    """The tokens (of ``tokenizer``) a generative critic of ``kind`` puts around a state's
    own text: the default template without ``{solution}`` (judge "plain"), or the chat
    turn's scaffolding and question without problem and solution (judge "chat", which
    also shows the problem's question). A chat judge over a tokenizer without a chat
    template: 0 (the critic refuses it by name when built)."""
    if judge == "chat":
        if not getattr(tokenizer, "chat_template", None):
            return 0
        text = tokenizer.apply_chat_template(chat_turn(kind, "", ""), tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = TEMPLATES[kind].format(solution="")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class GenerativeCritic:
    """Critic of any ``kind`` from a causal LM's True/False next-token probabilities.

    model: a directory written by ``save_pretrained`` (model + tokenizer), or a
        ``(model, tokenizer)`` pair already built (moved to ``device`` and set to eval
        mode in place: sharing a policy's model moves the policy's too).
    kind: "process", "value" or "outcome" (see ``critics.base``); picks the default
        template. template: prompt text with ``{solution}`` (the state's text, decoded
        with ``policy_tokenizer``); other braces must be doubled (``str.format``).
    policy_tokenizer: the tokenizer of the states' ids (None: the critic's own).
    true_word, false_word: the verdict words; each is read from the first token it
        encodes to right after the template (with a leading space when that separates
        them, as BPE tokenizers write " True"; without when it does not, as a character
        tokenizer writes "T" after "Answer:").
    batch_size: states per forward pass. name: for messages and logs.
    judge: "plain" (the template above, True/False) or "chat" (the model's chat template
        over ``chat_messages``, verdict words default "Yes"/"No"; ``template`` must be None
        and the tokenizer must have a chat template, else CriticError).

    Attributes: kind, name, model, tokenizer, template, max_positions (the model's
    max_position_embeddings, or None), true_id/false_id (verdict token ids), counts
    (``TokenCounts``: processed = prompt tokens run, padding excluded), calls (score calls).
    """

    def __init__(self, model, kind: str, *, template: str | None = None,
                 policy_tokenizer=None, true_word: str | None = None,
                 false_word: str | None = None, device: str = "cpu", batch_size: int = 32,
                 name: str | None = None, judge: str = "plain"):
        self.kind = check_kind(kind, "GenerativeCritic")
        if judge not in JUDGES:
            raise CriticError(f"GenerativeCritic: unknown judge {judge!r}; known: "
                              f"{', '.join(JUDGES)}")
        self.judge = judge
        chat = judge == "chat"
        true_word = true_word or ("Yes" if chat else "True")
        false_word = false_word or ("No" if chat else "False")
        if isinstance(model, (tuple, list)):
            model, tokenizer = model
            model = model.to(device)
        else:
            model, tokenizer = load_model(model, device)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = torch.device(device)
        config = model.config
        model_name = getattr(config, "_name_or_path", "") or type(model).__name__
        self.name = name or f"generative-{kind}{'-chat' if chat else ''}({model_name})"
        if chat:
            if template is not None:
                raise CriticError(f"critic {self.name}: judge 'chat' renders the model's chat "
                                  "template; a text template is for judge 'plain'")
            if not getattr(tokenizer, "chat_template", None):
                raise CriticError(f"critic {self.name}: judge 'chat' needs a tokenizer with a "
                                  f"chat template, and {model_name!r} has none (use judge "
                                  "'plain')")
            template = tokenizer.apply_chat_template(
                self.chat_messages("{problem}", "{solution}"), add_generation_prompt=True,
                tokenize=False).replace("{", "{{").replace("}", "}}").replace(
                "{{solution}}", "{solution}")
        self.template = TEMPLATES[kind] if template is None else template
        self._questions: dict[tuple[int, ...], str] = {}
        try:
            marked = self.template.format(solution=_MARK)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"critic {self.name}: template must have {{solution}} as its only "
                             f"field (double other braces): {err!r}") from None
        if _MARK not in marked:
            raise ValueError(f"critic {self.name}: template has no {{solution}}: "
                             f"{self.template!r}")
        if batch_size < 1:
            raise ValueError(f"critic {self.name}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.bridge = TokenBridge(policy_tokenizer, tokenizer)
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.true_id, self.false_id, self.verdict = self._verdict_ids(
            marked.split(_MARK)[-1], true_word, false_word)
        self.counts = TokenCounts()
        self.calls = 0

    def _verdict_ids(self, suffix: str, true_word: str, false_word: str):
        """(true id, false id, (true text, false text)): the first token of each word as
        encoded right after ``suffix`` (the template's end), trying the leading-space
        variant first unless the suffix already ends in whitespace."""
        spaced = suffix[-1:].isspace()
        variants = ("", " ") if spaced else (" ", "")
        base = self._ids(suffix)
        for space in variants if base is not None else ():
            pair = [self._ids(suffix + space + w) for w in (true_word, false_word)]
            if all(ids is not None and len(ids) > len(base) and ids[:len(base)] == base
                   for ids in pair) and pair[0][len(base)] != pair[1][len(base)]:
                return pair[0][len(base)], pair[1][len(base)], (space + true_word,
                                                               space + false_word)
        raise CriticError(f"critic {self.name}: verdict words {true_word!r} and {false_word!r} "
                          "do not start with different tokens after the template's end "
                          f"{suffix!r} (with or without a leading space), or it or they "
                          "cannot be encoded")

    def _ids(self, text: str) -> list[int] | None:
        try:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        except Exception:  # e.g. a character outside a character tokenizer's vocabulary
            return None

    # -- public -----------------------------------------------------------------------

    def chat_messages(self, problem: str, solution: str) -> list[dict[str, str]]:
        """The chat judge's conversation: one user message with the problem, the solution
        so far and the kind's question (``CHAT_QUESTIONS``); the template adds its own
        default system message, if it has one."""
        return chat_turn(self.kind, problem, solution)

    def set_problems(self, task, problems) -> None:
        """Show these problems' questions (never their labels) in chat judge prompts, for
        states whose prompt ids are ``prompt_ids(policy tokenizer, task, problem)``."""
        tok = self.bridge.policy_tokenizer or self.tokenizer
        self._questions = {tuple(prompt_ids(tok, task, p.without_label())): p.question
                           for p in problems}

    def chat_parts(self, state: State) -> tuple[str, str]:
        """(problem text, solution text) of a state, decoded with the policy's tokenizer,
        special tokens dropped; the problem is its question when ``set_problems`` knows it."""
        tok = self.bridge.policy_tokenizer or self.tokenizer
        prompt, steps = state

        def decode(ids):
            return tok.decode(list(ids), skip_special_tokens=True,
                              clean_up_tokenization_spaces=False)

        question = self._questions.get(tuple(int(i) for i in prompt))
        return (question if question is not None else decode(prompt),
                decode([i for span in steps for i in span]))

    def prompt(self, state: State) -> str:
        """The prompt text for one state (the template around the state's text; chat: the
        chat template's rendering of ``chat_messages``)."""
        if self.judge == "chat":
            return self.tokenizer.apply_chat_template(
                self.chat_messages(*self.chat_parts(state)), add_generation_prompt=True,
                tokenize=False)
        return self.template.format(solution=self.bridge.text(state))

    def prompt_ids(self, state: State) -> list[int]:
        """The prompt's token ids in the critic's tokenizer (chat: exactly the ids
        ``apply_chat_template(..., tokenize=True)`` gives; plain: ``<bos>`` + the text)."""
        if self.judge == "chat":
            out = self.tokenizer.apply_chat_template(
                self.chat_messages(*self.chat_parts(state)), add_generation_prompt=True,
                tokenize=True)
            ids = out["input_ids"] if hasattr(out, "keys") else out
            return [int(i) for i in ids]
        return self.bridge.encode_text(self.prompt(state))

    def describe(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        dtype = str(self.model.dtype).replace("torch.", "")
        return (f"generative critic {self.name} kind={self.kind} judge={self.judge} "
                f"params={params / 1e6:.2f}M "
                f"device={self.device} dtype={dtype} verdict={self.verdict!r} "
                f"ids=({self.true_id}, {self.false_id}) calls={self.calls} "
                f"processed={self.counts.processed}")

    def score(self, states: Sequence[State]) -> np.ndarray:
        """states: (prompt ids, step id spans) each, in the policy's ids; returns float32
        [len(states)] in [0, 1]: P(True) / (P(True) + P(False)) for each state's prompt
        (the verdict words: chat judge P(Yes) / (P(Yes) + P(No))).

        Raises CriticError naming the critic when a prompt does not fit the model's
        max_position_embeddings or the model produces NaN/inf.
        """
        self.calls += 1
        seqs = []
        for i, state in enumerate(states):
            try:
                ids = self.prompt_ids(state)
            except Exception as err:
                raise CriticError(f"critic {self.name}: cannot encode prompt {i}: {err}") from err
            if self.max_positions is not None and len(ids) > self.max_positions:
                raise CriticError(f"critic {self.name}: prompt {i} has {len(ids)} tokens, over "
                                  f"the model's limit of {self.max_positions} positions "
                                  "(max_position_embeddings)")
            seqs.append(ids)
        out = np.zeros(len(seqs), dtype=np.float64)
        order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                out[rows] = self._forward([seqs[r] for r in rows])
        return check_scores(self.name, out, len(seqs))

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """One left-padded batch -> float64 [len(seqs)] sigmoid(logit_True - logit_False)
        at each sequence's last token."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                            position_ids=positions.to(self.device), use_cache=False,
                            logits_to_keep=1).logits[:, -1, :].float()
        self.counts.processed += int(mask.sum())
        diff = logits[:, self.true_id] - logits[:, self.false_id]
        return torch.sigmoid(diff.double()).cpu().numpy()

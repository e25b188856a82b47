"""How a task talks to a model: prompt style, step delimiter and answer conventions.

    options = TaskOptions(prompt_style="chat", step_delimiter="\\n\\n")
    task = get_task("arithmetic", options=options)

One ``TaskOptions`` per task object, defined once here and used as it is by every recipe
(``task_options`` in the self-play and study configs), so each knob has one source of
truth. The defaults are the tiny priors' format ("plain"): one step per line, answers on
an ``A:`` line, nothing else accepted, which is the behaviour from before these options
existed.

Prompt styles (rendered by ``treesearch.tasks.prompting.prompt_ids``):

- ``plain``: ``<bos>`` + the task's prompt text (the tiny priors' format);
- ``fewshot``: ``<bos>`` + ``shots`` worked examples from the TRAIN split in the task's own
  step format (``solution_trace``), then the task's prompt text;
- ``chat``: the tokenizer's chat template over a system message (``system_prompt``) and a
  user message that states the task's step and answer conventions; ``shots`` worked
  examples may come first as earlier user / assistant turns; the generation prompt is added.

Answer formats (``treesearch.tasks.answers``): ``line`` (the ``A:`` line), ``boxed``
(``\\boxed{...}``), ``answer_is`` ("The answer is ..."); ``answer_formats`` empty means the
style's default (plain: ``line`` only; fewshot and chat: the task's ``answer_formats``).
``last_number`` is a fallback, off unless chosen: the last number of a solution that no
format matched.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from treesearch.utils.knobs import need as _need

PROMPT_STYLES = ("plain", "chat", "fewshot")
STEP_DELIMITERS = ("\n", "\n\n")
ESCAPED_DELIMITERS = {"\\n": "\n", "\\n\\n": "\n\n"}
ANSWER_FORMATS = ("line", "boxed", "answer_is")
DEFAULT_SYSTEM_PROMPT = "You are a careful assistant who solves problems step by step."


@dataclass
class TaskOptions:
    """prompt_style: "plain", "chat" or "fewshot".
    system_prompt: the chat system message (chat only; empty: ``DEFAULT_SYSTEM_PROMPT``);
        with fewshot it is written as the first paragraph of the prompt; plain refuses it.
    shots: worked TRAIN examples before the problem (fewshot: >= 1; chat: >= 0 earlier
        turns; plain: 0).
    shot_seed: which train problems are the shots (the same for every problem of a run).
    step_delimiter: "\\n" (one step per line) or "\\n\\n" (steps separated by a blank line);
        the escaped spellings (backslash n, as a command line writes it) mean the same.
    answer_formats: subset of ``ANSWER_FORMATS``, tried in that order; empty: the style's
        default (plain: ["line"]; chat, fewshot: the task's own list).
    last_number_fallback: when no format matches a whole solution, its last number is the
        answer (rule "last_number"). Off unless chosen: it turns any text into an answer.
    """

    prompt_style: str = "plain"
    system_prompt: str = ""
    shots: int = 0
    shot_seed: int = 0
    step_delimiter: str = "\n"
    answer_formats: list[str] = field(default_factory=list)
    last_number_fallback: bool = False

    def __post_init__(self) -> None:
        need = functools.partial(_need, source=self, label="TaskOptions.{}")
        need(self.prompt_style in PROMPT_STYLES, "prompt_style",
             f"unknown prompt style; known: {', '.join(PROMPT_STYLES)}")
        need(isinstance(self.shots, int) and self.shots >= 0, "shots", "must be an int >= 0")
        need(self.prompt_style != "fewshot" or self.shots >= 1, "shots",
             "prompt_style 'fewshot' needs at least one shot")
        need(self.prompt_style != "plain" or self.shots == 0, "shots",
             "prompt_style 'plain' shows no examples (use 'fewshot' or 'chat')")
        need(isinstance(self.system_prompt, str), "system_prompt", "must be a string")
        need(self.prompt_style != "plain" or not self.system_prompt, "system_prompt",
             "prompt_style 'plain' has no system prompt (use 'chat' or 'fewshot')")
        # a command line writes the delimiter escaped ("\\n\\n"): the same value
        self.step_delimiter = ESCAPED_DELIMITERS.get(self.step_delimiter, self.step_delimiter)
        need(self.step_delimiter in STEP_DELIMITERS, "step_delimiter",
             f"must be one of {list(STEP_DELIMITERS)}")
        unknown = [f for f in self.answer_formats if f not in ANSWER_FORMATS]
        need(not unknown, "answer_formats",
             f"unknown format(s) {unknown}; known: {', '.join(ANSWER_FORMATS)}")
        need(len(set(self.answer_formats)) == len(self.answer_formats), "answer_formats",
             "lists a format twice")
        self.answer_formats = list(self.answer_formats)

    @property
    def system_message(self) -> str:
        """The system prompt a chat or fewshot prompt shows."""
        return self.system_prompt or DEFAULT_SYSTEM_PROMPT

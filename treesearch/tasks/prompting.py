"""The one place a problem becomes the token prefix a policy continues.

    ids = prompt_ids(tokenizer, task, problem)      # list[int], what every caller uses

The search, rollouts, the critics' inputs, distillation, decoding and the study all call
``prompt_ids``, so a distilled path trains exactly the prefix the model searched from.
The task's ``options.prompt_style`` (``treesearch.tasks.options``) picks the rendering:

- ``plain``: ``[bos] + tokens(task.prompt(problem))``, the tiny priors' format;
- ``fewshot``: ``[bos] + tokens(system prompt + k worked train examples + task.prompt(problem))``;
- ``chat``: ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` over
  ``chat_messages``; a tokenizer without a chat template is a ValueError naming the task
  and the tokenizer.

Worked examples ("shots") are TRAIN problems of the task (never the problem itself) in
the task's own step format (``solution_trace``, style 0, correct), the same ones for every
problem of a task object (``options.shot_seed``).
"""

from __future__ import annotations

import random

from .base import stable_hash
from .options import TaskOptions

PLAIN = TaskOptions()


def options_of(task) -> TaskOptions:
    """The task's options; plain for task-like objects that have none (test doubles)."""
    return getattr(task, "options", None) or PLAIN


def prompt_ids(tokenizer, task, problem) -> list[int]:
    """The token ids a solution of ``problem`` continues, in the task's prompt style."""
    style = options_of(task).prompt_style
    if style == "chat":
        return chat_prompt_ids(tokenizer, task, problem)
    text = task.prompt(problem) if style == "plain" else fewshot_text(task, problem)
    return [tokenizer.bos_token_id] + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_chat_tokenizer(tokenizer, task) -> None:
    """Raise ValueError naming the task and tokenizer if the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(
            f"task {getattr(task, 'name', task)!r}: prompt_style 'chat' needs a tokenizer with a "
            f"chat template, and tokenizer {name!r} has none (use prompt_style 'plain' or "
            "'fewshot' for a base model or a tiny prior)")


def chat_prompt_ids(tokenizer, task, problem) -> list[int]:
    """The chat template's ids for ``chat_messages``, generation prompt included."""
    check_chat_tokenizer(tokenizer, task)
    out = tokenizer.apply_chat_template(chat_messages(task, problem), add_generation_prompt=True,
                                        tokenize=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


def chat_messages(task, problem) -> list[dict[str, str]]:
    """System message, ``shots`` user/assistant example turns, then the problem's user
    message (the task's conventions and its question)."""
    options = options_of(task)
    messages = [{"role": "system", "content": options.system_message}]
    for shot in shot_problems(task, problem):
        messages.append({"role": "user", "content": user_message(task, shot)})
        messages.append({"role": "assistant", "content": shot_trace(task, shot).rstrip("\n")})
    messages.append({"role": "user", "content": user_message(task, problem)})
    return messages


def user_message(task, problem) -> str:
    """The task's step and answer conventions, a blank line, then the question."""
    return f"{task.conventions()}\n\n{problem.question}"


def fewshot_text(task, problem) -> str:
    """The system prompt (if set) as a first paragraph, then each shot's prompt and worked
    solution, then the problem's prompt."""
    options, d = options_of(task), task.step_delimiter
    parts = [options.system_prompt + d] if options.system_prompt else []
    for shot in shot_problems(task, problem):
        parts.append(task.prompt(shot) + shot_trace(task, shot))
    parts.append(task.prompt(problem))
    return "".join(parts)


def shot_trace(task, shot) -> str:
    """A correct worked solution of a shot problem in the task's step format (style 0),
    ending with the step delimiter."""
    return task.solution_trace(shot, random.Random(stable_hash("shot", shot.id)), style=0)


def shot_problems(task, problem) -> list:
    """``options.shots`` train problems of the task other than ``problem`` (cached on the
    task: the same shots for every problem)."""
    options = options_of(task)
    if options.shots == 0:
        return []
    key = (options.shots, options.shot_seed)
    cache = task.__dict__.setdefault("_shot_pool", {})
    if key not in cache:
        cache[key] = task.problems("train", options.shots + 1, seed=options.shot_seed)
    pool = [p for p in cache[key] if p.id != problem.id]
    return pool[:options.shots]

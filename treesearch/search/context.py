"""Does a search fit the model's context? Checked before any model work.

    check_context(tokenizer, 256, task, problems, max_depth=6, max_step_tokens=24,
                  model="tiny-countdown3")      # ContextError when it cannot fit

A solution is at most ``max_depth`` steps of at most ``max_step_tokens`` tokens each,
after the prompt; all of it must fit the model's positions (``max_position_embeddings``).
Otherwise the search's states outgrow what the critics can read (their trunks are as long
as the policy's), and a run fails in the middle of a search, inside a critic. So every app
(self-play, decode, the study) compares the longest prompt over the problems it will
search, plus ``max_depth x max_step_tokens``, with the model's positions before it loads a
model, and refuses naming the search keys and the model's limit.
"""

from __future__ import annotations

from typing import Sequence

from treesearch.tasks import prompt_ids


class ContextError(ValueError):
    """A search that cannot fit the model's context; the message names the keys."""


def longest_prompt(tokenizer, task, problems: Sequence) -> tuple[int, object]:
    """(tokens, problem) of the longest prompt of ``problems`` in the task's prompt style."""
    best = (0, None)
    for problem in problems:
        n = len(prompt_ids(tokenizer, task, problem))
        if n > best[0]:
            best = (n, problem)
    return best


def check_context(tokenizer, positions: int | None, task, problems: Sequence, max_depth: int,
                  max_step_tokens: int, *, model: str, model_key: str = "policy.model",
                  depth_key: str = "search.max_depth",
                  step_key: str = "search.max_step_tokens", extra: int = 0,
                  extra_what: str = "", prompt_again: bool = False) -> None:
    """Refuse (``ContextError``) when the longest prompt of ``problems`` plus ``max_depth``
    steps of ``max_step_tokens`` tokens, plus ``extra`` tokens (``extra_what``: e.g. a
    generative critic's template around the state; with ``prompt_again`` that text also
    shows the question, counted as long as the longest prompt), is more than ``positions``
    (the model's ``max_position_embeddings``; None: no limit). The message names
    ``depth_key``, ``step_key`` and ``model_key`` (how the app's config or command line
    spells them)."""
    if positions is None or not problems:
        return
    prompt, problem = longest_prompt(tokenizer, task, problems)
    extra += prompt if prompt_again else 0
    need = prompt + max_depth * max_step_tokens + extra
    if need <= positions:
        return
    room = (f"at most {(positions - prompt - extra) // max_step_tokens} steps of "
            f"{max_step_tokens} tokens fit after it" if prompt + extra < positions
            else "the prompt alone does not fit")
    plus = f" plus {extra} tokens of {extra_what}" if extra else ""
    raise ContextError(
        f"{depth_key} x {step_key} = {max_depth} x {max_step_tokens} tokens after the longest "
        f"prompt ({prompt} tokens, problem {getattr(problem, 'id', '?')!r} of task "
        f"{task.name!r}){plus} needs {need} positions, more than the {positions} of {model_key} "
        f"{model!r} (max_position_embeddings); {room}: lower {depth_key} or {step_key}, "
        "shorten the prompts (task_options.shots) or use a model with a longer context")

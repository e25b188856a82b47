"""Knob checks: one ``need`` for every recipe and options check, and the allowed values of
library knobs that more than one layer reads.

A knob is defined once, in the library config that uses it (``policies.distill.DistillConfig``,
``policies.rl.RLConfig``, ``treesearch.search.SearchConfig``, ...); the recipes embed those
configs as they are. What is left to share sits here, in the bottom layer, so that
``policies/`` (a config's own ``validate``) and the apps (a recipe's checks) read the same
tuples and word their refusals the same way:

    need = functools.partial(knobs.need, source=cfg, error=ConfigError)
    need(cfg.rounds >= 1, "rounds", "must be >= 1")
    # ConfigError: config key 'rounds' = 0: must be >= 1

A library ``validate`` raises ``KnobError`` naming the field, so an app can name the
recipe key the field sits under (``treesearch.utils.recipes.check_library``).
"""

from __future__ import annotations

# the on-policy optimizers of ``policies.rl.train`` (the study's on-policy optimizers)
RL_METHODS = ("grpo", "expert_iteration", "psr", "nsr", "tree_rl")
# a tree step's baseline (``policies.rl.tree_advantages``): the mean Q of its visited
# siblings, or its parent's Q; the first is the default
TREE_BASELINES = ("siblings", "parent")
# what happens to groups without a correct sample (``policies.rl``)
ZERO_SUCCESS = ("keep", "drop", "downweight")
# the on-policy reward: right / wrong, or the Brier score of a stated confidence
REWARDS = ("binary", "brier")
# the order training problems are taken in
CURRICULA = ("random", "easy_first")


class KnobError(ValueError):
    """A library config's knob whose value cannot work; ``field`` names the knob, so an
    app can name the recipe key it came from."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _value(source, key: str):
    """``key`` (dotted; a digit part indexes a list) read from ``source``."""
    for part in key.split("."):
        source = source[int(part)] if part.isdigit() else getattr(source, part)
    return source


def need(ok: bool, key: str, why: str, *, source=None, prefix: str = "",
         label: str = "config key {!r}", error: type[Exception] = ValueError) -> None:
    """Refuse a knob unless ``ok``: raise ``error`` with "<label> = <value>: <why>".

    key: the knob, dotted, as ``source`` holds it; the label shows ``prefix + key``
    (``label`` formats it: "config key 'distill.lr'", "TaskOptions.shots"). source: the
    config or options object the value is read from (None: the message shows no value,
    for a key that names a whole list or a group of knobs)."""
    if ok:
        return
    shown = label.format(prefix + key)
    if source is not None:
        shown += f" = {_value(source, key)!r}"
    raise error(f"{shown}: {why}")

"""Command-line refusals as one line naming the flag, never a traceback.

    def main(argv=None) -> int:
        args = parse_args(argv)
        try:
            with blame("--task"):
                task = get_task(args.task)
            with blame("--strategies"):
                check(args.strategies)
        except CLIError as exc:
            return exc.exit()                  # "error: --task: unknown task 'x'; ..." on stderr, 2

``blame(flag)`` turns the errors a bad input raises (ValueError and its kin: ConfigError,
TypeError, LookupError, OSError, ImportError) into a ``CLIError`` that names ``flag`` (or
the error's own ``cli_flag``, e.g. ``task_args.KEY`` of a ``TaskArgsError``);
its message is the error's on one line. ``flag=None`` for errors that already name their
key (a recipe's ``config key 'x'``). Bugs (any other exception) still show a traceback.
Also here: ``ArgumentParser``, argparse whose own refusals (an unknown flag, a value that
is not an int, ``parser.error``) are that one line too, and ``dotted_args``, the
``task_args.KEY=VALUE`` items of a command line as a dict.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from omegaconf import OmegaConf

REFUSALS = (ValueError, TypeError, LookupError, OSError, ImportError)


class CLIError(Exception):
    """A refusal of a command line: ``flag`` (or None) and a one-line message."""

    def __init__(self, flag: str | None, message: str):
        self.flag, self.message = flag, one_line(message)
        named = flag is None or self.message.startswith(flag)
        super().__init__(self.message if named else f"{flag}: {self.message}")

    def exit(self, stream=None) -> int:
        """Print ``error: <message>`` to stderr; returns the exit status 2."""
        print(f"error: {self}", file=stream or sys.stderr)
        return 2


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose refusals are one ``error: <message>`` line on
    stderr and exit status 2, like every other refusal of the command-line tools (no
    usage block: ``--help`` shows it)."""

    def error(self, message):
        print(f"error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(message) -> str:
    """``message`` with every run of blanks and newlines made one space."""
    return " ".join(str(message).split())


def describe(exc: BaseException) -> str:
    """An exception's message (its class name when it has none; a KeyError unquoted)."""
    if isinstance(exc, KeyError) and exc.args:
        return f"{type(exc).__name__}: {exc.args[0]}"
    return str(exc) or type(exc).__name__


@contextmanager
def blame(flag: str | None, kinds: tuple[type[BaseException], ...] = REFUSALS):
    """Inside, an error of ``kinds`` becomes a CLIError naming ``flag``."""
    try:
        yield
    except CLIError:
        raise
    except kinds as exc:
        raise CLIError(getattr(exc, "cli_flag", None) or flag, describe(exc)) from None


def dotted_args(items, prefix: str = "task_args.") -> tuple[dict, list[str]]:
    """(``{KEY: VALUE}`` from the ``prefix``KEY=VALUE items, the other items). Values are
    read as YAML, as in a recipe's overrides (``task_args.operators=[+,-]`` is a list)."""
    mine = [i for i in items if i.startswith(prefix)]
    rest = [i for i in items if not i.startswith(prefix)]
    for item in mine:
        if "=" not in item or not item[len(prefix):].split("=", 1)[0]:
            raise CLIError(item, f"expected {prefix}KEY=VALUE")
    parsed = {}
    for item in mine:
        try:
            parsed.update(OmegaConf.to_container(OmegaConf.from_dotlist([item[len(prefix):]])))
        except Exception as exc:  # omegaconf's grammar errors
            raise CLIError(item.split("=", 1)[0],
                           f"cannot read {item!r} as YAML ({one_line(exc)}); "
                           "quote symbols, e.g. "
                           "'task_args.operators=[\"+\",\"-\",\"*\"]'") from None
    return parsed, rest

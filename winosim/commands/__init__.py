"""Subcommands of the `winosim` command line, one module each, plus the edge helpers they share.

Every command module exposes `main(argv: list[str]) -> int` and raises `WinosimError` subclasses for bad
input; `winosim.cli` turns those into one line and exit 2. The helpers here are the command-line edge:
an argument parser whose usage errors are one-line `ConfigError`s and whose numbers are always finite and
within int64 (every `type=float` option refuses NaN and infinity, every `type=int` option a value beyond
int64: the rule lives in the parser, not in each option), comma-separated lists read by one rule
(`comma_list`, `choice_list`), and atomic output files (a temp file in
the target folder, then `os.replace`, `winosim.files`), so a failed command never leaves a partial output behind.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from winosim.errors import ConfigError


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise a one-line ConfigError instead of printing usage.

    `--help` still prints the full help and exits 0. Options declared `type=float` parse with
    `finite_float`, options declared `type=int` with `int64`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", float, finite_float)
        self.register("type", int, int64)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def command_parser(name: str, description: str) -> CommandParser:
    """The parser of `winosim NAME`."""
    return CommandParser(prog=f"winosim {name}", description=description)


INT64_MAX = 2**63 - 1


def finite_float(text: str) -> float:
    """argparse type: a finite number (no NaN, no infinity, nothing that overflows a float)."""
    value = float(text)  # a ValueError reads "invalid float value: ..."
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a tolerance, checked before the work it would bound)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def int64(text: str) -> int:
    """argparse type: an integer that fits in int64."""
    value = int(text)  # a ValueError reads "invalid int value: ..."
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"integer out of range (beyond int64), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (and within int64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    if value > INT64_MAX:
        raise argparse.ArgumentTypeError(f"integer out of range (beyond int64), got {text!r}")
    return value


def seed(text: str) -> int:
    """argparse type: a random seed, an integer in [0, 2^63 - 1]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"a seed must be an integer in [0, {INT64_MAX}], got {text!r}")
    return value


def comma_list(text: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """argparse type: the items of a comma-separated list, spaces around each ignored.

    Refused (one line): an empty item (`a,,b`, a trailing comma), an item given twice, and an empty list
    unless `allow_empty` (then blank text is the empty tuple, as a recorded command writes `--lr-drops ''`).
    """
    if not text.strip():
        if allow_empty:
            return ()
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    items = tuple(part.strip() for part in text.split(","))
    if "" in items:
        raise argparse.ArgumentTypeError(f"empty item in the comma-separated list {text!r}")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once in {text!r}")
    return items


def choice_list(known: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """argparse type: a `comma_list` whose every item is one of `known` (the error lists them)."""
    choices = tuple(known)

    def parse(text: str) -> tuple[str, ...]:
        items = comma_list(text)
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
            )
        return items

    return parse

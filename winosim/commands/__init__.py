"""Subcommands of the `winosim` command line, one module each, plus the edge helpers they share.

Every command module exposes `main(argv: list[str]) -> int` and raises `WinosimError` subclasses for bad
input; `winosim.cli` turns those into one line and exit 2. The helpers here are the command-line edge:
an argument parser whose usage errors are one-line `ConfigError`s and whose numbers are always finite and
within int64 (every `type=float` option refuses NaN and infinity, every `type=int` option a value beyond
int64: the rule lives in the parser, not in each option), and atomic output files (a temp file in
the target folder, then `os.replace`, `winosim.files`), so a failed command never leaves a partial output behind.
"""

from __future__ import annotations

import argparse
import math
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

"""Subcommands of the `winosim` command line, one module each, plus the edge helpers they share.

Every command module exposes `main(argv: list[str]) -> int` and raises `WinosimError` subclasses for bad
input; `winosim.cli` turns those into one line and exit 2. The helpers here are the command-line edge:
an argument parser whose usage errors are one-line `ConfigError`s, and atomic output files (a temp file in
the target folder, then `os.replace`, `winosim.files`), so a failed command never leaves a partial output behind.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from winosim.errors import ConfigError


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise a one-line ConfigError instead of printing usage.

    `--help` still prints the full help and exits 0.
    """

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def command_parser(name: str, description: str) -> CommandParser:
    """The parser of `winosim NAME`."""
    return CommandParser(prog=f"winosim {name}", description=description)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value

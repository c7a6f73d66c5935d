"""Subcommands of the `winosim` command line, one module each, plus the edge helpers they share.

Every command module exposes `main(argv: list[str]) -> int` and raises `WinosimError` subclasses for bad
input; `winosim.cli` turns those into one line and exit 2. The helpers here are the command-line edge:
an argument parser whose usage errors are one-line `ConfigError`s, and atomic output files (a temp file in
the target folder, then `os.replace`), so a failed command never leaves a partial output behind.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import NoReturn

from winosim.errors import ConfigError, WinosimError


class OutputError(WinosimError):
    """An output file that cannot be written (missing folder, no permission, a directory in the way)."""


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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8, '\\n' newlines) to `path` atomically; the file appears complete or not at all."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {target}: folder {folder} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; an output file is an ordinary file
        os.replace(tmp_name, target)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return target

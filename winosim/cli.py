"""The `winosim` command line: a thin dispatcher from subcommands to the modules that implement them.

Each subcommand lives in its own module exposing `main(argv: list[str]) -> int`, imported only when the
subcommand runs, so `winosim run` never imports torch and `winosim train` fails with one clear line when
torch is not installed. This module is the only place that turns errors into exit codes: a `WinosimError`
(bad input) or an interrupt prints one line `winosim: error: ...` to stderr and exits 2, never a traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from winosim.commands import CommandParser
from winosim.errors import WinosimError
from winosim.text import printable
from winosim.version import __version__

EXIT_USAGE = 2
"""Exit status for bad input of any kind (argparse uses the same)."""


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: the module and function that implement it, and a one-line summary for --help."""

    name: str
    module: str
    function: str
    summary: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        "run",
        "winosim.commands.run",
        "main",
        "multiplies, simulated cycles, latency and energy of every method on a trace",
    ),
    Subcommand("inspect", "winosim.commands.inspect", "main", "show a trace: geometry, variants, densities"),
    Subcommand("synth", "winosim.commands.synth", "main", "write a seeded SYNTHETIC trace of a known geometry"),
    Subcommand("train", "winosim.nn.commands", "train_main", "train and prune a model (needs torch)"),
    Subcommand("trace", "winosim.nn.commands", "trace_main", "extract a trace from a trained model (needs torch)"),
    Subcommand("merge", "winosim.commands.merge", "main", "merge variants of traces of the same network and images"),
    Subcommand("curve", "winosim.nn.commands", "curve_main", "accuracy vs density of training runs (density search)"),
    Subcommand("sweep", "winosim.commands.sweep", "main", "simulate a design-space sweep"),
    Subcommand("report", "winosim.commands.report", "main", "tables and figures from sweep results"),
)

_EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torch",
    "dask": "sweep",
    "distributed": "sweep",
}
"""Top-level third-party modules and the pip extra of winosim that installs them."""


def _top_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="winosim",
        description="Trace-driven simulator and cost model for sparse Winograd-ReLU CNNs on mobile PE arrays.",
        epilog="Run 'winosim COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"winosim {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress to stderr (-v info, -vv debug)"
    )
    commands = "\n".join(f"  {c.name:<9} {c.summary}" for c in SUBCOMMANDS)
    parser.add_argument(
        "command",
        metavar="COMMAND",
        choices=[c.name for c in SUBCOMMANDS],
        help="one of: " + ", ".join(c.name for c in SUBCOMMANDS),
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.description = f"{parser.description}\n\ncommands:\n{commands}"
    return parser


def _missing_module_message(command: str, exc: ModuleNotFoundError) -> str:
    missing = (exc.name or "").split(".")[0]
    extra = _EXTRA_FOR_MODULE.get(missing)
    if extra is not None:
        return f"'winosim {command}' needs {missing}, which is not installed (pip install -e '.[{extra}]')"
    if exc.name and exc.name.startswith("winosim"):
        return f"'winosim {command}' is not available in this installation (module {exc.name} is missing)"
    return f"'winosim {command}' needs the Python module {exc.name!r}, which is not installed"


def _resolve(command: Subcommand) -> Callable[[list[str]], int]:
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        raise WinosimError(_missing_module_message(command.name, exc)) from None
    function = getattr(module, command.function, None)
    if function is None:
        raise WinosimError(
            f"'winosim {command.name}' is not available in this installation "
            f"({command.module} has no {command.function})"
        )
    entry: Callable[[list[str]], int] = function
    return entry


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="winosim: %(levelname)s: %(name)s: %(message)s", stream=sys.stderr)


def _error(message: str) -> int:
    print(f"winosim: error: {printable(message)}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run `winosim` with `argv` (default: sys.argv[1:]); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args_list:
            raise WinosimError(
                f"no command given; one of {', '.join(c.name for c in SUBCOMMANDS)} (see 'winosim --help')"
            )
        top = _top_parser().parse_args(args_list)
        _configure_logging(top.verbose)
        command = next(c for c in SUBCOMMANDS if c.name == top.command)
        entry = _resolve(command)
        try:
            return int(entry(list(top.args)) or 0)
        except ModuleNotFoundError as exc:
            # A command that imports an optional dependency lazily (e.g. dask inside `sweep`).
            if exc.name and not exc.name.startswith("winosim"):
                raise WinosimError(_missing_module_message(command.name, exc)) from None
            raise
    except WinosimError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return _error("interrupted")
    except SystemExit as exc:  # argparse: --help / --version (0) and usage errors (2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else _error(str(code)))
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `winosim run ... | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

"""`winosim synth`: write a seeded SYNTHETIC trace (random masks, not a trained model) of a known geometry.

The trace comes from `winosim.synthetic.synthetic_trace`; same arguments give the same file bit for bit
(the recorded command line is the canonical form of the arguments, without the output path). Its metadata
and every table made from it say "synthetic".
"""

from __future__ import annotations

import argparse
import logging

from winosim.commands import command_parser, positive_int
from winosim.errors import ConfigError
from winosim.geometry import NETWORKS, network
from winosim.synthetic import synthetic_trace
from winosim.trace import VARIANT_METHODS, write_trace

logger = logging.getLogger(__name__)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def canonical_command(
    network_name: str,
    images: int,
    weight_density: float,
    activation_density: float,
    methods: list[str],
    variation: float,
    seed: int,
) -> str:
    """The `winosim synth` command line that reproduces a trace (recorded in its provenance)."""
    return (
        f"winosim synth --network {network_name} --images {images} --weight-density {weight_density} "
        f"--activation-density {activation_density} --methods {','.join(methods)} --variation {variation} "
        f"--seed {seed}"
    )


def main(argv: list[str]) -> int:
    parser = command_parser("synth", "Write a seeded SYNTHETIC trace (random masks, not a trained model).")
    parser.add_argument("--network", required=True, choices=sorted(NETWORKS), help="geometry to generate")
    parser.add_argument("--images", type=positive_int, default=8, help="sample images N (default 8)")
    parser.add_argument("--weight-density", type=_fraction, default=0.3, help="target weight density (default 0.3)")
    parser.add_argument(
        "--activation-density", type=_fraction, default=0.5, help="target activation density (default 0.5)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(VARIANT_METHODS),
        help=f"comma-separated variant methods (default {','.join(VARIANT_METHODS)})",
    )
    parser.add_argument(
        "--variation",
        type=float,
        default=0.5,
        help="log-normal sigma of per-position / per-channel density factors (default 0.5, 0 = uniform)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--output", required=True, metavar="FILE", help="trace file to write (.npz)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(VARIANT_METHODS))
    if unknown or not methods:
        raise ConfigError(
            f"--methods must be a comma-separated subset of {','.join(VARIANT_METHODS)}, got {args.methods!r}"
        )
    if args.variation < 0:
        raise ConfigError(f"--variation must be >= 0, got {args.variation}")
    command = canonical_command(
        args.network, args.images, args.weight_density, args.activation_density, methods, args.variation, args.seed
    )
    trace = synthetic_trace(
        network(args.network),
        images=args.images,
        weight_density=args.weight_density,
        activation_density=args.activation_density,
        methods=methods,
        variation=args.variation,
        seed=args.seed,
        command=command,
    )
    write_trace(trace, args.output)
    logger.info("wrote %s", args.output)
    return 0

"""`winosim synth`: write a seeded SYNTHETIC trace (random masks, not a trained model) of a known geometry, or
of the conv and fully connected layers of an ONNX model (`--onnx`, `winosim.onnx_geometry`).

The trace comes from `winosim.synthetic.synthetic_trace`; same arguments give the same file bit for bit
(the recorded command line is the canonical form of the arguments, without the output path). Its metadata
and every table made from it say "synthetic".
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from winosim.commands import choice_list, command_parser, finite_float, positive_int, seed
from winosim.errors import ConfigError
from winosim.files import check_not_an_input, check_output_file
from winosim.geometry import NETWORKS, NetworkGeometry, network
from winosim.synthetic import DEFAULT_MAX_MASK_BYTES, synthetic_trace
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
    source: str | None = None,
) -> str:
    """The `winosim synth` command line that reproduces a trace (recorded in its provenance); `source` replaces
    `--network NAME` (e.g. `--onnx model.onnx`)."""
    return (
        f"winosim synth {source or f'--network {network_name}'} --images {images} --weight-density {weight_density} "
        f"--activation-density {activation_density} --methods {','.join(methods)} --variation {variation} "
        f"--seed {seed}"
    )


def _image_shape(text: str) -> tuple[int, int, int]:
    """argparse type: C,H,W, three integers >= 1 (a shape, so a size may repeat: 3,32,32)."""
    try:
        parts = text.split(",")
        shape = tuple(positive_int(part.strip()) for part in parts) if len(parts) == 3 else ()
    except (argparse.ArgumentTypeError, ValueError):
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"expected C,H,W, three integers >= 1, got {text!r}")
    return shape[0], shape[1], shape[2]


def _onnx_source(path: str, input_shape: tuple[int, int, int] | None) -> tuple[NetworkGeometry, str, tuple[str, ...]]:
    """The geometry of an ONNX model, its `source` for the canonical command and its unsupported operators,
    each logged as one warning line."""
    from winosim.onnx_geometry import onnx_geometry

    read = onnx_geometry(path, input_shape=input_shape)
    for line in read.unsupported:
        logger.warning("unsupported ONNX operator %s", line)
    shape_option = f" --input-shape {','.join(map(str, input_shape))}" if input_shape is not None else ""
    return read.geometry, f"--onnx {path}{shape_option}", read.unsupported


def main(argv: list[str]) -> int:
    parser = command_parser("synth", "Write a seeded SYNTHETIC trace (random masks, not a trained model).")
    origin = parser.add_mutually_exclusive_group(required=True)
    origin.add_argument("--network", choices=sorted(NETWORKS), help="geometry to generate")
    origin.add_argument(
        "--onnx", metavar="MODEL.onnx", help="geometry of an ONNX CNN's conv and FC layers (needs the onnx extra)"
    )
    parser.add_argument(
        "--input-shape",
        type=_image_shape,
        metavar="C,H,W",
        help="with --onnx: input size for a model whose input size is dynamic",
    )
    parser.add_argument("--images", type=positive_int, default=8, help="sample images N (default 8)")
    parser.add_argument("--weight-density", type=_fraction, default=0.3, help="target weight density (default 0.3)")
    parser.add_argument(
        "--activation-density", type=_fraction, default=0.5, help="target activation density (default 0.5)"
    )
    parser.add_argument(
        "--methods",
        type=choice_list(VARIANT_METHODS),
        default=",".join(VARIANT_METHODS),
        help=f"comma-separated variant methods (default {','.join(VARIANT_METHODS)})",
    )
    parser.add_argument(
        "--variation",
        type=float,
        default=0.5,
        help="log-normal sigma of per-position / per-channel density factors (default 0.5, 0 = uniform)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, an integer >= 0 (default 0)")
    parser.add_argument(
        "--max-mask-gib",
        type=finite_float,
        default=DEFAULT_MAX_MASK_BYTES / 1024**3,
        metavar="G",
        help="refuse a trace whose masks would take more than G GiB of memory (one byte per element; default "
        f"{DEFAULT_MAX_MASK_BYTES / 1024**3:g})",
    )
    parser.add_argument("--output", required=True, metavar="FILE", help="trace file to write (.npz)")
    args = parser.parse_args(argv)
    check_output_file(args.output)
    check_not_an_input(args.output, "--output", [args.onnx] if args.onnx is not None else [], "ONNX model")
    methods = list(args.methods)
    if args.variation < 0:
        raise ConfigError(f"--variation must be >= 0, got {args.variation}")
    if args.max_mask_gib <= 0:
        raise ConfigError(f"--max-mask-gib must be > 0, got {args.max_mask_gib}")
    source: str | None = None
    unsupported: tuple[str, ...] = ()
    if args.onnx is not None:
        geometry, source, unsupported = _onnx_source(args.onnx, args.input_shape)
    elif args.input_shape is not None:
        raise ConfigError("--input-shape applies to --onnx models only")
    else:
        geometry = network(args.network)
    command = canonical_command(
        args.network,
        args.images,
        args.weight_density,
        args.activation_density,
        methods,
        args.variation,
        args.seed,
        source,
    )
    trace = synthetic_trace(
        geometry,
        images=args.images,
        weight_density=args.weight_density,
        activation_density=args.activation_density,
        methods=methods,
        variation=args.variation,
        seed=args.seed,
        command=command,
        max_mask_bytes=int(args.max_mask_gib * 1024**3),
    )
    if args.onnx is not None:
        skipped = f"{len(unsupported)} unsupported ONNX operators skipped" + "".join(f"; {u}" for u in unsupported)
        notes = f"{trace.provenance.notes}; geometry from ONNX model {args.onnx}: {skipped}"
        trace = replace(trace, provenance=replace(trace.provenance, notes=notes))
    write_trace(trace, args.output)
    logger.info("wrote %s", args.output)
    return 0

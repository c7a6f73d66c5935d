"""`winosim inspect`: what a trace holds, its geometry, variants, and non-zero densities.

Shows the provenance (and a loud warning for synthetic traces), the layer geometry, the variants with
their target and measured densities and accuracies, the weight and activation density of every layer in
every variant (in the domain where that variant multiplies), and for each variant that multiplies in the
Winograd domain the density of every Winograd position as a p x p grid (row xi, column nu; position index
xi * p + nu), over all Winograd layers or over one layer (`--layer`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from winosim.commands import command_parser
from winosim.errors import ConfigError
from winosim.files import atomic_write_text, check_not_an_input, check_output_file
from winosim.report import Column, fmt_millions, frame_records, render_text_table
from winosim.text import printable
from winosim.trace import Trace, Variant, load_trace, trace_metadata

logger = logging.getLogger(__name__)

ALL_WINOGRAD_LAYERS = "all_winograd_layers"


def geometry_frame(trace: Trace) -> pd.DataFrame:
    """One row per layer: its geometry, output size, tile grid (Winograd layers) and dense multiplies."""
    rows = []
    for index, layer in enumerate(trace.layers):
        tiles = trace.tiles(layer) if layer.kind == "winograd" else None
        rows.append(
            {
                "layer_index": index,
                **layer.to_dict(),
                "out_height": layer.out_height,
                "out_width": layer.out_width,
                "tiles": None if tiles is None else f"{tiles[0]}x{tiles[1]}",
                "dense_spatial_multiplies_per_image": layer.dense_spatial_multiplies(),
            }
        )
    return pd.DataFrame(rows)


def layer_density_frame(trace: Trace) -> pd.DataFrame:
    """One row per (variant, layer): domain and the non-zero fraction of the weight and activation masks."""
    rows = []
    for variant in trace.variants:
        for index, (layer, masks) in enumerate(zip(trace.layers, variant.masks, strict=True)):
            rows.append(
                {
                    "variant": variant.name,
                    "method": variant.method,
                    "layer_index": index,
                    "layer": layer.name,
                    "kind": layer.kind,
                    "domain": variant.domain(layer),
                    "weight_density": float(np.count_nonzero(masks.weight) / masks.weight.size),
                    "activation_density": float(np.count_nonzero(masks.activation) / masks.activation.size),
                }
            )
    return pd.DataFrame(rows)


def _winograd_layers(trace: Trace, variant: Variant, layer_name: str | None) -> list[int]:
    indices = [i for i, layer in enumerate(trace.layers) if variant.domain(layer) == "winograd"]
    if layer_name is None:
        return indices
    return [i for i in indices if trace.layers[i].name == layer_name]


def position_density_frame(trace: Trace, layer_name: str | None = None) -> pd.DataFrame:
    """One row per (variant, Winograd position) for the variants that multiply in the Winograd domain:
    the non-zero fraction of weights and activations at that position, pooled over all Winograd layers
    (`layer` = 'all_winograd_layers') or over the layer named `layer_name`."""
    if layer_name is not None:
        layer = next((candidate for candidate in trace.layers if candidate.name == layer_name), None)
        if layer is None:
            raise ConfigError(f"--layer: the trace has no layer {layer_name!r}")
        if layer.kind != "winograd":
            raise ConfigError(f"--layer: layer {layer_name!r} is a spatial layer; it has no Winograd positions")
    p = trace.winograd_m + 2
    rows = []
    for variant in trace.variants:
        indices = _winograd_layers(trace, variant, layer_name)
        if not indices:
            continue
        weight_nonzero = np.zeros(p * p, dtype=np.int64)
        act_nonzero = np.zeros(p * p, dtype=np.int64)
        weight_total = act_total = 0
        for i in indices:
            masks = variant.masks[i]
            weight_nonzero += np.count_nonzero(masks.weight.reshape(-1, p * p), axis=0)
            act_nonzero += np.count_nonzero(masks.activation.reshape(-1, p * p), axis=0)
            weight_total += masks.weight.size // (p * p)
            act_total += masks.activation.size // (p * p)
        for position in range(p * p):
            rows.append(
                {
                    "variant": variant.name,
                    "method": variant.method,
                    "layer": layer_name if layer_name is not None else ALL_WINOGRAD_LAYERS,
                    "position": position,
                    "xi": position // p,
                    "nu": position % p,
                    "weight_density": float(weight_nonzero[position] / weight_total),
                    "activation_density": float(act_nonzero[position] / act_total),
                }
            )
    return pd.DataFrame(
        rows, columns=["variant", "method", "layer", "position", "xi", "nu", "weight_density", "activation_density"]
    )


def _fmt_density(value: Any) -> str:
    return f"{float(value):.3f}"


def _fmt_optional(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def _grid_lines(frame: pd.DataFrame, p: int) -> list[str]:
    """The weight and activation p x p grids of one variant, side by side."""
    weight = frame["weight_density"].to_numpy().reshape(p, p)
    act = frame["activation_density"].to_numpy().reshape(p, p)
    cell = 6
    width = p * cell
    lines = [f"    {'weight':<{width}}    activation"]
    for xi in range(p):
        left = "".join(f"{value:{cell}.3f}" for value in weight[xi])
        right = "".join(f"{value:{cell}.3f}" for value in act[xi])
        lines.append(f"    {left:<{width}}    {right}")
    return lines


def render_inspect_text(trace: Trace, path: str, layer_name: str | None) -> str:
    """The terminal view of a trace: provenance, geometry, variants, densities per layer and per position."""
    geometry = geometry_frame(trace)
    out = [
        *_provenance_lines(trace, path),
        "",
        "geometry",
        _geometry_table(geometry),
        *_variant_lines(trace),
        *_layer_density_lines(trace, geometry),
        *_position_lines(trace, layer_name),
    ]
    return "\n".join(out).rstrip("\n") + "\n"


def _provenance_lines(trace: Trace, path: str) -> list[str]:
    prov = trace.provenance
    out = [f"trace: {path}"]
    if prov.synthetic:
        out.append("WARNING: SYNTHETIC TRACE: random masks from a generator, NOT a trained model")
    out += [
        f"network {trace.network}, input {trace.input_height}x{trace.input_width}, "
        f"F({trace.winograd_m}x{trace.winograd_m},3x3), {len(trace.layers)} layers, {trace.images} sample images",
        f"provenance: dataset {prov.dataset}; seed {prov.seed}; winosim {prov.winosim_version}; "
        f"torch {prov.torch_version or '-'}",
        f"command: {prov.command}",
    ]
    if prov.notes:
        out.append(f"notes: {prov.notes}")
    return out


def _geometry_table(geometry: pd.DataFrame) -> str:
    table = geometry.assign(
        input=[f"{h}x{w}" for h, w in zip(geometry["in_height"], geometry["in_width"], strict=True)],
        output=[f"{h}x{w}" for h, w in zip(geometry["out_height"], geometry["out_width"], strict=True)],
    )
    return render_text_table(
        table,
        [
            Column("layer_index", "#"),
            Column("name", "layer", text=True),
            Column("kind", "kind", text=True),
            Column("op", "op", text=True),
            Column("in_channels", "C"),
            Column("out_channels", "K"),
            Column("input", "input"),
            Column("kernel", "kernel"),
            Column("stride", "stride"),
            Column("padding", "pad"),
            Column("output", "output"),
            Column("tiles", "tiles", null="-"),
            Column("dense_spatial_multiplies_per_image", "dense spatial mults/img (M)", fmt_millions),
        ],
    )


def _variant_lines(trace: Trace) -> list[str]:
    out = ["variants (densities over the pruned, kind 'winograd', layers, in each variant's multiply domain)"]
    variants = pd.DataFrame(
        [
            {
                "name": v.name,
                "method": v.method,
                "target": _fmt_optional(v.target_density),
                "weight": _fmt_optional(trace.weight_density(v)),
                "activation": _fmt_optional(trace.activation_density(v)),
                "accuracy": _fmt_optional(v.accuracy),
                "dense_accuracy": _fmt_optional(v.dense_accuracy),
                "recipe": json.dumps(dict(v.recipe), sort_keys=True),
            }
            for v in trace.variants
        ],
        columns=["name", "method", "target", "weight", "activation", "accuracy", "dense_accuracy", "recipe"],
    )
    if variants.empty:
        return [*out, "(none: this trace holds only the geometry)\n"]
    columns = [
        Column("name", "variant", text=True),
        Column("method", "method", text=True),
        Column("target", "target density"),
        Column("weight", "weight density"),
        Column("activation", "activation density"),
        Column("accuracy", "accuracy"),
        Column("dense_accuracy", "dense accuracy"),
        Column("recipe", "recipe", text=True),
    ]
    return [*out, render_text_table(variants, columns)]


def _layer_density_lines(trace: Trace, geometry: pd.DataFrame) -> list[str]:
    densities = layer_density_frame(trace)
    if densities.empty:
        return []
    wide = geometry[["name", "kind"]].rename(columns={"name": "layer"})
    columns = [Column("layer", "layer", text=True), Column("kind", "kind", text=True)]
    for variant in trace.variants:
        part = densities[densities["variant"] == variant.name].reset_index(drop=True)
        wide[f"{variant.name}:w"] = part["weight_density"]
        wide[f"{variant.name}:a"] = part["activation_density"]
        columns += [
            Column(f"{variant.name}:w", f"{variant.name} w", _fmt_density),
            Column(f"{variant.name}:a", f"{variant.name} a", _fmt_density),
        ]
    return [
        "densities per layer (weight / activation, in each variant's multiply domain)",
        render_text_table(wide, columns),
    ]


def _position_lines(trace: Trace, layer_name: str | None) -> list[str]:
    positions = position_density_frame(trace, layer_name)
    if positions.empty:
        return ["no variant multiplies in the Winograd domain: no per-position densities"]
    p = trace.winograd_m + 2
    scope = f"layer {layer_name}" if layer_name else "all Winograd layers"
    out: list[str] = []
    for variant in trace.variants:
        part = positions[positions["variant"] == variant.name]
        if part.empty:
            continue
        out.append(
            f"variant {variant.name!r} ({variant.method}): density per Winograd position, {scope} (row xi, column nu)"
        )
        out += [*_grid_lines(part, p), ""]
    return out


def render_inspect_json(trace: Trace, path: str, layer_name: str | None) -> str:
    document = {
        "trace": path,
        "meta": trace_metadata(trace),
        "layer_densities": frame_records(layer_density_frame(trace)),
        "position_densities": frame_records(position_density_frame(trace, layer_name)),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def main(argv: list[str]) -> int:
    parser = command_parser("inspect", "Show a trace: geometry, variants, densities per layer and per position.")
    parser.add_argument("trace", metavar="FILE", help="trace file (.npz, format v1)")
    parser.add_argument("--layer", metavar="NAME", help="per-position densities of this layer only")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    args = parser.parse_args(argv)
    if args.output:
        check_output_file(args.output, create_folder=False)
        check_not_an_input(args.output, "--output", [args.trace], "trace")
    trace = load_trace(args.trace)
    if args.format == "json":
        text = render_inspect_json(trace, args.trace, args.layer)
    else:
        text = render_inspect_text(trace, args.trace, args.layer)
    text = printable(text, keep_newlines=True)
    if args.output:
        atomic_write_text(args.output, text, create_folder=False)
        logger.info("wrote %s", args.output)
    else:
        print(text, end="")
    return 0

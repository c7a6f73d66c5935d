"""`winosim merge`: one trace from the variants of several traces of the same network and the same images.

A trace's variants are trained separately but measured together: their activation masks come from the same
sampled test images, so the simulator compares them image for image. Merging keeps that true: every input
must describe the same network geometry (layers, input size, Winograd tile), the same dataset split and the
same sampled images (count, seed and, where recorded, the image indices), and be all trained or all
synthetic. The output holds the first input's variants in their order; a later input's variant replaces the
earlier one of the same name in place, and its new names are appended. The masks are copied bit for bit and
every variant's recipe gains an `extraction` record (the command, dataset, torch and winosim versions that
extracted it) so that nothing is lost about where each variant came from.

    python -m winosim merge traces/vgg_nagadomi.npz runs/wr_only.npz --output traces/vgg_nagadomi.npz

Used when one variant is retrained (e.g. a longer Winograd-ReLU schedule) and the others are kept.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from winosim.commands import command_parser
from winosim.errors import ConfigError, TraceError
from winosim.files import check_distinct_inputs, check_output_file
from winosim.trace import Provenance, Trace, Variant, load_trace, write_trace
from winosim.version import __version__

logger = logging.getLogger(__name__)

_IMAGE_LIST = re.compile(r"test images (\[[0-9, ]*\])")


def dataset_split(dataset: str) -> str:
    """The dataset and split of a provenance's `dataset` ("cifar10-npz:test (/path)" -> "cifar10-npz:test"):
    the folder it was read from may differ between machines, the data may not."""
    return dataset.split(" (", 1)[0].strip()


def sampled_images(provenance: Provenance) -> str | None:
    """The test-image indices behind the activation masks, as the extraction recorded them in its notes."""
    found = _IMAGE_LIST.search(provenance.notes)
    return found.group(1) if found else None


def extraction_record(provenance: Provenance) -> dict[str, Any]:
    """How a trace was extracted, as stored in each merged variant's recipe under `extraction`."""
    return {
        "command": provenance.command,
        "dataset": provenance.dataset,
        "torch_version": provenance.torch_version,
        "winosim_version": provenance.winosim_version,
    }


def _check_compatible(first: tuple[str, Trace], other: tuple[str, Trace]) -> None:
    """Refuse, in one line, to merge two traces whose variants were not measured on the same thing."""
    (name_a, a), (name_b, b) = first, other
    pa, pb = a.provenance, b.provenance
    checks: tuple[tuple[str, object, object], ...] = (
        ("network", a.network, b.network),
        ("input size", (a.input_height, a.input_width), (b.input_height, b.input_width)),
        ("Winograd tile m", a.winograd_m, b.winograd_m),
        ("layer geometry", a.layers, b.layers),
        ("synthetic flag", pa.synthetic, pb.synthetic),
        ("dataset", dataset_split(pa.dataset), dataset_split(pb.dataset)),
        ("sampled images", pa.images, pb.images),
        ("image seed", pa.seed, pb.seed),
        ("sampled image indices", sampled_images(pa), sampled_images(pb)),
    )
    for what, value_a, value_b in checks:
        if value_a != value_b:
            shown = "" if what == "layer geometry" else f" ({value_a!r} vs {value_b!r})"
            raise TraceError(f"cannot merge {name_b} into {name_a}: not the same {what}{shown}")


def merge_traces(inputs: Sequence[tuple[str, Trace]], command: str) -> Trace:
    """One trace from `inputs` ((label, trace) pairs, at least two): the first's variants, each later variant
    replacing the earlier one of its name in place or appended when new. Pure: masks are shared, not copied."""
    if len(inputs) < 2:
        raise ConfigError("merge needs at least two traces")
    first = inputs[0][1]
    for other in inputs[1:]:
        _check_compatible(inputs[0], other)
    merged: dict[str, tuple[str, Variant]] = {}
    for label, trace in inputs:
        record = extraction_record(trace.provenance)
        for variant in trace.variants:
            recipe = dict(variant.recipe)
            recipe.setdefault("extraction", record)  # a variant merged before keeps its first record
            if variant.name in merged:
                logger.info("variant %s: %s replaces %s", variant.name, label, merged[variant.name][0])
            merged[variant.name] = (label, replace(variant, recipe=recipe))
    sources: dict[str, list[str]] = {}
    for name, (label, _) in merged.items():
        sources.setdefault(label, []).append(name)
    origin = "; ".join(f"{', '.join(names)} from {label}" for label, names in sources.items())
    torch_versions = sorted({str(t.provenance.torch_version) for _, t in inputs if t.provenance.torch_version})
    provenance = replace(
        first.provenance,
        winosim_version=__version__,
        command=command,
        torch_version=", ".join(torch_versions) if torch_versions else None,
        notes=f"{first.provenance.notes}; merged by winosim merge: {origin} (each variant's recipe 'extraction' "
        "records the command that extracted it)",
    )
    return replace(first, variants=tuple(variant for _, variant in merged.values()), provenance=provenance)


def main(argv: list[str]) -> int:
    parser = command_parser(
        "merge",
        "Merge traces of the same network and sampled images: the first trace's variants, each replaced by a "
        "later trace's variant of the same name; new names are appended.",
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE.npz", help="two or more traces, earliest first")
    parser.add_argument(
        "--output", required=True, metavar="FILE", help="trace file to write (may be one of the inputs)"
    )
    args = parser.parse_args(argv)
    if len(args.traces) < 2:
        raise ConfigError("merge needs at least two traces (see 'winosim merge --help')")
    check_output_file(args.output)
    check_distinct_inputs(args.traces, "merge: trace")
    inputs = [(Path(path).name, load_trace(path)) for path in args.traces]
    labels = [label for label, _ in inputs]
    if len(set(labels)) != len(labels):  # the notes name each input by its file name
        inputs = [(str(path), trace) for path, (_, trace) in zip(args.traces, inputs, strict=True)]
    trace = merge_traces(inputs, "python -m winosim merge " + shlex.join(argv))
    write_trace(trace, args.output)
    logger.info("wrote %s: variants %s", args.output, ", ".join(v.name for v in trace.variants))
    return 0

"""Helpers shared by the analysis scripts: where the shipped traces and the committed outputs live, the
command line every script accepts, and the provenance header (with a loud SYNTHETIC warning) that opens
every Markdown output.

The scripts are run as `python analyses/<name>.py` from a checkout; they import the checkout's own winosim
(the repository root goes first on sys.path), so the committed outputs always come from the current code.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from winosim.archio import default_arch  # noqa: E402  (after making the checkout importable)
from winosim.files import atomic_write_text  # noqa: E402
from winosim.trace import Trace, load_trace  # noqa: E402

TRACES_DIR = ROOT / "traces"
OUT_DIR = ROOT / "analyses" / "out"

SYNTHETIC_WARNING = (
    "> **SYNTHETIC TRACE — NOT A TRAINED MODEL.** The masks of `{name}` come from a seeded random generator "
    "(`winosim synth`), not from a trained network. These numbers exercise the pipeline; they say nothing about "
    "what Winograd-ReLU pruning achieves. Do not quote them."
)


def arguments(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The analyses' common options (--traces, --out, --jobs), plus a script's own from `extra`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--traces", type=Path, default=TRACES_DIR, help="folder of .npz traces (default: traces/)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: analyses/out/)")
    parser.add_argument("--jobs", type=int, default=1, help="local worker processes for sweeps (default 1)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def shipped_traces(folder: Path) -> list[tuple[Path, Trace]]:
    """Every trace in `folder`, sorted by file name."""
    paths = sorted(folder.glob("*.npz"))
    if not paths:
        raise SystemExit(f"no traces (*.npz) in {folder}")
    return [(path, load_trace(path)) for path in paths]


def standard_error_points(accuracy: float, images: int) -> float:
    """Binomial standard error of an accuracy measured on `images` images, in points."""
    return 100 * math.sqrt(accuracy * (1 - accuracy) / images)


def header(title: str, path: Path, trace: Trace) -> str:
    """Markdown title, synthetic warning (when it applies) and the trace's provenance."""
    prov = trace.provenance
    lines = [f"# {title}", ""]
    if prov.synthetic:
        lines += [SYNTHETIC_WARNING.format(name=path.name), ""]
    lines += [
        f"- trace: `traces/{path.name}` (network `{trace.network}`, input {trace.input_height}x{trace.input_width}, "
        f"{trace.images} sample images, {'SYNTHETIC' if prov.synthetic else 'dataset ' + prov.dataset})",
        f"- made by: `{prov.command}`",
    ]
    extracted = {v.name: dict(v.recipe).get("extraction") for v in trace.variants}
    lines += [  # a merged trace (`winosim merge`): each variant's own extraction
        f"  - `{name}` extracted by: `{record['command']}` (torch {record.get('torch_version') or 'not recorded'})"
        for name, record in extracted.items()
        if isinstance(record, dict) and "command" in record
    ]
    lines += [""]
    return "\n".join(lines)


def write_markdown(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def _size(n_bytes: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale and n_bytes % scale == 0:
            return f"{n_bytes // scale} {unit}"
    return f"{n_bytes} B"


def default_description() -> str:
    """The default preset in one sentence, read from the code (so it cannot go stale)."""
    arch = default_arch()
    pe, mem = arch.pe_array, arch.memory
    return (
        f"the default preset (`winosim/presets/default.yaml`): {pe.pe_count} PEs x {pe.multipliers_per_pe} "
        f"multipliers ({pe.pe_kind}), weight zeros {pe.weight_zeros} / activation zeros {pe.activation_zeros}, "
        f"{pe.partition} partition with {pe.assignment} assignment, {_size(mem.global_buffer_bytes)} global buffer, "
        f"{mem.dram_bandwidth_bytes_per_cycle} B/cycle DRAM, {mem.weight_format} weights / {mem.activation_format} "
        f"activations, {arch.data_width_bits}-bit data, {arch.clock_hz / 1e9:g} GHz, energy table "
        f"{arch.energy_table}; between layers: activation residency {mem.activation_residency}, batch order "
        f"{mem.batch_order}, weight prefetch {mem.weight_prefetch}, weight buffer share {mem.weight_buffer_share}"
    )

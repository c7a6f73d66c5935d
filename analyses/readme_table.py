"""README.md's side-by-side table of the main command, rewritten from what the command prints today.

The README quotes `python -m winosim run --trace traces/resnet18.npz --pe 64 --totals-only --format md` under
both activation residencies, each `dram / **buffer**` cell the two runs' figures (tests/test_doc_outputs.py
checks it cell by cell). When the trace or the simulator changes on purpose, this script replaces the table's
rows in place (atomically) and prints them; the prose around the table is left to the author.

    python analyses/readme_table.py [--readme README.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _shared import ROOT

from winosim.files import atomic_write_text

COMMAND = ["run", "--trace", "traces/resnet18.npz", "--pe", "64", "--totals-only", "--format", "md"]
HEADER = "| layers | method | mults/img (M) |"
SIDE_BY_SIDE = ("kcycles/img", "energy/img (uJ)", "speedup vs dense spatial", "energy reduction vs dense spatial")


def _printed_rows(*extra: str) -> list[dict[str, str]]:
    """The first Markdown table that `winosim run` prints, as rows keyed by its header."""
    done = subprocess.run([sys.executable, "-m", "winosim", *COMMAND, *extra], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"winosim {' '.join([*COMMAND, *extra])} failed: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip().strip("|").split("|")]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row, strict=True)) for row in cells]


def side_by_side_rows() -> list[str]:
    buffer = _printed_rows()
    dram = _printed_rows("--set", "memory.activation_residency=dram")
    rows = []
    for b, d in zip(buffer, dram, strict=True):
        if (b["layer"], b["method"]) != (d["layer"], d["method"]):
            raise SystemExit(f"the runs differ: {b['layer']}, {b['method']} against {d['layer']}, {d['method']}")
        cells = [b["layer"], b["method"], b["mults/img (M)"], b["reduction vs dense spatial"]]
        cells += [b["reduction vs dense Winograd"], *(f"{d[c]} / **{b[c]}**" for c in SIDE_BY_SIDE)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file to update (README.md)")
    args = parser.parse_args()
    lines = args.readme.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(HEADER)]
    if len(starts) != 1:
        raise SystemExit(f"{args.readme}: expected one table starting {HEADER!r}, found {len(starts)}")
    first = starts[0] + 2  # past the header and its alignment row
    end = first
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    rows = side_by_side_rows()
    lines[first:end] = [row + "\n" for row in rows]
    atomic_write_text(args.readme, "".join(lines))
    print("\n".join(rows))


if __name__ == "__main__":
    main()

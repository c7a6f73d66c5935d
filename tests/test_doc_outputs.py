"""The command outputs quoted in the documentation are what the commands print today.

A table pasted into a document drifts silently when the simulator changes on purpose (docs/your-model.md's
tables did: recorded before buffer residency, `pe_fill` and streamed passes became the defaults, they showed
2.25x where the same trace now gives 9.4x). These tests re-run the commands whose output is quoted and compare
the quoted rows cell by cell, so a change that moves the numbers fails here until the documents are updated
with it. The trained walkthrough of docs/your-model.md (training, density search, trace) is not re-run: it
takes minutes of training; its `run` and `sweep` tables follow from a trace that is not shipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

Row = dict[str, str]


def _winosim(cwd: Path, *args: str) -> str:
    command = [sys.executable, "-m", "winosim", *args]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(markdown: str) -> list[list[Row]]:
    """Every pipe table of `markdown` as rows keyed by the header's column names."""
    tables: list[list[Row]] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines[:-1]):
        if not line.startswith("| ") or not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            continue
        header = _cells(line)
        rows = []
        for body in lines[i + 2 :]:
            if not body.startswith("|"):
                break
            rows.append(dict(zip(header, _cells(body), strict=True)))
        tables.append(rows)
    return tables


def _table_with(markdown: str, column: str) -> list[Row]:
    found = [table for table in _tables(markdown) if table and column in table[0]]
    assert len(found) == 1, f"expected one table with a column {column!r}, found {len(found)}"
    return found[0]


def _by_scope_and_method(rows: list[Row], scope_column: str) -> dict[tuple[str, str], Row]:
    return {(row[scope_column], row["method"]): row for row in rows}


def test_readme_main_command_table_is_what_run_prints_under_both_residencies() -> None:
    """README.md's side-by-side table: each `dram / **buffer**` cell is the two runs' figures (bold: buffer)."""
    common = ["run", "--trace", "traces/resnet18.npz", "--pe", "64", "--totals-only", "--format", "md"]
    buffer = _by_scope_and_method(_tables(_winosim(ROOT, *common))[0], "layer")
    dram = _by_scope_and_method(
        _tables(_winosim(ROOT, *common, "--set", "memory.activation_residency=dram"))[0], "layer"
    )
    quoted = _table_with((ROOT / "README.md").read_text(encoding="utf-8"), "kcycles/img: dram / **buffer**")
    assert {(row["layers"], row["method"]) for row in quoted} == set(buffer)
    for row in quoted:
        key = (row["layers"], row["method"])
        for column in ("mults/img (M)", "reduction vs dense spatial", "reduction vs dense Winograd"):
            assert row[column] == buffer[key][column] == dram[key][column], (key, column)
        for quoted_column, column in (
            ("kcycles/img: dram / **buffer**", "kcycles/img"),
            ("energy/img (uJ): dram / **buffer**", "energy/img (uJ)"),
            ("speedup vs dense spatial: dram / **buffer**", "speedup vs dense spatial"),
            ("energy reduction vs dense spatial: dram / **buffer**", "energy reduction vs dense spatial"),
        ):
            assert row[quoted_column] == f"{dram[key][column]} / **{buffer[key][column]}**", (key, quoted_column)


def test_readme_table_script_rewrites_the_committed_table_unchanged(tmp_path: Path) -> None:
    """analyses/readme_table.py, run on a copy of README.md whose table rows were scrambled, restores them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith(("| Winograd layers |", "| TOTAL |"))]
    scrambled = readme.replace(rows[0], rows[0].replace("1.00x", "9.99x"), 1)
    assert scrambled != readme
    copy = tmp_path / "README.md"
    copy.write_text(scrambled, encoding="utf-8")
    subprocess.run(
        [sys.executable, str(ROOT / "analyses" / "readme_table.py"), "--readme", str(copy)],
        check=True,
        capture_output=True,
    )
    assert copy.read_text(encoding="utf-8") == readme


def test_your_model_onnx_table_is_what_synth_and_run_print(tmp_path: Path) -> None:
    """docs/your-model.md section 6: ResNet-34 exported to ONNX, `synth --onnx`, `run --totals-only`."""
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT))
    try:
        from examples.models import resnet34
    finally:
        sys.path.remove(str(ROOT))
    model = tmp_path / "resnet34.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated (the doc says so)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(resnet34().eval(), (torch.zeros(1, 3, 224, 224),), str(model), dynamo=False)
    _winosim(
        tmp_path,
        *("synth", "--onnx", "resnet34.onnx", "--images", "2", "--weight-density", "0.3"),
        *("--activation-density", "0.5", "--output", "resnet34-synthetic.npz"),
    )
    printed = _tables(
        _winosim(tmp_path, "run", "--trace", "resnet34-synthetic.npz", "--pe", "64", "--totals-only", "--format", "md")
    )
    doc = (ROOT / "docs" / "your-model.md").read_text(encoding="utf-8")
    quoted = doc[doc.index("$ python -m winosim run --trace resnet34-synthetic.npz") :]
    assert _tables(quoted)[0] == printed[0]

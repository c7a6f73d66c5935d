"""`winosim run` with the simulator: cycles, latency and energy per layer and method, sums and ratios.

The simulated table is the count table plus the simulator's columns: the exact multiplies are untouched,
the sum rows add the per-layer cycles and energy, and every speedup / energy reduction is the reference
row's value over the row's own, on the same array. Architecture flags (`--pe`, `--set`, `--arch`) reach
the simulator; `--out DIR` writes tables and figures; bad architecture input is one line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from winosim import cli
from winosim.archio import apply_overrides, default_arch
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.methods import METHODS
from winosim.simulate import simulate
from winosim.synthetic import synthetic_trace
from winosim.trace import load_trace, write_trace

REPO = Path(__file__).resolve().parents[1]
NET = NetworkGeometry(
    "tiny",
    8,
    8,
    10,
    (
        LayerGeometry("stem", "spatial", "conv", 3, 8, 8, 8, kernel=3, stride=1, padding=1),
        LayerGeometry("a", "winograd", "conv", 8, 8, 8, 8, kernel=3, stride=1, padding=1),
        LayerGeometry("b", "winograd", "conv", 8, 16, 8, 7, kernel=3, stride=1, padding=1),
        LayerGeometry("fc", "spatial", "fc", 16, 10, 1, 1, kernel=1),
    ),
)


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(synthetic_trace(NET, images=2, seed=3), tmp_path_factory.mktemp("t") / "tiny.npz")


def _run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict:
    code = cli.main(["run", *map(str, args), "--format", "json", "--no-progress"])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    return json.loads(captured.out)


def test_layer_rows_carry_the_simulators_cycles_and_energy(capsys, trace_path: Path) -> None:
    document = _run_json(capsys, "--trace", trace_path, "--pe", "4")
    trace = load_trace(trace_path)
    expected = simulate(trace, apply_overrides(default_arch(), {"pe": 4})).to_frame()
    rows = [r for r in document["rows"] if r["scope"] == "layer"]
    assert len(rows) == len(expected)
    for row in rows:
        match = expected[
            (expected["layer_index"] == row["layer_index"])
            & (expected["method"] == row["method"])
            & (expected["variant"].fillna("") == (row["variant"] or ""))
        ]
        assert len(match) == 1
        assert isinstance(row["cycles"], int) and row["cycles"] == int(match["cycles"].iloc[0])
        assert row["energy_pj"] == pytest.approx(float(match["energy_pj"].iloc[0]))
        assert row["cycles_per_image"] == pytest.approx(row["cycles"] / row["images"])
    assert document["meta"]["simulated"] is True
    assert document["meta"]["arch"]["pe_array.pe_count"] == 4


def test_sum_rows_add_layers_and_ratios_use_the_reference_row(capsys, trace_path: Path) -> None:
    rows = _run_json(capsys, "--trace", trace_path, "--pe", "4")["rows"]
    for method in METHODS:
        layers = [r for r in rows if r["scope"] == "layer" and r["method"] == method]
        total = next(r for r in rows if r["scope"] == "total" and r["method"] == method)
        assert total["cycles"] == sum(r["cycles"] for r in layers)
        assert total["energy_pj"] == pytest.approx(sum(r["energy_pj"] for r in layers))
        assert (
            total["compute_cycles"]
            + total["dram_stall_cycles"]
            + total["transform_stall_cycles"]
            + total["imbalance_idle_cycles"]
            == total["cycles"]
        )
    by_key = {(r["scope"], r["layer"], r["method"]): r for r in rows}
    for (scope, layer, _), row in by_key.items():
        reference = by_key[(scope, layer, "dense_spatial")]
        assert row["speedup_vs_dense_spatial"] == pytest.approx(reference["cycles"] / row["cycles"])
        assert row["energy_reduction_vs_dense_spatial"] == pytest.approx(reference["energy_pj"] / row["energy_pj"])
    dense = by_key[("total", "total", "dense_spatial")]
    assert dense["speedup_vs_dense_spatial"] == 1.0


def test_architecture_flags_reach_the_simulator(capsys, trace_path: Path) -> None:
    slow = _run_json(capsys, "--trace", trace_path, "--pe", "4", "--set", "memory.dram_bandwidth_bytes_per_cycle=1")
    fast = _run_json(capsys, "--trace", trace_path, "--pe", "4", "--set", "memory.dram_bandwidth_bytes_per_cycle=64")
    total = {
        doc_id: next(r for r in doc["rows"] if r["scope"] == "total" and r["method"] == "winograd_relu")
        for doc_id, doc in (("slow", slow), ("fast", fast))
    }
    assert total["slow"]["cycles"] > total["fast"]["cycles"]
    assert slow["meta"]["arch"]["memory.dram_bandwidth_bytes_per_cycle"] == 1


def test_out_dir_holds_tables_and_figures(capsys, trace_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "result"
    code = cli.main(["run", "--trace", str(trace_path), "--pe", "4", "--out", str(out), "--no-progress"])
    capsys.readouterr()
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "cycle_attribution_dense_spatial.png",
        "cycle_attribution_winograd_relu.png",
        "energy_breakdown.png",
        "layer_cycles.png",
        "run.csv",
        "run.json",
    ]
    for name in names:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "run.json").read_text())["meta"]["simulated"] is True


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "pe_array.bogus=1"], "bogus"),
        (["--set", "memory.dram_bandwidth_bytes_per_cycle=-4"], "dram_bandwidth_bytes_per_cycle"),
        (["--set", "memory.global_buffer_bytes=16"], "global_buffer"),
        (["--arch", "does-not-exist.yaml"], "does-not-exist.yaml"),
    ],
)
def test_impossible_architectures_are_one_line_and_exit_2(trace_path: Path, tmp_path: Path, args, needle) -> None:
    target = tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "winosim",
            "run",
            "--trace",
            str(trace_path),
            "--pe",
            "4",
            *args,
            "--output",
            str(target),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("winosim: error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()

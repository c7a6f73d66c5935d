"""The command line, end to end: `python -m winosim run | inspect | synth` in every format, and bad input.

Every bad input gets one line `winosim: error: ...` naming the problem, exit status 2, no traceback and
no output file. Output files are written atomically and hold exactly what stdout would have shown. The
format checks run in-process through `winosim.cli.main` (fast); the bad-input cases run as real
subprocesses, as a user would.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from winosim import __version__, cli
from winosim.counts import count_trace
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.methods import METHODS
from winosim.synthetic import synthetic_trace
from winosim.trace import load_trace, write_trace

REPO = Path(__file__).resolve().parents[1]
LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("a", "winograd", "conv", 8, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("b", "winograd", "conv", 8, 16, 8, 7, kernel=3, stride=1, padding=1),
    LayerGeometry("proj", "spatial", "conv", 16, 16, 8, 7, kernel=1, stride=2, padding=0),
    LayerGeometry("fc", "spatial", "fc", 16, 10, 1, 1, kernel=1),
)
NET = NetworkGeometry("tiny", 8, 8, 10, LAYERS)


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(synthetic_trace(NET, images=3, seed=1), tmp_path_factory.mktemp("traces") / "tiny.npz")


@pytest.fixture(scope="module")
def relu_only_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trace = synthetic_trace(NET, images=2, methods=("winograd_relu",))
    return write_trace(trace, tmp_path_factory.mktemp("traces") / "relu-only.npz")


def winosim(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "winosim", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json_run(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict:
    code, out, err = run_main(capsys, "run", "--trace", path, "--pe", "4", "--format", "json", *extra)
    assert (code, err) == (0, "")
    return json.loads(out)


# --------------------------------------------------------------------------- run


def test_run_prints_the_paper_table_end_to_end(trace_path: Path) -> None:
    result = winosim("run", "--trace", trace_path, "--pe", "64")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "SYNTHETIC TRACE" in out
    for label in (
        "reduction vs dense spatial",
        "reduction vs dense Winograd",
        "kcycles/img",
        "latency/img (us)",
        "energy/img (uJ)",
        "speedup vs dense spatial",
        "energy reduction vs dense spatial",
    ):
        assert label in out
    assert "simulated on arch 'default': 64 PEs" in out
    assert "LOWER BOUND" not in out
    for method in ("dense spatial", "pruned spatial", "dense Winograd", "native pruned Winograd", "Winograd-ReLU"):
        assert method in out
    assert "Winograd layers" in out and "TOTAL" in out


def test_run_counts_only_prints_the_labelled_ideal_bound(trace_path: Path) -> None:
    result = winosim("run", "--trace", trace_path, "--pe", "64", "--counts-only")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("reduction vs dense spatial", "reduction vs dense Winograd", "ideal cycles/image (bound)"):
        assert label in out
    assert "LOWER BOUND" in out
    for method in ("dense spatial", "pruned spatial", "dense Winograd", "native pruned Winograd", "Winograd-ReLU"):
        assert method in out
    assert "Winograd layers" in out and "TOTAL" in out


def test_run_json_rows_are_exact_counts_with_sums_and_labelled_ratios(
    capsys: pytest.CaptureFixture[str], trace_path: Path
) -> None:
    document = _json_run(capsys, trace_path)
    rows, meta = document["rows"], document["meta"]
    assert meta["trace"] == str(trace_path)
    assert (meta["network"], meta["synthetic"], meta["images"], meta["pe"]) == ("tiny", True, 3, 4)
    assert meta["multipliers_per_pe"] == 16 and meta["multipliers_per_cycle"] == 64
    assert meta["unavailable_methods"] == []

    counts = {(c.layer, c.method, c.variant): c.multiplies for c in count_trace(load_trace(trace_path))}
    layer_rows = [r for r in rows if r["scope"] == "layer"]
    assert {(r["layer"], r["method"], r["variant"]): r["multiplies"] for r in layer_rows} == counts
    assert [r["method"] for r in layer_rows[:5]] == list(METHODS)
    for row in rows:
        assert {"layer", "method", "variant", "multiplies", "images", "multiplies_per_image"} <= set(row)
        assert isinstance(row["multiplies"], int)
        assert row["multiplies_per_image"] == row["multiplies"] / 3
        assert row["ideal_cycles_bound"] == math.ceil(row["multiplies"] / 64)
        assert row["ideal_cycles_bound_per_image"] == math.ceil(row["multiplies"] / 3 / 64)

    for method in METHODS:
        per_layer = [r for r in layer_rows if r["method"] == method]
        total = next(r for r in rows if r["scope"] == "total" and r["method"] == method)
        subtotal = next(r for r in rows if r["scope"] == "winograd_layers" and r["method"] == method)
        assert total["multiplies"] == sum(r["multiplies"] for r in per_layer)
        assert subtotal["multiplies"] == sum(r["multiplies"] for r in per_layer if r["kind"] == "winograd")
        assert total["layer"] == "total" and subtotal["layer"] == "winograd_layers"

    by_key = {(r["scope"], r["layer"], r["method"]): r for r in rows}
    for (scope, layer, _method), row in by_key.items():
        for reference in ("dense_spatial", "dense_winograd"):
            expected = by_key[(scope, layer, reference)]["multiplies"] / row["multiplies"]
            assert row[f"reduction_vs_{reference}"] == pytest.approx(expected, rel=1e-12)
    assert by_key[("layer", "a", "dense_winograd")]["reduction_vs_dense_spatial"] == 2.25
    assert by_key[("layer", "stem", "dense_winograd")]["reduction_vs_dense_spatial"] == 1.0


def test_run_csv_has_the_same_rows_as_json(capsys: pytest.CaptureFixture[str], trace_path: Path) -> None:
    document = _json_run(capsys, trace_path)
    code, out, _ = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(document["rows"])
    assert list(rows[0]) == list(document["rows"][0])
    for from_csv, from_json in zip(rows, document["rows"], strict=True):
        assert (from_csv["layer"], from_csv["method"], from_csv["variant"]) == (
            from_json["layer"],
            from_json["method"],
            from_json["variant"] or "",
        )
        assert int(from_csv["multiplies"]) == from_json["multiplies"]


def test_run_markdown_and_latex(capsys: pytest.CaptureFixture[str], trace_path: Path) -> None:
    code, out, _ = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--format", "md")
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| layer |"))
    assert "reduction vs dense spatial" in lines[header]
    assert lines[header + 1].startswith("|:---|")
    assert "SYNTHETIC TRACE" in out
    code, out, _ = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--format", "latex")
    assert code == 0
    assert "\\begin{tabular}" in out and "\\bottomrule" in out
    assert "dense\\_spatial" not in out  # methods are shown by label, underscores escaped elsewhere


def test_run_output_file_equals_stdout_and_is_written_atomically(
    capsys: pytest.CaptureFixture[str], trace_path: Path, tmp_path: Path
) -> None:
    for fmt in ("table", "json"):
        code, expected, _ = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--format", fmt)
        target = tmp_path / f"out.{fmt}"
        code, out, err = run_main(
            capsys, "run", "--trace", trace_path, "--pe", "4", "--format", fmt, "--output", target
        )
        assert (code, out, err) == (0, "", "")
        assert target.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.table"]


def test_run_is_deterministic(capsys: pytest.CaptureFixture[str], trace_path: Path) -> None:
    first = run_main(capsys, "run", "--trace", trace_path, "--pe", "8", "--format", "json")
    second = run_main(capsys, "run", "--trace", trace_path, "--pe", "8", "--format", "json")
    assert first == second


def test_run_gives_the_same_bytes_with_either_timing_engine(
    capsys: pytest.CaptureFixture[str], trace_path: Path
) -> None:
    """`run` times the pipeline with the event model's exact recurrences; `--engine events` runs the simpy
    model itself, with the same result to the byte (here, a DRAM-bound setting where the engines work hardest)."""
    args = (
        "run",
        "--trace",
        trace_path,
        "--pe",
        "8",
        "--format",
        "json",
        "--set",
        "memory.dram_bandwidth_bytes_per_cycle=2",
    )
    default = run_main(capsys, *args)
    assert run_main(capsys, *args, "--engine", "events") == default
    assert run_main(capsys, *args, "--engine", "recurrence") == default


def test_a_method_without_masks_is_reported_unavailable(
    capsys: pytest.CaptureFixture[str], relu_only_path: Path
) -> None:
    document = _json_run(capsys, relu_only_path)
    assert document["meta"]["unavailable_methods"] == ["pruned_spatial", "native_winograd"]
    for row in document["rows"]:
        if row["method"] in ("pruned_spatial", "native_winograd"):
            assert row["available"] is False
            assert row["multiplies"] is None and row["reduction_vs_dense_spatial"] is None
            assert row["variant"] is None
        else:
            assert row["available"] is True and isinstance(row["multiplies"], int)
    code, out, _ = run_main(capsys, "run", "--trace", relu_only_path, "--pe", "4")
    assert code == 0
    assert "n/a: pruned spatial is unavailable" in out
    assert "n/a: native pruned Winograd is unavailable" in out
    native_rows = [line for line in out.splitlines() if "native pruned Winograd" in line and "n/a:" not in line]
    assert native_rows and all(line.rstrip().endswith("n/a") for line in native_rows)


def test_run_totals_only_and_multipliers_per_pe(capsys: pytest.CaptureFixture[str], trace_path: Path) -> None:
    document = _json_run(capsys, trace_path, "--totals-only", "--multipliers-per-pe", "3")
    assert {r["scope"] for r in document["rows"]} == {"winograd_layers", "total"}
    assert len(document["rows"]) == 2 * len(METHODS)
    for row in document["rows"]:
        assert row["ideal_cycles_bound"] == -(-row["multiplies"] // 12)


# --------------------------------------------------------------------------- inspect and synth


def test_inspect_shows_geometry_variants_and_position_grids(trace_path: Path) -> None:
    result = winosim("inspect", trace_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "WARNING: SYNTHETIC TRACE" in out
    assert "geometry" in out and "proj" in out and "4x4" in out  # tiles of layer a (8x8 -> 4x4)
    assert "densities per layer" in out
    assert "variant 'winograd_relu' (winograd_relu): density per Winograd position" in out
    assert "variant 'spatial'" not in out  # a spatial variant has no Winograd positions
    grid_rows = [line for line in out.splitlines() if line.startswith("    ") and line.count(".") == 8]
    assert len(grid_rows) == 2 * 4  # native and winograd_relu, 4 rows of (weight | activation) each


def test_inspect_json_densities_agree_with_the_masks(capsys: pytest.CaptureFixture[str], trace_path: Path) -> None:
    code, out, _ = run_main(capsys, "inspect", trace_path, "--format", "json")
    assert code == 0
    document = json.loads(out)
    trace = load_trace(trace_path)
    assert document["meta"]["network"] == "tiny"
    layer_rows = document["layer_densities"]
    assert len(layer_rows) == len(trace.variants) * len(LAYERS)
    relu = trace.variant("winograd_relu")
    row = next(r for r in layer_rows if r["variant"] == "winograd_relu" and r["layer"] == "b")
    assert row["weight_density"] == np.count_nonzero(relu.masks[2].weight) / relu.masks[2].weight.size
    positions = [r for r in document["position_densities"] if r["variant"] == "winograd_relu"]
    assert [r["position"] for r in positions] == list(range(16))
    weights = np.concatenate([relu.masks[i].weight.reshape(-1, 16) for i in (1, 2)])
    np.testing.assert_allclose([r["weight_density"] for r in positions], weights.mean(axis=0), rtol=1e-12)
    assert positions[5]["xi"] == 1 and positions[5]["nu"] == 1

    code, out, _ = run_main(capsys, "inspect", trace_path, "--format", "json", "--layer", "a")
    layer_a = [r for r in json.loads(out)["position_densities"] if r["variant"] == "winograd_relu"]
    np.testing.assert_allclose(
        [r["activation_density"] for r in layer_a], relu.masks[1].activation.reshape(-1, 16).mean(axis=0)
    )


def test_synth_is_reproducible_and_records_its_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["synth", "--network", "vgg_nagadomi", "--images", "1", "--methods", "winograd_relu", "--seed", "5"]
    assert run_main(capsys, *args, "--output", tmp_path / "a.npz")[0] == 0
    assert run_main(capsys, *args, "--output", tmp_path / "b.npz")[0] == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    trace = load_trace(tmp_path / "a.npz")
    assert trace.provenance.synthetic is True
    assert trace.provenance.command.startswith("winosim synth --network vgg_nagadomi --images 1")
    assert [v.name for v in trace.variants] == ["winograd_relu"]


def test_the_shipped_example_is_reproduced_by_its_recorded_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """traces/README.md promises the example is made, bit for bit, by the command in its provenance."""
    (example,) = sorted((REPO / "traces").glob("synthetic-*-EXAMPLE.npz"))
    command = load_trace(example).provenance.command.split()
    assert command[:2] == ["winosim", "synth"]
    assert run_main(capsys, *command[1:], "--output", tmp_path / "again.npz")[0] == 0
    assert (tmp_path / "again.npz").read_bytes() == example.read_bytes()


def test_the_shipped_example_trace_is_synthetic_and_loads():
    examples = sorted((REPO / "traces").glob("synthetic-*-EXAMPLE.npz"))
    assert examples, "the synthetic example trace under traces/ is missing"
    for path in examples:
        assert path.stat().st_size < 5 * 2**20
        trace = load_trace(path)
        assert trace.provenance.synthetic is True
        assert {v.method for v in trace.variants} == {"spatial", "native", "winograd_relu"}


# --------------------------------------------------------------------------- bad input, end to end


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, trace_path: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    data = trace_path.read_bytes()
    files = {"missing": folder / "does-not-exist.npz"}
    files["not_npz"] = folder / "notes.npz"
    files["not_npz"].write_text("this is not a trace\n")
    files["truncated"] = folder / "truncated.npz"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["pickled"] = folder / "pickled.npz"
    np.savez(files["pickled"], meta=np.array([{"format": "winosim-trace"}], dtype=object))

    with zipfile.ZipFile(trace_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with np.load(trace_path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes())

    def variant_of(name: str, new_meta: dict) -> Path:
        buffer = io.BytesIO()
        np.save(buffer, np.frombuffer(json.dumps(new_meta).encode(), dtype=np.uint8))
        path = folder / name
        with zipfile.ZipFile(path, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, buffer.getvalue() if member == "meta.npy" else content)
        return path

    files["schema"] = variant_of("schema.npz", meta | {"schema_version": 99})
    bigger = json.loads(json.dumps(meta))
    bigger["layers"][1]["out_channels"] = 12
    files["shape"] = variant_of("shape.npz", bigger)
    files["m0"] = variant_of("m0.npz", meta | {"winograd": {"m": 0, "r": 3}})
    return files


BAD_TRACES = [
    ("missing", "trace file not found"),
    ("not_npz", "not an npz archive"),
    ("truncated", "truncated or corrupt npz archive"),
    ("pickled", "pickled object array"),
    ("schema", "trace schema version 99 is not supported"),
    ("shape", "disagrees with the geometry"),
    ("m0", "meta 'winograd' must be {'m': an integer in [1, 16], 'r': 3}, got {'m': 0, 'r': 3}"),
]


def _assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("winosim: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("case", "message"), BAD_TRACES)
def test_run_on_a_bad_trace_fails_with_one_line(
    bad_files: dict[str, Path], tmp_path: Path, case: Any, message: Any
) -> None:
    result = winosim("run", "--trace", bad_files[case], "--pe", "4", "--output", tmp_path / "out.txt")
    _assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("case", "message"), [BAD_TRACES[0], BAD_TRACES[5]])
def test_inspect_on_a_bad_trace_fails_with_one_line(
    bad_files: dict[str, Path], tmp_path: Path, case: Any, message: Any
) -> None:
    result = winosim("inspect", bad_files[case], "--output", tmp_path / "out.txt")
    _assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_zero_pes_fail_with_one_line(trace_path: Path, tmp_path: Path) -> None:
    result = winosim("run", "--trace", trace_path, "--pe", "0", "--output", tmp_path / "out.txt")
    _assert_one_line_error(result, "--pe must be >= 1, got 0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pe", "-3"], "--pe must be >= 1, got -3"),
        (["--pe", "many"], "argument --pe: invalid int value: 'many'"),
        (["--pe", "4", "--multipliers-per-pe", "0"], "argument --multipliers-per-pe: must be >= 1, got 0"),
        (["--pe", "4", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--pe", "4", "--bogus"], "unrecognized arguments: --bogus"),
        (
            ["--counts-only", "--engine", "events"],
            "--engine chooses the simulation's timing model, which --counts-only",
        ),
    ],
)
def test_bad_options_fail_with_one_line(
    capsys: pytest.CaptureFixture[str], trace_path: Path, tmp_path: Path, args: Any, message: Any
) -> None:
    output = tmp_path / "out.txt"
    code, out, err = run_main(capsys, "run", "--trace", trace_path, *args, "--output", output)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("winosim: error: ")
    assert message in err
    assert not output.exists()


def test_bad_synth_options_fail_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for args, message in (
        (["--network", "alexnet"], "argument --network: invalid choice: 'alexnet'"),
        (["--network", "vgg_nagadomi", "--weight-density", "1.5"], "--weight-density: must be in [0, 1], got 1.5"),
        (["--network", "vgg_nagadomi", "--methods", "spatial,dense"], "argument --methods: unknown 'dense'"),
    ):
        code, _, err = run_main(capsys, "synth", *args, "--output", tmp_path / "t.npz")
        assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_fails_with_one_line(
    capsys: pytest.CaptureFixture[str], trace_path: Path, tmp_path: Path
) -> None:
    code, out, err = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--output", tmp_path / "no" / "x.md")
    assert (code, out) == (2, "")
    assert err == f"winosim: error: cannot write {tmp_path / 'no' / 'x.md'}: folder {tmp_path / 'no'} does not exist\n"
    code, _, err = run_main(capsys, "run", "--trace", trace_path, "--pe", "4", "--output", tmp_path)
    assert code == 2 and "is a directory" in err


# --------------------------------------------------------------------------- the dispatcher


def test_version_and_help(capsys):
    assert run_main(capsys, "--version") == (0, f"winosim {__version__}\n", "")
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for command in cli.SUBCOMMANDS:
        assert command.name in out
    code, out, _ = run_main(capsys, "run", "--help")
    assert code == 0 and "--multipliers-per-pe" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "no command given"), (["frobnicate"], "invalid choice: 'frobnicate'")],
)
def test_unknown_or_missing_command(capsys, args, message):
    code, out, err = run_main(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("winosim: error: ") and message in err and err.count("\n") == 1


def test_a_missing_optional_dependency_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`winosim train` without torch: one line saying what to install, not an ImportError traceback."""
    (tmp_path / "needs_torch_cmd.py").write_text("import torch\n\ndef main(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail as if it were not installed
    fake = cli.Subcommand("train", "needs_torch_cmd", "main", "test")
    monkeypatch.setattr(cli, "SUBCOMMANDS", (fake,))
    code, _, err = run_main(capsys, "train")
    assert code == 2
    assert err == "winosim: error: 'winosim train' needs torch, which is not installed (pip install -e '.[torch]')\n"


def test_a_missing_command_module_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", (cli.Subcommand("sweep", "winosim.no_such_module", "main", "test"),))
    code, _, err = run_main(capsys, "sweep")
    assert code == 2
    assert "'winosim sweep' is not available in this installation (module winosim.no_such_module is missing)" in err


def test_interrupt_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "interrupted_cmd.py").write_text("def main(argv):\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMANDS", (cli.Subcommand("run", "interrupted_cmd", "main", "test"),))
    assert run_main(capsys, "run") == (2, "", "winosim: error: interrupted\n")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """The README opens with the install-and-test command; .ci/run must run exactly that."""
    readme = (REPO / "README.md").read_text()
    opening = readme.split("```bash\n")[1].split("```")[0]
    commands = [line for line in opening.splitlines() if line and not line.startswith("#")]
    assert commands[0] == "pip install -e . && python -m winosim run --trace traces/resnet18.npz --pe 64"
    test_command = [part.strip() for part in commands[1].split("&&")]
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    assert ci_lines[0] == "set -euo pipefail"
    assert [line.removeprefix("exec ") for line in ci_lines[2:]] == test_command
    example = commands[0].split("--trace ")[1].split()[0]
    assert (REPO / example).is_file()

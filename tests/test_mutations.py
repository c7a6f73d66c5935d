"""Property-based hardening (issue 12): mutated architecture files, grid files and sweep folders give a valid
result or one clean error, never a traceback and never a wrong number.

Hypothesis starts from valid inputs (the shipped preset, a small grid file, a finished sweep folder) and
mutates them the way disks, editors and attackers do: flipped bytes, truncation, edited YAML fields set to
extreme values (zero, negative, 1e300, NaN, infinity, 2^70, text, lists, mappings), deleted, swapped and
duplicated files. The only acceptable outcomes are a valid load or a `WinosimError` whose message is one line;
for a sweep folder, resuming must still give exactly the reference table (a stored point that is not the
point asked for is recomputed, never reported). Trace files are mutated in their own tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winosim.archio import flat_keys, load_arch
from winosim.errors import WinosimError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sweep import CountsEvaluator, SimulateEvaluator, grid_from_options, grid_from_yaml, load_results, run_sweep
from winosim.synthetic import synthetic_trace
from winosim.trace import write_trace

PRESET = (Path(__file__).resolve().parents[1] / "winosim" / "presets" / "default.yaml").read_bytes()
GRID_FILE = b"pe: [16, 32]\npe_array.activation_zeros: [skip, gate]\nmemory.global_buffer_bytes: [64KiB]\n"

EXTREMES: tuple[object, ...] = (
    0,
    -1,
    1,
    2**31,
    2**63,
    2**70,
    1e12,
    1e30,
    1e300,
    float("nan"),
    float("inf"),
    -float("inf"),
    0.5,
    "",
    "1e400",
    "nan",
    "64KiB",
    "1e30",
    "\x1b[2J",
    None,
    True,
    [],
    [1, [2, [3]]],
    {"a": 1},
)

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes flipped or replaced, or cut short, or a piece of it repeated."""
    kind = draw(st.sampled_from(["flip", "truncate", "repeat"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "repeat":
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, len(data)))
        return data[:end] + data[start:end] + data[end:]
    mutated = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        mutated[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(mutated)


@st.composite
def edited_fields(draw: st.DrawFn, keys: tuple[str, ...]) -> dict[str, object]:
    """A nested YAML mapping that sets one to three dotted keys (or a made-up one) to extreme values."""
    document: dict[str, object] = {}
    for key in draw(st.lists(st.sampled_from([*keys, "pe", "pe_array.made_up", "made_up"]), min_size=1, max_size=3)):
        head, _, tail = key.partition(".")
        value = draw(st.sampled_from(EXTREMES))
        if tail:
            section = document.setdefault(head, {})
            if isinstance(section, dict):
                section[tail] = value
        else:
            document[head] = value
    return document


def _clean_error(exc: WinosimError) -> None:
    assert "\n" not in str(exc) and str(exc)


# --------------------------------------------------------------------------- architecture files


@SETTINGS
@given(data=byte_mutations(PRESET))
def test_a_mutated_architecture_file_loads_or_is_one_clean_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "arch.yaml"
    path.write_bytes(data)
    try:
        load_arch(path)
    except WinosimError as exc:
        _clean_error(exc)


@SETTINGS
@given(document=edited_fields(flat_keys()))
def test_extreme_values_in_an_architecture_file_load_or_are_one_clean_error(tmp_path: Path, document) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        arch = load_arch(path)
    except WinosimError as exc:
        _clean_error(exc)
        return
    # what loads is within the documented bounds: every count an int64-safe positive integer
    assert 1 <= arch.pe_array.pe_count * arch.pe_array.multipliers_per_pe <= 2**32
    assert 1 <= arch.clock_hz <= 1e12


# --------------------------------------------------------------------------- grid files


def _check_grid(path: Path) -> None:
    try:
        grid = grid_from_yaml(path)
        if grid.size <= 64:
            for point in grid.points():
                SimulateEvaluator().resolve(point.as_dict())
    except WinosimError as exc:
        _clean_error(exc)


@SETTINGS
@given(data=byte_mutations(GRID_FILE))
def test_a_mutated_grid_file_is_a_grid_or_one_clean_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "grid.yaml"
    path.write_bytes(data)
    _check_grid(path)


@SETTINGS
@given(
    document=st.dictionaries(
        st.sampled_from(["pe", "pe_array.pe_count", "memory.global_buffer_bytes", "clock_hz", "made_up", "x" * 300]),
        st.one_of(st.sampled_from(EXTREMES), st.lists(st.sampled_from(EXTREMES), max_size=4)),
        min_size=1,
        max_size=3,
    )
)
def test_extreme_values_in_a_grid_file_are_a_grid_or_one_clean_error(tmp_path: Path, document) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(document))
    _check_grid(path)


# --------------------------------------------------------------------------- sweep folders

NET = NetworkGeometry(
    "tiny",
    8,
    8,
    4,
    (
        LayerGeometry("conv1", "spatial", "conv", 3, 8, 8, 8, 3, 1, 1),
        LayerGeometry("conv2", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
        LayerGeometry("fc", "spatial", "fc", 8, 4, 1, 1, 1, 1, 0),
    ),
)
SWEEP_GRID = grid_from_options(["pe=4,8", "pe_array.activation_zeros=skip,gate"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mutations")
    trace = write_trace(synthetic_trace(NET, images=1, seed=3), folder / "tiny.npz")
    out = folder / "reference"
    run_sweep([trace], SWEEP_GRID, out, evaluator=SimulateEvaluator(), jobs=1)
    return trace, out


@st.composite
def folder_mutations(draw: st.DrawFn, files: list[str]) -> list[tuple[str, str, int]]:
    """One to three edits of a sweep folder: (action, file, argument)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["flip", "truncate", "delete", "swap", "copy", "empty"]))
        edits.append((action, draw(st.sampled_from(files)), draw(st.integers(0, 2**16))))
    return edits


def _apply(folder: Path, files: list[str], edits: list[tuple[str, str, int]]) -> None:
    for action, name, arg in edits:
        path = folder / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        other = folder / files[arg % len(files)]
        if action == "flip" and data:
            mutated = bytearray(data)
            mutated[arg % len(data)] ^= 0x5A
            path.write_bytes(bytes(mutated))
        elif action == "truncate":
            path.write_bytes(data[: arg % (len(data) + 1)])
        elif action == "delete":
            path.unlink()
        elif action == "swap" and other.is_file() and other != path:
            theirs = other.read_bytes()
            other.write_bytes(data)
            path.write_bytes(theirs)
        elif action == "copy" and other.is_file():
            path.write_bytes(other.read_bytes())
        elif action == "empty":
            path.write_bytes(b"")


def test_sweep_folder_mutations(reference: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    trace, out = reference
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())

    @settings(max_examples=25, deadline=None, database=None)
    @given(edits=folder_mutations(files))
    def check(edits: list[tuple[str, str, int]]) -> None:
        folder = tmp_path_factory.mktemp("mutated") / "sweep"
        shutil.copytree(out, folder)
        _apply(folder, files, edits)
        try:
            results = load_results(folder)
            assert len(results.table) > 0
        except WinosimError as exc:
            _clean_error(exc)
        run_sweep([trace], SWEEP_GRID, folder, evaluator=SimulateEvaluator(), jobs=1)
        for name in ("results.parquet", "results.csv"):
            assert (folder / name).read_bytes() == (out / name).read_bytes(), (name, edits)
        shutil.rmtree(folder.parent)

    check()


def test_counts_sweeps_resume_through_the_same_proofs(reference: tuple[Path, Path], tmp_path: Path) -> None:
    trace, _ = reference
    out = tmp_path / "counts"
    first = run_sweep([trace], SWEEP_GRID, out, evaluator=CountsEvaluator(), jobs=1)
    for point in sorted((out / "points").iterdir())[:2]:
        point.write_bytes(b"")
    again = run_sweep([trace], SWEEP_GRID, out, evaluator=CountsEvaluator(), jobs=1)
    assert (again.points_reused, again.points_computed) == (first.points_total - 2, 2)

"""Design-space sweeps (winosim.sweep): a grid is a cartesian product in a stable order; a sweep writes one
tidy row per trace x point x layer x method; local processes and a real Dask cluster give the same bytes;
an interrupted sweep resumes without recomputing stored points; a worker that dies loses no point.

The Dask tests start a real scheduler and two workers on 127.0.0.1 with `python -m dask scheduler` /
`python -m dask worker` and stop them (by process id) at the end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from winosim import cli, simulate
from winosim.archio import apply_overrides, default_arch, flat_keys
from winosim.counts import count_trace
from winosim.errors import ConfigError, TraceError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.sweep import (
    CountsEvaluator,
    DesignPoint,
    Grid,
    SimulateEvaluator,
    frame_checksum,
    grid_from_options,
    grid_from_yaml,
    load_results,
    parse_grid_option,
    plan,
    run_sweep,
)
from winosim.synthetic import synthetic_trace
from winosim.trace import load_trace, write_trace

REPO = Path(__file__).resolve().parents[1]


def _tiny_network() -> NetworkGeometry:
    return NetworkGeometry(
        name="tiny",
        input_height=8,
        input_width=8,
        num_classes=4,
        layers=(
            LayerGeometry("conv1", "spatial", "conv", 3, 8, 8, 8, 3, 1, 1),
            LayerGeometry("conv2", "winograd", "conv", 8, 8, 8, 8, 3, 1, 1),
            LayerGeometry("conv3", "winograd", "conv", 8, 16, 8, 8, 3, 1, 1),
            LayerGeometry("fc", "spatial", "fc", 16, 4, 1, 1, 1, 1, 0),
        ),
    )


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("traces")
    a = write_trace(synthetic_trace(_tiny_network(), images=2, seed=1), folder / "tiny-a.npz")
    b = write_trace(synthetic_trace(_tiny_network(), images=2, seed=2, weight_density=0.5), folder / "tiny-b.npz")
    return a, b


@dataclass(frozen=True)
class SlowSimulate(SimulateEvaluator):
    """The simulator, made slow (so a worker can be killed mid-sweep) and optionally fatal: the first
    evaluation of a point with `pe_count == die_at_pe` kills its own process (once: a marker file remembers).
    Its results and storage keys are those of the plain simulator."""

    delay_s: float = 0.0
    die_at_pe: int | None = None
    marker: str | None = None

    def evaluate(self, trace: Any, prepared: Any, resolved: Any) -> pd.DataFrame:
        time.sleep(self.delay_s)
        if self.die_at_pe is not None and resolved.pe_array.pe_count == self.die_at_pe and self.marker is not None:
            marker = Path(self.marker)
            if not marker.exists():
                marker.write_text("died once\n")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(trace, prepared, resolved)


@dataclass(frozen=True)
class CountingSimulate(SimulateEvaluator):
    """The simulator, logging every `prepare` (load + lower, the design-point-independent work) to a file."""

    log: str = ""

    def prepare(self, trace: Any) -> Any:
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()} seed={trace.provenance.seed}\n")
        return super().prepare(trace)


GRID = Grid((("pe", ("16", "32", "64")), ("pe_array.activation_zeros", ("skip", "gate"))))


@pytest.fixture(scope="module")
def reference(traces: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep run in this process, one point after the other: the result every executor must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    run_sweep(list(traces), GRID, out, jobs=1)
    return out


def _same_output(a: Path, b: Path) -> None:
    for name in ("results.parquet", "results.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# --------------------------------------------------------------------------- grids


def test_a_grid_is_the_cartesian_product_with_the_first_key_slowest() -> None:
    grid = grid_from_options(["pe=16,32", "zero=skip,gate,none"])
    points = grid.points()
    assert len(points) == 6
    assert [p.index for p in points] == list(range(6))
    assert [p.label() for p in points[:4]] == [
        "pe=16 zero=skip",
        "pe=16 zero=gate",
        "pe=16 zero=none",
        "pe=32 zero=skip",
    ]
    assert Grid(()).points() == (DesignPoint(0, ()),)


def test_grid_options_and_yaml_files_describe_the_same_grid(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("pe: [16, 32]\nzero: [skip, gate]\nbuffer.enabled: true\n")
    assert grid_from_yaml(path) == grid_from_options(["pe=16,32", "zero=skip,gate", "buffer.enabled=true"])
    nested = tmp_path / "nested.yaml"
    nested.write_text("grid:\n  pe: [16, 32]\n")
    assert grid_from_yaml(nested) == grid_from_options(["pe=16,32"])


@pytest.mark.parametrize(
    ("text", "message"),
    [("pe", "KEY=V1,V2"), ("=1,2", "KEY=V1,V2"), ("pe=", "comma-separated"), ("pe=1,,2", "comma-separated")],
)
def test_malformed_grid_options_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid_option(text)


def test_a_grid_rejects_repeated_keys_and_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="more than once"):
        grid_from_options(["pe=1", "pe=2"])
    with pytest.raises(ConfigError, match="repeats a value"):
        grid_from_options(["pe=1,1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("pe: [16, [1, 2]]\n")
    with pytest.raises(ConfigError, match="scalars"):
        grid_from_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        grid_from_yaml(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- the table


def test_the_table_has_one_row_per_trace_point_layer_and_method(reference: Path, traces: tuple[Path, Path]) -> None:
    results = load_results(reference)
    table = results.table
    per_point = 4 * 5  # 4 layers x 5 methods (the synthetic trace has every variant)
    assert len(table) == len(traces) * len(GRID.points()) * per_point
    assert not table.duplicated(["trace", "point", "layer_index", "method"]).any()
    assert list(table.columns[:6]) == ["trace", "trace_sha256", "synthetic", "point", "pe", GRID.keys[1]]
    assert set(flat_keys()) <= set(table.columns)  # every resolved parameter is a column
    assert table["pe"].tolist()[:per_point] == [16] * per_point  # typed parameter columns
    assert (table["pe"] == table["pe_array.pe_count"]).all()
    assert table["synthetic"].all() and results.synthetic
    assert results.grid_columns == GRID.keys
    ordered = table.sort_values(["trace", "point", "layer_index"], kind="mergesort")
    assert ordered.index.tolist() == table.index.tolist()
    csv = pd.read_csv(reference / "results.csv")
    assert csv["cycles"].tolist() == table["cycles"].tolist()
    manifest = json.loads((reference / "sweep.json").read_text())
    assert [p["label"] for p in manifest["points"]][:2] == [f"pe=16 {GRID.keys[1]}=skip", f"pe=16 {GRID.keys[1]}=gate"]


def test_each_point_is_exactly_what_simulate_returns_for_its_architecture(
    reference: Path, traces: tuple[Path, Path]
) -> None:
    """Oracle: the sweep adds identity and parameter columns to `simulate(...).to_frame()`, nothing else."""
    table = load_results(reference).table
    for path in traces:
        trace = load_trace(path)
        for point in GRID.points():
            arch = apply_overrides(default_arch(), point.as_dict())
            expected = simulate(trace, arch).to_frame()
            rows = table[(table["trace"] == path.name) & (table["point"] == point.index)]
            got = rows[list(expected.columns)].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, expected, check_dtype=False)
            assert rows["pe_array.activation_zeros"].eq(arch.pe_array.activation_zeros).all()


def test_the_counts_evaluator_gives_the_exact_multiply_counts(traces: tuple[Path, Path], tmp_path: Path) -> None:
    run_sweep([traces[0]], grid_from_options(["pe=16,32"]), tmp_path, evaluator=CountsEvaluator(), jobs=1)
    table = load_results(tmp_path).table
    counts = count_trace(load_trace(traces[0]))
    for point in (0, 1):
        rows = table[table["point"] == point]
        assert rows["multiplies"].tolist() == [c.multiplies for c in counts]
        assert rows["method"].tolist() == [c.method for c in counts]
    # a grid key is recorded as it resolves, as in a simulated sweep: sizes written two ways, one integer column
    grid = grid_from_options(["memory.global_buffer_bytes=512KiB,1048576"])
    run_sweep([traces[0]], grid, tmp_path / "sizes", evaluator=CountsEvaluator(), jobs=1)
    column = load_results(tmp_path / "sizes").table["memory.global_buffer_bytes"]
    assert column.dtype == np.int64 and sorted(column.unique()) == [524288, 1048576]
    # and an alias ("pe") shows its parameter's value in either evaluator: 16 and 32.0 are one integer column
    for name, evaluator in (("counts", CountsEvaluator()), ("simulate", SimulateEvaluator())):
        run_sweep([traces[0]], grid_from_options(["pe=16,32.0"]), tmp_path / name, evaluator=evaluator, jobs=1)
        pe = load_results(tmp_path / name).table["pe"]
        assert pe.dtype == np.int64 and sorted(pe.unique()) == [16, 32], name


@pytest.mark.parametrize("evaluator", [SimulateEvaluator(), CountsEvaluator()], ids=["simulate", "counts"])
@pytest.mark.parametrize(
    ("grid", "same"),
    [
        (["memory.global_buffer_bytes=1MiB,1048576"], "memory.global_buffer_bytes=1MiB and ...=1048576"),
        (["pe=64,64.0"], "pe=64 and pe=64.0"),
    ],
)
def test_two_values_that_are_one_architecture_are_refused(
    traces: tuple[Path, Path], tmp_path: Path, evaluator: Any, grid: list[str], same: str
) -> None:
    """The grid refuses a value given twice; two spellings of one value are the same repeat (one design point
    computed twice, under two labels), refused by what they resolve to."""
    first, second = same.split(" and ")
    second = second.replace("...", first.split("=")[0])
    message = f"design points {first} and {second} are the same architecture"
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_sweep([traces[0]], grid_from_options(grid), tmp_path / "out", evaluator=evaluator, jobs=1)
    assert not (tmp_path / "out").exists()


def test_bad_inputs_fail_before_any_output(tmp_path: Path, traces: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    with pytest.raises(TraceError, match="not found"):
        run_sweep([tmp_path / "missing.npz"], GRID, out, jobs=1)
    with pytest.raises(ConfigError, match="jobs"):
        run_sweep([traces[0]], GRID, out, jobs=0)
    cores = os.cpu_count() or 1
    with pytest.raises(ConfigError, match=rf"sweep: jobs {4 * cores + 1} on {cores} cores: at most 4 per core"):
        run_sweep([traces[0]], GRID, out, jobs=4 * cores + 1)  # one per point of a big grid: memory, not speed
    with pytest.raises(ConfigError, match=r"design point pe=16 pe_array\.activation_zeros=never: .*activation_zeros"):
        run_sweep([traces[0]], grid_from_options(["pe=16", "pe_array.activation_zeros=skip,never"]), out)
    with pytest.raises(ConfigError, match="unknown architecture key 'zero'"):
        run_sweep([traces[0]], grid_from_options(["zero=skip"]), out)
    link = tmp_path / "link.npz"  # the same file spelt otherwise is the same trace
    link.symlink_to(traces[0])
    for twice in ([traces[0], traces[1], traces[0]], [traces[0], link]):
        with pytest.raises(ConfigError, match=r"is given twice.*; give each once"):
            run_sweep(twice, GRID, out, jobs=1)
    assert not out.exists()


def test_a_sweep_that_fails_before_its_first_point_leaves_no_folder_it_made(
    tmp_path: Path, traces: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable Dask scheduler (here the connection's failure without its 20 s wait) fails after the results
    folder is made: a folder this call made and nothing filled is removed; one that was there stays."""
    from winosim import sweep

    def unreachable(*args: object) -> None:
        raise sweep.SweepError("cannot connect to the Dask scheduler at tcp://127.0.0.1:1 (refused)")

    monkeypatch.setattr(sweep, "_run_dask", unreachable)
    out = tmp_path / "new" / "out"
    with pytest.raises(sweep.SweepError, match="cannot connect"):
        run_sweep([traces[0]], GRID, out, scheduler="tcp://127.0.0.1:1")
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(sweep.SweepError, match="cannot connect"):
        run_sweep([traces[0]], GRID, kept, scheduler="tcp://127.0.0.1:1")
    assert kept.is_dir() and not any(kept.iterdir())


# --------------------------------------------------------------------------- executors, resume, failures


def test_local_processes_give_the_same_bytes_as_one_process(
    reference: Path, traces: tuple[Path, Path], tmp_path: Path
) -> None:
    summary = run_sweep(list(traces), GRID, tmp_path, jobs=2)
    assert (summary.points_computed, summary.points_reused) == (12, 0)
    _same_output(reference, tmp_path)


def test_the_csv_written_in_parts_is_the_one_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Formatting the table's rows in parallel parts gives the bytes of one `to_csv`: floats, NaN, None,
    booleans, quoted text and the part boundaries included."""
    from winosim import sweep

    monkeypatch.setattr(sweep, "CSV_PART_ROWS", 5)
    rng = np.random.default_rng(7)
    n = 23
    frame = pd.DataFrame(
        {
            "text": [f"a,b {i}" if i % 4 else 'say "x"' for i in range(n)],
            "count": rng.integers(-5, 10**9, n),
            "value": np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 10.0 ** rng.integers(-9, 12, n)),
            "flag": rng.random(n) < 0.5,
            "maybe": [None if i % 3 == 0 else i for i in range(n)],
        }
    )
    one, parts = tmp_path / "one.csv", tmp_path / "parts.csv"
    sweep._write_csv(frame, one)
    sweep._write_csv(frame, parts, processes=3)
    assert parts.read_bytes() == one.read_bytes()
    assert one.read_text().count("\n") == n + 1


def test_chunks_keep_points_that_share_work_together(traces: tuple[Path, Path]) -> None:
    """Chunks follow the evaluator's affinity (grid order within it) and shrink towards the end."""
    from winosim.sweep import chunked

    axes = ["memory.dram_bandwidth_bytes_per_cycle=4,8,16", "pe=16,32", "pe_array.partition=output_channels,tiles"]
    _, _, tasks = plan([str(traces[0])], grid_from_options(axes), SimulateEvaluator())
    chunks = chunked(list(tasks), SimulateEvaluator(), workers=2)
    assert sorted(t.key for c in chunks for t in c) == sorted(t.key for t in tasks)
    sizes = [len(c) for c in chunks]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 3  # 12 / (2 x 2)
    affinity = SimulateEvaluator().affinity
    ordered = [affinity(t.resolved) for c in chunks for t in c]
    assert ordered == sorted(ordered)  # equal tilings are adjacent


@pytest.mark.parametrize("jobs", [1, 2])
def test_lowering_happens_once_per_trace_per_worker_not_per_point(
    traces: tuple[Path, Path], tmp_path: Path, jobs: int
) -> None:
    log = tmp_path / "prepare.log"
    run_sweep(list(traces), GRID, tmp_path / "out", evaluator=CountingSimulate(log=str(log)), jobs=jobs)
    calls = log.read_text().splitlines()
    assert len(set(calls)) == len(calls)  # never twice for the same (worker, trace)
    assert len(traces) <= len(calls) <= len(traces) * jobs  # 12 points, at most one lowering per trace per worker


def test_an_infeasible_point_is_a_stored_result_with_no_rows(traces: tuple[Path, Path], tmp_path: Path) -> None:
    """A design point the simulator rejects (a buffer too small for one row of a layer) does not stop the
    sweep: it is listed in the manifest, has no rows, and is not retried when the sweep is run again."""
    grid = grid_from_options(["memory.global_buffer_bytes=256,64KiB"])
    summary = run_sweep([traces[0]], grid, tmp_path, jobs=1)
    assert (summary.points_computed, summary.points_infeasible) == (2, 1)
    results = load_results(tmp_path)
    assert results.table["point"].unique().tolist() == [1]
    [entry] = results.manifest["infeasible"]
    assert entry["label"] == "memory.global_buffer_bytes=256" and "too small" in entry["message"]
    again = run_sweep([traces[0]], grid, tmp_path, jobs=1)
    assert (again.points_reused, again.points_computed, again.points_infeasible) == (2, 0, 1)
    with pytest.raises(ConfigError, match="every design point is infeasible"):
        run_sweep([traces[0]], grid_from_options(["memory.global_buffer_bytes=256"]), tmp_path / "none", jobs=1)


def test_an_interrupted_sweep_resumes_without_recomputing_stored_points(
    reference: Path, traces: tuple[Path, Path], tmp_path: Path
) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(list(traces), GRID, tmp_path, jobs=1, on_point=interrupt)
    assert len(list((tmp_path / "points").glob("*.parquet"))) == 5
    assert not (tmp_path / "results.parquet").exists()
    summary = run_sweep(list(traces), GRID, tmp_path, jobs=1)
    assert (summary.points_reused, summary.points_computed) == (5, 7)
    _same_output(reference, tmp_path)
    again = run_sweep(list(traces), GRID, tmp_path, jobs=1)
    assert (again.points_reused, again.points_computed) == (12, 0)


def test_a_local_worker_that_dies_loses_no_point(reference: Path, traces: tuple[Path, Path], tmp_path: Path) -> None:
    marker = tmp_path / "died"
    evaluator = SlowSimulate(die_at_pe=32, marker=str(marker))
    summary = run_sweep(list(traces), GRID, tmp_path / "out", evaluator=evaluator, jobs=2)
    assert marker.exists()  # a worker really died
    assert summary.points_reused + summary.points_computed == 12
    _same_output(reference, tmp_path / "out")


def test_two_axes_on_one_parameter_are_an_error(traces: tuple[Path, Path], tmp_path: Path) -> None:
    """`pe` is `pe_array.pe_count`: keys are resolved to their canonical name before the product, so two axes
    on one parameter cannot silently run every row at one of them while labelling them with the other."""
    with pytest.raises(ConfigError, match=r"keys 'pe' and 'pe_array\.pe_count' name the same parameter"):
        grid_from_options(["pe=16,32", "pe_array.pe_count=64"])
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("pe_array.pe_count: [64]\n")
    with pytest.raises(ConfigError, match=r"same parameter pe_array\.pe_count"):
        grid_from_options(["pe=16,32"]) + grid_from_yaml(grid_file)
    assert Grid((("pe", ("16",)), ("pe_array.multipliers_per_pe", ("8",)))).size == 1


def test_a_sweep_above_the_size_limit_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    """The size is the product of the axes' lengths times the traces, known before any point is formed; a
    million points are refused at once (the traces are not even read) unless the limit is lifted."""
    million = Grid(tuple((key, tuple(str(v) for v in range(1, 101))) for key in ("pe", "input_transform.count")))
    million = million + Grid((("output_transform.count", tuple(str(v) for v in range(1, 101))),))
    assert million.size == 1_000_000
    with pytest.raises(
        ConfigError, match=r"1,000,000 design points x 1 trace\(s\) = 1,000,000 points, above the limit"
    ):
        run_sweep(["missing.npz"], million, tmp_path / "out")
    with pytest.raises(ConfigError, match="above the limit of 5"):
        run_sweep(["a.npz", "b.npz", "a.npz"], GRID, tmp_path / "out", max_points=5)  # 6 points x 2 traces
    assert not (tmp_path / "out").exists()


def test_a_resumed_sweep_never_reports_a_point_it_did_not_compute_for_that_point(
    reference: Path, traces: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored point proves it is the point asked for (its key and a checksum of its rows inside it) or it is
    recomputed with one warning line: an empty file, another point's file, a corrupted file, rows edited
    after storing, and a file without a stamp are all recomputed, and the table is the reference's."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    _, _, tasks = plan(list(traces), GRID, SimulateEvaluator())
    paths = [out / "points" / f"{t.key}.parquet" for t in tasks]
    assert all(p.exists() for p in paths)
    paths[0].write_bytes(b"")  # empty
    shutil.copyfile(paths[5], paths[1])  # another point's file under this point's name
    paths[2].write_bytes(paths[2].read_bytes()[:-100])  # truncated
    import pyarrow.parquet as pq

    table = pq.read_table(paths[3])
    edited = table.to_pandas()
    edited.loc[0, "cycles"] += 1  # rows edited after storing, stamp kept
    pq.write_table(pa_table(edited, table.schema.metadata), paths[3])
    pq.write_table(pa_table(table.to_pandas(), {}), paths[4])  # no stamp (or a sweep of an older winosim)
    with caplog.at_level(logging.WARNING, logger="winosim.sweep"):
        summary = run_sweep(list(traces), GRID, out, jobs=1)
    assert (summary.points_reused, summary.points_computed) == (7, 5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5 and all("recomputing stored point" in w and "\n" not in w for w in warnings)
    for reason in ("unreadable", "stamped as point", "does not match its checksum", "carries no point stamp"):
        assert any(reason in w for w in warnings), reason
    _same_output(reference, out)
    again = run_sweep(list(traces), GRID, out, jobs=1)
    assert (again.points_reused, again.points_computed) == (12, 0)


def test_a_stored_point_is_stamped_with_its_key_and_checksum(reference: Path, traces: tuple[Path, Path]) -> None:
    import pyarrow.parquet as pq

    _, _, tasks = plan(list(traces), GRID, SimulateEvaluator())
    table = pq.read_table(reference / "points" / f"{tasks[0].key}.parquet")
    stamp = json.loads(table.schema.metadata[b"winosim.point"])
    assert stamp == {"key": tasks[0].key, "sha256": frame_checksum(table.to_pandas())}


def pa_table(frame: pd.DataFrame, metadata: Any) -> Any:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **dict(metadata or {})})


# --------------------------------------------------------------------------- a real Dask cluster


class DaskCluster:
    """A scheduler and workers started as subprocesses on 127.0.0.1; `stop()` ends exactly those."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        # the repository (winosim) and this folder (SlowSimulate, pickled by reference) must be importable there
        path = [str(REPO), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start_all(folder, workers)
        except BaseException:
            self.stop()  # never leave a process behind, even when starting fails
            raise

    def _start_all(self, folder: Path, workers: int) -> None:
        scheduler_file = folder / "scheduler.json"
        self._start(
            "scheduler",
            # --idle-timeout: a safety net, the scheduler ends by itself if this process dies without stopping it
            [
                *("--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--idle-timeout", "300s"),
                *("--scheduler-file", str(scheduler_file)),
            ],
        )
        self.address = self._read_address(scheduler_file)
        self.workers = [
            self._start(
                "worker",
                [
                    *(self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard"),
                    *("--death-timeout", "60s"),
                    *("--name", f"w{i}", "--local-directory", str(folder / f"w{i}")),
                ],
            )
            for i in range(workers)
        ]
        self.wait_for_workers(workers)

    def _read_address(self, scheduler_file: Path) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.processes[0].poll() is None:
            try:
                return str(json.loads(scheduler_file.read_text())["address"])
            except (OSError, ValueError, KeyError):  # not written yet, or half written
                time.sleep(0.1)
        raise RuntimeError("dask scheduler did not start")

    def _start(self, role: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{role}-{len(self.processes)}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", role, *args], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(count, timeout=60)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    pytest.importorskip("distributed")
    running = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.dask
def test_a_dask_cluster_gives_the_same_bytes_as_the_local_run_and_survives_a_dead_worker(
    cluster: DaskCluster, reference: Path, traces: tuple[Path, Path], tmp_path: Path
) -> None:
    """One cluster, three sweeps (starting a cluster is the slow part): a plain sweep equal to the local
    reference; a slow sweep during which one of the two workers is killed (SIGKILL) after the first stored
    points: the scheduler moves its tasks to the survivor and every point arrives; a slow sweep one of whose
    tasks the cluster cancels: it is resubmitted and every point arrives."""
    summary = run_sweep(list(traces), GRID, tmp_path / "plain", scheduler=cluster.address)
    assert summary.points_computed == 12
    _same_output(reference, tmp_path / "plain")

    killed_at: list[int] = []

    def kill_one_worker(done: int, total: int) -> None:
        if done == 2 and not killed_at:
            cluster.workers[0].send_signal(signal.SIGKILL)
            cluster.workers[0].wait(timeout=10)
            killed_at.append(done)

    slow = SlowSimulate(delay_s=0.3)
    summary = run_sweep(
        list(traces), GRID, tmp_path / "killed", evaluator=slow, scheduler=cluster.address, on_point=kill_one_worker
    )
    assert killed_at == [2] and cluster.workers[0].returncode == -signal.SIGKILL
    assert summary.points_computed == 12
    _same_output(reference, tmp_path / "killed")

    # a task the cluster cancels (forced, from another client, as a dying worker can cause) is resubmitted
    from distributed import Client, Future

    cancelled: list[str] = []

    def pending_chunks(dask_scheduler: Any) -> list[str]:
        tasks = dask_scheduler.tasks
        return sorted(str(k) for k in tasks if str(k).startswith("winosim-points") and tasks[k].state != "memory")

    def cancel_one_task(done: int, total: int) -> None:
        if done == 1 and not cancelled:
            with Client(cluster.address, set_as_default=False) as other:
                keys = other.run_on_scheduler(pending_chunks)
                if keys:
                    other.cancel([Future(keys[-1], client=other)], force=True)
                    cancelled.append(keys[-1])

    summary = run_sweep(
        list(traces), GRID, tmp_path / "cancelled", evaluator=slow, scheduler=cluster.address, on_point=cancel_one_task
    )
    assert cancelled and summary.points_computed == 12
    _same_output(reference, tmp_path / "cancelled")


# --------------------------------------------------------------------------- the command line


def test_the_sweep_and_report_commands(
    reference: Path, traces: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("pe_array.activation_zeros: [skip, gate]\n")
    argv = ["sweep", "--trace", str(traces[0]), "--trace", str(traces[1]), "--grid", "pe=16,32,64"]
    argv += ["--grid-file", str(grid_file), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress"]
    assert cli.main(argv) == 0
    assert "swept 12 points (0 reused, 12 computed)" in capsys.readouterr().out
    _same_output(reference, tmp_path / "out")

    assert cli.main(["report", str(reference), "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert (
        "SYNTHETIC" in text
        and "Speedup over dense spatial" in text
        and "| pe=16 pe_array.activation_zeros=gate |" in text
    )
    figures = tmp_path / "figures"
    assert cli.main(["report", str(reference), "--format", "csv", "--figures", "--figures-dir", str(figures)]) == 0
    assert capsys.readouterr().out.startswith("table,trace,method,variant,")
    assert {"speedup-vs-pe.png", "energy-breakdown.png", "tiny-a-layer-density.png"} <= {
        p.name for p in figures.iterdir()
    }
    # tables and figures together or not at all: a figure folder that cannot be written leaves no tables
    # on stdout and no --output file
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    tables = tmp_path / "tables.md"
    for output in ([], ["--output", str(tables)]):
        argv = ["report", str(reference), "--figures", "--figures-dir", str(blocked), *output]
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"winosim: error: cannot write {blocked}: it exists and is not a directory\n"
        assert not tables.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "--trace", "missing.npz", "--grid", "pe=16", "--out", "o"], "trace file not found"),
        (["sweep", "--trace", "{a}", "--grid", "pe", "--out", "o"], "KEY=V1,V2"),
        (
            ["sweep", "--trace", "{a}", "--grid", "pe=16", "--out", "o", "--jobs", "2", "--scheduler", "tcp://x:1"],
            "exclusive",
        ),
        (
            ["sweep", "--trace", "{a}", "--grid", "pe=16,32", "--grid", "pe_array.pe_count=64", "--out", "o"],
            "same parameter",
        ),
        (["sweep", "--trace", "{a}", "--grid", "memory.global_buffer_bytes=1e30", "--out", "o"], "integer in [1, 10"),
        (["report", "nowhere"], "results directory not found"),
        (["report", "{ref}", "--table", "area"], "argument --table: unknown 'area'; choose from speedup"),
        (["sweep", "--trace", "{a}", "--grid", "pe=16", "--out", "o", "--methods", "spatial"], "unknown 'spatial'"),
        (["sweep", "--trace", "{a}", "--grid", "nosuch=1", "--out", "o", "--evaluator", "counts"], "key 'nosuch'"),
        (["sweep", "--trace", "{a}", "--grid", "pe=0", "--out", "o", "--evaluator", "counts"], "design point pe=0"),
        (
            ["sweep", "--trace", "{a}", "--grid", "pe=16", "--out", "o", "--scheduler", "http://x:1"],
            "--scheduler 'http://x:1': unknown address scheme 'http'",
        ),
    ],
)
def test_bad_command_lines_are_one_line_errors(
    argv: list[str],
    message: str,
    reference: Path,
    traces: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [a.format(a=traces[0], ref=reference) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("winosim: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


SHIPPED_CHILD = """
import sys
from pathlib import Path
from winosim import sweep
from winosim.trace import StoredMasks

path = Path(sys.argv[1])
digest = sweep.file_sha256(path)
shipped, _ = sweep.prepared_trace(sweep.SimulateEvaluator(), digest, path.read_bytes())
local, _ = sweep.prepared_trace(sweep.CountsEvaluator(), digest, str(path))
assert all(isinstance(v.masks, StoredMasks) for v in shipped.variants)  # read lazily, not all unpacked
for a, b in zip(shipped.variants, local.variants, strict=True):
    for i in range(len(a.masks)):
        assert (a.masks[i].weight == b.masks[i].weight).all() and (a.masks[i].activation == b.masks[i].activation).all()
again = sweep._shipped_trace_file(digest, b"")  # the same digest again: the file is kept, not rewritten
assert again.stat().st_size == path.stat().st_size
print(again.parent)
"""


def test_a_trace_shipped_as_bytes_loads_lazily_from_a_file_removed_at_exit(traces: tuple[Path, Path]) -> None:
    """A Dask worker gets the trace's bytes: it keeps them as a file of its own for as long as it lives and
    loads the trace from it like a local one (masks one layer at a time), not all unpacked in memory."""
    done = subprocess.run([sys.executable, "-c", SHIPPED_CHILD, str(traces[0])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("winosim-shipped-traces-") and not folder.exists()


def test_the_sweep_command_line_starts_without_the_sweep_imported() -> None:
    """`winosim sweep` starts the workers' fork server before it imports pandas and the sweep (winosim.workers), so
    that the two imports run side by side: the command module itself must not import them."""
    code = "import sys, winosim.commands.sweep; print(sorted({'pandas', 'winosim.sweep'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

"""Design-space sweeps: many (trace, architecture) points through the simulator, locally or on Dask.

A *grid* names architecture parameters (dotted keys as `winosim.archio.apply_overrides` reads them, e.g.
`pe` or `pe_array.multipliers_per_pe`) and the values each one takes; the *design points* are the cartesian
product of those values in a stable order (the first key varies slowest). A sweep evaluates every design
point on every trace and writes one tidy table: one row per trace x point x layer x method (x variant),
with every resolved architecture parameter as a column.

Execution model:

- The parent process validates everything first (traces load, every point resolves to a valid `Arch`),
  so bad input fails before any work starts.
- Each point is stored as soon as it finishes in `DIR/points/<key>.parquet`, where the key hashes the
  trace file's content, the resolved architecture (`arch_to_flat_dict`) and the evaluator. A sweep that
  is interrupted (or whose worker dies) therefore continues where it stopped: stored points are never
  recomputed, and an unfinished point is simply evaluated again.
- Work that does not depend on the design point (loading a trace and lowering it to a `Workload`) is done
  once per trace per worker process and memoised there, not once per point.
- Executors: local worker processes (`jobs`), or a Dask distributed cluster (`scheduler`). Both call the
  same pure per-point function, and the final table is sorted by (trace, point, layer_index, method,
  variant) before it is written, so results never depend on completion order and are identical bit for
  bit across executors.

This is a reporting module: it uses pandas (and pyarrow for Parquet); dask is imported only when a
scheduler address is given.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray

from winosim.archio import ALIASES
from winosim.errors import ConfigError, TraceError, WinosimError
from winosim.files import atomic_write, atomic_write_text, check_distinct_inputs, check_output_folder
from winosim.methods import check_methods, sorted_methods
from winosim.text import first_line
from winosim.trace import Trace, load_trace
from winosim.version import __version__
from winosim.workers import MAX_SWEEP_POINTS, check_jobs, local_processes, start_server, worker_context

log = logging.getLogger(__name__)

MANIFEST_NAME = "sweep.json"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
POINTS_DIR = "points"
MANIFEST_FORMAT = "winosim-sweep"
MANIFEST_VERSION = 1

#: Columns every sweep table starts with, before the parameter and result columns.
ID_COLUMNS: tuple[str, ...] = ("trace", "trace_sha256", "synthetic", "point")

Scalar = str | int | float | bool | None


class SweepError(WinosimError):
    """A sweep that cannot run or finish: a broken results directory, a lost cluster, a failing point."""


# --------------------------------------------------------------------------- grids and design points


@dataclass(frozen=True)
class Grid:
    """Named axes of a design space: `axes` is ((key, (value, ...)), ...) with string values, in order.

    Keys are resolved to their canonical parameter names (`pe` is `pe_array.pe_count`) before any product is
    formed: two axes on one parameter are an error, never a silent override of one by the other.
    """

    axes: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        from winosim.archio import ALIASES

        keys: list[str] = []
        canonical: dict[str, str] = {}
        for key, values in self.axes:
            if not isinstance(key, str) or not key or any(ch.isspace() for ch in key) or "=" in key:
                raise ConfigError(f"Grid: key must be a non-empty name without spaces or '=', got {key!r}")
            if key in keys:
                raise ConfigError(f"Grid: key {key!r} is given more than once")
            name = ALIASES.get(key, key)
            if name in canonical:
                raise ConfigError(
                    f"Grid: keys {canonical[name]!r} and {key!r} name the same parameter {name}; give it one axis"
                )
            canonical[name] = key
            keys.append(key)
            if not values:
                raise ConfigError(f"Grid: key {key!r} has no values")
            for value in values:
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"Grid: key {key!r} has an empty value in {list(values)!r}")
            if len(set(values)) != len(values):
                raise ConfigError(f"Grid: key {key!r} repeats a value: {list(values)!r}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.axes)

    @property
    def size(self) -> int:
        """Number of design points (the product of the axes' lengths), without forming the product."""
        return math.prod(len(values) for _, values in self.axes)

    def points(self) -> tuple[DesignPoint, ...]:
        """The cartesian product of the axes, first key slowest; a grid without axes has one point."""
        value_lists = [values for _, values in self.axes]
        return tuple(
            DesignPoint(index=i, overrides=tuple(zip(self.keys, combo, strict=True)))
            for i, combo in enumerate(itertools.product(*value_lists))
        )

    def __add__(self, other: Grid) -> Grid:
        return Grid(self.axes + other.axes)


@dataclass(frozen=True)
class DesignPoint:
    """One point of a grid: its position in the product and its (key, value) overrides."""

    index: int
    overrides: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.overrides)

    def label(self) -> str:
        """Short human label, e.g. 'pe=64 zero=skip' ('default' for the empty point)."""
        return " ".join(f"{k}={v}" for k, v in self.overrides) or "default"


def _value_text(value: Any, where: str) -> str:
    """A YAML scalar as the string `apply_overrides` parses (booleans lower case, like YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConfigError(f"{where}: values must be scalars (numbers, strings, booleans), got {value!r}")


def parse_grid_option(text: str) -> tuple[str, tuple[str, ...]]:
    """Parse one `--grid KEY=V1,V2,...` option into (key, values)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--grid: expected KEY=V1,V2,..., got {text!r}")
    values = tuple(v.strip() for v in rest.split(","))
    if not rest.strip() or any(not v for v in values):
        raise ConfigError(f"--grid {key}: expected a comma-separated list of values, got {rest!r}")
    return key, values


def grid_from_options(options: Sequence[str]) -> Grid:
    """Build a grid from `--grid` options, in the order given."""
    return Grid(tuple(parse_grid_option(text) for text in options))


def grid_from_mapping(data: Any, where: str) -> Grid:
    """Build a grid from a mapping `{key: [v1, v2, ...] | scalar}` (YAML order is kept)."""
    if isinstance(data, Mapping) and set(data) == {"grid"}:
        data = data["grid"]
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a grid file must be a mapping of parameter -> list of values")
    axes: list[tuple[str, tuple[str, ...]]] = []
    for key, values in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: parameter names must be strings, got {key!r}")
        items = values if isinstance(values, list) else [values]
        axes.append((key, tuple(_value_text(v, f"{where}: {key}") for v in items)))
    return Grid(tuple(axes))


def grid_from_yaml(path: str | os.PathLike[str]) -> Grid:
    """Read a grid file: a YAML mapping of parameter -> list of values (optionally under a `grid:` key)."""
    from winosim.archio import read_yaml_file

    return grid_from_mapping(read_yaml_file(path, "grid file"), str(path))


def typed_value(text: str) -> Scalar:
    """The typed value of a grid string for the table column: '64' -> 64, '1.5' -> 1.5, 'skip' -> 'skip'."""
    from winosim.archio import safe_yaml

    try:
        value = safe_yaml(text)
    except (yaml.YAMLError, ConfigError):
        return text
    return value if isinstance(value, bool | int | float) else text


# --------------------------------------------------------------------------- evaluators


class Evaluator(Protocol):
    """What a sweep evaluates at each point. Implementations are frozen and picklable (sent to workers).

    `resolve` runs in the parent and validates a point (returning the object the workers need and the
    flat parameter dict that identifies it); `prepare` is the design-point-independent work done once per
    trace per worker; `evaluate` is the pure per-point function returning one row per layer x method.
    Optionally, `affinity(resolved)` returns a sortable key: points with equal keys share work a worker
    keeps between points (the simulator's memo), so the executors send them to one worker together.
    """

    @property
    def name(self) -> str: ...

    @property
    def identity(self) -> Mapping[str, Any]:
        """What, besides the trace and the parameters, decides the result (part of every point's key)."""
        ...

    def resolve(self, overrides: Mapping[str, str]) -> tuple[Any, dict[str, Scalar]]: ...

    def prepare(self, trace: Trace) -> Any: ...

    def evaluate(self, trace: Trace, prepared: Any, resolved: Any) -> pd.DataFrame: ...


@dataclass(frozen=True)
class SimulateEvaluator:
    """The simulator: `winosim.simulate(trace, arch, methods, workload=lower(trace))` per point, with the
    exact recurrence engine of the simpy pipeline model (same results to the cycle, several times faster).

    `base_arch` is an architecture file (None: `default_arch()`); grid overrides apply on top of it.
    """

    base_arch: str | None = None
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.methods is not None:
            object.__setattr__(self, "methods", check_methods(self.methods))

    @property
    def name(self) -> str:
        return "simulate"

    @property
    def identity(self) -> Mapping[str, Any]:
        return {"name": self.name, "methods": list(self.methods) if self.methods is not None else None}

    def resolve(self, overrides: Mapping[str, str]) -> tuple[Any, dict[str, Scalar]]:
        from winosim.archio import arch_to_flat_dict, resolve_arch

        arch = resolve_arch(self.base_arch, overrides)
        return arch, dict(arch_to_flat_dict(arch))

    def prepare(self, trace: Trace) -> Any:
        from winosim.workload import lower

        return lower(trace)

    def affinity(self, resolved: Any) -> str:
        """Points with the same tiling share the memoised plans, traffic and per-unit work (`winosim.memo`)."""
        from winosim.sim.plan import PLAN

        return repr(PLAN.key(resolved))

    def evaluate(self, trace: Trace, prepared: Any, resolved: Any) -> pd.DataFrame:
        from winosim.simulate import simulate

        result = simulate(
            trace,
            resolved,
            list(self.methods) if self.methods is not None else None,
            workload=prepared,
            engine="recurrence",
        )
        return result.to_frame()


@dataclass(frozen=True)
class CountsEvaluator:
    """Exact multiply and transform-add counts (`winosim.counts.count_trace`); ignores the architecture.

    Useful as a fast, simulator-free evaluator: the multiply counts of a trace do not depend on the
    design point, so every point gives the same rows. A point is checked as the simulator checks it (an
    unknown key or an impossible architecture is refused), and its grid keys are recorded with their
    resolved values.
    """

    @property
    def name(self) -> str:
        return "counts"

    @property
    def identity(self) -> Mapping[str, Any]:
        return {"name": self.name}

    def resolve(self, overrides: Mapping[str, str]) -> tuple[Any, dict[str, Scalar]]:
        from winosim.archio import ALIASES, arch_to_flat_dict, resolve_arch

        # the same keys and values as a simulated point (or ConfigError), recorded as resolved: "1MiB" and
        # 1048576 are one value, of one type, in the table
        flat = arch_to_flat_dict(resolve_arch(None, overrides))
        return None, {key: flat[ALIASES.get(key, key)] for key in overrides}

    def prepare(self, trace: Trace) -> Any:
        from winosim.counts import count_trace

        return count_trace(trace)

    def evaluate(self, trace: Trace, prepared: Any, resolved: Any) -> pd.DataFrame:
        del trace, resolved
        columns = (
            "layer",
            "layer_index",
            "method",
            "variant",
            "domain",
            "images",
            "multiplies",
            "algorithmic_multiplies",
            "input_transform_adds",
            "output_transform_adds",
        )
        return pd.DataFrame([{c: getattr(row, c) for c in columns} for row in prepared], columns=list(columns))


# --------------------------------------------------------------------------- worker side


_CACHE_SIZE = 4
_cache_lock = threading.Lock()
_prepared_cache: OrderedDict[tuple[str, str], tuple[Trace, Any]] = OrderedDict()
_shipped_folder: list[Path] = []  # this process's folder of shipped traces, once made


def _shipped_trace_file(digest: str, data: bytes) -> Path:
    """The file holding a trace shipped to this process as bytes (a Dask worker need not see the sender's
    files): written once per content digest into a folder of this process's own, removed when the process
    exits. From the file the trace loads like a local one, its masks read one layer at a time when needed
    (holding them all unpacked measured 1.7x the worker's peak memory at 32 images). Call with the lock held."""
    if not _shipped_folder:
        folder = Path(tempfile.mkdtemp(prefix="winosim-shipped-traces-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _shipped_folder.append(folder)
    path = _shipped_folder[0] / f"{digest}.npz"

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    if not path.exists():
        atomic_write(path, write, durable=False)
    return path


def _load_source(digest: str, source: str | bytes) -> Trace:
    """Load a trace from a path or from the file's bytes (as shipped to remote Dask workers)."""
    return load_trace(source if isinstance(source, str) else _shipped_trace_file(digest, source))


def prepared_trace(evaluator: Evaluator, digest: str, source: str | bytes) -> tuple[Trace, Any]:
    """The loaded trace and its design-point-independent preparation, memoised per worker process.

    This per-process memo (keyed by evaluator and trace content digest, a few entries) is the one piece of
    process state in the sweep, with the folder of traces shipped as bytes (`_shipped_trace_file`): it is what
    makes lowering happen once per trace per worker, not per point.
    """
    key = (repr(evaluator), digest)
    with _cache_lock:
        hit = _prepared_cache.get(key)
        if hit is not None:
            _prepared_cache.move_to_end(key)
            return hit
        trace = _load_source(digest, source)
        entry = (trace, evaluator.prepare(trace))
        _prepared_cache[key] = entry
        while len(_prepared_cache) > _CACHE_SIZE:
            _prepared_cache.popitem(last=False)
        return entry


@dataclass(frozen=True)
class Infeasible:
    """A design point the evaluator rejects for this trace (e.g. a global buffer too small for a layer)."""

    message: str


def evaluate_point(evaluator: Evaluator, digest: str, source: str | bytes, resolved: Any) -> pd.DataFrame | Infeasible:
    """The per-point task run by every executor: prepare (memoised) then evaluate one design point.

    A `WinosimError` raised while evaluating (the architecture cannot run this trace) is a result, not a
    crash: it comes back as `Infeasible` and is stored like any other point. Other exceptions are bugs and
    propagate."""
    trace, prepared = prepared_trace(evaluator, digest, source)
    try:
        frame = evaluator.evaluate(trace, prepared, resolved)
    except WinosimError as exc:
        return Infeasible(str(exc))
    if not isinstance(frame, pd.DataFrame):
        raise SweepError(f"evaluator {evaluator.name!r} returned {type(frame).__name__}, not a DataFrame")
    return frame.reset_index(drop=True)


def compute_point(evaluator: Evaluator, digest: str, source: str | bytes, resolved: Any, key: str) -> PointOutcome:
    """The task every executor runs: evaluate one point and encode its point file (`encode_point`), so that
    the expensive part of storing it runs on the workers too."""
    result = evaluate_point(evaluator, digest, source, resolved)
    return PointOutcome(result, encode_point(key, result))


def compute_points(
    evaluator: Evaluator, digest: str, source: str | bytes, points: Sequence[tuple[Any, str]]
) -> list[PointOutcome]:
    """`compute_point` for a chunk of points of one trace, given as (resolved, key): one task per chunk, so
    that a worker keeps the chunk's shared work in its memo and the executor's overhead is paid per chunk."""
    return [compute_point(evaluator, digest, source, resolved, key) for resolved, key in points]


def chunked(tasks: Sequence[Task], evaluator: Evaluator, workers: int) -> list[list[Task]]:
    """The tasks as chunks for `workers` workers: each trace's tasks ordered by the evaluator's affinity
    (stable, so grid order within), then cut by guided self-scheduling (each chunk a 1 / (2 x workers) share
    of what is left, at most `MAX_CHUNK` points): large chunks of shared work first, small ones to balance
    the end. Only the order of evaluation changes, never a result."""
    affinity = getattr(evaluator, "affinity", None)
    by_trace: dict[str, list[Task]] = {}
    for task in tasks:
        by_trace.setdefault(task.trace.sha256, []).append(task)
    chunks: list[list[Task]] = []
    for group in by_trace.values():
        ordered = sorted(group, key=lambda t: affinity(t.resolved)) if affinity is not None else group
        start = 0
        while start < len(ordered):
            size = min(MAX_CHUNK, max(1, math.ceil((len(ordered) - start) / (2 * workers))))
            chunks.append(ordered[start : start + size])
            start += size
    return chunks


MAX_CHUNK = 32
"""The most points in one task: what a worker that dies, or an interrupted sweep, loses at most."""


# --------------------------------------------------------------------------- tasks and storage


@dataclass(frozen=True)
class TraceInput:
    """A trace of the sweep: its label (file name), path, content digest and whether it is synthetic."""

    name: str
    path: str
    sha256: str
    synthetic: bool


@dataclass(frozen=True)
class Task:
    """One (trace, design point) to evaluate, with the storage key that identifies its result."""

    trace: TraceInput
    point: DesignPoint
    resolved: Any = field(compare=False)
    params: Mapping[str, Scalar] = field(compare=False)
    key: str


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def point_key(evaluator: Evaluator, trace_sha256: str, params: Mapping[str, Scalar]) -> str:
    """Storage key of one point: a hash of the trace content, the resolved parameters and the evaluator."""
    document = {
        "evaluator": dict(evaluator.identity),
        "trace_sha256": trace_sha256,
        "params": params,
        "winosim_version": __version__,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _point_path(out_dir: Path, key: str) -> Path:
    return out_dir / POINTS_DIR / f"{key}.parquet"


def _infeasible_path(out_dir: Path, key: str) -> Path:
    return out_dir / POINTS_DIR / f"{key}.infeasible.json"


POINT_STAMP = b"winosim.point"
"""Parquet schema metadata of a stored point: its key and the checksum of its rows, as JSON."""


def frame_checksum(frame: pd.DataFrame) -> str:
    """sha256 of a result frame's column names, dtypes and every value (row order included)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PointOutcome:
    """What evaluating one point gives back to the parent: the result, and its point file's bytes (encoded
    where the point was evaluated, so that the parent only writes them: `write_point`)."""

    result: pd.DataFrame | Infeasible
    payload: bytes


def encode_point(key: str, result: pd.DataFrame | Infeasible) -> bytes:
    """A point file's bytes: Parquet stamped with the key and a checksum of the rows, or for an infeasible
    point a JSON record of its message and key. (The checksum is taken from the frame itself; a stored
    point whose rows do not read back to it is recomputed by `load_point`, never trusted.)"""
    if isinstance(result, Infeasible):
        stamp = {
            "key": key,
            "infeasible": result.message,
            "sha256": hashlib.sha256(result.message.encode()).hexdigest(),
        }
        return (json.dumps(stamp) + "\n").encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(result, preserve_index=False)
    stamp_text = json.dumps({"key": key, "sha256": frame_checksum(result)})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), POINT_STAMP: stamp_text.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_point(out_dir: Path, key: str, outcome: PointOutcome) -> None:
    """Store one point's encoded file under its key (atomically; not fsynced: `load_point` verifies every
    point file against its stamp and recomputes one that a crash left empty or stale)."""
    infeasible = isinstance(outcome.result, Infeasible)
    path = _infeasible_path(out_dir, key) if infeasible else _point_path(out_dir, key)

    def write(tmp: Path) -> None:
        tmp.write_bytes(outcome.payload)

    atomic_write(path, write, durable=False)


def load_point(out_dir: Path, key: str) -> pd.DataFrame | Infeasible | None:
    """The stored point of `key`, or None when absent or when the file does not prove it is that point: an
    unreadable file, one without a stamp, one stamped with another key, or one whose content does not match
    its checksum is logged (one warning line) and the point is evaluated again, never trusted."""
    path = _point_path(out_dir, key)
    infeasible = _infeasible_path(out_dir, key)
    source = path if path.exists() else infeasible if infeasible.exists() else None
    if source is None:
        return None
    try:
        result, stamp, checksum = _read_point(source)
    except Exception as exc:  # a file that cannot be read back as a point is recomputed
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning("recomputing stored point %s: unreadable (%s)", source.name, reason)
        return None
    if not isinstance(stamp, dict) or "key" not in stamp:
        log.warning("recomputing stored point %s: it carries no point stamp (key and checksum)", source.name)
        return None
    if stamp["key"] != key:
        log.warning("recomputing stored point %s: it is stamped as point %s, not this one", source.name, stamp["key"])
        return None
    if stamp.get("sha256") != checksum:
        log.warning("recomputing stored point %s: its content does not match its checksum", source.name)
        return None
    return result


def _read_point(source: Path) -> tuple[pd.DataFrame | Infeasible, Any, str]:
    """A stored point file's result, its stamp and the checksum of the content as read."""
    if source.suffix == ".json":
        stored = json.loads(source.read_text(encoding="utf-8"))
        message = stored["infeasible"]
        if not isinstance(message, str):
            raise ValueError("'infeasible' is not text")
        return Infeasible(message), stored, hashlib.sha256(message.encode()).hexdigest()
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    raw = (table.schema.metadata or {}).get(POINT_STAMP)
    frame = table.to_pandas()
    return frame, json.loads(raw) if raw is not None else None, frame_checksum(frame)


# --------------------------------------------------------------------------- executors

OnResult = Callable[[Task, PointOutcome], None]


def _run_inline(tasks: Sequence[Task], evaluator: Evaluator, on_result: OnResult) -> None:
    for t in tasks:
        on_result(t, compute_point(evaluator, t.trace.sha256, t.trace.path, t.resolved, t.key))


def _run_processes(
    tasks: Sequence[Task], evaluator: Evaluator, jobs: int, on_result: OnResult, max_restarts: int = 3
) -> None:
    """Local worker processes, sent chunks of points (`chunked`). A worker that dies breaks the pool: the
    unfinished points are resubmitted to a fresh pool, so no point is lost (`max_restarts` breaks in a row
    without progress end the sweep)."""
    pending = {task.key: task for task in tasks}
    restarts = 0
    while pending:
        broken = False
        before = len(pending)
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=worker_context()) as pool:
            futures = {
                pool.submit(
                    compute_points,
                    evaluator,
                    chunk[0].trace.sha256,
                    chunk[0].trace.path,
                    [(t.resolved, t.key) for t in chunk],
                ): chunk
                for chunk in chunked(list(pending.values()), evaluator, jobs)
            }
            try:
                for future in concurrent.futures.as_completed(futures):
                    chunk = futures[future]
                    try:
                        outcomes = future.result()
                    except concurrent.futures.process.BrokenProcessPool:
                        broken = True
                        break
                    for task, outcome in zip(chunk, outcomes, strict=True):
                        on_result(task, outcome)
                        del pending[task.key]
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            if broken:
                pool.shutdown(wait=False, cancel_futures=True)
        if broken:
            restarts = restarts + 1 if len(pending) == before else 1
            if restarts > max_restarts:
                raise SweepError(
                    f"local worker processes died {restarts} times in a row without finishing a point; "
                    f"{len(pending)} points unfinished"
                )
            log.warning("a worker process died; resubmitting %d unfinished points", len(pending))


def _run_dask(tasks: Sequence[Task], evaluator: Evaluator, scheduler: str, on_result: OnResult) -> None:
    """A Dask distributed cluster, sent chunks of points (`chunked`, for the cluster's threads). Trace files
    are shipped to the workers as bytes (no shared filesystem needed); the scheduler reschedules the tasks
    of a worker that dies, and a task the cluster cancels is resubmitted, so no point is lost."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install 'winosim[sweep]'") from None
    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"cannot connect to the Dask scheduler at {scheduler} ({exc})") from None
    with client:
        sources: dict[str, Any] = {}

        def scatter(digest: str, path: str) -> None:
            sources[digest] = client.scatter(Path(path).read_bytes(), broadcast=True, hash=False)

        def submit(chunk: list[Task]) -> Any:
            return client.submit(
                compute_points,
                evaluator,
                chunk[0].trace.sha256,
                sources[chunk[0].trace.sha256],
                [(t.resolved, t.key) for t in chunk],
                key=f"winosim-points-{chunk[0].key[:16]}-{uuid.uuid4().hex[:12]}",  # unique per submission
                pure=False,
            )

        for task in tasks:
            if task.trace.sha256 not in sources:
                scatter(task.trace.sha256, task.trace.path)
        workers = max(1, sum(client.nthreads().values()))
        futures = {submit(chunk): chunk for chunk in chunked(tasks, evaluator, workers)}
        cancelled = 0
        completed = as_completed(list(futures), loop=client.loop)
        try:
            for future in completed:
                chunk = futures.pop(future)
                try:
                    outcomes = future.result()
                except concurrent.futures.CancelledError:
                    # the cluster dropped the task (seen when a worker is killed mid-sweep): send the trace
                    # again, in case the copies went with the worker, and the chunk again
                    cancelled += 1
                    if cancelled > MAX_CANCELLED_CHUNKS:
                        raise SweepError(f"the Dask cluster cancelled {cancelled} tasks of this sweep") from None
                    log.warning("the Dask cluster cancelled a task; resubmitting its %d points", len(chunk))
                    scatter(chunk[0].trace.sha256, chunk[0].trace.path)
                    again = submit(chunk)
                    futures[again] = chunk
                    completed.add(again)
                    continue
                except WinosimError:
                    raise
                except Exception as exc:
                    first = first_line(exc)
                    hint = (
                        " (is winosim installed, same version, on the scheduler and every worker?)"
                        if "serializ" in str(exc) or isinstance(exc, ModuleNotFoundError)
                        else ""
                    )
                    points = ", ".join(t.point.label() for t in chunk[:3]) + (", ..." if len(chunk) > 3 else "")
                    raise SweepError(f"points {points} of {chunk[0].trace.name} failed: {first}{hint}") from None
                for task, outcome in zip(chunk, outcomes, strict=True):
                    on_result(task, outcome)
                future.release()
        finally:
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                client.cancel(unfinished)


MAX_CANCELLED_CHUNKS = 8
"""Tasks a Dask cluster may cancel during one sweep (each resubmitted) before the sweep gives up."""


# --------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: how many points it reused and computed (and how many of all its points the
    evaluator rejected as infeasible: they have no rows and are listed in the manifest), and what it wrote."""

    out_dir: Path
    points_total: int
    points_reused: int
    points_computed: int
    points_infeasible: int
    rows: int
    results_parquet: Path
    results_csv: Path
    manifest: Path


def _trace_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[TraceInput, ...]:
    if not paths:
        raise ConfigError("sweep: give at least one --trace FILE")
    inputs: list[TraceInput] = []
    names: dict[str, str] = {}
    check_distinct_inputs(paths, "sweep: --trace")  # as the grid refuses a value given twice
    for raw in paths:
        path = Path(raw)
        trace = load_trace(path)  # validates before any work starts
        name = path.name
        if name in names:
            raise ConfigError(f"sweep: two traces share the file name {name!r} ({names[name]} and {path})")
        names[name] = str(path)
        inputs.append(TraceInput(name, str(path.resolve()), file_sha256(path), trace.provenance.synthetic))
    return tuple(inputs)


def plan(
    traces: Sequence[str | os.PathLike[str]], grid: Grid, evaluator: Evaluator, *, progress: bool = False
) -> tuple[tuple[TraceInput, ...], tuple[DesignPoint, ...], tuple[Task, ...]]:
    """Validate the inputs and list every (trace, point) task in output order (`progress`: a tqdm bar on
    stderr, when it is a terminal, while the design points are checked, so a large grid shows its size from
    the first point)."""
    from tqdm import tqdm

    inputs = _trace_inputs(traces)
    points = grid.points()
    resolved: list[tuple[Any, dict[str, Scalar]]] = []
    shown = None if progress else True  # None: on a terminal only
    checking = tqdm(points, desc="checking design points", unit="point", disable=shown, leave=False)
    for point in checking:
        try:
            resolved.append(evaluator.resolve(point.as_dict()))
        except WinosimError as exc:
            raise ConfigError(f"design point {point.label()}: {exc}") from None
    first_of: dict[str, DesignPoint] = {}  # two values that are one (1MiB, 1048576): one point, not two
    for point, (_, params) in zip(points, resolved, strict=True):
        same = first_of.setdefault(json.dumps(params, sort_keys=True, default=str), point)
        if same is not point:
            raise ConfigError(
                f"design points {same.label()} and {point.label()} are the same architecture; give each value once"
            )
    tasks = tuple(
        Task(trace, point, obj, params, point_key(evaluator, trace.sha256, params))
        for trace in inputs
        for point, (obj, params) in zip(points, resolved, strict=True)
    )
    return inputs, points, tasks


def _sort_rows(frame: pd.DataFrame, trace_order: Sequence[str]) -> pd.DataFrame:
    methods = sorted_methods(frame["method"].astype(str))
    keys = pd.DataFrame(
        {
            "t": frame["trace"].map({name: i for i, name in enumerate(trace_order)}),
            "p": frame["point"],
            "l": frame["layer_index"],
            "m": frame["method"].map({m: i for i, m in enumerate(methods)}),
            "v": frame["variant"].fillna("").astype(str),
        }
    )
    order = keys.sort_values(["t", "p", "l", "m", "v"], kind="mergesort").index
    return frame.loc[order].reset_index(drop=True)


def _param_columns(tasks: Sequence[Task], grid: Grid) -> list[str]:
    """The parameter columns of the table: the grid keys, then every other resolved parameter in order."""
    param_columns: list[str] = list(grid.keys)
    for task in tasks:
        for key in task.params:
            if key not in param_columns:
                param_columns.append(key)
    return param_columns


def _point_values(task: Task) -> dict[str, Any]:
    """One point's identity and parameter values: a grid key shows the value it resolved to ("32KiB" -> 32768;
    an alias, "pe", its parameter's, so 16 and 32.0 make one integer column), else its typed grid value."""
    values: dict[str, Any] = {
        "trace": task.trace.name,
        "trace_sha256": task.trace.sha256,
        "synthetic": task.trace.synthetic,
        "point": task.point.index,
    }
    for key, value in task.point.overrides:  # typed only where no parameter of that name resolved it
        named = next((k for k in (key, ALIASES.get(key, key)) if k in task.params), None)
        values[key] = task.params[named] if named is not None else typed_value(value)
    values.update({key: value for key, value in task.params.items() if key not in values})
    return values


def _repeated(values: Sequence[Any], counts: NDArray[np.int64]) -> pd.Series:
    """A column of `values[i]` repeated `counts[i]` times, typed as the concatenation of one column per point
    would be (object where a point lacks the value)."""
    column = pd.Series(list(values), dtype=object if any(v is None for v in values) else None)
    return column.repeat(counts.tolist()).reset_index(drop=True)


def assemble(
    tasks: Sequence[Task], frames: Mapping[str, pd.DataFrame | Infeasible], grid: Grid
) -> tuple[pd.DataFrame, list[str]]:
    """The tidy table: identity columns, grid columns, every resolved parameter, then the result columns
    (an infeasible point has no rows). Returns the table and its parameter column names. Built once, from
    all the points' rows, after the sweep (a few column operations, not a frame per point)."""
    param_columns = _param_columns(tasks, grid)
    feasible = [(task, result) for task in tasks if not isinstance(result := frames[task.key], Infeasible)]
    if not feasible:
        return pd.DataFrame(columns=[*ID_COLUMNS, *param_columns]), param_columns
    results = pd.concat([result for _, result in feasible], ignore_index=True)
    names = ["trace", "trace_sha256", "synthetic", "point", *param_columns]
    clashes = [c for c in results.columns if c in names]
    if clashes:
        raise SweepError(f"result columns {clashes} clash with sweep parameter columns")
    counts = np.array([len(result) for _, result in feasible], dtype=np.int64)
    values = [_point_values(task) for task, _ in feasible]
    meta = pd.DataFrame({name: _repeated([v.get(name) for v in values], counts) for name in names})
    table = pd.concat([meta, results], axis=1)
    return _sort_rows(table, [t.trace.name for t in tasks]), param_columns


def _csv_text(frame: pd.DataFrame, header: bool) -> str:
    return str(frame.to_csv(index=False, header=header, lineterminator="\n"))


def _write_csv(frame: pd.DataFrame, tmp: Path, processes: int = 1) -> None:
    """The table as CSV. With `processes` > 1 the rows are cut into that many contiguous parts, formatted
    at once (this process the first, worker processes the rest) and joined in order: the same bytes as one
    `to_csv` (a value's text depends only on the value and its column's type, the same in every part), in a
    fraction of the wall time a large sweep's table takes."""
    parts = min(processes, len(frame) // CSV_PART_ROWS)
    if parts <= 1:
        frame.to_csv(tmp, index=False, lineterminator="\n")
        return
    bounds = [len(frame) * i // parts for i in range(parts + 1)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=parts - 1, mp_context=worker_context()) as pool:
        rest = [pool.submit(_csv_text, frame.iloc[start:end], False) for start, end in itertools.pairwise(bounds[1:])]
        first = _csv_text(frame.iloc[: bounds[1]], True)
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(first)
            for part in rest:
                handle.write(part.result())


CSV_PART_ROWS = 4096
"""Fewest rows worth a process of their own when writing the CSV."""


def check_size(grid: Grid, traces: int, max_points: int | None) -> int:
    """The number of (trace, design point) evaluations of a sweep; ConfigError above `max_points` (None: no
    limit). Computed from the axes' lengths alone, so a huge grid is refused before it is formed."""
    total = grid.size * traces
    if max_points is not None and total > max_points:
        raise ConfigError(
            f"sweep: {grid.size:,} design points x {traces} trace(s) = {total:,} points, above the limit of "
            f"{max_points:,}; check the grid, or pass --yes to run it anyway"
        )
    return total


def _check_run_options(jobs: int | None, scheduler: str | None) -> None:
    check_jobs(jobs)
    if scheduler is not None and not scheduler.strip():
        raise ConfigError("sweep: scheduler address is empty")
    if scheduler is not None:
        try:
            from distributed.comm.addressing import parse_address
            from distributed.comm.registry import get_backend
        except ImportError:
            raise ConfigError("--scheduler needs dask.distributed: pip install 'winosim[sweep]'") from None
        try:  # a foreign scheme (http://...) is refused before any work, not in the client's 40 s clean-up
            get_backend(parse_address(scheduler)[0])
        except ValueError as exc:
            raise ConfigError(f"--scheduler {scheduler!r}: {exc}") from None


def _stored_and_todo(out: Path, tasks: Sequence[Task]) -> tuple[dict[str, pd.DataFrame | Infeasible], list[Task]]:
    """The points already stored in `out` (by key), and the tasks left to compute (one per distinct key)."""
    frames: dict[str, pd.DataFrame | Infeasible] = {}
    for task in tasks:
        if task.key not in frames:
            stored = load_point(out, task.key)
            if stored is not None:
                frames[task.key] = stored
    todo: list[Task] = []
    seen: set[str] = set()
    for task in tasks:
        if task.key not in frames and task.key not in seen:
            seen.add(task.key)
            todo.append(task)
    return frames, todo


def _compute(
    out: Path,
    todo: Sequence[Task],
    total: int,
    frames: dict[str, pd.DataFrame | Infeasible],
    evaluator: Evaluator,
    jobs: int | None,
    scheduler: str | None,
    progress: bool,
    on_point: Callable[[int, int], None] | None,
) -> None:
    """Evaluate `todo` (inline, in worker processes or on a Dask cluster), storing each point as it comes
    (the workers encode its file, `compute_point`; here it is only written)."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=total - len(todo), unit="point", disable=not progress, dynamic_ncols=True)
    done = total - len(todo)

    def on_result(task: Task, outcome: PointOutcome) -> None:
        nonlocal done
        write_point(out, task.key, outcome)
        frames[task.key] = outcome.result
        done += 1
        bar.update(1)
        if on_point is not None:
            on_point(done, total)

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(todo, evaluator, scheduler, on_result)
        else:
            workers = min(jobs if jobs is not None else (os.cpu_count() or 1), len(todo))
            if workers <= 1:
                _run_inline(todo, evaluator, on_result)
            else:
                _run_processes(todo, evaluator, workers, on_result)
    finally:
        bar.close()


def _infeasible(tasks: Sequence[Task], frames: Mapping[str, pd.DataFrame | Infeasible]) -> list[dict[str, Any]]:
    """The infeasible points (logged); ConfigError when every point is."""
    infeasible = [
        {"trace": t.trace.name, "point": t.point.index, "label": t.point.label(), "message": result.message}
        for t in tasks
        if isinstance(result := frames[t.key], Infeasible)
    ]
    if infeasible and len(infeasible) == len(tasks):
        raise ConfigError(
            f"every design point is infeasible; e.g. {infeasible[0]['label']}: {infeasible[0]['message']}"
        )
    for entry in infeasible:
        log.warning("infeasible design point %s on %s: %s", entry["label"], entry["trace"], entry["message"])
    return infeasible


def run_sweep(
    traces: Sequence[str | os.PathLike[str]],
    grid: Grid,
    out_dir: str | os.PathLike[str],
    *,
    evaluator: Evaluator | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    on_point: Callable[[int, int], None] | None = None,
    max_points: int | None = MAX_SWEEP_POINTS,
) -> SweepSummary:
    """Run every (trace, design point) of `grid` and write the tidy table into `out_dir`.

    `jobs` local worker processes (default: the number of cores; 1 runs in this process) unless
    `scheduler` (a Dask scheduler address such as tcp://127.0.0.1:8786) is given. Points already stored
    in `out_dir` are reused. `on_point(done, total)` is called after each point is stored (progress
    hooks, tests); `progress` shows a tqdm bar on stderr with points done, rate and ETA. A sweep of more than
    `max_points` (trace, design point) evaluations is refused before anything is read (None: no limit).
    """
    evaluator = evaluator if evaluator is not None else SimulateEvaluator()
    _check_run_options(jobs, scheduler)
    check_size(grid, len(traces), max_points)
    out = Path(out_dir)
    check_output_folder(out)  # a file in its place or above it, no permission: refused before any point
    processes = local_processes(jobs)  # local workers, and the CSV's parts
    if processes > 1:
        start_server()
    inputs, points, tasks = plan(traces, grid, evaluator, progress=progress)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    frames, todo = _stored_and_todo(out, tasks)
    reused = sum(1 for t in tasks if t.key in frames)
    total = len(tasks)
    log.info("sweep: %d points, %d stored, %d to compute", total, reused, len(todo))
    try:
        _compute(out, todo, total, frames, evaluator, jobs, scheduler, progress, on_point)
    except BaseException:
        if created and not any(out.iterdir()):  # failed before its first point (no scheduler, say): leave nothing
            out.rmdir()
        raise
    infeasible = _infeasible(tasks, frames)
    table, param_columns = assemble(tasks, frames, grid)
    parquet_path = out / RESULTS_PARQUET
    csv_path = out / RESULTS_CSV
    atomic_write(parquet_path, lambda tmp: table.to_parquet(tmp, index=False, engine="pyarrow"))
    atomic_write(csv_path, lambda tmp: _write_csv(table, tmp, processes))
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "winosim_version": __version__,
        "evaluator": evaluator.name,
        "evaluator_identity": dict(evaluator.identity),
        "traces": [{"name": t.name, "path": t.path, "sha256": t.sha256, "synthetic": t.synthetic} for t in inputs],
        "grid": [[key, list(values)] for key, values in grid.axes],
        "grid_columns": list(grid.keys),
        "param_columns": param_columns,
        "points": [{"index": p.index, "label": p.label(), "overrides": p.as_dict()} for p in points],
        "synthetic": any(t.synthetic for t in inputs),
        "infeasible": infeasible,
    }
    manifest_path = out / MANIFEST_NAME
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return SweepSummary(
        out, total, reused, len(todo), len(infeasible), len(table), parquet_path, csv_path, manifest_path
    )


# --------------------------------------------------------------------------- reading results back


@dataclass(frozen=True)
class SweepResults:
    """A results directory read back: the tidy table and the manifest that describes it."""

    table: pd.DataFrame
    manifest: Mapping[str, Any]

    @property
    def grid_columns(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("grid_columns", ()))

    @property
    def param_columns(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("param_columns", ()))

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest.get("synthetic", False))

    def point_labels(self) -> dict[int, str]:
        """Design point index -> its label as the grid gave it ('pe=64 memory.global_buffer_bytes=1MiB')."""
        return {int(p["index"]): str(p["label"]) for p in self.manifest.get("points", ())}

    def trace_paths(self) -> Iterator[tuple[str, str, str]]:
        """(name, path, sha256) of every trace of the sweep, as recorded when it ran."""
        for entry in self.manifest.get("traces", ()):
            yield str(entry["name"]), str(entry["path"]), str(entry["sha256"])


def load_results(out_dir: str | os.PathLike[str]) -> SweepResults:
    """Read `DIR/results.parquet` and `DIR/sweep.json` written by `run_sweep`."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"results directory not found: {out}")
    manifest_path = out / MANIFEST_NAME
    parquet_path = out / RESULTS_PARQUET
    if not manifest_path.exists() or not parquet_path.exists():
        raise ConfigError(f"{out}: not a finished sweep directory (no {MANIFEST_NAME} and {RESULTS_PARQUET})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(f"{manifest_path}: unreadable sweep manifest (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{manifest_path}: unreadable sweep manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{manifest_path}: not a winosim sweep manifest")
    _check_manifest(manifest, str(manifest_path))
    try:
        table = pd.read_parquet(parquet_path, engine="pyarrow")
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{parquet_path}: unreadable results table ({reason})") from None
    required = [*RESULT_COLUMNS, *manifest["grid_columns"]]
    missing = [column for column in dict.fromkeys(required) if column not in table.columns]
    if missing:
        raise ConfigError(f"{parquet_path}: the results table lacks the required column(s) {', '.join(missing)}")
    return SweepResults(table, manifest)


#: Columns every results table has, whatever its evaluator (besides its grid columns).
RESULT_COLUMNS: tuple[str, ...] = (*ID_COLUMNS, "layer", "layer_index", "method", "variant")

_MANIFEST_FIELDS: dict[str, type] = {
    "version": int,
    "evaluator": str,
    "traces": list,
    "grid": list,
    "grid_columns": list,
    "param_columns": list,
    "points": list,
    "synthetic": bool,
    "infeasible": list,
}
_ENTRY_FIELDS: dict[str, dict[str, type]] = {
    "traces": {"name": str, "path": str, "sha256": str},
    "points": {"index": int, "label": str},
    "infeasible": {"trace": str, "point": int, "label": str, "message": str},
}


def _check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """Every field a reader uses has its type (a hand-edited or foreign manifest is one clear error)."""

    def kind(value: Any, expected: type) -> bool:
        return isinstance(value, expected) and not (expected is int and isinstance(value, bool))

    for name, expected in _MANIFEST_FIELDS.items():
        if not kind(manifest.get(name), expected):
            got = type(manifest[name]).__name__ if name in manifest else "nothing"
            raise ConfigError(f"{where}: manifest field {name!r} must be a {expected.__name__}, got {got}")
    if manifest["version"] != MANIFEST_VERSION:
        raise ConfigError(f"{where}: sweep manifest version {manifest['version']} is not supported")
    for name in ("grid_columns", "param_columns"):
        if not all(isinstance(column, str) for column in manifest[name]):
            raise ConfigError(f"{where}: manifest field {name!r} must be a list of column names")
    for name, fields in _ENTRY_FIELDS.items():
        for i, entry in enumerate(manifest[name]):
            bad = [f for f, t in fields.items() if not isinstance(entry, dict) or not kind(entry.get(f), t)]
            if bad:
                raise ConfigError(f"{where}: manifest {name}[{i}] needs {', '.join(bad)} of the right type")


def trace_for_figures(path: str, sha256: str | None = None) -> Trace | None:
    """Load a trace named in a manifest for the density figures; None (logged) when it has moved or its
    content is no longer the content the sweep used."""
    try:
        if sha256 is not None and Path(path).is_file() and file_sha256(path) != sha256:
            log.warning("trace %s changed since the sweep; no density figures for it", path)
            return None
        return load_trace(path)
    except TraceError as exc:
        log.warning("cannot load trace %s for density figures (%s)", path, exc)
        return None

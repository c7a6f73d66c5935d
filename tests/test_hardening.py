"""Hardening (issue 12): at every input edge, a correct result or one clean error, never a silent wrong number.

Bad input of any kind ends in one line `winosim: error: ...` on stderr, exit status 2, no traceback and
nothing written, within a second and in bounded memory. The cases are grouped by kind: numbers at the edge,
resource bombs, parsers, terminal safety, partial output; each is run through the command line as a user
would. The sweep's own guarantees (canonical grid keys, stored points that prove what they are) are in
tests/test_sweep.py, the property-based mutations in tests/test_mutations.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.synthetic import synthetic_trace
from winosim.trace import write_trace

REPO = Path(__file__).resolve().parents[1]
LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("a", "winograd", "conv", 8, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("fc", "spatial", "fc", 8, 10, 1, 1, kernel=1),
)
NET = NetworkGeometry("tiny", 8, 8, 10, LAYERS)

PEAK_RSS_LIMIT_BYTES = 400 * 1024**2
"""A refusal never needs more memory than the interpreter, numpy and pandas (about 150 MiB) plus a margin."""


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(synthetic_trace(NET, images=2, seed=1), tmp_path_factory.mktemp("traces") / "tiny.npz")


def winosim(*args: str | Path, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run `python -m winosim ARGS` as a user would; returns the result, its wall time (s) and its peak RSS."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # VmHWM is the peak RSS of this process image; ru_maxrss would include the forked test runner's pages
    code = (
        "import re, resource, sys, runpy\n"
        "sys.argv = ['winosim', *sys.argv[1:]]\n"
        "def peak():\n"
        "    try:\n"
        "        return int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "    except OSError:\n"
        "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    runpy.run_module('winosim', run_name='__main__')\n"
        "finally:\n"
        "    print(f'PEAK_RSS_KIB={peak()}', file=sys.stderr)\n"
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    stderr, _, peak = result.stderr.rpartition("PEAK_RSS_KIB=")
    result.stderr = stderr
    return result, seconds, int(peak.strip() or 0) * 1024


def in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `winosim ARGS` in this process (fast; for the cases where time and memory are not the point)."""
    from winosim import cli

    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([str(a) for a in args], code, captured.out, captured.err)


def assert_clean_refusal(
    result: subprocess.CompletedProcess[str], message: str, *, seconds: float | None = None, peak: int | None = None
) -> None:
    """One line `winosim: error: ...` naming the problem, exit 2, nothing on stdout, no traceback; and, when
    measured, within a few seconds (imports included; the refusal itself is well under a second) and in
    bounded memory."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("winosim: error: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if seconds is not None:
        assert seconds < 10
    if peak is not None:
        assert peak < PEAK_RSS_LIMIT_BYTES


# --------------------------------------------------------------------------- numbers at the edge


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "pe_array.multipliers_per_pe=1e12"], "multipliers_per_pe must be an integer in [1, 4096]"),
        (["--set", "memory.dram_bandwidth_bytes_per_cycle=1e300"], "dram_bandwidth_bytes_per_cycle must be an integer"),
        (["--set", "memory.global_buffer_bytes=1e30"], "global_buffer_bytes must be an integer in"),
        (["--set", "memory.global_buffer_bytes=1e400"], "expected an integer"),
        (["--set", "clock_hz=nan"], "clock_hz: expected a number"),
        (["--set", "clock_hz=1e999"], "clock_hz must be a finite number"),
        (["--pe", "99999999999999999999999"], "argument --pe: integer out of range"),
        (["--pe", "4294967296"], "pe_count must be an integer in [1, 1048576]"),
        # one parameter set twice (which value was meant?), also under its alias
        (["--set", "pe=16", "--set", "pe_array.pe_count=32"], "--set pe_array.pe_count given twice ('pe=16' and"),
        (["--set", "clock_hz=1e9", "--set", "clock_hz=2e9"], "--set clock_hz given twice"),
    ],
)
def test_numbers_beyond_the_documented_bounds_are_refused(
    capsys: pytest.CaptureFixture[str], trace_path: Path, tmp_path: Path, args, message
) -> None:
    result = in_process(capsys, "run", "--trace", trace_path, *args, "--output", tmp_path / "out.txt")
    assert_clean_refusal(result, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variation", "nan"], "argument --variation: expected a finite number, got 'nan'"),
        (["--variation", "inf"], "argument --variation: expected a finite number, got 'inf'"),
        (["--weight-density", "nan"], "argument --weight-density: must be in [0, 1], got nan"),
        (["--seed", "-1"], "argument --seed: a seed must be an integer in [0, 9223372036854775807], got '-1'"),
        (["--images", "100000000"], "above the limit of 2 GiB (fewer --images, or raise the limit"),
        (["--images", "99999999999999999999999"], "argument --images: integer out of range"),
        (["--max-mask-gib", "0"], "--max-mask-gib must be > 0"),
    ],
)
def test_synth_refuses_non_finite_negative_and_oversized_options(tmp_path: Path, args, message) -> None:
    result, seconds, peak = winosim("synth", "--network", "resnet18_imagenet", *args, "--output", tmp_path / "t.npz")
    assert_clean_refusal(result, message, seconds=seconds, peak=peak)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- YAML: bombs and deep nesting

ALIAS_BOMB = "\n".join(
    [
        'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]',
        *(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)),
        "pe_array: [*i, *i, *i, *i, *i, *i, *i, *i, *i]",  # 9^10 = 3.5e9 strings if expanded
    ]
)

YAML_CASES = {
    "alias_bomb": (ALIAS_BOMB, "YAML aliases (*a) are not supported (line 2"),
    "deep_flow": ("pe_array: " + "[" * 100_000 + "]" * 100_000, "YAML nested deeper than 32 levels"),
    "deep_block": ("".join(f"{'  ' * i}k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n", "nested deeper"),
    "huge": ("# " + "x" * (2 * 1024**2) + "\n", "larger than 1024 KiB"),
    # PyYAML keeps the last of two equal keys silently: the first value (a grid axis's values) would vanish
    "key_twice": ("pe_array:\n  pe_count: 16\n  pe_count: 64\n", "YAML key 'pe_count' given twice (line 2, column 3"),
    "top_key_twice": ("pe_array: {}\npe_array: {}\n", "given twice (line 1, column 1 and line 2, column 1)"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_bombs_and_deep_nesting_in_an_architecture_file(trace_path: Path, tmp_path: Path, case: str) -> None:
    text, message = YAML_CASES[case]
    arch = tmp_path / "arch.yaml"
    arch.write_text(text)
    result, seconds, peak = winosim("run", "--trace", trace_path, "--arch", arch, "--output", tmp_path / "out.txt")
    assert_clean_refusal(result, message, seconds=seconds, peak=peak)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.yaml"]


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_bombs_and_deep_nesting_in_a_grid_file(trace_path: Path, tmp_path: Path, case: str) -> None:
    text, message = YAML_CASES[case]
    grid = tmp_path / "grid.yaml"
    grid.write_text(text.replace("pe_array", "pe"))
    result, seconds, peak = winosim("sweep", "--trace", trace_path, "--grid-file", grid, "--out", tmp_path / "out")
    assert_clean_refusal(result, message, seconds=seconds, peak=peak)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


def test_anchors_without_aliases_and_ordinary_files_still_load(tmp_path: Path) -> None:
    from winosim.archio import load_arch, safe_yaml

    assert safe_yaml("a: &x 1\nb: [1, [2, {c: 3}]]\n") == {"a": 1, "b": [1, [2, {"c": 3}]]}
    arch = tmp_path / "arch.yaml"
    arch.write_text("pe_array:\n  pe_count: &p 32\n")
    assert load_arch(arch).pe_array.pe_count == 32


# --------------------------------------------------------------------------- sweeps: size

MILLION = [f"--grid={key}={','.join(str(v) for v in range(1, 101))}" for key in ("pe", "input_transform.count")]
MILLION.append(f"--grid=output_transform.count={','.join(str(v) for v in range(1, 101))}")


def test_a_million_point_grid_is_refused_at_once(trace_path: Path, tmp_path: Path) -> None:
    result, seconds, peak = winosim("sweep", "--trace", trace_path, *MILLION, "--out", tmp_path / "out")
    assert_clean_refusal(
        result,
        "1,000,000 design points x 1 trace(s) = 1,000,000 points, above the limit of 10,000; check the grid, "
        "or pass --yes to run it anyway",
        seconds=seconds,
        peak=peak,
    )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- parsers: sweep folders


@pytest.fixture(scope="module")
def sweep_dir(trace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from winosim.sweep import SimulateEvaluator, grid_from_options, run_sweep

    out = tmp_path_factory.mktemp("sweep") / "out"
    run_sweep([trace_path], grid_from_options(["pe=4,8"]), out, evaluator=SimulateEvaluator(), jobs=1)
    return out


def _edited_copy(sweep_dir: Path, tmp_path: Path, edit) -> Path:
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    edit(copy)
    return copy


def _edit_manifest(**fields):
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "sweep.json").read_text())
        manifest.update(fields)
        (folder / "sweep.json").write_text(json.dumps(manifest))

    return edit


def _drop_column(column: str):
    def edit(folder: Path) -> None:
        import pandas as pd

        table = pd.read_parquet(folder / "results.parquet")
        table.drop(columns=[column]).to_parquet(folder / "results.parquet", index=False)

    return edit


REPORT_CASES = {
    "grid_columns_text": (_edit_manifest(grid_columns="pe"), "manifest field 'grid_columns' must be a list, got str"),
    "points_not_list": (_edit_manifest(points={"0": "pe=4"}), "manifest field 'points' must be a list, got dict"),
    "point_index_text": (
        _edit_manifest(points=[{"index": "0", "label": "pe=4"}]),
        "manifest points[0] needs index of the right type",
    ),
    "synthetic_text": (_edit_manifest(synthetic="yes"), "manifest field 'synthetic' must be a bool, got str"),
    "version": (_edit_manifest(version=7), "sweep manifest version 7 is not supported"),
    "no_traces": (_edit_manifest(traces=None), "manifest field 'traces' must be a list, got NoneType"),
    "deep_json": (
        lambda folder: (folder / "sweep.json").write_text('{"format": "winosim-sweep", "x": ' + "[" * 100_000),
        "unreadable sweep manifest",
    ),
    "no_method_column": (_drop_column("method"), "the results table lacks the required column(s) method"),
    "no_grid_column": (_drop_column("pe"), "lacks the required column(s) pe"),
    "not_parquet": (
        lambda folder: (folder / "results.parquet").write_bytes(b"PAR1 not really"),
        "unreadable results table",
    ),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_on_a_malformed_sweep_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], sweep_dir: Path, tmp_path: Path, case: str
) -> None:
    edit, message = REPORT_CASES[case]
    folder = _edited_copy(sweep_dir, tmp_path, edit)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert_clean_refusal(in_process(capsys, "report", folder, "--figures"), message)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- terminal safety

EVIL_LAYERS = (
    LayerGeometry("st\x1b[2Jem", "spatial", "conv", 3, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("a\nforged line\u202e", "winograd", "conv", 8, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("fc\x07\r", "spatial", "fc", 8, 10, 1, 1, kernel=1),
)


def _unsafe(text: str) -> list[str]:
    import unicodedata

    return [c for c in text if c not in "\n" and unicodedata.category(c).startswith("C")]


def _strings(document: object) -> set[str]:
    if isinstance(document, dict):
        return set().union(*(_strings(v) for v in document.values())) if document else set()
    if isinstance(document, list):
        return set().union(*(_strings(v) for v in document)) if document else set()
    return {document} if isinstance(document, str) else set()


def test_printable_escapes_every_control_character_and_nothing_else() -> None:
    from winosim.text import printable

    assert printable("conv1_a-b ü 层") == "conv1_a-b ü 层"
    assert printable("a\x1b[2Jb\x07\r\u202e\x7f") == "a\\u001b[2Jb\\u0007\\u000d\\u202e\\u007f"
    assert printable("two\nlines\tx") == "two\\u000alines\\u0009x"
    assert printable("two\nlines\tx", keep_newlines=True) == "two\nlines\tx"
    assert json.loads('"' + printable("\x1b\u202e") + '"') == "\x1b\u202e"  # the JSON spelling of the same text


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--pe", "4"],
        ["run", "--pe", "4", "--format", "md"],
        ["run", "--pe", "4", "--format", "csv"],
        ["run", "--pe", "4", "--format", "latex"],
        ["run", "--pe", "4", "--format", "json"],
        ["inspect"],
        ["inspect", "--format", "json"],
    ],
)
def test_names_with_control_characters_are_never_printed_raw(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names from a trace are printed escaped, never raw. The trace validator refuses such names at load
    (tests/test_trace_limits.py); this checks the second line of defence, with that check switched off."""
    monkeypatch.setattr("winosim.trace.check_printable_names", lambda network, layer_names: None)
    evil = write_trace(
        synthetic_trace(NetworkGeometry("net\x1b]0;title\x07", 8, 8, 10, EVIL_LAYERS), images=1), tmp_path / "e.npz"
    )
    command, *options = args
    result = in_process(capsys, command, *(["--trace", evil] if command == "run" else [evil]), *options)
    assert result.returncode == 0, result.stderr
    assert not _unsafe(result.stdout) and not _unsafe(result.stderr)
    if "json" in options:
        document = json.loads(result.stdout)
        assert "st\x1b[2Jem" in _strings(document)  # JSON keeps the real names
    elif "latex" in options:  # the escape's backslash is itself escaped for LaTeX
        assert "st\\textbackslash{}u001b[2Jem" in result.stdout
    elif "csv" in options:  # a line feed inside a quoted CSV field is CSV, not a forged line
        assert "st\\u001b[2Jem" in result.stdout and '"a\nforged line\\u202e"' in result.stdout
    else:
        assert "st\\u001b[2Jem" in result.stdout and "a\\u000aforged line\\u202e" in result.stdout


def test_an_error_message_is_one_line_whatever_it_quotes(trace_path: Path) -> None:
    result, _, _ = winosim("inspect", trace_path, "--layer", "x\n\x1b[31mforged: error")
    assert_clean_refusal(result, "has no layer")
    assert not _unsafe(result.stderr)


# --------------------------------------------------------------------------- partial output


def test_run_out_appears_whole_or_not_at_all(
    trace_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --out DIR` builds tables and figures aside and moves them into place only when all succeeded
    (with `--output`, that file too): a step that fails late leaves nothing, not run.csv and run.json."""
    from winosim import cli, figures
    from winosim.errors import OutputError

    out, output = tmp_path / "new" / "out", tmp_path / "table.txt"
    run = ["run", "--trace", str(trace_path), "--pe", "4", "--out", str(out)]

    def broken(*args: object, **kwargs: object) -> None:
        raise OutputError("the disk is full (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(figures, "energy_breakdown_figure", broken)
        assert (
            cli.main(["run", "--trace", str(trace_path), "--pe", "4", "--out", str(out), "--output", str(output)]) == 2
        )
    assert capsys.readouterr().err == "winosim: error: the disk is full (simulated)\n"
    assert list(tmp_path.iterdir()) == []  # not even the parent folder, nor a temporary folder

    code = cli.main(
        ["run", "--trace", str(trace_path), "--pe", "4", "--out", str(out), "--output", str(tmp_path / "no" / "x")]
    )
    assert code == 2 and "folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # --output's missing folder: refused before anything was written

    out.mkdir(parents=True)
    (out / "mine.txt").write_text("kept\n")
    assert cli.main([*run, "--output", str(output)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "cycle_attribution_dense_spatial.png",
        "cycle_attribution_winograd_relu.png",
        "energy_breakdown.png",
        "layer_cycles.png",
        "mine.txt",
        "run.csv",
        "run.json",
    ]
    assert output.read_text() and (out / "mine.txt").read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# Every command that writes checks its output paths before its work (`winosim.files.check_output_file`,
# `check_output_folder`): a file where a folder must be costs a second and one line, not the work first.
# Each case names the function that does the command's work; it must not be reached.
OUTPUT_UNDER_A_FILE = [
    (["run", "--trace", "{trace}", "--output", "{blocked}/x.md"], "winosim.commands.run.simulate"),
    (["run", "--trace", "{trace}", "--out", "{blocked}/run"], "winosim.commands.run.simulate"),
    (["inspect", "{trace}", "--output", "{blocked}/x.txt"], "winosim.commands.inspect.load_trace"),
    (["merge", "{trace}", "{trace}", "--output", "{blocked}/m.npz"], "winosim.commands.merge.load_trace"),
    (["synth", "--network", "vgg_nagadomi", "--output", "{blocked}/s.npz"], "winosim.commands.synth.synthetic_trace"),
    (["report", "results", "--output", "{blocked}/r.md"], "winosim.commands.report.load_results"),
    (["report", "results", "--figures", "--figures-dir", "{blocked}/f"], "winosim.commands.report.load_results"),
    (["sweep", "--trace", "{trace}", "--grid", "pe=4", "--out", "{blocked}/sw"], "winosim.sweep.plan"),
    (["trace", "run/last.pt", "--data", "d", "--out", "{blocked}/t.npz"], "winosim.nn.extract.extract_trace"),
    (["curve", "run", "--output", "{blocked}/c.md"], "winosim.nn.search.density_curve"),
    (
        ["train", "--network", "vgg_nagadomi", "--method", "spatial", "--data", "d", "--out", "{blocked}/run"],
        "winosim.nn.train.load_dataset",
    ),
]


@pytest.mark.parametrize(("argv", "work"), OUTPUT_UNDER_A_FILE, ids=[f"{a[0]} {a[-2]}" for a, _ in OUTPUT_UNDER_A_FILE])
def test_an_output_path_under_a_file_is_refused_before_the_work(
    trace_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    work: str,
) -> None:
    if argv[0] in ("trace", "curve", "train"):
        pytest.importorskip("torch")
    import importlib

    from winosim import cli

    module, name = work.rsplit(".", 1)

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{work} ran before the output path was checked")

    monkeypatch.setattr(importlib.import_module(module), name, reached)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main([a.format(trace=trace_path, blocked=blocked) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"winosim: error: cannot write {blocked}/{argv[-1].split('/')[-1]}: {blocked} is a file, not a folder\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_output_checks_name_what_is_in_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from winosim.errors import OutputError
    from winosim.files import check_output_file, check_output_folder

    check_output_file(tmp_path / "new" / "deeper" / "x.csv")  # missing folders are made later: fine
    check_output_folder(tmp_path / "new" / "folder")
    with pytest.raises(OutputError, match=r"x\.csv: folder .*new does not exist"):
        check_output_file(tmp_path / "new" / "x.csv", create_folder=False)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path}: it is a directory"):
        check_output_file(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="it exists and is not a directory"):
        check_output_folder(tmp_path / "f")
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # as if tmp_path were read-only
    for check in (check_output_file, check_output_folder):
        with pytest.raises(
            OutputError, match=f"cannot write {tmp_path / 'a' / 'b'}: no permission to write in {tmp_path}$"
        ):
            check(tmp_path / "a" / "b")


def test_atomic_writes_fsync_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's content is flushed to disk before it gets its name (a crash never leaves an empty file
    under the real name), and the folder entry after."""
    from winosim import files

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.atomic_write_text(tmp_path / "a.txt", "x\n")
    assert events == ["fsync", "replace", "fsync"]
    assert (tmp_path / "a.txt").read_text() == "x\n"
    events.clear()  # a file its reader verifies (a sweep's point) skips the fsyncs, never the rename

    def write_y(tmp: Path) -> None:
        tmp.write_text("y")

    files.atomic_write(tmp_path / "b.bin", write_y, durable=False)
    assert events == ["replace"]
    assert (tmp_path / "b.bin").read_text() == "y"


# --------------------------------------------------------------------------- dependencies


def test_pyarrow_is_a_core_dependency_and_dask_an_extra() -> None:
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    assert "pyarrow" in names(project["dependencies"])
    assert "dask" not in names(project["dependencies"]) and "dask" in names(project["optional-dependencies"]["sweep"])


def test_a_local_sweep_does_not_need_dask(trace_path: Path, tmp_path: Path) -> None:
    """After `pip install -e .` (no sweep extra) a local sweep runs: dask and distributed are made unimportable."""
    code = (
        "import sys\n"
        "sys.modules.update(dict.fromkeys(['dask', 'distributed'], None))\n"
        "from winosim.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    argv = ["sweep", "--trace", str(trace_path), "--grid", "pe=4,8", "--out", str(tmp_path / "out"), "--jobs", "1"]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "swept 2 points" in result.stdout
    assert (tmp_path / "out" / "results.parquet").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--network", "vgg_nagadomi", "--method", "spatial", "--seed", "-1"], "argument --seed: a seed must"),
        (
            ["train", "--network", "vgg_nagadomi", "--method", "spatial", "--lr", "nan"],
            "--lr: expected a finite number",
        ),
        (["train", "--network", "vgg_nagadomi", "--epochs", "1e3"], "argument --epochs: invalid int value: '1e3'"),
        (["trace", "x.pt", "--data", "d", "--seed", "-5"], "argument --seed: a seed must be an integer in [0, "),
        (["curve", "runs/a", "--within", "inf"], "argument --within: expected a finite number, got 'inf'"),
        # a negative tolerance: refused before the run folders are read (trace would re-measure each first)
        (["curve", "runs/a", "--within", "-0.5"], "argument --within: must be >= 0, got -0.5"),
        (["trace", "runs/a", "--data", "d", "--select-within", "-1"], "argument --select-within: must be >= 0, got -1"),
        # counts are counts: one rule with synth --images (they were checked only after the checkpoints loaded)
        (["trace", "x.pt", "--data", "d", "--images", "0"], "argument --images: must be >= 1, got 0"),
        (["trace", "x.pt", "--data", "d", "--test-limit", "-3"], "argument --test-limit: must be >= 1, got -3"),
        # threads and processes: 1 to 4 per core (100,000 threads crashed the OpenMP runtime with a segfault)
        (["train", "--network", "vgg_nagadomi", "--threads", "100000"], "--threads 100000 on "),
        (["train", "--network", "vgg_nagadomi", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
        (["trace", "x.pt", "--data", "d", "--threads", "-1"], "--threads must be an integer >= 1, got -1"),
        (["trace", "x.pt", "--data", "d", "--threads", "100000"], "cores: at most 4 per core"),
        (
            ["train", "--network", "vgg_nagadomi", "--method", "spatial", "--data", "d", "--processes", "100000"],
            "--processes 100000",
        ),
    ],
)
def test_training_options_follow_the_same_number_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    pytest.importorskip("torch")
    from winosim import cli

    assert cli.main([*argv, "--out", str(tmp_path / "out")] if argv[0] != "curve" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("winosim: error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


# Every comma-separated option reads by one rule (`winosim.commands.comma_list`): spaces around an item are
# ignored; an empty item, an item given twice and an empty list are refused in one line naming the option.
COMMA_OPTIONS = [
    (["sweep", "--trace", "t.npz", "--grid", "pe=16", "--out", "o"], "--methods", "winograd_relu"),
    (["synth", "--network", "vgg_nagadomi", "--output", "o.npz"], "--methods", "winograd_relu"),
    (["report", "results"], "--table", "speedup"),
    (["trace", "x.pt", "--data", "d", "--out", "o.npz"], "--names", "mine"),
    (["train", "--network", "vgg_nagadomi", "--out", "o"], "--densities", "0.3"),
    (["train", "--network", "vgg_nagadomi", "--out", "o"], "--lr-drops", "0.5"),
]


BAD_LISTS = [
    (",", "empty item in the comma-separated list ','"),
    ("{item},", "empty item in the comma-separated list"),
    ("{item},,x", "empty item in the comma-separated list"),
    (" {item} , {item}", "given more than once"),
    ("", "expected a comma-separated list, got ''"),
]


@pytest.mark.parametrize(
    ("argv", "option", "item", "value", "message"),
    [
        pytest.param(*case, *bad, id=f"{case[0][0]} {case[1]} {bad[0]!r}")
        for case in COMMA_OPTIONS
        for bad in BAD_LISTS
        # a number list may be empty: `--lr-drops ''` is how a recorded command says "none"
        if not (bad[0] == "" and case[1] in ("--densities", "--lr-drops"))
    ],
)
def test_comma_separated_options_follow_one_rule(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    option: str,
    item: str,
    value: str,
    message: str,
) -> None:
    if argv[0] in ("trace", "train"):
        pytest.importorskip("torch")
    from winosim import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, option, value.format(item=item)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"winosim: error: argument {option}: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_the_rule_keeps_order_and_strips_spaces() -> None:
    from winosim.commands import choice_list, comma_list

    assert comma_list(" b , a ") == ("b", "a")
    assert comma_list("  ", allow_empty=True) == ()
    assert choice_list(("a", "b", "c"))("c,a") == ("c", "a")


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["merge", "{a}", "{b}", "{again}", "--output", "out.npz"], "merge: trace"),
        (
            ["sweep", "--trace", "{a}", "--trace", "{b}", "--trace", "{again}", "--grid", "pe=16", "--out", "out"],
            "sweep: --trace",
        ),
        (["curve", "{a}", "{b}", "{again}", "--output", "out.md"], "curve: run folder"),
        (["trace", "{a}", "{b}", "{again}", "--data", "data", "--out", "out.npz"], "trace: checkpoint or run folder"),
    ],
)
@pytest.mark.parametrize("spelling", ["same", "symbolic link"])
def test_an_input_given_twice_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command, what, spelling
) -> None:
    """Several inputs of one kind (traces, run folders, checkpoints): one named twice, in any spelling of its
    path, is refused as a comma-separated list refuses a repeated item, before anything is read or written
    (the inputs here are not even valid: the repeat is found first)."""
    if command[0] in ("trace", "curve"):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.npz").write_bytes(b"not read")
    (tmp_path / "b.npz").write_bytes(b"not read")
    again = "a.npz"
    if spelling == "symbolic link":
        (tmp_path / "link.npz").symlink_to(tmp_path / "a.npz")
        again = "link.npz"
    before = sorted(tmp_path.iterdir())
    argv = [part.format(a="a.npz", b="b.npz", again=again) for part in command]
    result = in_process(capsys, *argv)
    also = "" if spelling == "same" else " (as a.npz too)"
    assert_clean_refusal(result, f"{what} {again} is given twice{also}; give each once")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # an output that is a file the command reads: atomically replaced, the input would be gone
        (["run", "--trace", "{copy}", "--output", "{copy}"], "--output {copy} is the trace this command reads"),
        (["run", "--trace", "{copy}", "--output", "{link}"], "--output {link} is the trace this command reads"),
        (["inspect", "{copy}", "--output", "{copy}"], "--output {copy} is the trace this command reads"),
        (["synth", "--onnx", "{copy}", "--output", "{copy}"], "--output {copy} is the ONNX model this command reads"),
        (["report", "{sweep}", "--output", "{sweep}/results.parquet"], "is the sweep file or trace this command reads"),
        (["report", "{sweep}", "--output", "{copy}"], "--output {copy} is the sweep file or trace this command reads"),
        (["curve", "{run}", "--output", "{run}/last.pt"], "--output {run}/last.pt is the run folder's file"),
        (["trace", "{run}", "--data", "d", "--out", "{run}/odd.npz"], "is the checkpoint or run folder's file"),
        # an output file that the set of files written with it would replace, or that is the set's folder
        (["run", "--trace", "{copy}", "--output", "o", "--out", "o"], "--output o and --out o are the same path"),
        (["run", "--trace", "{copy}", "--output", "d/run.json", "--out", "d"], "would be replaced by the file of that"),
        (["report", "{sweep}", "--figures", "--figures-dir", "d", "--output", "d/x.png"], "would be replaced by"),
    ],
)
def test_an_output_never_replaces_an_input_or_another_output(
    trace_path: Path,
    sweep_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """`run --trace x.npz --output x.npz` replaced the trace with its own table. Refused now, in one line, before
    anything is written: every input file stays byte for byte (a copy of the shipped-style trace here, and the
    sweep's files when the sweep used that trace)."""
    if argv[0] in ("trace", "curve"):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "t.npz"
    copy.write_bytes(trace_path.read_bytes())
    (tmp_path / "link.npz").symlink_to(copy)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"a checkpoint")
    (run / "odd.npz").write_bytes(b"a file of the run folder that trace --out may not replace")
    (tmp_path / "d").mkdir()
    sweep = sweep_dir
    if "{sweep}" in " ".join(argv) and "{copy}" in " ".join(argv):
        sweep = tmp_path / "sweep"  # the sweep of the copy, so that the copy is one of its traces
        from winosim.sweep import SimulateEvaluator, grid_from_options, run_sweep

        run_sweep([copy], grid_from_options(["pe=4"]), sweep, evaluator=SimulateEvaluator(), jobs=1)
    names = {"copy": copy, "link": tmp_path / "link.npz", "sweep": sweep, "run": run}
    before = {p: p.read_bytes() for p in (copy, *run.iterdir(), *sweep.iterdir()) if p.is_file()}
    listing = sorted(tmp_path.rglob("*"))
    result = in_process(capsys, *[a.format(**names) for a in argv])
    assert_clean_refusal(result, message.format(**names))
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(tmp_path.rglob("*")) == listing

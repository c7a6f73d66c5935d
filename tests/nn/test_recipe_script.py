"""traces/recipes/cifar10.sh runs the three trainings in the documented order, with a stand-in `python`
that only records its calls (the real runs take hours): one at a time by default; with PARALLEL=1 the native
run starts beside the spatial one as soon as the spatial dense model is saved, Winograd-ReLU after the spatial
run, and the run left alone at the end gets both runs' threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "traces" / "recipes" / "cifar10.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
# records "start|end <run folder>"; a spatial run saves its dense model after 1 s and trains 2 s more
out=$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/')
echo "start $(basename "$out")" >> "$CALLS"
echo "$(basename "$out") $*" >> "$CALLS.args"
case "$out" in *spatial) sleep 1; touch "$out/phase0_dense.pt"; sleep 2 ;; *relu) sleep 1 ;; *) sleep 0.2 ;; esac
echo "end $(basename "$out")" >> "$CALLS"
"""


def _run(tmp_path: Path, parallel: bool | str, **extra: str) -> list[str]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "RUNS": str(tmp_path / "runs"),
        "RECIPE": "paper",
        "PYTHON": str(fake),
        "CALLS": str(calls),
        "POLL_S": "0.2",
        "PARALLEL": parallel if isinstance(parallel, str) else "1" if parallel else "0",
        **extra,
    }
    stale = tmp_path / "runs" / "paper_vgg_nagadomi_native" / "threads"  # left by an earlier invocation
    stale.parent.mkdir(parents=True)
    stale.write_text("7\n")
    done = subprocess.run(
        ["bash", str(SCRIPT), "vgg_nagadomi", "train"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return calls.read_text().split("\n")[:-1]


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_the_recipe_trains_the_three_variants_in_order(tmp_path: Path, parallel: bool) -> None:
    calls = _run(tmp_path, parallel)
    prefix = "paper_vgg_nagadomi_"
    runs = ("spatial", "native", "winograd_relu")
    assert sorted(calls) == sorted(f"{e} {prefix}{m}" for e in ("start", "end") for m in runs)
    at = {call: i for i, call in enumerate(calls)}
    assert at[f"start {prefix}winograd_relu"] > at[f"end {prefix}spatial"]  # two at a time at most
    threads = {m: tmp_path / "runs" / f"{prefix}{m}" / "threads" for m in runs}
    args = dict(line.split(" ", 1) for line in (tmp_path / "calls.args").read_text().splitlines())
    if parallel:  # native trains while the spatial run goes on
        assert at[f"start {prefix}native"] < at[f"end {prefix}spatial"]
        # the spatial run starts alone with both runs' threads and hands one back when native starts
        assert "--threads 2 " in args[f"{prefix}spatial"]
        assert threads["spatial"].read_text() == "1\n"
        # native ends first here: Winograd-ReLU, left alone, is asked to take both runs' threads (THREADS=1)
        assert threads["winograd_relu"].read_text() == "2\n"
        assert not threads["native"].exists()
        assert "--threads 1 " in args[f"{prefix}native"] and "--threads 1 " in args[f"{prefix}winograd_relu"]
    else:
        assert calls == [f"{e} {prefix}{m}" for m in ("spatial", "winograd_relu", "native") for e in ("start", "end")]
        assert all("--threads 1 " in call for call in args.values())
        assert not any(path.exists() for path in threads.values())


@pytest.mark.parametrize("wr_from", ["scratch", "spatial"])
def test_parallel_all_starts_the_three_at_once_for_a_gpu(tmp_path: Path, wr_from: str) -> None:
    """PARALLEL=all (a GPU): native starts once the spatial dense model exists and Winograd-ReLU at once from
    scratch (or, from the spatial model, once it exists), all before the spatial run ends; DENSE_EPOCHS sets the
    dense phases."""
    calls = _run(tmp_path, "all", WR_FROM=wr_from, DENSE_EPOCHS="30")
    prefix = "paper_vgg_nagadomi_"
    at = {call: i for i, call in enumerate(calls)}
    assert len(calls) == 6
    assert at[f"start {prefix}native"] < at[f"end {prefix}spatial"]
    assert at[f"start {prefix}winograd_relu"] < at[f"end {prefix}spatial"]
    if wr_from == "scratch":
        assert at[f"start {prefix}winograd_relu"] < at[f"start {prefix}native"]
    args = dict(line.split(" ", 1) for line in (tmp_path / "calls.args").read_text().splitlines())
    assert "--epochs 30 --lr 0.4" in args[f"{prefix}spatial"]
    assert ("--init-from" in args[f"{prefix}winograd_relu"]) == (wr_from == "spatial")
    if wr_from == "scratch":
        assert "--epochs 30 --lr 0.4" in args[f"{prefix}winograd_relu"]


def test_winograd_relu_is_trained_from_scratch_by_default_with_its_own_flags_last(tmp_path: Path) -> None:
    """WR_FROM defaults to scratch (as the paper trains it); WR_FLAGS follow all the recipe's flags, the pruning
    schedule's included, so they win (a later flag overrides an earlier one)."""
    _run(tmp_path, False, WR_FLAGS="--lr 0.1 --retrain-lr 0.01")
    args = dict(line.split(" ", 1) for line in (tmp_path / "calls.args").read_text().splitlines())
    relu = args["paper_vgg_nagadomi_winograd_relu"]
    assert "--init-from" not in relu and "--branch-from" not in relu
    assert "--epochs 16 --lr 0.4 --densities" in relu
    assert relu.endswith("--retrain-epochs 2 --retrain-lr 0.04 --lr 0.1 --retrain-lr 0.01")
    assert "--lr 0.1" not in args["paper_vgg_nagadomi_spatial"]


def test_winograd_relu_from_a_dense_checkpoint_is_a_branch(tmp_path: Path) -> None:
    """WR_FROM=RUN/phase0_dense.pt prunes that run's dense model with the recipe's schedule and WR_FLAGS
    (`--branch-from`, which checks the dense flags against the run's)."""
    calls = _run(tmp_path, False, METHODS="winograd_relu", WR_FROM="runs/old/phase0_dense.pt", WR_FLAGS="--lr 0.1")
    assert calls == ["start paper_vgg_nagadomi_winograd_relu", "end paper_vgg_nagadomi_winograd_relu"]
    args = dict(line.split(" ", 1) for line in (tmp_path / "calls.args").read_text().splitlines())
    assert args["paper_vgg_nagadomi_winograd_relu"].endswith("--lr 0.1 --branch-from runs/old/phase0_dense.pt")


def test_methods_trains_only_the_runs_named(tmp_path: Path) -> None:
    """METHODS=winograd_relu retrains that variant alone (e.g. a longer dense phase), with its own flags."""
    calls = _run(tmp_path, False, METHODS="winograd_relu", WR_FLAGS="--lr 0.1 --epochs 80")
    assert calls == ["start paper_vgg_nagadomi_winograd_relu", "end paper_vgg_nagadomi_winograd_relu"]
    args = (tmp_path / "calls.args").read_text()
    assert "--epochs 16 --lr 0.4 --densities" in args and args.rstrip().endswith("--lr 0.1 --epochs 80")


def test_processes_makes_every_run_data_parallel_resumed_ones_too(tmp_path: Path) -> None:
    """PROCESSES=N passes `--processes N` to each run (multi-GPU machines); unset, no run gets it."""
    resumed = tmp_path / "runs" / "paper_vgg_nagadomi_spatial" / "last.pt"
    resumed.parent.mkdir(parents=True)
    resumed.touch()
    _run(tmp_path, False, PROCESSES="4")
    args = dict(line.split(" ", 1) for line in (tmp_path / "calls.args").read_text().splitlines())
    assert len(args) == 3 and all("--processes 4" in line for line in args.values())
    assert "--resume" in args["paper_vgg_nagadomi_spatial"]
    (tmp_path / "again").mkdir()
    _run(tmp_path / "again", False)
    assert "--processes" not in (tmp_path / "again" / "calls.args").read_text()


def test_editing_the_recipe_while_it_runs_changes_nothing_it_does(tmp_path: Path) -> None:
    """bash reads a script longer than its buffer (8 KiB) as it goes: a driver running for hours would run
    whatever an edit (a `git pull`) put at its old reading position. The recipe is one block, parsed whole
    before it runs (grid.sh too, which still fits the buffer)."""
    script = "cifar10.sh"
    assert SCRIPT.stat().st_size > 8192  # else this test could not fail
    recipes = tmp_path / "recipes"
    shutil.copytree(SCRIPT.parent, recipes, ignore=shutil.ignore_patterns("logs", "device", "*.py"))
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\nsleep 1.5\n')  # a long run
    fake.chmod(0o755)
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "RECIPE": "paper", "PYTHON": str(fake)}
    env.update(CALLS=str(tmp_path / "calls"), METHODS="spatial")
    running = subprocess.Popen(
        ["bash", str(recipes / script), "vgg_nagadomi", "train"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "calls").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the run has started: then the file changes under the driver
    text = (recipes / script).read_text()
    edit = 'echo "EDITED" >> "$CALLS"\n' * 40
    head, tail = text.split("\n", 2)[:2], text.split("\n", 2)[2]
    (recipes / script).write_text("\n".join(head) + "\n" + edit + tail)
    _, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    calls = (tmp_path / "calls").read_text()
    assert "EDITED" not in calls and calls.count("-m winosim train") == 1


def _script(tmp_path: Path, stage: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The script with a stand-in `python` that records its arguments, one line per call."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "RECIPE": "paper", "PYTHON": str(fake)}
    env["CALLS"] = str(tmp_path / "calls")
    return subprocess.run(
        ["bash", str(SCRIPT), "vgg_nagadomi", stage], env={**env, **extra}, capture_output=True, text=True, timeout=60
    )


def test_tracing_some_methods_merges_them_into_the_kept_trace(tmp_path: Path) -> None:
    keep = tmp_path / "old.npz"
    keep.write_bytes(b"stand-in")
    done = _script(tmp_path, "trace", METHODS="winograd_relu", KEEP=str(keep))
    assert done.returncode == 0, done.stderr
    trace, merge = (tmp_path / "calls").read_text().splitlines()
    part = tmp_path / "runs" / "paper_vgg_nagadomi_winograd_relu.npz"
    assert trace.startswith("-m winosim trace --select-within 0.5 ")
    assert f"{tmp_path}/runs/paper_vgg_nagadomi_winograd_relu --data" in trace and "_spatial" not in trace
    assert trace.endswith(f"--out {part}")
    assert merge == f"-m winosim merge {keep} {part} --output traces/vgg_nagadomi.npz"


def test_tracing_all_three_writes_the_trace_directly(tmp_path: Path) -> None:
    done = _script(tmp_path, "trace")
    assert done.returncode == 0, done.stderr
    (trace,) = (tmp_path / "calls").read_text().splitlines()
    runs = [f"{tmp_path}/runs/paper_vgg_nagadomi_{m}" for m in ("spatial", "native", "winograd_relu")]
    assert " ".join(runs) in trace and trace.endswith("--out traces/vgg_nagadomi.npz")


@pytest.mark.parametrize(
    ("stage", "extra", "message"),
    [
        ("train", {"METHODS": "spatial,relu"}, "unknown method relu in METHODS=spatial,relu"),
        ("train", {"METHODS": ","}, "METHODS is empty"),
        ("train", {"METHODS": "native"}, "native needs the spatial dense model"),
        ("trace", {"METHODS": "native", "KEEP": "/nonexistent.npz"}, "KEEP=/nonexistent.npz: no trace to merge"),
    ],
)
def test_bad_methods_are_one_line_and_exit_2(tmp_path: Path, stage: str, extra: dict[str, str], message: str) -> None:
    done = _script(tmp_path, stage, **extra)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "calls").exists()


def test_logs_copies_each_runs_text_logs_into_the_checkout_and_no_checkpoint(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for method in ("spatial", "winograd_relu"):
        run = runs / f"paper_vgg_nagadomi_{method}"
        run.mkdir(parents=True)
        (run / "config.json").write_text("{}\n")
        (run / "progress.log").write_text(f"{method} epoch 1\n")
        (run / "log.txt").write_text("")  # empty: not copied
        (run / "last.pt").write_bytes(b"checkpoint")
    (runs / "paper_vgg_nagadomi.driver.log").write_text("started\n")
    logs = tmp_path / "logs"
    stale = logs / "cpu_e9_paper_vgg_nagadomi_spatial" / "old.txt"  # an earlier copy is replaced whole
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    done = _script(tmp_path, "logs", METHODS="spatial,winograd_relu", LABEL="cpu_e9", LOGS_DIR=str(logs))
    assert done.returncode == 0, done.stderr
    for method in ("spatial", "winograd_relu"):
        copy = logs / f"cpu_e9_paper_vgg_nagadomi_{method}"
        assert sorted(path.name for path in copy.iterdir()) == ["config.json", "driver.log", "progress.log"]
        assert (copy / "progress.log").read_text() == f"{method} epoch 1\n"
    assert sorted(path.name for path in logs.iterdir()) == [
        "cpu_e9_paper_vgg_nagadomi_spatial",
        "cpu_e9_paper_vgg_nagadomi_winograd_relu",
    ]  # no temporary folder left behind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"METHODS": "spatial,native"}, "no run folder"),
        ({"METHODS": "spatial", "LABEL": "a/b"}, "LABEL=a/b: a folder-name prefix"),
    ],
)
def test_logs_of_a_missing_run_or_a_bad_label_is_one_line_and_copies_nothing(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    (tmp_path / "runs" / "paper_vgg_nagadomi_spatial").mkdir(parents=True)
    logs = tmp_path / "logs"
    done = _script(tmp_path, "logs", LOGS_DIR=str(logs), **extra)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1
    assert not logs.exists()

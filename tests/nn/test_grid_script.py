"""traces/recipes/grid.sh, short dense-only runs side by side: the recipe's ablations (spatial) and the search
for a Winograd-ReLU recipe that does not under-fit. Each run is the paper recipe's dense phase (taken from
cifar10.sh, one home) with its entry's flags after it (so they win), resumed where a checkpoint exists; a
failed run fails the script; a malformed request fails before any run starts. A stand-in `python` records
its calls (the real runs take hours)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "traces" / "recipes"

FAKE_PYTHON = """#!/usr/bin/env bash
# records "<run folder> <arguments>"; a run whose folder is named *_bad fails
out=$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/')
echo "$(basename "$out") $*" >> "$CALLS"
case "$out" in *_bad) exit 3 ;; esac
"""


def _grid(
    tmp_path: Path, script: str = "grid.sh", **extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PYTHON": str(fake), "CALLS": str(calls)}
    env.update(extra)
    done = subprocess.run(
        ["bash", str(RECIPES / script), "vgg_nagadomi"], env=env, capture_output=True, text=True, timeout=60
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, dict(line.split(" ", 1) for line in lines)


def _recipe(epochs: str) -> str:
    return subprocess.run(
        ["bash", str(RECIPES / "cifar10.sh"), "vgg_nagadomi", "flags"],
        env={**os.environ, "RECIPE": "paper", "DENSE_EPOCHS": epochs},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_each_entry_is_the_recipes_dense_phase_with_its_flags_last(tmp_path: Path) -> None:
    done, calls = _grid(
        tmp_path, METHOD="winograd_relu", GRID="lr0.1:--lr 0.1;wd:--weight-decay 1e-4", EPOCHS="16", THREADS="2"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(calls) == ["wr_grid_vgg_nagadomi_lr0.1", "wr_grid_vgg_nagadomi_wd"]
    recipe = _recipe("16")
    assert "--epochs 16 --lr 0.4" in recipe and "--densities" not in recipe
    lr = calls["wr_grid_vgg_nagadomi_lr0.1"]
    assert lr.startswith(f"-m winosim train {recipe} --method winograd_relu --lr 0.1 --out ")
    assert lr.endswith("--threads 2 --no-progress")
    assert "--method winograd_relu --weight-decay 1e-4 --out" in calls["wr_grid_vgg_nagadomi_wd"]


def test_the_default_spatial_grid_turns_back_each_choice_of_the_recipe_against_the_recipe(tmp_path: Path) -> None:
    done, calls = _grid(tmp_path, EPOCHS="8")
    assert done.returncode == 0, done.stderr
    recipe = _recipe("8")
    runs = {name.removeprefix("ablate_vgg_nagadomi_"): call for name, call in calls.items()}
    assert sorted(runs) == ["base", "batch128", "dropout", "fp32", "heavy_ball", "no_smoothing", "step"]
    assert runs["base"].startswith(f"-m winosim train {recipe} --method spatial --out ")
    # each entry's change is a flag that undoes one of the recipe's (argparse: the last occurrence wins)
    for name, change in {
        "no_smoothing": "--label-smoothing 0",
        "heavy_ball": "--no-nesterov",
        "dropout": "--dropout",
        "fp32": "--precision fp32",
        "step": "--schedule step --lr 0.1",
        "batch128": "--batch-size 128 --lr 0.2",
    }.items():
        assert runs[name].startswith(f"-m winosim train {recipe} --method spatial {change} --out "), name


def test_the_wr_grid_script_is_the_winograd_relu_grid(tmp_path: Path) -> None:
    done, calls = _grid(tmp_path, "wr_grid.sh", GRID="a:--lr 0.2", EPOCHS="16")
    assert done.returncode == 0, done.stderr
    assert calls["wr_grid_vgg_nagadomi_a"].startswith(
        f"-m winosim train {_recipe('16')} --method winograd_relu --lr 0.2"
    )


def test_a_run_with_a_checkpoint_resumes_and_a_failed_run_fails_the_script(tmp_path: Path) -> None:
    started = tmp_path / "runs" / "mine_vgg_nagadomi_a"
    started.mkdir(parents=True)
    (started / "last.pt").write_bytes(b"")
    done, calls = _grid(tmp_path, GRID="a:--lr 0.2;bad:--lr 9", PREFIX="mine")
    assert done.returncode == 3
    assert calls["mine_vgg_nagadomi_a"] == f"-m winosim train --out {started} --resume --threads 1 --no-progress"
    assert "--lr 9" in calls["mine_vgg_nagadomi_bad"]


SLOW_PYTHON = """#!/usr/bin/env bash
# logs "start <run>" and "end <run>" around a short sleep; a run whose folder is named *_bad fails
name=$(basename "$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/')")
echo "start $name" >> "$CALLS"
sleep 0.3
echo "end $name" >> "$CALLS"
case "$name" in *_bad) exit 3 ;; esac
"""


@pytest.mark.parametrize("at_once", [1, 2])
def test_at_once_caps_the_runs_alive_and_keeps_the_grid_order(tmp_path: Path, at_once: int) -> None:
    fake = tmp_path / "python"
    fake.write_text(SLOW_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PYTHON": str(fake), "CALLS": str(calls)}
    env.update(GRID="a:;bad:--lr 9;c:;d:", AT_ONCE=str(at_once), PREFIX="p")
    done = subprocess.run(
        ["bash", str(RECIPES / "grid.sh"), "vgg_nagadomi"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr  # the failed run fails the script; the runs after it still ran
    events = [line.split() for line in calls.read_text().splitlines()]
    starts = [name.removeprefix("p_vgg_nagadomi_") for kind, name in events if kind == "start"]
    # one at a time shows the order; with two, runs started together may log their starts either way round
    assert starts == ["a", "bad", "c", "d"] if at_once == 1 else sorted(starts) == ["a", "bad", "c", "d"]
    alive = peak = 0
    for kind, _ in events:
        alive += 1 if kind == "start" else -1
        peak = max(peak, alive)
    assert peak == at_once and alive == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"METHOD": "native"}, "METHOD must be spatial or winograd_relu, got 'native'"),
        ({"GRID": "ok:--lr 0.1;oops"}, "a GRID entry is name:flags (flags may be empty), got 'oops'"),
        ({"GRID": ":--lr 0.1"}, "a GRID entry is name:flags (flags may be empty), got ':--lr 0.1'"),
        ({"AT_ONCE": "0"}, "AT_ONCE must be a whole number of runs >= 1, got '0'"),
        ({"AT_ONCE": "two"}, "AT_ONCE must be a whole number of runs >= 1, got 'two'"),
    ],
)
def test_a_malformed_request_is_one_line_and_starts_nothing(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    done, calls = _grid(tmp_path, **extra)
    assert done.returncode == 2
    assert done.stderr.strip() == f"grid.sh: {message}"
    assert calls == {}

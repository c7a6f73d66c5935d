"""traces/recipes/wr_grid.sh, the search for a Winograd-ReLU recipe that does not under-fit: one dense-only
run per GRID entry, side by side, each the paper recipe's dense phase (taken from cifar10.sh, one home) with
the entry's flags after it (so they win), resumed where a checkpoint exists; a failed run fails the script.
A stand-in `python` records its calls (the real runs take hours)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "traces" / "recipes"

FAKE_PYTHON = """#!/usr/bin/env bash
# records "<run folder> <arguments>"; a run whose folder is named *_bad fails
out=$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/')
echo "$(basename "$out") $*" >> "$CALLS"
case "$out" in *_bad) exit 3 ;; esac
"""


def _grid(tmp_path: Path, grid: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PYTHON": str(fake), "CALLS": str(calls), "GRID": grid}
    env.update(extra)
    done = subprocess.run(
        ["bash", str(RECIPES / "wr_grid.sh"), "vgg_nagadomi"], env=env, capture_output=True, text=True, timeout=60
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, dict(line.split(" ", 1) for line in lines)


def test_each_entry_is_the_recipes_dense_phase_with_its_flags_last(tmp_path: Path) -> None:
    done, calls = _grid(tmp_path, "lr0.1:--lr 0.1;wd:--weight-decay 1e-4", EPOCHS="16", THREADS="2")
    assert done.returncode == 0, done.stderr
    assert sorted(calls) == ["wr_grid_vgg_nagadomi_lr0.1", "wr_grid_vgg_nagadomi_wd"]
    recipe = subprocess.run(
        ["bash", str(RECIPES / "cifar10.sh"), "vgg_nagadomi", "flags"],
        env={**os.environ, "RECIPE": "paper", "DENSE_EPOCHS": "16"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "--epochs 16 --lr 0.4" in recipe and "--densities" not in recipe
    lr = calls["wr_grid_vgg_nagadomi_lr0.1"]
    assert lr.startswith(f"-m winosim train {recipe} --method winograd_relu --lr 0.1 --out ")
    assert lr.endswith("--threads 2 --no-progress")
    assert "--method winograd_relu --weight-decay 1e-4 --out" in calls["wr_grid_vgg_nagadomi_wd"]


def test_a_run_with_a_checkpoint_resumes_and_a_failed_run_fails_the_script(tmp_path: Path) -> None:
    started = tmp_path / "runs" / "mine_vgg_nagadomi_a"
    started.mkdir(parents=True)
    (started / "last.pt").write_bytes(b"")
    done, calls = _grid(tmp_path, "a:--lr 0.2;bad:--lr 9", PREFIX="mine")
    assert done.returncode == 3
    assert calls["mine_vgg_nagadomi_a"] == f"-m winosim train --out {started} --resume --threads 1 --no-progress"
    assert "--lr 9" in calls["mine_vgg_nagadomi_bad"]

"""traces/recipes/cifar10.sh runs the three trainings in the documented order, with a stand-in `python`
that only records its calls (the real runs take hours): one at a time by default; with PARALLEL=1 the native
run starts beside the spatial one as soon as the spatial dense model is saved, Winograd-ReLU (which starts
from that model too) after the spatial run, and the run left alone at the end gets both runs' threads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "traces" / "recipes" / "cifar10.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
# records "start|end <run folder>"; a spatial run saves its dense model after 1 s and trains 2 s more
out=$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/')
echo "start $(basename "$out")" >> "$CALLS"
case "$out" in *spatial) sleep 1; touch "$out/phase0_dense.pt"; sleep 2 ;; *relu) sleep 1 ;; *) sleep 0.2 ;; esac
echo "end $(basename "$out")" >> "$CALLS"
"""


def _run(tmp_path: Path, parallel: bool) -> list[str]:
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
        "PARALLEL": "1" if parallel else "0",
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
    assert at[f"start {prefix}winograd_relu"] > at[f"end {prefix}spatial"]  # it starts from the dense model
    threads = {m: tmp_path / "runs" / f"{prefix}{m}" / "threads" for m in runs}
    if parallel:  # native trains while the spatial run goes on
        assert at[f"start {prefix}native"] < at[f"end {prefix}spatial"]
        # native ends first here: Winograd-ReLU, left alone, is asked to take both runs' threads (THREADS=1)
        assert threads["winograd_relu"].read_text() == "2\n"
        assert not threads["native"].exists() and not threads["spatial"].exists()
    else:
        assert calls == [f"{e} {prefix}{m}" for m in ("spatial", "winograd_relu", "native") for e in ("start", "end")]

"""`winosim run --format json` gives the same bytes as the committed golden outputs (issue 11: every number
unchanged while the code is reorganised).

The goldens were written before the reorganisation, by the command lines below, on the two shipped traces
and on a synthetic ImageNet ResNet-18 trace generated here from a fixed seed (the trace itself is 15 MB, too
big to commit; `synth` is deterministic for a seed), and re-recorded when the model changed on purpose (issue 13:
the streamed fill and drain of `winosim.sim.streaming`). They are stored gzip-compressed. To refresh them after
an intended change of the numbers (a new shipped trace): `bash tests/golden/record.sh [resnet18|vgg_nagadomi|synth]`,
the same command lines, gzipped with `gzip -9 -n`.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SYNTH_TRACE = "synth_resnet18_imagenet_seed0.npz"


def _winosim(cwd: Path, *args: str) -> bytes:
    command = [sys.executable, "-m", "winosim", *args]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _assert_same_bytes(actual: bytes, golden_name: str) -> None:
    expected = gzip.decompress((GOLDEN / golden_name).read_bytes())
    if actual != expected:
        lines = zip(actual.decode().splitlines(), expected.decode().splitlines(), strict=False)
        first = next((i for i, (a, e) in enumerate(lines) if a != e), None)
        detail = "" if first is None else f"; first difference at line {first + 1}"
        pytest.fail(f"{golden_name}: output differs from the golden ({len(actual)} vs {len(expected)} bytes{detail})")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trace", "golden"),
    [
        ("traces/resnet18.npz", "run_resnet18_pe64.json.gz"),
        ("traces/vgg_nagadomi.npz", "run_vgg_nagadomi_pe64.json.gz"),
    ],
)
def test_run_json_on_the_shipped_traces_is_unchanged(trace: str, golden: str) -> None:
    out = _winosim(ROOT, "run", "--trace", trace, "--pe", "64", "--format", "json", "--no-progress")
    _assert_same_bytes(out, golden)


@pytest.mark.slow
def test_run_json_on_a_synthetic_imagenet_resnet18_is_unchanged(tmp_path: Path) -> None:
    synth = ("--network", "resnet18_imagenet", "--images", "8", "--seed", "0", "--output", SYNTH_TRACE)
    _winosim(tmp_path, "synth", *synth)
    out = _winosim(tmp_path, "run", "--trace", SYNTH_TRACE, "--format", "json", "--no-progress")
    _assert_same_bytes(out, "run_synth_resnet18_imagenet_seed0.json.gz")

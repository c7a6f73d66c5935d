"""traces/recipes/device/paper_gpu.sh, the recipe on a lent GPU machine, run here with stand-ins for `python3`
and `nvidia-smi` that only record their calls (a device minute is scarce: the script's logic is checked here
before it spends one). It stages the data once every part has arrived, trains the runs METHODS names, and
traces them once all of those are done: all three into a new trace, fewer merged into the shipped one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON3 = r"""#!/usr/bin/env bash
# records its arguments; does just enough of each call for the script to go on
echo "$*" >> "$CALLS"
value_of() { local want=$1; shift; while [ $# -gt 0 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
case "$1 $2 $3" in
    "-c "*) echo "torch 0.0 True" ;;
    "-m pip "*) mkdir -p "$(value_of --target "$@")/simpy" ;;
    "traces/recipes/device/pack_cifar.py unpack "*) mkdir -p "${@: -1}" ;;
    "-m winosim train") out=$(value_of --out "$@"); mkdir -p "$out"; touch "$out/phase0_dense.pt" ;;
    "-m winosim curve") echo "curve" > "$(value_of --output "$@")" ;;
    "-m winosim trace") echo "trace" > "$(value_of --out "$@")" ;;
    "-m winosim merge") echo "merged" > "$(value_of --output "$@")" ;;
esac
"""


@pytest.fixture
def device_tree(tmp_path: Path) -> Path:
    """A copy of the files the script reads, as the device machine's working tree has them."""
    tree = tmp_path / "tree"
    for script in ("cifar10.sh", "grid.sh", "device/paper_gpu.sh"):
        (tree / "traces" / "recipes" / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "traces" / "recipes" / script, tree / "traces" / "recipes" / script)
    (tree / ".gpu" / "part0").mkdir(parents=True)
    (tree / ".gpu" / "part0" / "data_batch_1.npz").write_bytes(b"shard")
    (tree / ".whl").mkdir()
    (tree / "traces" / "vgg_nagadomi.npz").write_text("shipped")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python3", FAKE_PYTHON3), ("nvidia-smi", "#!/usr/bin/env bash\necho GPU 0: fake\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tree


def _run(tree: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    tmp = tree.parent
    out = tmp / "out"
    full_env = {
        **os.environ,
        "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}",
        "CALLS": str(tmp / "calls"),
        "STAGE": str(tmp / "stage"),
        "OUT": str(out),
        "SHARDS": "1",
        **env,
    }
    done = subprocess.run(
        ["bash", "traces/recipes/device/paper_gpu.sh"],
        cwd=tree,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = (tmp / "calls").read_text().splitlines() if (tmp / "calls").exists() else []
    return done, calls, out


def _winosim(calls: list[str], command: str) -> list[str]:
    return [c for c in calls if c.startswith(f"-m winosim {command} ")]


def test_one_method_is_trained_alone_and_merged_into_the_shipped_trace(device_tree: Path) -> None:
    done, calls, out = _run(device_tree, METHODS="winograd_relu", WR_FLAGS="--lr 0.1 --epochs 80")
    assert done.returncode == 0, done.stderr
    (train,) = _winosim(calls, "train")
    assert "--method winograd_relu" in train and train.rstrip().endswith("--retrain-lr 0.04 --lr 0.1 --epochs 80")
    (curve,) = _winosim(calls, "curve")
    assert curve.count("paper_vgg_nagadomi_") == 1 and "paper_vgg_nagadomi_winograd_relu" in curve
    (trace,) = _winosim(calls, "trace")
    (merge,) = _winosim(calls, "merge")
    assert "_spatial" not in trace and merge.startswith("-m winosim merge traces/vgg_nagadomi.npz ")
    assert (out / "vgg_nagadomi.npz").read_text() == "merged\n"
    assert (out / "logs.tgz").is_file() and (out / "curve.md").is_file()


def test_three_methods_are_traced_only_when_all_three_are_done(device_tree: Path) -> None:
    done, calls, out = _run(device_tree)
    assert done.returncode == 0, done.stderr
    assert sorted(c.split("--method ")[1].split()[0] for c in _winosim(calls, "train")) == [
        "native",
        "spatial",
        "winograd_relu",
    ]
    assert len(_winosim(calls, "trace")) == 1
    assert not _winosim(calls, "merge") and (out / "vgg_nagadomi.npz").read_text() == "trace\n"


def test_nothing_is_trained_until_every_part_of_the_data_has_arrived(device_tree: Path) -> None:
    done, calls, out = _run(device_tree, SHARDS="2")
    assert done.returncode == 0, done.stderr
    assert "shards staged: 1 of 2" in (out / "env.txt").read_text()
    assert not _winosim(calls, "train")


def test_an_unknown_job_is_one_line_and_exit_2(device_tree: Path) -> None:
    done, calls, _ = _run(device_tree, JOB="train")
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and "JOB must be paper, wr_grid or ablate" in done.stderr
    )
    assert calls == []

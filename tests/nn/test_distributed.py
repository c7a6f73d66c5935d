"""Data-parallel training (`winosim train --processes N`, or under torchrun): the same run as one process.

The oracle: DDP averages the gradients of the processes' shares of each global batch (weighted by their
sizes), so for a model without
batch norm (whose batch statistics are the one thing a share changes) N processes train the weights one process
trains, to float rounding, and measure the same accuracies. A DDP run stopped and resumed ends bit for bit where
an uninterrupted one does. Only rank 0 writes the folder; what every process would refuse is refused once,
before any starts; a process that fails stops the others with one error line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch

from winosim import cli
from winosim.errors import ConfigError, WinosimError
from winosim.nn.distributed import SINGLE, Ranks, launch, process_device, ranks_from_environment
from winosim.nn.train import load_checkpoint

NO_BATCH_NORM = """
import torch.nn as nn


def build(num_classes=10):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )
"""


# --- ranks from the environment --------------------------------------------------------------------------------


def test_no_launcher_is_one_process() -> None:
    assert ranks_from_environment({}) == SINGLE
    assert not SINGLE.distributed and SINGLE.main


def test_ranks_read_as_torchrun_sets_them() -> None:
    ranks = ranks_from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ranks.world, ranks.rank, ranks.local_rank, ranks.distributed, ranks.main) == (4, 3, 1, True, False)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE"),
        ({"WORLD_SIZE": "2", "RANK": "-1", "LOCAL_RANK": "0"}, "RANK"),
        ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "RANK"),
        ({"WORLD_SIZE": "0", "RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "1"}, "LOCAL_RANK"),
    ],
)
def test_malformed_environment_is_one_error_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ranks_from_environment(env)


def test_shares_tile_the_global_batch_and_their_losses_weigh_by_size() -> None:
    shares = [Ranks(world=4, rank=r).share(32) for r in range(4)]
    assert [(s.start, s.stop) for s in shares] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    shares = [Ranks(world=3, rank=r).share(32) for r in range(3)]
    assert [(s.start, s.stop) for s in shares] == [(0, 10), (10, 21), (21, 32)]
    # DDP's average over processes of (a share's mean loss x its scale) is the batch's mean loss: with a loss
    # of 1 per image every share's mean is 1, and the scaled shares average to 1
    scales = [Ranks(world=3, rank=r).loss_scale(s.stop - s.start, 32) for r, s in enumerate(shares)]
    assert scales == [30 / 32, 33 / 32, 33 / 32] and sum(scales) / 3 == pytest.approx(1.0)
    assert Ranks(world=4, rank=1).loss_scale(8, 32) == 1.0


def test_every_batch_gives_every_process_an_image() -> None:
    Ranks(world=4).check_batches(4, [128, 132])
    Ranks(world=4).check_batches(30, [128, 130])  # last batches of 8 and 10 images
    with pytest.raises(ConfigError, match="at least one image for each of the 4 processes"):
        Ranks(world=4).check_batches(3)
    with pytest.raises(ConfigError, match="an epoch of 130 images ends with a batch of 2, fewer than the 4"):
        Ranks(world=4).check_batches(32, [128, 130])


def test_device_of_a_process() -> None:
    assert process_device(SINGLE, "cpu") == torch.device("cpu")
    assert process_device(Ranks(world=2, rank=1, local_rank=1), "cpu") == torch.device("cpu")
    assert process_device(Ranks(world=2, rank=1, local_rank=1), "cuda") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        process_device(Ranks(world=2, rank=1, local_rank=1), "cuda:0")
    with pytest.raises(ConfigError, match="not a torch device"):
        process_device(SINGLE, "gpu0")
    with pytest.raises(ConfigError, match="trains and measures on cpu or cuda"):
        process_device(SINGLE, "meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_a_missing_gpu_is_one_error_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match=r"^--device cuda: not usable on this machine \("):
        process_device(SINGLE, "cuda")


# --- the launcher ----------------------------------------------------------------------------------------------


def test_launch_gives_each_process_its_rank(capfd: pytest.CaptureFixture[str]) -> None:
    code = "import os; print(os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['MASTER_PORT'].isdigit())"
    assert launch(["-c", code], 3) == 0
    assert capfd.readouterr().out == "0 3 True\n"  # rank 0's output only


def _rank_one_then_wait(action: str) -> str:
    """A `python -c` program: rank 1 runs `action` (one line), every other rank waits a minute."""
    return f"import os, signal, sys, time\nif os.environ['RANK'] == '1':\n    {action}\ntime.sleep(60)\n"


def test_a_failing_process_stops_the_others_with_its_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    code = _rank_one_then_wait("print('winosim: error: rank one refuses', file=sys.stderr); sys.exit(2)")
    with pytest.raises(WinosimError) as refused:
        launch(["-c", code], 2)
    assert str(refused.value) == "rank one refuses"  # the CLI prints it as "winosim: error: rank one refuses"
    assert capfd.readouterr().err == ""


def test_a_crashing_process_is_named_with_its_status(capfd: pytest.CaptureFixture[str]) -> None:
    code = _rank_one_then_wait("sys.exit(3)")
    with pytest.raises(WinosimError, match=r"^training process 1 exited with status 3 and no message$"):
        launch(["-c", code], 2)


def test_a_killed_process_is_named_with_its_signal() -> None:
    code = _rank_one_then_wait("os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(WinosimError, match=r"^training process 1 was ended by signal SIGKILL$"):
        launch(["-c", code], 2)


def test_a_process_ended_by_a_signal_is_named_with_its_last_words() -> None:
    code = _rank_one_then_wait("print('terminate called after throwing X', file=sys.stderr, flush=True); os.abort()")
    with pytest.raises(WinosimError) as ended:
        launch(["-c", code], 2)
    assert str(ended.value) == ("training process 1 was ended by signal SIGABRT: terminate called after throwing X")


def test_rank_zero_failing_speaks_for_itself(capfd: pytest.CaptureFixture[str]) -> None:
    code = "import os, sys\nprint(f\"winosim: error: refused by {os.environ['RANK']}\", file=sys.stderr)\nsys.exit(2)\n"
    assert launch(["-c", code], 2) == 2
    assert capfd.readouterr().err.strip().splitlines() == ["winosim: error: refused by 0"]  # once


# --- winosim train --processes ---------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "nobn.py").write_text(NO_BATCH_NORM)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _train(data: Path, out: str, *extra: str) -> int:
    return cli.main(_train_args(data, out, *extra))


def _train_args(data: Path, out: str, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "nobn:build",
        "--method",
        "winograd_relu",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--densities",
        "0.5",
        "--retrain-epochs",
        "1",
        "--batch-size",
        "33",  # shares of 16 and 17 images, then of 14 and 15 in each epoch's last batch (128 images)
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        out,
        *extra,
    ]


def _metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(sys.platform != "linux", reason="Gloo process groups are exercised on Linux")
def test_two_processes_train_what_one_trains(workdir: Path, random_data: Path) -> None:
    assert _train(random_data, "one") == 0
    assert _train(random_data, "two", "--processes", "2") == 0
    one = load_checkpoint(workdir / "one" / "phase1_d0.50.pt")
    two = load_checkpoint(workdir / "two" / "phase1_d0.50.pt")
    for name, weight in one["model"].items():
        if weight.is_floating_point():
            torch.testing.assert_close(two["model"][name], weight, rtol=0, atol=1e-6)
        else:
            assert torch.equal(two["model"][name], weight)  # the masks
    for a, b in zip(_metrics(workdir / "one"), _metrics(workdir / "two"), strict=True):
        assert a["test_accuracy"] == b["test_accuracy"]  # every test image, measured once over the processes
        assert a["train_accuracy"] == b["train_accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    log = (workdir / "two" / "progress.log").read_text().splitlines()
    assert sum("started at step 0" in line for line in log) == 1  # rank 0 alone writes
    assert "x 2 processes (DDP)" in log[0]
    assert two["state"]["segments"][0]["machine"].endswith("x 2 processes (DDP)")

    # stopped after 5 steps and resumed: bit for bit the uninterrupted two-process run
    assert _train(random_data, "stopped", "--processes", "2", "--max-steps", "5") == 0
    assert cli.main(["train", "--out", "stopped", "--resume", "--processes", "2", "--no-progress"]) == 0
    resumed = load_checkpoint(workdir / "stopped" / "phase1_d0.50.pt")
    assert all(torch.equal(resumed["model"][k], v) for k, v in two["model"].items())


@pytest.mark.skipif(sys.platform != "linux", reason="Gloo process groups are exercised on Linux")
def test_no_model_outlives_the_process_group(workdir: Path, random_data: Path) -> None:
    """A DDP model still alive when its group is destroyed goes at interpreter exit, where freeing what Gloo's
    threads still hold can abort the process (CI saw rank 1 end by SIGABRT): every process checks, at the
    moment the group is destroyed, that no DistributedDataParallel object is left."""
    code = (
        "import gc, sys\n"
        "import torch.distributed as dist\n"
        "from torch.nn.parallel import DistributedDataParallel\n"
        "from winosim import cli\n"
        "destroy = dist.destroy_process_group\n"
        "def checked(*args, **kwargs):\n"
        "    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())\n"
        "    if alive:\n"
        "        print(f'winosim: error: {alive} DDP model(s) alive when the group is destroyed', file=sys.stderr)\n"
        "        sys.exit(3)\n"
        "    return destroy(*args, **kwargs)\n"
        "dist.destroy_process_group = checked\n"
        f"sys.exit(cli.main({_train_args(random_data, 'checked')!r}))\n"
    )
    assert launch(["-c", code], 2) == 0


def test_what_every_process_would_refuse_is_refused_before_any_starts(
    workdir: Path, random_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(random_data, "small", "--processes", "2", "--batch-size", "1") == 2
    assert capsys.readouterr().err.strip() == (
        "winosim: error: --batch-size 1 is the global batch: at least one image for each of the 2 processes"
    )
    assert not (workdir / "small").exists()
    assert _train(random_data, "none", "--processes", "0") == 2
    assert "--processes must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "--out", "missing", "--resume", "--processes", "2"]) == 2
    assert capsys.readouterr().err.strip() == "winosim: error: checkpoint not found: missing/last.pt"

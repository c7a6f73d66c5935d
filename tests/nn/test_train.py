"""Training: loss falls on real images, the density schedule is applied, and a resumed run equals an
uninterrupted one bit for bit."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

from winosim.errors import ConfigError, OutputError
from winosim.nn.layers import spatial_to_winograd
from winosim.nn.models import build_model
from winosim.nn.train import (
    CheckpointError,
    TrainConfig,
    TrainState,
    autocast,
    describe_machine,
    load_checkpoint,
    model_from_checkpoint,
    native_from_spatial,
    record_segment,
    requested_threads,
    train,
)


def _config(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(
        network="vgg_nagadomi",
        mode="winograd_relu",
        data=str(data),
        out=str(out),
        epochs=1,
        densities=(0.5,),
        retrain_epochs=1,
        batch_size=16,
        lr=0.05,
        train_limit=32,
        test_limit=16,
        precision="fp32",
        dropout=False,
    )
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_loss_falls_on_real_cifar_images(cifar_data: Path, tmp_path: Path) -> None:
    config = _config(cifar_data, tmp_path / "run", epochs=5, densities=(), batch_size=32, train_limit=32, lr_drops=())
    result = train(config)
    losses = [record["train_loss"] for record in result.state.history]
    assert result.finished and len(losses) == 5
    assert losses[-1] < losses[0] - 0.15  # one batch seen 5 times: 2.43 -> 2.18 when measured


def test_schedule_prunes_each_phase_and_logs_metrics(random_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(_config(random_data, out, densities=(0.6, 0.3), epochs=1, train_limit=16))
    assert result.finished
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["density"] for line in lines] == [1.0, 0.6, 0.3]
    for line in lines:
        assert set(line["layer_density"]) == {f"conv{i}" for i in range(2, 9)}
        assert all(abs(d - line["density"]) < 1e-3 for d in line["layer_density"].values())
    for name, density in (("phase0_dense.pt", None), ("phase1_d0.60.pt", 0.6), ("phase2_d0.30.pt", 0.3)):
        ckpt = load_checkpoint(out / name)
        assert ckpt["density"] == density
        assert ckpt["dense_accuracy"] == result.state.dense_accuracy
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files left


@pytest.mark.parametrize("precondition", ["none", "position_rms"])
def test_resume_after_a_stop_mid_epoch_equals_not_stopping(
    random_data: Path, tmp_path: Path, precondition: str
) -> None:
    """Also with per-position preconditioning, whose scales are recalibrated at each epoch start only."""
    straight = train(_config(random_data, tmp_path / "a", precondition=precondition))
    first = train(_config(random_data, tmp_path / "b", precondition=precondition), max_steps=1)  # mid-epoch
    assert not first.finished and first.state.batch == 1
    second = train(_config(random_data, tmp_path / "b", epochs=99), resume=True, max_steps=2)  # config from ckpt
    assert not second.finished
    resumed = train(_config(random_data, tmp_path / "b"), resume=True)
    assert resumed.finished and resumed.state.step == straight.state.step == 4
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert a.keys() == b.keys()
    assert ("conv2.position_scale" in a) == (precondition != "none")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    drop = ("wall_s", "train_images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in straight.state.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in resumed.state.history
    ]

    # where the steps ran: one segment, this machine in the precision asked for, however often the run resumed
    here = describe_machine(torch.device("cpu"))
    assert resumed.state.segments == straight.state.segments == [{"from_step": 0, "machine": here, "precision": "fp32"}]


def test_a_change_of_machine_or_precision_starts_a_segment_and_auto_is_recorded_resolved(
    random_data: Path, tmp_path: Path
) -> None:
    state = TrainState(step=0)
    record_segment(state, "machine A", "bf16")
    state.step = 120
    record_segment(state, "machine A", "bf16")  # resumed where it stopped: nothing new
    record_segment(state, "machine B", "fp32")  # resumed on another machine, `auto` resolving to fp32 there
    state.step = 300
    record_segment(state, "machine B", "bf16")
    assert state.segments == [
        {"from_step": 0, "machine": "machine A", "precision": "bf16"},
        {"from_step": 120, "machine": "machine B", "precision": "fp32"},
        {"from_step": 300, "machine": "machine B", "precision": "bf16"},
    ]
    # a real run with `auto` records what auto resolved to on this machine, never `auto`
    first = train(_config(random_data, tmp_path / "run", precision="auto"), max_steps=1)
    assert [segment["precision"] for segment in first.state.segments] in (["bf16"], ["fp32"])
    # a checkpoint from before segments were recorded resumes and starts its record at the step it resumed from
    last = tmp_path / "run" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["state"]["segments"]
    torch.save(ckpt, last)
    resumed = train(_config(random_data, tmp_path / "run"), resume=True)
    assert resumed.finished and [segment["from_step"] for segment in resumed.state.segments] == [1]


def test_existing_run_needs_resume_and_bad_checkpoints_fail_cleanly(random_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_config(random_data, out), max_steps=1)
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(random_data, out))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    junk = tmp_path / "junk.pt"  # a file where the run folder, or a folder above it, would go
    with pytest.raises(OutputError, match=f"cannot write {junk}: it exists and is not a directory"):
        train(_config(random_data, junk))
    with pytest.raises(OutputError, match=f"cannot write {junk / 'run'}: {junk} is a file, not a folder"):
        train(_config(random_data, junk / "run"))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    whole = (out / "last.pt").read_bytes()  # a copy cut short: one line, not torch's paragraph
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint \(not the zip archive torch\.save"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_folder_being_trained_in_is_refused_to_a_second_process(random_data: Path, tmp_path: Path) -> None:
    """A run folder is locked (flock on RUN/train.lock) while a process trains in it: a second start, or a resume
    while it still runs, is one line and writes nothing; once the lock is free, both work. flock locks
    conflict between open files, so this process holding the file stands for another process."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with (out / "train.lock").open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(
            ConfigError, match=r"another winosim train is running in this folder \(it holds train\.lock\)"
        ):
            train(_config(random_data, out), max_steps=1)
        assert sorted(p.name for p in out.iterdir()) == ["train.lock"]
    first = train(_config(random_data, out), max_steps=1)  # released: the run starts, and frees it when done
    assert first.state.step == 1
    with (out / "train.lock").open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = (out / "last.pt").read_bytes()
        with pytest.raises(ConfigError, match="another winosim train is running"):
            train(_config(random_data, out), resume=True)
        assert (out / "last.pt").read_bytes() == before
    assert train(_config(random_data, out), resume=True).finished


def test_native_from_spatial_is_the_same_function() -> None:
    """U = G g G^T per layer: the converted native model computes what the (pruned) spatial one does."""
    torch.manual_seed(0)
    spatial = build_model("vgg_nagadomi", "spatial", dropout=False).double().eval()
    for _, layer in spatial.winograd_modules():
        layer.weight_mask.copy_(torch.rand(layer.weight.shape) < 0.7)
    native = build_model("vgg_nagadomi", "native", dropout=False).double()
    native_from_spatial(native, spatial.state_dict())
    native.eval()
    for (_, s_layer), (_, n_layer) in zip(spatial.winograd_modules(), native.winograd_modules(), strict=True):
        torch.testing.assert_close(n_layer.weight, spatial_to_winograd(s_layer.masked_weight()))
        assert bool(n_layer.weight_mask.all())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(native(x), spatial(x), rtol=1e-9, atol=1e-9)


def test_native_run_can_start_from_a_spatial_checkpoint(random_data: Path, tmp_path: Path) -> None:
    train(_config(random_data, tmp_path / "s", mode="spatial", densities=(), train_limit=16))
    native = train(
        _config(
            random_data,
            tmp_path / "n",
            mode="native",
            epochs=0,
            densities=(0.5,),
            train_limit=16,
            init_from=str(tmp_path / "s" / "phase0_dense.pt"),
        )
    )
    spatial_acc = load_checkpoint(tmp_path / "s" / "phase0_dense.pt")["accuracy"]
    assert native.state.dense_accuracy == pytest.approx(spatial_acc, abs=1 / 16 + 1e-9)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "n" / "phase1_d0.50.pt"))
    assert model.mode == "native"


def test_winograd_relu_run_can_start_from_a_spatial_checkpoint(random_data: Path, tmp_path: Path) -> None:
    """Q = G g G^T from a trained spatial model: the dense phase starts from those weights, not from scratch."""
    train(_config(random_data, tmp_path / "s", mode="spatial", densities=(), train_limit=16))
    source = load_checkpoint(tmp_path / "s" / "phase0_dense.pt")
    result = train(
        _config(
            random_data,
            tmp_path / "w",
            mode="winograd_relu",
            epochs=0,
            densities=(),
            train_limit=16,
            init_from=str(tmp_path / "s" / "phase0_dense.pt"),
        )
    )
    assert result.finished
    model = model_from_checkpoint(load_checkpoint(tmp_path / "w" / "phase0_dense.pt"))
    assert model.mode == "winograd_relu"
    for geom, layer in model.winograd_modules():
        g = source["model"][f"{geom.name}.weight"] * source["model"][f"{geom.name}.weight_mask"]
        torch.testing.assert_close(layer.weight, spatial_to_winograd(g))


def test_a_branch_is_the_run_that_schedule_would_have_been(random_data: Path, tmp_path: Path) -> None:
    """`branch_from`: a run that takes another run's dense model and prunes it with its own schedule equals,
    bit for bit, the run trained with that schedule from the start (its dense phase, epoch records and wall
    time included); a schedule of its own differs only after the dense phase; a dense-phase option that differs,
    or a checkpoint that is not a dense phase's, is one ConfigError naming it."""
    a = _config(random_data, tmp_path / "a", densities=(0.6, 0.3), train_limit=16, retrain_lr=0.01)
    train(a)
    dense = str(tmp_path / "a" / "phase0_dense.pt")
    b = train(replace(a, out=str(tmp_path / "b"), branch_from=dense))
    assert b.finished
    for name in ("phase0_dense.pt", "phase1_d0.60.pt", "phase2_d0.30.pt"):
        ours, theirs = load_checkpoint(tmp_path / "b" / name), load_checkpoint(tmp_path / "a" / name)
        assert ours.keys() == theirs.keys()
        for key, value in theirs["model"].items():
            assert torch.equal(ours["model"][key], value), (name, key)
        assert ours["accuracy"] == theirs["accuracy"] and ours["dense_accuracy"] == theirs["dense_accuracy"]
    records_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    records_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    drop_time = {"wall_s", "train_images_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop_time} for r in records_b] == [
        {k: v for k, v in r.items() if k not in drop_time} for r in records_a
    ]
    assert records_b[0]["wall_s"] == records_a[0]["wall_s"]  # the dense phase's time is the other run's

    c = train(replace(a, out=str(tmp_path / "c"), branch_from=dense, retrain_lr=0.04, densities=(0.5,)))
    assert [r["density"] for r in c.state.history] == [1.0, 0.5]
    assert c.state.dense_accuracy == b.state.dense_accuracy
    assert load_checkpoint(tmp_path / "c" / "phase0_dense.pt")["config"]["retrain_lr"] == 0.04

    with pytest.raises(ConfigError, match=r"its run trained with lr 0\.05, this one asks for 0\.1"):
        train(replace(a, out=str(tmp_path / "d"), branch_from=dense, lr=0.1))
    with pytest.raises(ConfigError, match="not the end of a dense phase"):
        train(replace(a, out=str(tmp_path / "e"), branch_from=str(tmp_path / "a" / "phase1_d0.60.pt")))
    with pytest.raises(ConfigError, match="exclude each other"):
        replace(a, branch_from=dense, init_from=dense, mode="native")


def test_onecycle_schedule_warms_up_then_decays_linearly(tmp_path: Path) -> None:
    """Dense phase: linear warm-up to lr over `warmup`, linear decay to lr * final_lr_fraction; retraining
    phases decay linearly from retrain_lr without warm-up."""
    config = _config(tmp_path, tmp_path, schedule="onecycle", lr=0.4, retrain_lr=0.04, warmup=0.25)
    rates = [config.lr_at(0, step, 100) for step in range(100)]
    assert rates[24] == pytest.approx(0.4)  # the peak ends the warm-up
    assert rates[0] == pytest.approx(0.4 / 25)
    assert all(a < b for a, b in itertools.pairwise(rates[:25]))
    assert all(a > b for a, b in itertools.pairwise(rates[24:]))
    assert rates[99] == pytest.approx(0.4 * 0.001)
    retrain = [config.lr_at(1, step, 10) for step in range(10)]
    assert retrain[0] < 0.04 and retrain[0] == pytest.approx(0.04 * (1 - 0.1 * 0.999))
    assert retrain[-1] == pytest.approx(0.04 * 0.001)
    step_config = _config(tmp_path, tmp_path, lr=0.1, lr_drops=(0.5, 0.75))
    assert [step_config.lr_at(0, s, 4) for s in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_progress_log_reports_rate_and_eta(random_data: Path, tmp_path: Path) -> None:
    train(_config(random_data, tmp_path / "r", densities=(), train_limit=16, checkpoint_every_s=1e-6))
    start, *lines = (tmp_path / "r" / "progress.log").read_text().splitlines()
    # the first line says where the steps run: the machine, the precision `auto` resolved to, the threads
    assert (
        start.split(" ", 1)[1]
        == f"started at step 0: {describe_machine(torch.device('cpu'))}, fp32 (asked fp32), torch threads: 1"
    )
    assert lines and all("images/s" in line and "run ETA" in line for line in lines)
    assert "test accuracy" in lines[-1]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a request for 2 threads is capped at 1 core")
def test_a_threads_file_sets_the_thread_count_at_the_next_checkpoint(random_data: Path, tmp_path: Path) -> None:
    """The recipe's driver hands a run the other run's cores by writing `threads` into its folder."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "threads").write_text("2\n")
    assert torch.get_num_threads() == 1  # tests/nn/conftest.py
    try:
        train(_config(random_data, out, densities=(), train_limit=16, checkpoint_every_s=1e-6))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert [
        line.split(" ", 1)[1] for line in (out / "progress.log").read_text().splitlines() if " threads " in line
    ] == ["threads 1 -> 2 (asked in threads)"]


def test_a_threads_request_is_capped_at_the_machine_s_cores(tmp_path: Path) -> None:
    (tmp_path / "threads").write_text("100000\n")
    assert requested_threads(tmp_path) == (os.cpu_count() or 1)


@pytest.mark.parametrize("text", ["", "0", "-2", "two", "2 3", "\xff"])
def test_a_malformed_threads_file_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / "threads").write_bytes(text.encode("latin-1"))
    assert requested_threads(tmp_path) is None
    assert requested_threads(tmp_path / "absent") is None


def test_config_validation_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="densities"):
        _config(tmp_path, tmp_path, densities=(0.5, 0.7))
    for densities in ((0.5, 0.5), (1.5,), (0.0,), (0.4, -0.1)):  # strictly decreasing within (0, 1]
        with pytest.raises(ConfigError, match="densities must strictly decrease"):
            _config(tmp_path, tmp_path, densities=densities)
    assert _config(tmp_path, tmp_path, densities=(1.0, 0.5)).densities == (1.0, 0.5)
    with pytest.raises(ConfigError, match="init_from"):
        _config(tmp_path, tmp_path, mode="spatial", init_from="x.pt")
    with pytest.raises(ConfigError, match="schedule"):
        _config(tmp_path, tmp_path, schedule="cosine")
    with pytest.raises(ConfigError, match="label_smoothing"):
        _config(tmp_path, tmp_path, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="network"):
        _config(tmp_path, tmp_path, network="lenet")


@pytest.mark.parametrize(
    ("size", "extra", "message"),
    [
        (8, [], "vgg_nagadomi: the data's (3, 8, 8) images do not fit the model ("),
        (32, ["--num-classes", "5"], "--num-classes 5: the dataset 'cifar10-npz:train' has 10 classes"),
        (32, ["--num-classes", "0"], "num_classes must be >= 1 or None, got 0"),
        (32, ["--max-steps", "-1"], "--max-steps must be >= 0, got -1"),
        (32, ["--device", "meta"], "--device meta: winosim trains and measures on cpu or cuda"),
    ],
    ids=["image_size", "too_few_classes", "zero_classes", "negative_steps", "meta_device"],
)
def test_what_cannot_train_is_one_line_before_a_run_folder_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int, extra: list[str], message: str
) -> None:
    """Data the model cannot take, or options that cannot run, fail before anything is written (not at the
    first step, with a folder left behind)."""
    from winosim import cli

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, size, size, 3), dtype=np.uint8)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train_0.npz", images=images[:6], labels=np.arange(6))
    np.savez(data / "test.npz", images=images[6:], labels=np.arange(2))
    argv = ["train", "--network", "vgg_nagadomi", "--method", "spatial", "--data", str(data), "--epochs", "1"]
    assert cli.main([*argv, "--no-progress", "--out", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("winosim: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_options_that_would_change_the_run_and_takes_the_data_s_new_place(
    random_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint's configuration is the run's: `--resume --epochs 40` was silently the old run; now one
    line says which options would change it. `--data` on resume says where the same data now lives."""
    import shutil

    from winosim import cli

    out = str(tmp_path / "run")
    first = ["train", "--network", "vgg_nagadomi", "--method", "spatial", "--data", str(random_data), "--epochs", "1"]
    assert cli.main([*first, "--batch-size", "32", "--max-steps", "1", "--no-progress", "--out", out]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", out, "--resume", "--epochs", "40", "--lr", "0.5"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"winosim: error: --resume continues {out} as it was configured; --epochs, --lr would change it (drop "
        "them; a new --out starts another run, --branch-from re-prunes a dense model)"
    )
    moved = tmp_path / "moved"
    shutil.copytree(random_data, moved)
    assert cli.main(["train", "--out", out, "--resume", "--data", str(moved), "--threads", "1", "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == str(moved)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 1


def test_commands_train_then_trace(random_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI front ends: train (stopped and resumed), then trace from the phase checkpoints."""
    from winosim.nn.commands import trace_main, train_main
    from winosim.trace import load_trace

    out = tmp_path / "run"
    common = ["--out", str(out), "--no-progress", "--threads", "1"]
    args = [
        "--network",
        "vgg_nagadomi",
        "--method",
        "winograd_relu",
        "--data",
        str(random_data),
        "--epochs",
        "1",
        "--densities",
        "0.5",
        "--retrain-epochs",
        "1",
        "--train-limit",
        "16",
        "--batch-size",
        "8",
        "--test-limit",
        "8",
        "--precision",
        "fp32",
        "--max-steps",
        "1",
        *common,
    ]
    assert train_main(args) == 0
    assert "--resume" in capsys.readouterr().out
    assert train_main(["--resume", *common]) == 0
    assert "finished" in capsys.readouterr().out
    trace_file = tmp_path / "t.npz"
    assert (
        trace_main(
            [
                str(out / "phase0_dense.pt"),
                str(out / "phase1_d0.50.pt"),
                "--data",
                str(random_data),
                "--out",
                str(trace_file),
                "--images",
                "2",
                "--test-limit",
                "8",
            ]
        )
        == 0
    )
    trace = load_trace(trace_file)
    assert [v.name for v in trace.variants] == ["winograd_relu_dense", "winograd_relu_d0p50"]
    assert trace.provenance.command.startswith("python -m winosim trace ")
    dense, pruned = trace.variants
    assert dense.dense_accuracy == dense.accuracy  # re-measured on the same test images as the pruned model
    assert pruned.dense_accuracy == dense.accuracy and "phase0_dense.pt" in pruned.recipe["dense_accuracy_source"]
    with pytest.raises(ConfigError, match="required"):
        train_main(["--out", str(tmp_path / "other"), "--no-progress"])


class _Unsafe:
    """Any class outside torch's weights-only allow-list: loading it would run arbitrary code."""


_DOCTORED_CHECKPOINTS = [
    (lambda c: c["config"].__setitem__("epochs", "many"), "epochs must be"),
    (lambda c: c["config"].__setitem__("batch_size", 2.5), "batch_size must be"),
    (lambda c: c["config"].__setitem__("densities", ["a"]), "densities must be"),
    (lambda c: c["config"].pop("network"), "missing fields"),
    (lambda c: c.__setitem__("config", [1, 2]), "expected a mapping"),
    (lambda c: c["state"].__setitem__("phase", -1), "must be >= 0"),
    (lambda c: c["state"].__setitem__("history", "x"), "history must be"),
    (lambda c: c.__setitem__("model", {"conv2.weight": 3}), "'model' is not a mapping"),
    (lambda c: c["model"].__setitem__("conv2.weight", torch.zeros(1)), "weights do not fit"),
    (lambda c: c.__setitem__("optimizer", {"state": {}, "param_groups": []}), "optimiser state"),
    (lambda c: c.__setitem__("extra", _Unsafe()), "not a readable checkpoint"),
]


def _doctor(random_data: Path, out: Path, edit: Any) -> None:
    train(_config(random_data, out), max_steps=1)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, out / "last.pt")


@pytest.mark.parametrize(("edit", "message"), _DOCTORED_CHECKPOINTS)
def test_resume_from_a_malformed_or_unsafe_checkpoint_names_the_problem(
    random_data: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """A doctored last.pt is refused with a CheckpointError naming the problem (never a TypeError)."""
    _doctor(random_data, tmp_path / "run", edit)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        train(_config(random_data, tmp_path / "run"), resume=True)


@pytest.mark.parametrize(("edit", "message"), [_DOCTORED_CHECKPOINTS[0], _DOCTORED_CHECKPOINTS[-1]])
def test_cli_resume_from_a_bad_checkpoint_is_one_line(
    random_data: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """Through the CLI: one line, exit 2, no traceback and no torch warning before it."""
    _doctor(random_data, tmp_path / "run", edit)
    result = subprocess.run(
        [sys.executable, "-m", "winosim", "train", "--out", str(tmp_path / "run"), "--resume", "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("winosim: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_fp32_on_cuda_means_float32_not_tf32() -> None:
    """A trace's masks come from an fp32 pass: on CUDA that pass must not round to TF32 (cuDNN does by default);
    the flags are switched off inside and restored after. Checked on the flags alone, so it runs without a GPU."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    try:
        cudnn.allow_tf32, matmul.allow_tf32 = True, True
        with autocast(torch.device("cuda"), "fp32"):
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
        with autocast(torch.device("cpu"), "fp32"):
            assert cudnn.allow_tf32  # CPU: nothing to switch
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_training_flags_reach_the_config_and_a_later_flag_wins() -> None:
    """The recipe scripts append one change to the recipe's flags (traces/recipes/grid.sh): argparse's last
    occurrence wins, and every on/off choice of the recipe can be turned back."""
    from winosim.nn.train import _optimizer
    from winosim.nn.train_args import train_config_from_args, train_parser

    recipe = ["--network", "vgg_nagadomi", "--method", "spatial", "--data", "d", "--out", "o", "--no-dropout"]
    config = train_config_from_args(train_parser().parse_args(recipe))
    assert (config.dropout, config.nesterov, config.label_smoothing) == (False, True, 0.0)
    changed = [*recipe, "--dropout", "--no-nesterov", "--label-smoothing", "0.1", "--lr", "0.2", "--lr", "0.3"]
    config = train_config_from_args(train_parser().parse_args(changed))
    assert (config.dropout, config.nesterov, config.label_smoothing, config.lr) == (True, False, 0.1, 0.3)
    model = build_model("vgg_nagadomi", "spatial")
    assert _optimizer(model, config, 0.1).param_groups[0]["nesterov"] is False
    assert _optimizer(model, replace(config, nesterov=True), 0.1).param_groups[0]["nesterov"] is True
    assert _optimizer(model, replace(config, momentum=0.0), 0.1).param_groups[0]["nesterov"] is False

"""`winosim train`'s options and TrainConfig, both ways: the command a trace records for a model asks for
exactly the configuration that trained it, for every field the command line can set."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

import pytest

pytest.importorskip("torch")

from winosim.nn.train import TrainConfig
from winosim.nn.train_args import train_command, train_config_from_args, train_parser


def _round_trip(config: TrainConfig) -> TrainConfig:
    words = shlex.split(train_command(config))
    assert words[:4] == ["python", "-m", "winosim", "train"]
    return train_config_from_args(train_parser().parse_args(words[4:]))


def test_defaults_give_the_shortest_command() -> None:
    config = TrainConfig(network="vgg_nagadomi", mode="spatial", data="../data dir", out="runs/x")
    assert train_command(config) == (
        "python -m winosim train --network vgg_nagadomi --method spatial --data '../data dir' --out runs/x"
    )
    assert _round_trip(config) == config


def test_the_paper_recipe_round_trips() -> None:
    config = TrainConfig(
        network="vgg_nagadomi",
        mode="winograd_relu",
        data="d",
        out="o",
        epochs=80,
        densities=(0.7, 0.5, 0.1),
        retrain_epochs=2,
        batch_size=256,
        lr=0.1,
        retrain_lr=0.04,
        schedule="onecycle",
        label_smoothing=0.1,
        dropout=False,
        nesterov=False,
        channels_last=True,
        precondition="position_rms",
        init_from="runs/sp/phase0_dense.pt",
        num_classes=10,
        lr_drops=(),
        weight_decay=1e-4,
        precision="fp32",
        epoch_images=8000,
        checkpoint_every_s=180.0,
    )
    command = train_command(config)
    assert "--no-dropout" in command and "--no-nesterov" in command and "--channels-last" in command
    assert "--densities 0.7,0.5,0.1" in command and "--lr-drops ''" in command
    assert _round_trip(config) == config


def test_every_field_the_command_line_sets_survives_the_round_trip() -> None:
    """Each field changed alone from its default (so a new option forgotten in `train_command` fails here)."""
    base = TrainConfig(network="vgg_nagadomi", mode="native", data="d", out="o")
    changed: dict[str, Any] = {
        "epochs": 3,
        "densities": (0.5,),
        "retrain_epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "retrain_lr": 0.02,
        "lr_drops": (0.3,),
        "momentum": 0.8,
        "nesterov": False,
        "weight_decay": 0.0,
        "seed": 7,
        "num_classes": 100,
        "dropout": False,
        "precision": "bf16",
        "train_limit": 500,
        "epoch_images": 100,
        "retrain_epoch_images": 50,
        "test_limit": 200,
        "init_from": "x.pt",
        "branch_from": "runs/a/phase0_dense.pt",
        "checkpoint_every_s": 60.0,
        "schedule": "onecycle",
        "warmup": 0.1,
        "final_lr_fraction": 0.01,
        "label_smoothing": 0.2,
        "channels_last": True,
        "precondition": "position_rms",
    }
    not_options = {"network", "mode", "data", "out", "model_factory", "input_shape"}
    assert set(changed) | not_options == {f.name for f in dataclasses.fields(TrainConfig)}
    for field, value in changed.items():
        config = dataclasses.replace(base, **{field: value})
        assert _round_trip(config) == config, field


def test_a_custom_model_is_named_by_its_factory_and_its_input_shape_comes_from_the_data() -> None:
    config = TrainConfig(
        network="mynet",
        mode="winograd_relu",
        data="d",
        out="o",
        model_factory="mymodels:mynet",
        input_shape=(3, 32, 32),
    )
    command = train_command(config)
    assert "--model mymodels:mynet" in command and "--network" not in command and "input" not in command
    assert _round_trip(config) == dataclasses.replace(config, input_shape=None)

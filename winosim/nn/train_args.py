"""`winosim train`'s options and the training configuration they stand for, both ways.

`train_parser()` is the command line, `train_config_from_args` turns its parsed arguments into the
`TrainConfig` of the run, and `train_command` writes the command line that asks for a given `TrainConfig`
(what a trace records per variant, so a card can show the exact command that trained each model). The two
directions live together so that a new option cannot be added to one and forgotten in the other (a test
round-trips every field).
"""

from __future__ import annotations

import argparse
import shlex

from winosim.commands import CommandParser, comma_list, finite_float, seed
from winosim.errors import ConfigError
from winosim.nn.custom import factory_name
from winosim.nn.layers import MODES
from winosim.nn.models import NETWORK_NAMES
from winosim.nn.precondition import PRECONDITIONINGS
from winosim.nn.train import PRECISIONS, SCHEDULES, TrainConfig


def _floats(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated finite numbers (`comma_list`'s rule; blank text is the empty list)."""
    try:
        return tuple(finite_float(part) for part in comma_list(text, allow_empty=True))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def train_parser() -> argparse.ArgumentParser:
    """The options of `winosim train`."""
    p = CommandParser(
        prog="winosim train",
        description="Train a network in one method: dense, then magnitude pruning steps with masked retraining.",
    )
    p.add_argument("--network", choices=NETWORK_NAMES, help="network to train (required unless --model or --resume)")
    p.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="your own network instead of --network: a function returning an nn.Module, importable from the "
        "working directory or PYTHONPATH, converted with winosim.nn.convert (docs/your-model.md)",
    )
    p.add_argument("--method", "--mode", dest="method", choices=MODES, help="spatial, native or winograd_relu")
    p.add_argument(
        "--data", help="dataset folder (CIFAR .npz layout, cifar-10-batches-py, cifar-100-python, or an image folder)"
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl); under runs/ by convention")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--epochs", type=int, default=30, help="dense training epochs (default 30)")
    p.add_argument("--densities", type=_floats, default=(), help="pruning schedule, e.g. 0.7,0.6,0.5,0.4,0.35")
    p.add_argument("--retrain-epochs", type=int, default=5, help="masked retraining epochs after each pruning step")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate of dense training")
    p.add_argument("--retrain-lr", type=float, default=0.01, help="initial learning rate of each retraining phase")
    p.add_argument(
        "--lr-drops",
        type=_floats,
        default=(0.5, 0.75),
        help="fractions of a phase at which the learning rate is divided by 10 (default 0.5,0.75)",
    )
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Nesterov momentum (default) or plain heavy-ball momentum (--no-nesterov)",
    )
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=seed, default=0, help="random seed, an integer >= 0 (default 0)")
    p.add_argument("--num-classes", type=int, default=None, help="default: from the dataset")
    p.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the networks' dropout layers: on (default) or off (--no-dropout)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bf16 autocast or fp32; auto (default): bf16 on CUDA and on CPUs with native bf16, else fp32",
    )
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--epoch-images", type=int, default=None, help="images per epoch (a random subset each epoch)")
    p.add_argument(
        "--retrain-epoch-images",
        type=int,
        default=None,
        help="images per epoch of the retraining phases (default: --epoch-images)",
    )
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument(
        "--init-from",
        default=None,
        help="native or winograd_relu: start from a spatial checkpoint (U = G g G^T; exact for native, a "
        "starting point for winograd_relu)",
    )
    p.add_argument(
        "--branch-from",
        default=None,
        help="start from another run's dense model (RUN/phase0_dense.pt) and prune it with this run's schedule: "
        "every other option must be the ones that run was trained with (a branch changes only --densities, "
        "--retrain-epochs, --retrain-lr, --retrain-epoch-images)",
    )
    p.add_argument("--checkpoint-every-s", type=float, default=240.0, help="seconds between mid-epoch checkpoints")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="step",
        help="learning-rate schedule: step (divide by 10 at --lr-drops) or onecycle (linear warm-up over "
        "--warmup of the dense phase, then linear decay to --final-lr-fraction; retraining phases decay linearly)",
    )
    p.add_argument("--warmup", type=float, default=0.25, help="onecycle: warm-up fraction of the dense phase")
    p.add_argument("--final-lr-fraction", type=float, default=0.001, help="onecycle: last rate / peak rate")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss (e.g. 0.1)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout (faster conv2d on CPU)")
    p.add_argument(
        "--precondition",
        choices=PRECONDITIONINGS,
        default="none",
        help="native and winograd_relu: none (default: plain SGD on Q, as the paper) or position_rms (SGD on Q "
        "scaled per Winograd position by its activations' RMS; same function, pruning and trace; "
        "winosim.nn.precondition)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop this invocation after N steps (resumable)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="data-parallel processes on this machine (DistributedDataParallel: one per GPU, or CPU processes "
        "sharing the cores); --batch-size stays the global batch (winosim.nn.distributed)",
    )
    return p


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that `winosim train`'s parsed arguments ask for (a placeholder under --resume, whose
    `data`, when given, is where the run's data now lives). Under --resume an option that would change the
    run is a ConfigError: the checkpoint's configuration is the run's, and silently ignoring, say, `--epochs 40`
    would leave the user believing the run had changed."""
    if args.resume:  # the real configuration comes from the run folder
        changed = [
            action.option_strings[0]
            for action in train_parser()._actions
            if action.dest not in _RUN_TIME_OPTIONS | {"out", "data"}
            and getattr(args, action.dest, action.default) != action.default
        ]
        if changed:
            raise ConfigError(
                f"--resume continues {args.out} as it was configured; {', '.join(changed)} would change it "
                "(drop them; a new --out starts another run, --branch-from re-prunes a dense model)"
            )
        return TrainConfig(
            network=args.network or "vgg_nagadomi", mode=args.method or "spatial", data=args.data or "", out=args.out
        )
    if args.network is not None and args.model is not None:
        raise ConfigError("train: give --network or --model, not both")
    network = factory_name(args.model) if args.model is not None else args.network
    missing = [
        flag
        for flag, value in (("--network or --model", network), ("--method", args.method), ("--data", args.data))
        if value is None
    ]
    if missing:
        raise ConfigError(f"train: {', '.join(missing)} required (unless --resume)")
    return TrainConfig(
        network=network,
        model_factory=args.model,
        mode=args.method,
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        densities=args.densities,
        retrain_epochs=args.retrain_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        retrain_lr=args.retrain_lr,
        lr_drops=args.lr_drops,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        num_classes=args.num_classes,
        nesterov=args.nesterov,
        dropout=args.dropout,
        precision=args.precision,
        train_limit=args.train_limit,
        epoch_images=args.epoch_images,
        retrain_epoch_images=args.retrain_epoch_images,
        test_limit=args.test_limit,
        init_from=args.init_from,
        branch_from=args.branch_from,
        checkpoint_every_s=args.checkpoint_every_s,
        schedule=args.schedule,
        warmup=args.warmup,
        final_lr_fraction=args.final_lr_fraction,
        label_smoothing=args.label_smoothing,
        channels_last=args.channels_last,
        precondition=args.precondition,
    )


_FIELD_OF_OPTION = {"method": "mode", "model": "model_factory"}
"""Option destinations whose TrainConfig field has another name."""
_RUN_TIME_OPTIONS = frozenset({"help", "resume", "max_steps", "device", "threads", "no_progress", "processes"})
"""Options not in TrainConfig: they do not change a run's result, or (`processes`) only through batch norm's
per-process batch statistics, and the run's provenance (`segments`) records them."""
_ALWAYS_WRITTEN = frozenset({"network", "model", "method", "data", "out"})
"""Options a run cannot do without: written even where they equal a default."""


def _option_text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(repr(float(v)) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def train_command(config: TrainConfig) -> str:
    """The `python -m winosim train ...` command line that asks for `config`: the network (or --model), method,
    data and run folder, then every option whose value differs from its default. `input_shape` is not an option:
    a --model run takes it from the data, as the command does."""
    words = ["python", "-m", "winosim", "train"]
    for action in train_parser()._actions:
        dest = action.dest
        if dest in _RUN_TIME_OPTIONS:
            continue
        value = getattr(config, _FIELD_OF_OPTION.get(dest, dest))
        if dest == "network" and config.model_factory is not None:
            continue  # the network is named after the factory
        if value is None or (value == action.default and dest not in _ALWAYS_WRITTEN):
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag.removeprefix('--')}")
        elif action.nargs == 0:  # store_true
            words.append(flag)
        else:
            words += [flag, _option_text(value)]
    return shlex.join(words)

"""Command-line front ends of the torch pipeline: `winosim train`, `winosim trace` and `winosim curve`.

`train_main(argv)`, `trace_main(argv)` and `curve_main(argv)` parse their arguments, run
`winosim.nn.train.train` / `winosim.nn.extract.extract_trace` / the density search of `winosim.nn.search`,
print a short summary and return 0. Bad input raises a WinosimError,
which the dispatcher (`winosim.cli`) turns into one `winosim: error: ...` line and exit status 2;
`python -m winosim.nn.commands {train,trace,curve} ...` does the same without the dispatcher.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from winosim.commands import CommandParser, seed
from winosim.errors import ConfigError, WinosimError
from winosim.files import atomic_write_text
from winosim.nn.custom import factory_name
from winosim.nn.layers import MODES
from winosim.nn.memory import retain_freed_memory
from winosim.nn.models import NETWORK_NAMES
from winosim.nn.precondition import PRECONDITIONINGS
from winosim.nn.train import PRECISIONS, SCHEDULES, TrainConfig, train


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _train_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that `winosim train`'s parsed arguments ask for (a placeholder under --resume)."""
    if args.resume:  # the real configuration comes from the run folder
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
        checkpoint_every_s=args.checkpoint_every_s,
        schedule=args.schedule,
        warmup=args.warmup,
        final_lr_fraction=args.final_lr_fraction,
        label_smoothing=args.label_smoothing,
        channels_last=args.channels_last,
        precondition=args.precondition,
    )


def train_main(argv: list[str]) -> int:
    """`winosim train ...`; returns 0 (also when stopped by --max-steps; the run is resumable)."""
    args = _train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if retain_freed_memory():  # every step reuses the last one's pages (winosim.nn.memory)
        logging.info("allocator: freed memory kept in the process (glibc: no mmap, no trim)")
    config = train_config_from_args(args)
    result = train(
        config, resume=args.resume, max_steps=args.max_steps, device=args.device, progress=not args.no_progress
    )
    state = result.state
    if result.finished:
        final = state.history[-1]["test_accuracy"] if state.history else None
        print(
            f"train: finished {result.out} after {state.step} steps ({state.wall_s:.0f} s); "
            f"dense accuracy {state.dense_accuracy}, last test accuracy {final}"
        )
    else:
        print(
            f"train: stopped after {result.steps} steps at phase {state.phase} epoch {state.epoch} batch "
            f"{state.batch}; continue with: winosim train --out {result.out} --resume"
        )
    return 0


def _trace_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="winosim trace",
        description="Extract one trace (one variant per checkpoint, same network) from trained checkpoints.",
    )
    p.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints written by winosim train (e.g. runs/x/phase3_d0.50.pt), or run folders with --select-within",
    )
    p.add_argument(
        "--select-within",
        type=float,
        default=None,
        metavar="POINTS",
        help="arguments are run folders: take from each the lowest-density checkpoint whose test accuracy is within "
        "POINTS percentage points of its dense model (the density search; its curve goes into the trace)",
    )
    p.add_argument("--data", required=True, help="dataset folder (its test split is used)")
    p.add_argument("--out", required=True, help="trace file to write (.npz)")
    p.add_argument("--images", type=int, default=8, help="test images behind the activation masks (default 8)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the image sample (an integer >= 0)")
    p.add_argument("--test-limit", type=int, default=None, help="measure accuracy on the first N test images only")
    p.add_argument("--names", default=None, help="comma-separated variant names (default: the methods)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="precision of the accuracy pass")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    return p


def _resolve_checkpoints(
    arguments: list[str], within_points: float | None
) -> tuple[list[str], list[dict[str, Any]] | None]:
    """Checkpoint paths as given, or (with `within_points`) the density search's pick from each run folder."""
    from winosim.nn.search import curve_table, density_curve

    if within_points is None:
        folders = [a for a in arguments if Path(a).is_dir()]
        if folders:
            raise ConfigError(
                f"{folders[0]} is a run folder: pass --select-within POINTS to choose its checkpoint by the density "
                "search, or name a phase checkpoint"
            )
        return arguments, None
    curves = [density_curve(a) for a in arguments]
    print(curve_table(curves, within_points))
    for curve in curves:
        if not curve.complete:
            print(f"trace: note: {curve.run} has not finished its schedule; selecting from the phases it has")
    return [str(c.select(within_points).checkpoint) for c in curves], [c.to_dict(within_points) for c in curves]


def _curve_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="winosim curve",
        description="Accuracy against weight density along the pruning schedule of training runs, and the lowest "
        "density within a tolerance of each run's dense accuracy (the density search).",
    )
    p.add_argument("runs", nargs="+", help="run folders written by winosim train")
    p.add_argument("--within", type=float, default=1.0, metavar="POINTS", help="tolerance in points (default 1.0)")
    p.add_argument("--output", default=None, help="write the Markdown table to this file (atomically)")
    return p


def curve_main(argv: list[str]) -> int:
    """`winosim curve RUN...`: print (or write) the density-search table."""
    from winosim.nn.search import curve_table, density_curve

    args = _curve_parser().parse_args(argv)
    table = curve_table([density_curve(r) for r in args.runs], args.within)
    if args.output:
        atomic_write_text(Path(args.output), table)
        print(f"curve: wrote {args.output}")
    else:
        print(table, end="")
    return 0


def trace_main(argv: list[str]) -> int:
    """`winosim trace ...`: write the trace atomically and print one line per variant."""
    from winosim.nn.extract import extract_trace
    from winosim.trace import write_trace

    args = _trace_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    if not str(args.out).endswith(".npz"):
        raise ConfigError(f"--out must end in .npz, got {args.out!r}")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    command = "python -m winosim trace " + shlex.join(argv)
    checkpoints, searches = _resolve_checkpoints(args.checkpoints, args.select_within)
    trace = extract_trace(
        checkpoints,
        args.data,
        images=args.images,
        seed=args.seed,
        test_limit=args.test_limit,
        names=names,
        device=args.device,
        precision=args.precision,
        command=command,
        searches=searches,
    )
    path = write_trace(trace, args.out)
    size = Path(path).stat().st_size
    print(f"trace: wrote {path} ({size / 1e6:.2f} MB, {trace.images} images, network {trace.network})")
    for v in trace.variants:
        print(
            f"  {v.name}: method {v.method}, accuracy {v.accuracy:.4f}, dense accuracy {v.dense_accuracy}, "
            f"weight density {trace.weight_density(v):.4f}, activation density {trace.activation_density(v):.4f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m winosim.nn.commands {train,trace} ...` (a stand-in for the winosim dispatcher)."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "trace": trace_main, "curve": curve_main}
    if not args or args[0] not in commands:
        print("usage: python -m winosim.nn.commands {train,trace,curve} ...", file=sys.stderr)
        return 2
    try:
        return commands[args[0]](args[1:])
    except WinosimError as exc:
        print(f"winosim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("winosim: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

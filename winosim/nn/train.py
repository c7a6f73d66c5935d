"""Training with a density schedule: dense training, then magnitude pruning steps each followed by masked
retraining (paper.md section 3), with atomic, resumable checkpoints.

A run is a sequence of *phases*: phase 0 trains the dense model (`epochs`), phase i >= 1 prunes every
Winograd-eligible layer to `densities[i-1]` (cumulative masks) and retrains for `retrain_epochs`. SGD with
Nesterov momentum; the learning rate of a phase starts at `lr` (dense) or `retrain_lr` (retraining) and is
divided by 10 at the fractions `lr_drops` of the phase (a fixed stand-in for "divide by 10 on plateaus" that
makes the run a pure function of its configuration). The optimiser is re-created (momentum reset) at each
pruning step.

Everything random is derived from (seed, phase, epoch, batch), and a checkpoint stores the model, optimiser,
position and running statistics, so a run killed anywhere and resumed from its last checkpoint ends bit for
bit where an uninterrupted run would (on the same machine and torch build).

Files in the run folder: `last.pt` (resume point, written atomically every `checkpoint_every_s` seconds, at
every epoch end and at every phase end), `phase<i>_<tag>.pt` (the model at the end of each phase, e.g.
`phase0_dense.pt`, `phase2_d0.60.pt`; what `winosim trace` reads), `metrics.jsonl` (one JSON line per epoch:
accuracy, loss, learning rate, per-layer density, wall time), `config.json`. A file `threads` written into the
folder while the run goes on (one integer) sets torch's thread count from the next checkpoint on: the recipe's
driver gives a run the other run's cores when the run beside it ends (traces/recipes/cifar10.sh).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import time
import types
import typing
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

import winosim
from winosim.errors import ConfigError, OutputError, WinosimError
from winosim.files import atomic_write, atomic_write_text, check_output_folder
from winosim.nn.custom import build_custom, parse_factory
from winosim.nn.data import ArrayDataset, Dataset, derive_seed, load_dataset
from winosim.nn.distributed import (
    SINGLE,
    Ranks,
    all_sum,
    barrier,
    process_device,
    process_group,
    ranks_from_environment,
)
from winosim.nn.layers import MODES, spatial_to_winograd
from winosim.nn.models import NETWORK_NAMES, WinoNet, build_model
from winosim.nn.precondition import CALIBRATION_IMAGES, PRECONDITIONINGS, calibrate_position_scales
from winosim.nn.prune import layer_densities, network_density, prune_network
from winosim.text import described, first_line

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "winosim-checkpoint"
CHECKPOINT_VERSION = 1
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
SCHEDULES: tuple[str, ...] = ("step", "onecycle")


class CheckpointError(WinosimError):
    """A checkpoint that is missing, unreadable or does not fit the requested use."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's result (run-time knobs like `max_steps` are not here)."""

    network: str
    mode: str
    data: str
    out: str
    epochs: int = 30
    densities: tuple[float, ...] = ()
    retrain_epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    retrain_lr: float = 0.01
    lr_drops: tuple[float, ...] = (0.5, 0.75)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    seed: int = 0
    num_classes: int | None = None
    dropout: bool = True
    precision: str = "auto"
    train_limit: int | None = None
    epoch_images: int | None = None
    retrain_epoch_images: int | None = None
    test_limit: int | None = None
    init_from: str | None = None
    branch_from: str | None = None
    checkpoint_every_s: float = 240.0
    schedule: str = "step"
    warmup: float = 0.25
    final_lr_fraction: float = 0.001
    label_smoothing: float = 0.0
    channels_last: bool = False
    precondition: str = "none"
    model_factory: str | None = None
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self._check_model()
        self._check_choices()
        self._check_schedule_numbers()
        self._check_counts()
        self._check_starting_point()

    def _check_model(self) -> None:
        if self.model_factory is not None:
            parse_factory(self.model_factory)
            if not self.dropout:
                raise ConfigError("TrainConfig: --no-dropout applies to the built-in networks, not to --model")
        elif self.network not in NETWORK_NAMES:
            raise ConfigError(f"TrainConfig: network must be one of {NETWORK_NAMES}, got {self.network!r}")

    def _check_choices(self) -> None:
        choices = {"mode": MODES, "schedule": SCHEDULES, "precondition": PRECONDITIONINGS, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"TrainConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.precondition != "none" and self.mode == "spatial":
            raise ConfigError("TrainConfig: precondition scales Winograd-domain weights: not for mode 'spatial'")

    def _check_schedule_numbers(self) -> None:
        """The learning-rate schedule, the optimizer and the pruning schedule."""
        if not 0 <= self.warmup < 1 or not 0 <= self.final_lr_fraction <= 1:
            raise ConfigError(
                f"TrainConfig: warmup in [0, 1) and final_lr_fraction in [0, 1], got {self.warmup}, "
                f"{self.final_lr_fraction}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"TrainConfig: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        previous = math.inf  # the first step may keep every weight (1.0); each later one keeps strictly fewer
        for d in self.densities:
            if not 0.0 < d <= 1.0 or not d < previous:
                raise ConfigError(
                    f"TrainConfig: densities must strictly decrease within (0, 1], got {list(self.densities)}"
                )
            previous = d
        for name in ("lr", "retrain_lr", "checkpoint_every_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig: {name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError(
                f"TrainConfig: momentum in [0, 1) and weight_decay >= 0, got {self.momentum}, {self.weight_decay}"
            )
        if any(not 0 < f < 1 for f in self.lr_drops):
            raise ConfigError(f"TrainConfig: lr_drops must be fractions in (0, 1), got {list(self.lr_drops)}")

    def _check_counts(self) -> None:
        """Epochs, batch and the optional limits on images and classes."""
        for name in ("epochs", "retrain_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ConfigError(f"TrainConfig: batch_size must be >= 1, got {self.batch_size}")
        for name in ("train_limit", "epoch_images", "retrain_epoch_images", "test_limit", "num_classes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"TrainConfig: {name} must be >= 1 or None, got {value}")

    def _check_starting_point(self) -> None:
        if self.init_from is not None and self.mode == "spatial":
            raise ConfigError(
                "TrainConfig: init_from (a spatial checkpoint) needs mode 'native' or 'winograd_relu', got 'spatial'"
            )
        if self.init_from is not None and self.branch_from is not None:
            raise ConfigError("TrainConfig: init_from and branch_from exclude each other (a branch has a dense model)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["densities"] = list(self.densities)
        data["lr_drops"] = list(self.lr_drops)
        if self.input_shape is not None:
            data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """The configuration stored in a checkpoint or config.json; ConfigError naming the first bad field."""
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig: expected a mapping, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown fields {sorted(map(str, unknown))}")
        values = dict(data)
        for name in ("densities", "lr_drops", "input_shape"):
            if name in values and isinstance(values[name], list | tuple):
                values[name] = tuple(values[name])
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            if not _has_type(value, hints[name]):
                raise ConfigError(f"TrainConfig: {name} must be {hints[name]}, got {value!r:.60}")
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        if missing:
            raise ConfigError(f"TrainConfig: missing fields {missing}")
        return cls(**values)

    def images_per_epoch(self, phase: int) -> int | None:
        """Images per epoch in `phase` (None: the whole training set); retraining may use a shorter epoch."""
        if phase > 0 and self.retrain_epoch_images is not None:
            return self.retrain_epoch_images
        return self.epoch_images

    def lr_at(self, phase: int, done: int, total: int) -> float:
        """Learning rate of the step after `done` of the `total` steps of `phase`.

        `step`: the phase's initial rate divided by 10 at each fraction of `lr_drops`. `onecycle`: the dense
        phase warms up linearly over the fraction `warmup` to `lr`, then decays linearly to
        `lr * final_lr_fraction`; each retraining phase decays linearly from `retrain_lr` the same way (no
        warm-up: it starts from a trained model).
        """
        base = self.lr if phase == 0 else self.retrain_lr
        fraction = done / total if total else 0.0
        if self.schedule == "step":
            return base * 0.1 ** sum(fraction >= d for d in self.lr_drops)
        warmup = self.warmup if phase == 0 else 0.0
        position = (done + 1) / total if total else 1.0
        if position <= warmup:
            return base * position / warmup
        decay = (position - warmup) / (1.0 - warmup)
        return base * (1.0 - decay * (1.0 - self.final_lr_fraction))

    def phases(self) -> list[tuple[float | None, int, float]]:
        """(density or None for dense, epochs, initial learning rate) per phase."""
        return [(None, self.epochs, self.lr)] + [(d, self.retrain_epochs, self.retrain_lr) for d in self.densities]


def _has_type(value: Any, annotation: Any) -> bool:
    """Whether a plain value read from a checkpoint fits a TrainConfig/TrainState annotation (bool is not int,
    an int is a float, tuple[float, ...] holds numbers)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arm) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        (item, *_) = typing.get_args(annotation)
        return isinstance(value, tuple) and all(_has_type(v, item) for v in value)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return True


def phase_tag(density: float | None) -> str:
    return "dense" if density is None else f"d{density:.2f}"


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint. `batch` is the next batch of epoch `epoch` of `phase`."""

    phase: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    wall_s: float = 0.0
    last_test_accuracy: float | None = None
    dense_accuracy: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # where the steps ran: {"from_step", "machine", "precision"} (the precision `auto` resolved to there), one
    # entry per change of machine or precision; empty in a checkpoint from before they were recorded
    segments: list[dict[str, Any]] = field(default_factory=list)


def record_segment(state: TrainState, machine: str, precision: str) -> None:
    """Note in `state` that its steps from `state.step` on run on `machine` in `precision`, unless its last
    segment already says so (a run resumed where it stopped adds nothing; one resumed on another machine, or in
    another precision, starts a segment)."""
    last = state.segments[-1] if state.segments else None
    if last is None or (last.get("machine"), last.get("precision")) != (machine, precision):
        state.segments.append({"from_step": state.step, "machine": machine, "precision": precision})


def _state_from_dict(data: Any) -> TrainState:
    """The TrainState stored in a checkpoint; ConfigError naming the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"TrainState: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(TrainState)
    unknown = set(data) - set(hints)
    if unknown:
        raise ConfigError(f"TrainState: unknown fields {sorted(map(str, unknown))}")
    for name, value in data.items():
        if not _has_type(value, hints[name]):
            raise ConfigError(f"TrainState: {name} must be {hints[name]}, got {value!r:.60}")
    counters = ("phase", "epoch", "batch", "step", "correct", "seen")
    if any(data.get(name, 0) < 0 for name in counters):
        raise ConfigError(f"TrainState: {', '.join(counters)} must be >= 0")
    return TrainState(**data)


@dataclass(frozen=True)
class TrainResult:
    finished: bool
    steps: int
    out: Path
    state: TrainState


def select_device(name: str | None = None) -> torch.device:
    """`name` if given, else CUDA when present, else CPU (one process; `process_device` for a rank's)."""
    return process_device(SINGLE, name)


def describe_machine(device: torch.device) -> str:
    """What ran the work, for a checkpoint's or a trace's provenance: the GPU's name, or the CPU's model and
    its core count, with the torch build."""
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else f"{_cpu_model()}, {os.cpu_count()} cores"
    return f"{name} ({device.type}, torch {torch.__version__})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX); without it bf16 autocast is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on CUDA and on CPUs with native bf16, else fp32 (emulated bf16 measured ~10x slower)."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast for `precision` "bf16" (after `resolve_precision`), else true float32: on CUDA, cuDNN
    convolutions and matrix products would otherwise round their inputs to TF32 (10-bit mantissa), which moves
    ReLU's zero decisions near 0 and so a trace's masks; both are switched off inside, restored after."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if device.type == "cuda":
        return _no_tf32()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    was = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
        ):
            yield
    finally:
        matmul.allow_tf32 = was


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through `winosim.files.atomic_write` (temp file in the same folder, fsync, rename)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a winosim checkpoint with `weights_only=True`; CheckpointError on anything wrong."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint not found: {source}")
    if not zipfile.is_zipfile(source):  # torch.save writes a zip archive; torch's own refusal is a paragraph
        raise CheckpointError(
            f"{source}: not a readable checkpoint (not the zip archive torch.save writes: truncated, or another file)"
        )
    try:
        with warnings.catch_warnings():  # torch warns before refusing; the error line below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / foreign / unsafe files
        raise CheckpointError(f"{source}: not a readable checkpoint ({described(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not a winosim checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{source}: checkpoint version {ckpt.get('version')!r} is not {CHECKPOINT_VERSION}")
    model = ckpt.get("model")
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise CheckpointError(f"{source}: malformed checkpoint: 'model' is not a mapping of names to tensors")
    try:
        TrainConfig.from_dict(ckpt.get("config"))
        if "state" in ckpt:
            _state_from_dict(ckpt["state"])
    except ConfigError as exc:
        raise CheckpointError(f"{source}: malformed checkpoint: {exc}") from None
    if ckpt.get("optimizer") is not None and not isinstance(ckpt["optimizer"], dict):
        raise CheckpointError(f"{source}: malformed checkpoint: 'optimizer' is not a mapping")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """`model.load_state_dict(state)`, with a CheckpointError naming `source` when names or shapes differ."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # torch's message: a header line ("Error(s) in loading state_dict for X:"), then one line per problem
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{source}: weights do not fit the model ({detail})") from None


def model_from_checkpoint(ckpt: dict[str, Any]) -> WinoNet:
    """Rebuild the model stored in a checkpoint (eval mode, CPU)."""
    config = TrainConfig.from_dict(ckpt["config"])
    model = build_network(config, config.num_classes)
    load_model_state(model, ckpt["model"], f"checkpoint of {config.out}")
    return model.eval()


def build_network(config: TrainConfig, num_classes: int | None) -> WinoNet:
    """The model a configuration trains: a built-in network, or its `model_factory`'s model converted."""
    if config.model_factory is not None:
        if config.input_shape is None:
            raise ConfigError(f"TrainConfig: model_factory {config.model_factory!r} needs input_shape")
        return build_custom(config.model_factory, config.mode, num_classes, config.input_shape)
    return build_model(config.network, config.mode, num_classes, dropout=config.dropout)


def native_from_spatial(model: WinoNet, spatial_state: dict[str, torch.Tensor]) -> None:
    """Load a spatial model's state into a Winograd-domain model: U = G (g * mask) G^T per Winograd layer, masks
    reset. For `native` the result computes exactly what the spatial model does; for `winograd_relu` it is a
    starting point only (the ReLU moves into the Winograd domain, so the function changes and needs training)."""
    state: dict[str, torch.Tensor] = {}
    winograd_names = {geom.name for geom, _ in model.winograd_modules()}
    for key, value in spatial_state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in winograd_names and leaf in ("weight", "weight_mask"):
            if leaf == "weight":
                mask = spatial_state[f"{prefix}.weight_mask"]
                state[key] = spatial_to_winograd(value * mask)
                state[f"{prefix}.weight_mask"] = torch.ones_like(state[key], dtype=torch.bool)
            continue
        state[key] = value  # everything else, a converted layer's bias included
    model.load_state_dict(state)


def _optimizer(model: WinoNet, config: TrainConfig, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


@torch.no_grad()
def evaluate(
    model: WinoNet,
    data: Dataset,
    device: torch.device,
    precision: str,
    batch_size: int = 256,
    ranks: Ranks = SINGLE,
) -> float:
    """Top-1 accuracy (fraction) of `model` on every image of `data`; in a data-parallel run each process
    takes every `world`-th batch and the hits are added (the same batches, so the same figure as one process)."""
    was_training = model.training
    model.eval()
    correct = 0
    for index, (x, y) in enumerate(data.test_batches(batch_size)):
        if index % ranks.world != ranks.rank:
            continue
        with autocast(device, precision):
            logits = model(x.to(device))
        correct += int((logits.argmax(1) == y.to(logits.device)).sum())
    model.train(was_training)
    return round(all_sum([float(correct)], ranks, device)[0]) / len(data)


def _checkpoint(
    model: WinoNet, optimizer: torch.optim.Optimizer | None, config: TrainConfig, state: TrainState, **extra: Any
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "winosim_version": winosim.__version__,
        "torch_version": str(torch.__version__),
        "machine": describe_machine(next(model.parameters()).device),
        "config": config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "state": asdict(state),
        **extra,
    }


THREADS_FILE = "threads"


def requested_threads(out: Path) -> int | None:
    """The thread count asked for in `out/threads` (module docstring), at most the machine's cores, or None
    when there is no such file or it does not hold one integer >= 1 (a half-written or foreign file is
    ignored, never fatal to a long run)."""
    try:
        text = (out / THREADS_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit() or int(text) < 1:
        return None
    return min(int(text), os.cpu_count() or 1)


def _format_s(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _remaining_images(config: TrainConfig, state: TrainState, train_images: int) -> int:
    """Training images still to go in the whole run from `state` (the ETA's numerator)."""
    remaining = 0
    for phase, (_, epochs, _) in enumerate(config.phases()):
        if phase < state.phase:
            continue
        per_epoch = min(config.images_per_epoch(phase) or train_images, train_images)
        done = state.epoch * per_epoch + state.batch * config.batch_size if phase == state.phase else 0
        remaining += max(epochs * per_epoch - done, 0)
    return remaining


@torch.no_grad()
def check_model_fits_data(model: torch.nn.Module, data: Dataset, classes: int, name: str) -> None:
    """One image of `data` through `model` (eval mode, no gradient: nothing in the model changes), so that an
    image size the model cannot take, or fewer outputs than the data has classes, is one ConfigError before a
    run folder exists rather than a failure at the first step."""
    x = data.take([0])[0].cpu()
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"{name}: the data's {tuple(x.shape[1:])} images do not fit the model ({first_line(exc)})"
        ) from None
    finally:
        model.train(was_training)
    if logits.ndim != 2 or logits.shape[1] < classes:
        raise ConfigError(
            f"{name}: the model gives outputs of shape {tuple(logits.shape[1:])} per image, the data has "
            f"{classes} classes"
        )


def refuse_existing_run(out: str | Path) -> None:
    """Refuse a folder `out` that cannot take a new run: ConfigError when it already holds one (a new run
    there would overwrite it), OutputError when it cannot be made or written (`check_output_folder`)."""
    check_output_folder(out)  # OutputError: a file in the way, no permission
    if (Path(out) / "last.pt").exists():
        raise ConfigError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")


RUN_LOCK = "train.lock"
"""The file in a run folder that the training process holds an exclusive lock on (`_FolderLock`)."""


class _FolderLock:
    """An exclusive lock on a run folder while this process trains in it (`flock` on `RUN/train.lock`, released
    when the process ends, however it ends): a second `winosim train` on the same folder, a run started
    twice or resumed while it still runs, is refused in one line instead of both writing its checkpoints.
    Acquired once the folder exists (`_Run` creates it after its checks), released on leaving the block."""

    def __init__(self) -> None:
        self._handle: typing.IO[bytes] | None = None

    def acquire(self, out: Path) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): no lock
            return
        handle = (out / RUN_LOCK).open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ConfigError(
                f"{out}: another winosim train is running in this folder (it holds {RUN_LOCK}); let it finish "
                "or stop it first"
            ) from None
        self._handle = handle

    def __enter__(self) -> _FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class _Run:
    """One invocation of `train` on one run folder: the model, optimiser, data and position, and the steps that
    move them (an epoch, its record, a phase's end, a checkpoint). The order of everything random and of every
    checkpoint is the run's contract: a resumed run ends bit for bit where an uninterrupted one would."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool,
        device: torch.device,
        ranks: Ranks = SINGLE,
        lock: _FolderLock | None = None,
    ) -> None:
        out = Path(config.out)
        last = out / "last.pt"
        ckpt: dict[str, Any] | None = None
        if resume:
            ckpt = load_checkpoint(last)
            moved = {"data": config.data} if config.data else {}  # `--data` on resume: where the data now lives
            config = TrainConfig.from_dict({**ckpt["config"], "out": str(out), **moved})
        else:
            refuse_existing_run(out)
        dev = device
        train_set = load_dataset(config.data, "train").subset(config.train_limit)
        test_set = load_dataset(config.data, "test").subset(config.test_limit)
        if dev.type == "cuda" and isinstance(train_set, ArrayDataset) and isinstance(test_set, ArrayDataset):
            train_set, test_set = train_set.to(dev), test_set.to(dev)  # data on the GPU: no host copies per batch
        classes = config.num_classes or train_set.num_classes
        if classes < train_set.num_classes:
            raise ConfigError(
                f"--num-classes {classes}: the dataset {train_set.name!r} has {train_set.num_classes} classes"
            )
        if config.num_classes is None:
            config = TrainConfig.from_dict({**config.to_dict(), "num_classes": classes})
        if config.model_factory is not None and config.input_shape is None:
            shape = tuple(int(d) for d in train_set.take([0])[0].shape[1:])
            config = TrainConfig.from_dict({**config.to_dict(), "input_shape": shape})
        ranks.check_batches(
            config.batch_size,
            [min(config.images_per_epoch(phase) or len(train_set), len(train_set)) for phase in range(2)],
        )
        barrier(ranks)  # every process has checked the folder before rank 0 writes into it

        torch.manual_seed(config.seed)
        model = build_network(config, classes)
        check_model_fits_data(model, test_set, classes, config.network)
        phases = config.phases()
        state = TrainState()
        branched = False
        if ckpt is not None:
            load_model_state(model, ckpt["model"], last)
            state = _state_from_dict(ckpt.get("state", {}))
        elif config.branch_from:
            dense_model, state = _branch_state(config, config.branch_from)
            load_model_state(model, dense_model, Path(config.branch_from))
            branched = True
        elif config.init_from:
            _start_from_spatial(model, config, config.init_from)
        machine, precision = describe_machine(dev), resolve_precision(config.precision, dev)
        if ranks.distributed:
            machine = f"{machine} x {ranks.world} processes (DDP)"
        record_segment(state, machine, precision)
        model.to(dev)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if ranks.main:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # no permission, a full disk: the folder was checked, not reserved
                raise OutputError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
            if lock is not None:
                lock.acquire(out)  # before anything is written in it
        optimizer = _optimizer(model, config, phases[min(state.phase, len(phases) - 1)][2])
        if ckpt is not None and ckpt.get("optimizer") is not None:
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise CheckpointError(f"{last}: optimiser state does not fit the model ({exc})") from None
        if ranks.main:
            atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")

        self.config, self.out, self.device, self.phases, self.ranks = config, out, dev, phases, ranks
        self.model, self.optimizer, self.state = model, optimizer, state
        # what the training step calls: the model itself, or DDP's wrapper of it (gradients averaged over the
        # processes); everything else (evaluation, pruning, checkpoints) uses the model
        self.forward: torch.nn.Module = (
            torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
            if ranks.distributed
            else model
        )
        self.train_set, self.test_set = train_set, test_set
        self.calibration_images = (
            train_set.take(range(min(CALIBRATION_IMAGES, len(train_set))))[0].to(dev)
            if config.precondition == "position_rms"
            else None
        )
        self.segment_start = self.last_save = time.monotonic()
        self.rate_start = (self.segment_start, state.step)  # images/s and ETA count from this invocation's start
        self.steps_here = 0
        self._log(
            f"{'resumed' if ckpt is not None else 'started'} at step {state.step}: {machine}, {precision}"
            f" (asked {config.precision}), torch threads: {torch.get_num_threads()}"
        )
        if branched:  # the dense phase is the other run's: record it here as this run would have, and go on
            self._log(f"branched from {config.branch_from}: its dense phase, then this run's pruning schedule")
            self.write_metrics()
            self.end_phase()

    def save(self) -> None:
        """Write `last.pt` (atomically), adding the time since the last save to the run's wall time."""
        now = time.monotonic()
        self.state.wall_s += now - self.segment_start
        self.segment_start = self.last_save = now
        if not self.ranks.main:
            return
        atomic_save(_checkpoint(self.model, self.optimizer, self.config, self.state), self.out / "last.pt")

    def _log(self, line: str) -> None:
        if not self.ranks.main:
            return
        with (self.out / "progress.log").open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    def progress_line(self, density: float | None, epochs: int, per_epoch: int, note: str = "") -> None:
        """Append one line to `progress.log`: where the run is, images/s since this invocation began, ETA.
        With a `note` the line closes the epoch just finished (`state.epoch` already counts it)."""
        state = self.state
        elapsed = time.monotonic() - self.rate_start[0]
        rate = (state.step - self.rate_start[1]) * self.config.batch_size / max(elapsed, 1e-9)
        eta = _remaining_images(self.config, state, len(self.train_set)) / rate if rate > 0 else float("inf")
        where = (
            f"epoch {state.epoch}/{epochs} done"
            if note
            else f"epoch {state.epoch + 1}/{epochs} batch {state.batch}/{per_epoch}"
        )
        line = (
            f"phase {state.phase} ({phase_tag(density)}) {where} "
            f"step {state.step} | {rate:.1f} images/s | run ETA {_format_s(eta) if rate > 0 else '?'}"
        )
        self._log(line + (f" | {note}" if note else ""))

    def follow_requested_threads(self) -> None:
        """Take the thread count asked for in the run folder's `threads` file, if it changed."""
        threads = requested_threads(self.out)
        if threads is not None and threads != torch.get_num_threads():
            self._log(f"threads {torch.get_num_threads()} -> {threads} (asked in {THREADS_FILE})")
            torch.set_num_threads(threads)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        """One optimiser step on one batch, its loss and hits added to the epoch's running sums."""
        state, config = self.state, self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(config.seed, state.phase, state.epoch, state.batch, 3))
        count = len(y)
        if self.ranks.distributed:
            share = self.ranks.share(count)
            x, y = x[share], y[share]
        x, y = x.to(self.device), y.to(self.device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, config.precision):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.ranks.distributed:  # DDP averages the processes' gradients: weight each by its share
            (loss * self.ranks.loss_scale(len(y), count)).backward()
        else:
            loss.backward()
        self.optimizer.step()
        state.batch += 1
        state.step += 1
        self.steps_here += 1
        loss_sum, correct, seen = all_sum(
            [float(loss.detach()) * len(y), float((logits.detach().argmax(1) == y).sum()), float(len(y))],
            self.ranks,
            self.device,
        )
        state.loss_sum += loss_sum
        state.correct += round(correct)
        state.seen += round(seen)

    def train_epoch(self, max_steps: int | None, progress: bool) -> bool:
        """Train the rest of the current epoch and close it (test accuracy, metrics, checkpoint); False when
        `max_steps` stopped this invocation first (after a checkpoint)."""
        state, config = self.state, self.config
        density, epochs, _ = self.phases[state.phase]
        epoch_images = config.images_per_epoch(state.phase)
        per_epoch = self.train_set.batches_per_epoch(config.batch_size, epoch_images)
        total = epochs * per_epoch
        if self.calibration_images is not None and state.batch == 0:  # resumed mid-epoch: the saved scales
            calibrate_position_scales(self.model, self.calibration_images, self.optimizer)
        self.model.train()
        epoch_start = time.monotonic()
        epoch_start_batch = state.batch
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = self.train_set.train_batches(
            seed=derive_seed(config.seed, state.phase),
            epoch=state.epoch,
            batch_size=config.batch_size,
            start_batch=state.batch,
            epoch_images=epoch_images,
        )
        bar = tqdm(
            total=per_epoch,
            initial=state.batch,
            disable=not progress or not self.ranks.main,
            leave=False,
            dynamic_ncols=True,
            desc=f"phase {state.phase} ({phase_tag(density)}) epoch {state.epoch + 1}/{epochs}",
        )
        for x, y in batches:
            if max_steps is not None and self.steps_here >= max_steps:
                bar.close()
                self.save()
                return False
            self._step(x, y, config.lr_at(state.phase, state.epoch * per_epoch + state.batch, total))
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.3f}", acc=f"{state.correct / state.seen:.3f}")
            if time.monotonic() - self.last_save >= config.checkpoint_every_s:
                self.save()
                self.progress_line(density, epochs, per_epoch)
                self.follow_requested_threads()
        bar.close()
        images_per_s = (state.batch - epoch_start_batch) * config.batch_size / max(time.monotonic() - epoch_start, 1e-9)
        self._end_epoch(density, epochs, per_epoch, total, images_per_s)
        return True

    def _end_epoch(self, density: float | None, epochs: int, per_epoch: int, total: int, images_per_s: float) -> None:
        """Test accuracy, the epoch's metrics line, a checkpoint at the next epoch's start."""
        state, config = self.state, self.config
        test_accuracy = evaluate(self.model, self.test_set, self.device, config.precision, ranks=self.ranks)
        record = {
            "phase": state.phase,
            "density": 1.0 if density is None else density,
            "epoch": state.epoch + 1,
            "epochs": epochs,
            "step": state.step,
            "lr": config.lr_at(state.phase, (state.epoch + 1) * per_epoch - 1, total),
            "train_loss": state.loss_sum / max(state.seen, 1),
            "train_accuracy": state.correct / max(state.seen, 1),
            "test_accuracy": test_accuracy,
            "test_images": len(self.test_set),
            "network_density": network_density(self.model),
            "layer_density": layer_densities(self.model),
            "train_images_per_s": images_per_s,
            "wall_s": state.wall_s + time.monotonic() - self.segment_start,
        }
        if self.ranks.main:
            logger.info(
                "phase %d epoch %d/%d: train loss %.4f acc %.4f, test acc %.4f",
                state.phase,
                state.epoch + 1,
                epochs,
                record["train_loss"],
                record["train_accuracy"],
                test_accuracy,
            )
        state.history.append(record)
        state.last_test_accuracy = test_accuracy
        state.epoch += 1
        state.batch = 0
        state.loss_sum, state.correct, state.seen = 0.0, 0, 0
        self.save()
        self.progress_line(density, epochs, per_epoch, f"test accuracy {test_accuracy:.4f}")
        self.write_metrics()

    def write_metrics(self) -> None:
        """`metrics.jsonl`: every epoch record so far, one JSON line each (atomically; rank 0)."""
        if not self.ranks.main:
            return
        atomic_write_text(
            self.out / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.state.history)
        )

    def end_phase(self) -> None:
        """Save the model at this phase's density (`phase<i>_<tag>.pt`), then prune to the next phase's density
        with a fresh optimiser (momentum reset), and checkpoint."""
        state, config, model = self.state, self.config, self.model
        density, epochs, _ = self.phases[state.phase]
        if state.last_test_accuracy is None or epochs == 0:
            state.last_test_accuracy = evaluate(model, self.test_set, self.device, config.precision, ranks=self.ranks)
        if state.phase == 0:
            state.dense_accuracy = state.last_test_accuracy
        if self.ranks.main:
            atomic_save(
                _checkpoint(
                    model,
                    None,
                    config,
                    state,
                    accuracy=state.last_test_accuracy,
                    density=density,
                    dense_accuracy=state.dense_accuracy,
                    measured_density=network_density(model),
                ),
                self.out / f"phase{state.phase}_{phase_tag(density)}.pt",
            )
        state.phase += 1
        state.epoch = 0
        state.batch = 0
        state.last_test_accuracy = None
        if state.phase < len(self.phases):
            next_density, _, next_lr = self.phases[state.phase]
            assert next_density is not None
            prune_network(model, next_density)
            self.optimizer = _optimizer(model, config, next_lr)
        self.save()


BRANCH_FREE_FIELDS = frozenset(
    {"out", "checkpoint_every_s", "densities", "retrain_epochs", "retrain_lr", "retrain_epoch_images", "branch_from"}
)
"""The fields a branch may set differently from the run it branches from: the pruning schedule and run-time ones.
Every other field shapes the dense phase (or the data and the measurement) and must match."""


def _branch_state(config: TrainConfig, path: str) -> tuple[dict[str, torch.Tensor], TrainState]:
    """`--branch-from RUN/phase0_dense.pt`: the dense model and state of another run whose dense phase this run's
    configuration would have trained identically; this run then goes on from there with its own pruning
    schedule. ConfigError naming the first field that differs, or a checkpoint that is not a dense phase's."""
    source = load_checkpoint(path)
    state = _state_from_dict(source.get("state", {}))
    if source.get("density", "dense") is not None or state.phase != 0 or state.dense_accuracy is None:
        raise ConfigError(f"--branch-from {path}: not the end of a dense phase (a run's phase0_dense.pt)")
    theirs = TrainConfig.from_dict(source["config"]).to_dict()
    ours = config.to_dict()
    free = ", ".join(sorted(BRANCH_FREE_FIELDS - {"branch_from", "out", "checkpoint_every_s"}))
    for name in sorted(set(ours) - BRANCH_FREE_FIELDS):
        if ours[name] != theirs[name]:
            raise ConfigError(
                f"--branch-from {path}: its run trained with {name} {theirs[name]!r}, this one asks for "
                f"{ours[name]!r} (a branch changes only the pruning schedule: {free})"
            )
    return source["model"], state


def _start_from_spatial(model: WinoNet, config: TrainConfig, path: str) -> None:
    """`--init-from`: the weights of a trained spatial checkpoint of the same network (U = G g G^T for the
    Winograd modes); ConfigError for any other checkpoint."""
    source = load_checkpoint(path)
    src_cfg = source["config"]
    same = (src_cfg["network"], src_cfg.get("model_factory")) == (config.network, config.model_factory)
    if not same or src_cfg["mode"] != "spatial":
        raise ConfigError(
            f"--init-from {path}: needs a spatial {config.network} checkpoint, got "
            f"{src_cfg['mode']} {src_cfg['network']}"
        )
    native_from_spatial(model, source["model"])


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Run (or continue, with `resume`) the training described by `config` in the folder `config.out`.

    With `resume`, the configuration stored in `out/last.pt` is used and `config` only names the folder.
    `max_steps` stops this invocation after that many optimiser steps (a checkpoint is written first).
    Under torchrun (WORLD_SIZE etc. in the environment) this process is one of a data-parallel run
    (`winosim.nn.distributed`): `device` then names the kind (`cpu`, `cuda`), the process takes its own GPU.
    """
    ranks = ranks_from_environment()
    dev = process_device(ranks, device)
    with process_group(ranks, dev), _FolderLock() as lock:
        # the run (and its DDP model) lives in the call below, so it is gone before the process group is
        return _train_in_group(_Run(config, resume=resume, device=dev, ranks=ranks, lock=lock), max_steps, progress)


def _train_in_group(run: _Run, max_steps: int | None, progress: bool) -> TrainResult:
    state = run.state
    while state.phase < len(run.phases):
        while state.epoch < run.phases[state.phase][1]:
            if not run.train_epoch(max_steps, progress):
                return TrainResult(False, run.steps_here, run.out, state)
        run.end_phase()
    return TrainResult(True, run.steps_here, run.out, state)

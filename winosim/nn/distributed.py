"""Data-parallel training across processes with PyTorch's own DistributedDataParallel (design.md, "Scale").

`winosim train --processes N` (which starts N processes on this machine, `launch`) or `winosim train` under
`torchrun` (which sets WORLD_SIZE, RANK and LOCAL_RANK) trains one model in several processes, one per GPU
(NCCL) or per group of CPU cores (Gloo):

    winosim train --processes 8 --network resnet18 --method winograd_relu ...        # one machine
    torchrun --nnodes 2 --nproc-per-node 8 ... -m winosim train --network resnet18 ...  # several machines

The run is the same run as in one process: `--batch-size` is the *global* batch; every process draws the
same seeded global batch and trains on its contiguous share (batch / processes images, rounded down or up),
its mean loss scaled by share x processes / batch so that DDP's average of the gradients is the gradient of
the whole batch. The one difference is batch norm, whose batch statistics are those of each process's share
(DDP's usual behaviour); the running statistics are rank 0's, broadcast to the others before each forward
pass. Loss, hit and test-accuracy sums are added over the processes. Only rank 0 writes the run folder
(checkpoints, `progress.log`, `metrics.jsonl`) and prints; every process reads the same checkpoint on
`--resume`, and a run may resume with another number of processes (its provenance records each change as a
new segment).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from winosim.errors import ConfigError, WinosimError
from winosim.text import first_line

ENV_VARS: tuple[str, ...] = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
ERROR_PREFIX = "winosim: error:"
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a data-parallel run: `world` processes, this one `rank` (0 writes), the
    `local_rank`-th on its machine (its GPU's index)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world < 1:
            raise ConfigError(f"WORLD_SIZE must be >= 1, got {self.world}")
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"RANK must be in [0, WORLD_SIZE={self.world}), got {self.rank}")
        if self.local_rank < 0 or self.local_rank > self.rank:
            raise ConfigError(f"LOCAL_RANK must be in [0, RANK={self.rank}], got {self.local_rank}")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and prints (rank 0)."""
        return self.rank == 0

    def share(self, count: int) -> slice:
        """This process's contiguous share of a batch of `count` images: floor(count / world) or one more
        (`loss_scale` makes the averaged gradient the whole batch's however the shares fall)."""
        return slice(self.rank * count // self.world, (self.rank + 1) * count // self.world)

    def loss_scale(self, share: int, count: int) -> float:
        """What this process's mean loss over its `share` of a `count`-image batch is multiplied by before the
        backward pass, so that DDP's average of the processes' gradients is the gradient of the whole batch's
        mean loss: share * world / count (1 for equal shares)."""
        return share * self.world / count

    def check_batches(self, batch_size: int, epoch_images: list[int] | None = None) -> None:
        """ConfigError unless every batch gives each process at least one image: the global batch, and the
        last batch of each epoch of `epoch_images` images."""
        if batch_size < self.world:
            raise ConfigError(
                f"--batch-size {batch_size} is the global batch: at least one image for each of the {self.world} "
                "processes"
            )
        for images in epoch_images or []:
            last = images % batch_size
            if 0 < last < self.world:
                raise ConfigError(
                    f"an epoch of {images} images ends with a batch of {last}, fewer than the {self.world} "
                    "processes: choose another --batch-size (or --epoch-images)"
                )


SINGLE = Ranks()


def ranks_from_environment(environ: Mapping[str, str] | None = None) -> Ranks:
    """The ranks torchrun (or any launcher following its convention) put in the environment; one process when
    WORLD_SIZE is absent. ConfigError naming the variable for a value that is not a whole number in range."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return SINGLE
    values: dict[str, int] = {}
    for name in ENV_VARS:
        text = env.get(name, "0").strip()
        if not text.isdigit():
            raise ConfigError(f"environment variable {name}={text!r} is not a whole number (set by torchrun)")
        values[name] = int(text)
    return Ranks(world=values["WORLD_SIZE"], rank=values["RANK"], local_rank=values["LOCAL_RANK"])


def process_device(ranks: Ranks, requested: str | None) -> torch.device:
    """The device of this process: `requested` (e.g. `cpu`, `cuda`), else CUDA when present, else the CPU; in a
    data-parallel run a CUDA process takes its own GPU, `cuda:LOCAL_RANK`."""
    try:
        device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise ConfigError(f"--device {requested!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"--device {requested}: winosim trains and measures on {' or '.join(DEVICE_TYPES)}")
    if ranks.distributed and device.type == "cuda":
        if device.index is not None:
            raise ConfigError(f"--device {requested}: under torchrun each process takes cuda:LOCAL_RANK; pass cuda")
        return torch.device("cuda", ranks.local_rank)  # process_group checks that the GPU exists
    if device.type == "cuda":
        try:  # a device this torch build or machine lacks (no CUDA, cuda:3 of one GPU) fails here, not mid-run
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(f"--device {requested}: not usable on this machine ({first_line(exc)})") from None
    return device


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the process group for the duration (NCCL on CUDA, Gloo on the CPU); nothing for one process."""
    if not ranks.distributed:
        yield
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {ranks.local_rank} has no GPU (this machine has {torch.cuda.device_count()})"
            )
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, world_size=ranks.world, rank=ranks.rank)
    try:
        yield
        dist.barrier()  # a run that ends well: no process closes its connections while another still uses them
    finally:
        gc.collect()  # what still holds the group (a DDP model's reducer in a reference cycle) goes first
        dist.destroy_process_group()


def all_sum(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """`values` added element-wise over the processes (in float64: hit counts stay exact)."""
    if not ranks.distributed:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return [float(v) for v in total.tolist()]


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _last_line(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return lines[-1] if lines else ""


def launch(command: list[str], processes: int, *, poll_s: float = 0.1) -> int:
    """Run `python COMMAND...` as `processes` processes of one data-parallel run on this machine (the
    environment torchrun would give them, a free local port). Rank 0's output is this process's; the others'
    standard error goes to a temporary file. The first failure stops the rest. Returns 0, rank 0's exit
    status when it failed (it has said why), or 130 when interrupted (the processes get the interrupt too and
    say so themselves); raises WinosimError with the error line of another process that failed alone."""
    if processes < 2:
        raise ConfigError(f"--processes must be >= 2 to launch a data-parallel run, got {processes}")
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(processes)}
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    with tempfile.TemporaryDirectory(prefix="winosim-ranks-") as logs:
        children: list[subprocess.Popen[bytes]] = []
        err_files = [os.path.join(logs, f"rank{rank}.err") for rank in range(processes)]
        try:
            for rank in range(processes):
                env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
                if rank == 0:
                    children.append(subprocess.Popen([sys.executable, *command], env=env))
                    continue
                with open(err_files[rank], "wb") as err:
                    children.append(
                        subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.DEVNULL, stderr=err)
                    )
            failed = _wait_first_failure(children, poll_s)
        except KeyboardInterrupt:
            _stop(children)
            return 130
        if failed is None:
            return 0
        rank, status = failed
        _stop(children, grace_s=2.0)
        if status < 0:
            line = _last_line(err_files[rank]) if rank else ""
            raise WinosimError(
                f"training process {rank} was ended by signal {signal.Signals(-status).name}"
                + (f": {line}" if line else "")
            )
        if rank == 0 or children[0].returncode not in (0, None, -signal.SIGTERM):
            return status  # rank 0 failed too, and said why on this process's stderr
        line = _last_line(err_files[rank])
        if line.startswith(ERROR_PREFIX):
            raise WinosimError(line.removeprefix(ERROR_PREFIX).strip())
        raise WinosimError(
            f"training process {rank} exited with status {status}" + (f": {line}" if line else " and no message")
        )


def _wait_first_failure(children: list[subprocess.Popen[bytes]], poll_s: float) -> tuple[int, int] | None:
    """Wait until every process has ended (None) or one has failed ((rank, exit status))."""
    while True:
        running = False
        for rank, child in enumerate(children):
            status = child.poll()
            if status is None:
                running = True
            elif status != 0:
                return rank, status
        if not running:
            return None
        time.sleep(poll_s)


def _stop(children: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """Give the processes still running `grace_s` to end on their own, then terminate (later kill) them."""
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(deadline - time.monotonic(), 0.0))
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

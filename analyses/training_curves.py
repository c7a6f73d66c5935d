"""Training curves of the long runs behind the traces: test accuracy, training loss and learning rate per
epoch, from the run logs committed under `traces/recipes/logs/<run>/` (copies of a run folder's
`metrics.jsonl` and `config.json`; the checkpoints themselves stay in the git-ignored `runs/`).

Writes `training-curves.md` (one table per run: every epoch of every phase, with its density, learning rate,
losses, accuracies, images/s and wall time) and `training-curves.png` (test accuracy against training
images seen, one line per run, phases marked). A run still in progress shows the epochs it has finished;
the table says so, with the schedule it has left.

    python analyses/training_curves.py [--logs traces/recipes/logs] [--out analyses/out]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _shared import OUT_DIR, ROOT

from winosim.files import atomic_write_text

LOGS_DIR = ROOT / "traces" / "recipes" / "logs"


@dataclass(frozen=True)
class RunLog:
    """One run's configuration and its per-epoch records, in order."""

    name: str
    config: dict[str, Any]
    epochs: tuple[dict[str, Any], ...]

    @property
    def schedule_epochs(self) -> int:
        """Epochs of the whole schedule: dense epochs plus retraining epochs of every density."""
        return int(self.config["epochs"]) + len(self.config["densities"]) * int(self.config["retrain_epochs"])


def read_logs(folder: Path) -> list[RunLog]:
    """Every run folder under `folder` holding a config.json and a metrics.jsonl, sorted by name."""
    runs = []
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        config_path, metrics_path = run / "config.json", run / "metrics.jsonl"
        if not (config_path.is_file() and metrics_path.is_file()):
            continue
        config = json.loads(config_path.read_text(encoding="utf-8"))
        records = tuple(json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line)
        runs.append(RunLog(run.name, config, records))
    return runs


def _standard_error_points(accuracy: float, images: int) -> float:
    """Binomial standard error of an accuracy measured on `images` images, in points."""
    return 100 * math.sqrt(accuracy * (1 - accuracy) / images)


def run_table(run: RunLog) -> str:
    """Markdown: the run's recipe line and one row per finished epoch."""
    c = run.config
    done = len(run.epochs)
    status = (
        "finished"
        if done >= run.schedule_epochs
        else f"in progress: {done} of {run.schedule_epochs} epochs of its schedule finished"
    )
    init = Path(c["init_from"]).parent.name if c.get("init_from") else "scratch"
    lines = [
        f"## `{run.name}`: {c['network']}, {c['mode']} ({status})",
        "",
        f"- recipe: batch {c['batch_size']}, {c.get('schedule', 'step')} schedule, peak lr {c['lr']}, retrain lr "
        f"{c['retrain_lr']}, label smoothing {c.get('label_smoothing', 0.0)}, weight decay {c['weight_decay']}, "
        f"precision {c['precision']}, dense epochs {c['epochs']}, densities {c['densities']} x "
        f"{c['retrain_epochs']} epochs, init from {init}",
        "",
        "| phase | density | epoch | lr (end) | train loss | train acc. | test acc. (± s.e.) | test images | images/s "
        "| wall (h) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run.epochs:
        error = _standard_error_points(r["test_accuracy"], r["test_images"])
        lines.append(
            f"| {r['phase']} | {r['density']:.2f} | {r['epoch']}/{r['epochs']} | {r['lr']:.4f} | "
            f"{r['train_loss']:.3f} | {100 * r['train_accuracy']:.2f}% | {100 * r['test_accuracy']:.2f}% ± "
            f"{error:.2f} | {r['test_images']:,} | {r['train_images_per_s']:.0f} | {r['wall_s'] / 3600:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _machine(run: RunLog) -> str:
    """The panel a run belongs in: runs copied from the lent GPU carry an `h200_` prefix."""
    return "H200 GPU" if run.name.startswith("h200_") else "2-core CPU"


def write_figure(runs: list[RunLog], path: Path) -> None:
    """Test accuracy against training images seen, one line per run, one panel per machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    machines = sorted({_machine(r) for r in runs}, reverse=True)
    figure, axes = plt.subplots(1, len(machines), figsize=(6.5 * len(machines), 4.8), sharey=True, squeeze=False)
    for axis, machine in zip(axes[0], machines, strict=True):
        for run in (r for r in runs if _machine(r) == machine):
            per_epoch = [r["step"] * run.config["batch_size"] / 1e6 for r in run.epochs]
            label = run.name.removeprefix("h200_")
            axis.plot(per_epoch, [100 * r["test_accuracy"] for r in run.epochs], marker="o", markersize=3, label=label)
        axis.axhline(92.0, color="grey", linestyle="--", linewidth=1, label="issue 10 goal (dense >= 92%)")
        axis.set_xlabel("training images seen (millions)")
        axis.set_title(machine)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("test accuracy (%)")
    figure.suptitle("CIFAR-10 training curves of the paper-recipe runs")
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(figure)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=LOGS_DIR, help="folder of committed run logs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: analyses/out/)")
    parser.add_argument("--traces", type=Path, default=None, help="unused (accepted like every analysis script)")
    args = parser.parse_args()
    runs = read_logs(args.logs)
    if not runs:
        raise SystemExit(f"no run logs (config.json + metrics.jsonl) under {args.logs}")
    args.out.mkdir(parents=True, exist_ok=True)
    text = (
        "# Training curves of the long runs\n\n"
        f"- made by: `python analyses/training_curves.py` from `traces/recipes/logs/` ({len(runs)} runs)\n"
        "- test accuracy: on the run's test split (all 10,000 CIFAR-10 test images unless the recipe says "
        "otherwise), measured after each epoch; ± is the binomial standard error\n\n"
        + "\n".join(run_table(run) for run in runs)
    )
    atomic_write_text(args.out / "training-curves.md", text)
    write_figure(runs, args.out / "training-curves.png")


if __name__ == "__main__":
    main()

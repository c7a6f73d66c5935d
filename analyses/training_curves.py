"""Training curves of the long runs behind the traces: test accuracy, training loss and learning rate per
epoch, from the run logs committed under `traces/recipes/logs/<run>/` (copies of a run folder's
`metrics.jsonl` and `config.json`; the checkpoints themselves stay in the git-ignored `runs/`).

Writes `training-curves.md` (first the dense accuracy reached against the number of dense epochs, every run trained
from scratch whose dense phase has finished, with a fit per network, method and peak rate and the slope between its
two longest lengths; then each change to the recipe against the recipe itself, run as long on the same machine
(`traces/recipes/grid.sh`'s ablations); then one table per run: every epoch of every phase, with its density,
learning rate, losses, accuracies, images/s and wall time), `training-curves.png` (test accuracy against training
images seen, one line per run) and `training-curves-dense-epochs.png` (the dense accuracy against dense epochs). A
run still in progress shows the epochs it has finished; the table says so, with the schedule it has left.

    python analyses/training_curves.py [--logs traces/recipes/logs] [--out analyses/out]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _shared import OUT_DIR, ROOT, standard_error_points

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


PAPER_DENSE_RECIPE: dict[str, Any] = {
    "batch_size": 256,
    "schedule": "onecycle",
    "warmup": 0.25,
    "final_lr_fraction": 0.001,
    "label_smoothing": 0.1,
    "weight_decay": 0.0005,
    "momentum": 0.9,
    "nesterov": True,
    "dropout": False,
    "precision": "auto",
    "precondition": "none",
}
"""The paper recipe's dense-phase choices (traces/recipes/cifar10.sh, RECIPE=paper) other than the epochs and the
peak rate, which are the curve's axes; a run's config lacking a key (written before the option existed) ran
with the value here."""


def recipe_changes(config: dict[str, Any]) -> str:
    """The choices where a run's config departs from the paper recipe's dense phase, e.g. "precondition
    position_rms" ("" for the recipe itself): runs with the same changes lie on one curve."""
    return ", ".join(
        f"{key.replace('_', ' ')} {config[key]}"
        for key, value in PAPER_DENSE_RECIPE.items()
        if key in config and config[key] != value
    )


@dataclass(frozen=True)
class DensePoint:
    """The end of one finished dense phase trained from scratch: one point of the accuracy-vs-epochs curve."""

    run: str
    network: str
    mode: str
    machine: str
    peak_lr: float
    dense_epochs: int
    train_accuracy: float
    test_accuracy: float
    test_images: int
    changes: str = ""
    """Where the run departs from the paper recipe's dense phase (`recipe_changes`)."""
    seed: int = 0


def dense_points(runs: list[RunLog]) -> list[DensePoint]:
    """One point per run whose dense phase (phase 0, from scratch) has finished, in run-name order. A branch
    (`--branch-from`) carries another run's dense phase and is not a point of its own."""
    points = []
    for run in runs:
        c = run.config
        if c.get("init_from") or c.get("branch_from") or int(c["epochs"]) == 0:
            continue
        last = [r for r in run.epochs if r["phase"] == 0 and r["epoch"] == int(c["epochs"])]
        if not last:
            continue
        record = last[-1]
        points.append(
            DensePoint(
                run.name,
                c["network"],
                c["mode"],
                _machine(run),
                float(c["lr"]),
                int(c["epochs"]),
                float(record["train_accuracy"]),
                float(record["test_accuracy"]),
                int(record["test_images"]),
                recipe_changes(c),
                int(c.get("seed", 0)),
            )
        )
    return points


@dataclass(frozen=True)
class EpochFit:
    """Least-squares line of test accuracy (points) against log2(dense epochs), for one group of runs."""

    network: str
    mode: str
    peak_lr: float
    points: int
    epochs: tuple[int, ...]
    points_per_doubling: float
    intercept_points: float
    last_doubling_points: float
    """Points per doubling between the two longest epoch counts (each count's mean accuracy): the curve's
    latest slope. Short schedules gain more per doubling than long ones, so where the group has three or more
    lengths this is the less optimistic extrapolation; with two it is the line's slope."""
    longest_points: float
    """Mean test accuracy (points) at the longest epoch count, where `last_doubling_points` extends from."""
    changes: str = ""

    def accuracy_at(self, epochs: float) -> float:
        """The fitted test accuracy (points) after `epochs` dense epochs."""
        return self.intercept_points + self.points_per_doubling * math.log2(epochs)

    def epochs_to_reach(self, accuracy_points: float) -> float | None:
        """Dense epochs at which the line reaches `accuracy_points`; None if it never rises."""
        if self.points_per_doubling <= 0:
            return None
        return float(2 ** ((accuracy_points - self.intercept_points) / self.points_per_doubling))

    def epochs_to_reach_on_last_slope(self, accuracy_points: float) -> float | None:
        """Dense epochs at which the longest point, extended at `last_doubling_points`, reaches `accuracy_points`;
        None if that slope does not rise."""
        if self.last_doubling_points <= 0:
            return None
        doublings = (accuracy_points - self.longest_points) / self.last_doubling_points
        return float(max(self.epochs) * 2**doublings)


def fit_epochs(points: list[DensePoint]) -> list[EpochFit]:
    """One fit per (network, method, peak rate, recipe changes) with at least two distinct epoch counts, sorted
    by that key.

    Runs on different machines with the same recipe are pooled: they agree within noise (docs/training.md)."""
    groups: dict[tuple[str, str, float, str], list[DensePoint]] = {}
    for point in points:
        groups.setdefault(_series(point), []).append(point)
    fits = []
    for (network, mode, peak_lr, changes), group in sorted(groups.items()):
        xs = [math.log2(p.dense_epochs) for p in group]
        ys = [100 * p.test_accuracy for p in group]
        if len(set(xs)) < 2:
            continue
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mean_x) ** 2 for x in xs
        )
        epochs = tuple(sorted({p.dense_epochs for p in group}))
        mean_at = {e: statistics.fmean(100 * p.test_accuracy for p in group if p.dense_epochs == e) for e in epochs}
        shorter, longest = epochs[-2:]
        last_slope = (mean_at[longest] - mean_at[shorter]) / math.log2(longest / shorter)
        fits.append(
            EpochFit(
                network,
                mode,
                peak_lr,
                len(group),
                epochs,
                slope,
                mean_y - slope * mean_x,
                last_slope,
                mean_at[longest],
                changes,
            )
        )
    return fits


def _series(point: DensePoint | EpochFit) -> tuple[str, str, float, str]:
    """The curve a point or fit belongs to: the recipe apart from the number of epochs."""
    return point.network, point.mode, point.peak_lr, point.changes


GOAL_POINTS = 92.0
"""Issue 10's bar for every dense model: >= 92% on the 10,000 CIFAR-10 test images."""


def dense_epochs_table(points: list[DensePoint]) -> str:
    """Markdown: every dense point, then the fits and the epochs at which each reaches the goal."""
    lines = [
        "## Dense accuracy against dense epochs",
        "",
        "The end of every dense phase trained from scratch (one-cycle schedule: each run is a whole schedule of "
        "that length, not a point on a longer run's curve). ± is the binomial standard error.",
        "",
        "| network | method | machine | peak lr | other changes to the recipe | dense epochs | train acc. "
        "| test acc. (± s.e.) | run |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for p in sorted(points, key=lambda p: (_series(p), p.dense_epochs, p.run)):
        error = standard_error_points(p.test_accuracy, p.test_images)
        lines.append(
            f"| {p.network} | {p.mode} | {p.machine} | {p.peak_lr:g} | {p.changes or '-'} | {p.dense_epochs} | "
            f"{100 * p.train_accuracy:.2f}% | {100 * p.test_accuracy:.2f}% ± {error:.2f} | `{p.run}` |"
        )
    fits = fit_epochs(points)
    if fits:
        lines += [
            "",
            "Least-squares line of test accuracy against log2(dense epochs) per network, method, peak rate and other "
            f"changes to the recipe, and "
            f"where it would reach the goal ({GOAL_POINTS:g}%): an extrapolation, as good as the line it extends. "
            "Short schedules gain more per doubling than long ones, so the last two columns also extend the longest "
            "point at the slope between the two longest lengths (the same as the line's where there are two).",
            "",
            "| network | method | peak lr | other changes | runs | dense epochs | points per doubling (line) | "
            f"epochs to reach {GOAL_POINTS:g}% (line) | points per doubling (two longest) | epochs to reach "
            f"{GOAL_POINTS:g}% (from the longest) |",
            "|---|---|---:|---|---:|---|---:|---:|---:|---:|",
        ]
        never = "never (the slope does not rise)"
        for f in fits:
            reach = f.epochs_to_reach(GOAL_POINTS)
            reach_last = f.epochs_to_reach_on_last_slope(GOAL_POINTS)
            lines.append(
                f"| {f.network} | {f.mode} | {f.peak_lr:g} | {f.changes or '-'} | {f.points} | "
                f"{', '.join(map(str, f.epochs))} | "
                f"{f.points_per_doubling:+.2f} | {never if reach is None else f'{reach:.0f}'} | "
                f"{f.last_doubling_points:+.2f} | {never if reach_last is None else f'{reach_last:.0f}'} |"
            )
    return "\n".join(lines) + "\n"


RECIPE_PEAK_LR = 0.4
"""The paper recipe's peak learning rate (batch 256): an ablation's reference runs at it."""


@dataclass(frozen=True)
class Ablation:
    """One run that changes the recipe, against the recipe itself run the same length on the same machine."""

    point: DensePoint
    reference: DensePoint

    @property
    def change(self) -> str:
        """What the run changes: its recipe changes, and its peak rate and seed where they differ (a run that
        changes only the seed measures the noise the other differences stand against)."""
        parts = [self.point.changes] if self.point.changes else []
        if self.point.peak_lr != self.reference.peak_lr:
            parts.append(f"peak lr {self.point.peak_lr:g}")
        if self.point.seed != self.reference.seed:
            parts.append(f"seed {self.point.seed} (the recipe again)" if not parts else f"seed {self.point.seed}")
        return ", ".join(parts) or "the recipe again"

    @property
    def difference_points(self) -> float:
        return 100 * (self.point.test_accuracy - self.reference.test_accuracy)

    @property
    def difference_error_points(self) -> float:
        """Standard error of the difference, treating the two accuracies as independent binomials: an upper
        bound when both are measured on the same test images (their errors are positively correlated)."""
        return math.hypot(
            standard_error_points(self.point.test_accuracy, self.point.test_images),
            standard_error_points(self.reference.test_accuracy, self.reference.test_images),
        )


def _group(point: DensePoint) -> tuple[str, str, int, str]:
    """The runs an ablation compares: same network, method, dense epochs and machine."""
    return point.network, point.mode, point.dense_epochs, point.machine


def ablations(points: list[DensePoint]) -> list[Ablation]:
    """Every dense point paired with the recipe's own run (no changes, peak `RECIPE_PEAK_LR`) of the same
    network, method, dense epochs and machine, where one exists; sorted by that group, then run name. Where
    several reference runs exist, the one with the lowest seed, then the first by run name, is the reference:
    the others are the recipe again with another seed."""
    references: dict[tuple[str, str, int, str], DensePoint] = {}
    for p in sorted(points, key=lambda p: (p.seed, p.run)):
        if not p.changes and p.peak_lr == RECIPE_PEAK_LR:
            references.setdefault(_group(p), p)
    pairs = []
    for p in points:
        reference = references.get(_group(p))
        if reference is not None and p is not reference:
            pairs.append(Ablation(p, reference))
    return sorted(pairs, key=lambda a: (_group(a.point), a.point.run))


def ablation_table(points: list[DensePoint]) -> str:
    """Markdown: what each change to the recipe's dense phase does to the test accuracy (docs/training.md's
    recipe table), from the runs that `traces/recipes/grid.sh` makes."""
    lines = [
        "## Each change to the recipe against the recipe itself",
        "",
        f"Runs of the same network, method, dense epochs and machine as a run of the recipe itself (peak lr "
        f"{RECIPE_PEAK_LR:g}, no other change): `traces/recipes/grid.sh` makes them. The difference's standard "
        "error treats the two accuracies as independent, an upper bound on the same test images.",
        "",
    ]
    pairs = ablations(points)
    if not pairs:
        return "\n".join([*lines, "No such runs among the logs yet.", ""])
    lines += [
        "| network | method | machine | dense epochs | change | test acc. | the recipe's | difference (± s.e.) | run |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for a in pairs:
        p = a.point
        lines.append(
            f"| {p.network} | {p.mode} | {p.machine} | {p.dense_epochs} | {a.change} | {100 * p.test_accuracy:.2f}% "
            f"| {100 * a.reference.test_accuracy:.2f}% | {a.difference_points:+.2f} ± {a.difference_error_points:.2f} "
            f"| `{p.run}` |"
        )
    return "\n".join(lines) + "\n"


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
    if c.get("branch_from"):  # the dense phase (and its records below) are that run's
        init = f"`{Path(c['branch_from']).parent.name}`'s dense phase (a branch: only its pruning schedule differs)"
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
        error = standard_error_points(r["test_accuracy"], r["test_images"])
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


def write_dense_epochs_figure(points: list[DensePoint], path: Path) -> None:
    """Dense test accuracy against dense epochs (log scale), one series per network, method, peak rate and
    other changes to the recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.8))
    series = sorted({_series(p) for p in points})
    fits = {_series(f): f for f in fit_epochs(points)}
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]  # more series than tab10 has colours
    markers = {network: "os^D"[i % 4] for i, network in enumerate(sorted({key[0] for key in series}))}
    for index, key in enumerate(series):
        group = sorted((p for p in points if _series(p) == key), key=lambda p: p.dense_epochs)
        xs = [p.dense_epochs for p in group]
        errors = [standard_error_points(p.test_accuracy, p.test_images) for p in group]
        line = axis.errorbar(
            xs,
            [100 * p.test_accuracy for p in group],
            yerr=errors,
            marker=markers[key[0]],
            color=colours[index % len(colours)],
            linestyle="none",
            capsize=3,
            label=f"{key[0]} {key[1]}, peak lr {key[2]:g}" + (f", {key[3]}" if key[3] else ""),
        )
        fit = fits.get(key)
        if fit is not None:
            reach = fit.epochs_to_reach(GOAL_POINTS)
            end = max(max(xs), min(reach, 4 * max(xs))) if reach is not None else max(xs)
            grid = [min(xs) * (end / min(xs)) ** (i / 40) for i in range(41)]
            axis.plot(grid, [fit.accuracy_at(x) for x in grid], linestyle=":", color=line[0].get_color())
    axis.axhline(GOAL_POINTS, color="grey", linestyle="--", linewidth=1, label=f"issue 10 goal ({GOAL_POINTS:g}%)")
    axis.set_xscale("log", base=2)
    ticks: list[int] = []
    for epochs in sorted({p.dense_epochs for p in points}, reverse=True):
        if not ticks or ticks[-1] / epochs >= 1.15:  # labels of nearby lengths (16, 18) would overlap
            ticks.append(epochs)
    ticks.reverse()
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.minorticks_off()
    axis.set_xlabel("dense epochs (one-cycle schedule of that length)")
    axis.set_ylabel("test accuracy at the end (%)")
    axis.set_title("CIFAR-10 dense accuracy against training length (dotted: log-linear fit)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
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
    points = dense_points(runs)
    text = (
        "# Training curves of the long runs\n\n"
        f"- made by: `python analyses/training_curves.py` from `traces/recipes/logs/` ({len(runs)} runs)\n"
        "- test accuracy: on the run's test split (all 10,000 CIFAR-10 test images unless the recipe says "
        "otherwise), measured after each epoch; ± is the binomial standard error\n\n"
        + dense_epochs_table(points)
        + "\n"
        + ablation_table(points)
        + "\n"
        + "\n".join(run_table(run) for run in runs)
    )
    atomic_write_text(args.out / "training-curves.md", text)
    write_figure(runs, args.out / "training-curves.png")
    write_dense_epochs_figure(points, args.out / "training-curves-dense-epochs.png")


if __name__ == "__main__":
    main()

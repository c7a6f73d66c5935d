"""Density search over a finished (or partly finished) training run: the accuracy-versus-density curve of its
pruning schedule, and the lowest density whose accuracy stays within a tolerance of the run's own dense model.

A `winosim train` run with `--densities 0.7,0.5,...` leaves one checkpoint per phase (`phase0_dense.pt`,
`phase1_d0.70.pt`, ...), each carrying the test accuracy measured at the end of its phase on the run's test
images (`--test-limit`). Masks are cumulative, so the run *is* the search: every point of the schedule has
been trained, and selection only reads the checkpoints. The rule (issue 6): the lowest density whose accuracy
is at least `dense accuracy - within_points / 100`. Every point is a complete model measured the same way,
so a point that passes after a failing one is as valid as any other: the intermediate dip (short retraining
steps and sampling noise of about sqrt(p (1 - p) / N) make the curve non-monotone) says nothing against it.
Stopping at the first failure was tried and rejected: one noisy early dip then discards every pruned model.
The curve is kept with the selection so that anyone can apply another rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from winosim.errors import ConfigError
from winosim.nn.data import Dataset
from winosim.nn.train import TrainConfig, evaluate, load_checkpoint, model_from_checkpoint

_PHASE_FILE = re.compile(r"^phase(\d+)_(dense|d\d+\.\d+)\.pt$")


@dataclass(frozen=True)
class DensityPoint:
    """One phase of a run: the model at `density` (1.0 = dense) and its test accuracy (a fraction)."""

    phase: int
    density: float
    accuracy: float
    test_images: int | None
    checkpoint: Path
    accuracy_at_training: float | None = None
    """Set by `remeasured`: the accuracy the training run recorded, `accuracy` then being the re-measurement."""

    def __post_init__(self) -> None:
        if self.phase < 0 or not 0.0 < self.density <= 1.0 or not 0.0 <= self.accuracy <= 1.0:
            raise ConfigError(f"DensityPoint: impossible values {self}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "density": self.density,
            "accuracy": self.accuracy,
            "test_images": self.test_images,
            "checkpoint": self.checkpoint.name,
            **({} if self.accuracy_at_training is None else {"accuracy_at_training": self.accuracy_at_training}),
        }


@dataclass(frozen=True)
class DensityCurve:
    """The phases of one run in schedule order, with the run's configuration; `complete` when every phase of
    the configured schedule has its checkpoint."""

    run: Path
    network: str
    method: str
    schedule: tuple[float, ...]
    points: tuple[DensityPoint, ...]

    def __post_init__(self) -> None:
        if not self.points or self.points[0].phase != 0:
            raise ConfigError(f"{self.run}: no dense checkpoint (phase0_dense.pt); the density search needs one")
        phases = [p.phase for p in self.points]
        if phases != list(range(len(phases))):
            raise ConfigError(f"{self.run}: phase checkpoints {phases} are not consecutive from 0")

    @property
    def dense(self) -> DensityPoint:
        return self.points[0]

    @property
    def complete(self) -> bool:
        return len(self.points) == len(self.schedule) + 1

    def select(self, within_points: float) -> DensityPoint:
        """The lowest-density point whose accuracy is >= dense accuracy - within_points / 100 (the dense point
        itself when no pruned point qualifies)."""
        if not within_points >= 0:
            raise ConfigError(f"the accuracy tolerance must be >= 0 points, got {within_points}")
        floor = self.dense.accuracy - within_points / 100.0
        passing = [p for p in self.points if p.accuracy >= floor - 1e-12]
        return min(passing, key=lambda p: (p.density, p.phase))

    def to_dict(self, within_points: float | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schedule": list(self.schedule),
            "complete": self.complete,
            "points": [p.to_dict() for p in self.points],
        }
        if within_points is not None:
            chosen = self.select(within_points)
            data["rule"] = f"lowest density with test accuracy >= dense - {within_points:g} points"
            data["within_points"] = within_points
            data["selected_density"] = chosen.density
            data["selected_checkpoint"] = chosen.checkpoint.name
        return data


def _test_images(history: Sequence[dict[str, Any]], phase: int) -> int | None:
    for record in reversed(history):
        if record.get("phase") == phase and "test_images" in record:
            return int(record["test_images"])
    return None


def density_curve(run: str | Path) -> DensityCurve:
    """Read the phase checkpoints of the run folder `run` (written by `winosim train`)."""
    folder = Path(run)
    if not folder.is_dir():
        raise ConfigError(f"run folder not found: {folder}")
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _PHASE_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    if not found:
        raise ConfigError(f"{folder}: no phase checkpoints (phase<i>_<tag>.pt); is it a winosim train run folder?")
    points: list[DensityPoint] = []
    config: TrainConfig | None = None
    for phase in sorted(found):
        ckpt = load_checkpoint(found[phase])
        config = TrainConfig.from_dict(ckpt["config"])
        accuracy = ckpt.get("accuracy")
        if accuracy is None:
            raise ConfigError(f"{found[phase]}: the checkpoint records no accuracy")
        density = ckpt.get("density")
        history = ckpt.get("state", {}).get("history", [])
        points.append(
            DensityPoint(
                phase=phase,
                density=1.0 if density is None else float(density),
                accuracy=float(accuracy),
                test_images=_test_images(history, phase) or config.test_limit,
                checkpoint=found[phase],
            )
        )
    assert config is not None
    return DensityCurve(folder, config.network, config.mode, tuple(config.densities), tuple(points))


def remeasured(
    curve: DensityCurve,
    test_set: Dataset,
    device: Any,
    precision: str,
    report: Callable[[int, int, DensityPoint], None] | None = None,
) -> DensityCurve:
    """The curve with every point's accuracy measured again on `test_set` in `precision`, the way extraction
    measures the accuracies a trace reports (`winosim.nn.extract`), so that the selection and the report are
    one measurement; each point keeps the run's own figure as `accuracy_at_training`. Training records its
    accuracies in the run's precision (bf16 where native), which moves a point by a few hundredths of a point:
    enough to carry it across the tolerance. `report(done, total, point)` is called after each point (a
    ResNet-18 point on 10,000 images takes minutes of a CPU core)."""
    points = []
    for point in curve.points:
        model = model_from_checkpoint(load_checkpoint(point.checkpoint)).to(device)
        accuracy = evaluate(model, test_set, device, precision)
        points.append(replace(point, accuracy=accuracy, test_images=len(test_set), accuracy_at_training=point.accuracy))
        if report is not None:
            report(len(points), len(curve.points), points[-1])
    return replace(curve, points=tuple(points))


def curve_table(curves: Sequence[DensityCurve], within_points: float) -> str:
    """A Markdown table of the curves: density, accuracy, change from dense, and the selected point."""
    lines = [
        f"Density search: lowest density within {within_points:g} point(s) of the run's own dense accuracy",
        "",
        "| run | method | density | test accuracy | vs dense (points) | test images | at training | selected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for curve in curves:
        chosen = curve.select(within_points)
        for point in curve.points:
            delta = 100.0 * (point.accuracy - curve.dense.accuracy)
            lines.append(
                f"| {curve.run.name} | {curve.method} | {point.density:.2f} | {100 * point.accuracy:.2f}% | "
                f"{delta:+.2f} | {point.test_images if point.test_images is not None else '?'} | "
                f"{'-' if point.accuracy_at_training is None else f'{100 * point.accuracy_at_training:.2f}%'} | "
                f"{'**yes**' if point is chosen else ''} |"
            )
        if not curve.complete:
            lines.append(
                f"| {curve.run.name} | {curve.method} | (schedule not finished: {len(curve.points) - 1} of "
                f"{len(curve.schedule)} steps) | | | | | |"
            )
    return "\n".join(lines) + "\n"

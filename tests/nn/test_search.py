"""The density search: a run's accuracy-versus-density curve read from its phase checkpoints, the selection
rule (lowest density within a tolerance of the run's own dense accuracy), and the `curve` / `trace
--select-within` front ends that carry the curve into a trace."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
import torch

from winosim.errors import ConfigError
from winosim.nn.search import curve_table, density_curve
from winosim.nn.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, TrainConfig, train


def _fake_run(folder: Path, accuracies: dict[float, float], schedule: tuple[float, ...] | None = None) -> Path:
    """A run folder whose phase checkpoints carry only what the search reads (no model weights)."""
    folder.mkdir(parents=True)
    densities = tuple(d for d in accuracies if d < 1.0)
    config = TrainConfig(
        network="vgg_nagadomi",
        mode="winograd_relu",
        data="unused",
        out=str(folder),
        densities=schedule if schedule is not None else densities,
        test_limit=1000,
    ).to_dict()
    for phase, (density, accuracy) in enumerate(accuracies.items()):
        tag = "dense" if density == 1.0 else f"d{density:.2f}"
        history = [{"phase": phase, "test_images": 1000, "test_accuracy": accuracy}]
        ckpt: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": config,
            "accuracy": accuracy,
            "density": None if density == 1.0 else density,
            "state": {"history": history},
            "model": {},
        }
        torch.save(ckpt, folder / f"phase{phase}_{tag}.pt")
    return folder


def _tiny_run(data: Path, out: Path, **values: Any) -> TrainConfig:
    """One dense epoch and two pruning steps (0.6, 0.3) of VGG-nagadomi on a few images."""
    common: dict[str, Any] = dict(epochs=1, densities=(0.6, 0.3), retrain_epochs=1, test_limit=16)
    return TrainConfig(
        network="vgg_nagadomi", data=str(data), out=str(out), precision="fp32", dropout=False, **common, **values
    )


def test_selects_the_lowest_density_within_the_tolerance(tmp_path: Path) -> None:
    curve = density_curve(_fake_run(tmp_path / "r", {1.0: 0.800, 0.7: 0.805, 0.5: 0.795, 0.3: 0.789, 0.2: 0.75}))
    assert [p.density for p in curve.points] == [1.0, 0.7, 0.5, 0.3, 0.2]
    assert curve.complete and curve.network == "vgg_nagadomi" and curve.method == "winograd_relu"
    assert curve.select(1.0).density == 0.5  # 0.789 is 1.1 points below 0.800
    assert curve.select(1.2).density == 0.3
    assert curve.select(0.0).density == 0.7  # only points at least as accurate as dense
    assert curve.select(100.0).density == 0.2
    assert curve.select(1.0).checkpoint.name == "phase2_d0.50.pt"


def test_a_point_exactly_at_the_tolerance_passes_and_later_passing_points_count(tmp_path: Path) -> None:
    """The rule is 'the lowest passing density', not 'stop at the first failure'."""
    curve = density_curve(_fake_run(tmp_path / "r", {1.0: 0.80, 0.5: 0.79, 0.4: 0.70, 0.3: 0.795}))
    assert curve.select(1.0).density == 0.3
    assert curve.select(0.5).density == 0.3  # exactly 0.5 points below: passes
    assert curve.select(0.1).density == 1.0  # nothing pruned qualifies: the dense model itself


def test_curve_dict_records_rule_and_selection(tmp_path: Path) -> None:
    curve = density_curve(_fake_run(tmp_path / "r", {1.0: 0.8, 0.6: 0.795}, schedule=(0.6, 0.4)))
    assert not curve.complete
    data = curve.to_dict(1.0)
    assert data["complete"] is False and data["schedule"] == [0.6, 0.4]
    assert data["selected_density"] == 0.6 and data["selected_checkpoint"] == "phase1_d0.60.pt"
    assert [p["accuracy"] for p in data["points"]] == [0.8, 0.795]
    assert all(p["test_images"] == 1000 for p in data["points"])
    table = curve_table([curve], 1.0)
    assert "| r | winograd_relu | 0.60 | 79.50% | -0.50 | 1000 | - | **yes** |" in table  # not re-measured
    assert "schedule not finished: 1 of 2 steps" in table


def test_bad_run_folders_fail_with_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run folder not found"):
        density_curve(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no phase checkpoints"):
        density_curve(tmp_path / "empty")
    run = _fake_run(tmp_path / "gap", {1.0: 0.8, 0.6: 0.8, 0.4: 0.8})
    (run / "phase1_d0.60.pt").unlink()
    with pytest.raises(ConfigError, match="not consecutive"):
        density_curve(run)
    run = _fake_run(tmp_path / "nodense", {1.0: 0.8, 0.6: 0.8})
    (run / "phase0_dense.pt").rename(run / "phase9_dense.pt")
    with pytest.raises(ConfigError, match="no dense checkpoint"):
        density_curve(run)
    with pytest.raises(ConfigError, match=">= 0 points"):
        density_curve(_fake_run(tmp_path / "ok", {1.0: 0.8})).select(-1.0)


def test_retraining_epochs_can_be_shorter_than_dense_epochs(random_data: Path, tmp_path: Path) -> None:
    config = _tiny_run(random_data, tmp_path / "run", mode="spatial", batch_size=8, epoch_images=32)
    result = train(replace(config, retrain_epoch_images=8, test_limit=8))
    assert result.finished
    assert [r["step"] for r in result.state.history] == [4, 5, 6]  # 32 / 8 dense steps, then 8 / 8 per retrain


def test_real_run_curve_and_trace_select_within(
    random_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real (tiny) run: the curve equals the end-of-phase accuracies the run logged, and `trace
    --select-within` traces the selected checkpoint and stores the curve in the variant's recipe, evaluating
    each checkpoint once."""
    import winosim.nn.extract
    import winosim.nn.search
    from winosim.nn.commands import curve_main, trace_main
    from winosim.trace import load_trace

    evaluations: list[str] = []

    def counting(module: Any) -> Any:
        real = module.evaluate

        def evaluate(*args: Any, **kwargs: Any) -> float:
            evaluations.append(module.__name__)
            return float(real(*args, **kwargs))

        return evaluate

    for module in (winosim.nn.search, winosim.nn.extract):
        monkeypatch.setattr(module, "evaluate", counting(module))

    out = tmp_path / "run"
    result = train(_tiny_run(random_data, out, mode="winograd_relu", batch_size=16, train_limit=16))
    curve = density_curve(out)
    logged = {r["phase"]: r["test_accuracy"] for r in result.state.history}
    assert [p.accuracy for p in curve.points] == [logged[0], logged[1], logged[2]]
    assert [p.test_images for p in curve.points] == [16, 16, 16]
    chosen = curve.select(100.0)
    assert chosen.density == 0.3

    table_file = tmp_path / "curve.md"
    assert curve_main([str(out), "--within", "100", "--output", str(table_file)]) == 0
    assert table_file.read_text() == curve_table([curve], 100.0)

    trace_file = tmp_path / "t.npz"
    argv = [str(out), "--select-within", "100", "--data", str(random_data), "--out", str(trace_file), "--images", "2"]
    assert trace_main([*argv, "--test-limit", "8"]) == 0
    printed = capsys.readouterr()
    assert "Density search" in printed.out
    # one progress line per re-measured point on stderr (each takes minutes on a real network)
    progress = [line for line in printed.err.splitlines() if ": re-measured " in line]
    assert [line.split(": re-measured ")[1].split(":")[0] for line in progress] == [
        "phase0_dense.pt (1/3)",
        "phase1_d0.60.pt (2/3)",
        "phase2_d0.30.pt (3/3)",
    ]
    assert all(line.startswith("trace: run: ") and "on 8 images" in line for line in progress)
    (variant,) = load_trace(trace_file).variants
    assert variant.target_density == 0.3
    search = variant.recipe["density_search"]
    assert search["selected_checkpoint"] == "phase2_d0.30.pt" and search["within_points"] == 100.0
    assert [p["density"] for p in search["points"]] == [1.0, 0.6, 0.3]
    assert variant.recipe["checkpoint"] == "phase2_d0.30.pt"
    # one measurement for the rule and the report: the search re-measured every point as extraction does
    # (fp32, the first 8 test images), keeping the run's own figures (16 images) beside them
    assert [p["test_images"] for p in search["points"]] == [8, 8, 8]
    assert [p["accuracy_at_training"] for p in search["points"]] == [logged[0], logged[1], logged[2]]
    assert search["points"][0]["accuracy"] == variant.dense_accuracy
    assert search["points"][2]["accuracy"] == variant.accuracy
    # the three checkpoints measured once each, by the search; extraction reuses the selected and dense ones
    assert evaluations == ["winosim.nn.search"] * 3


def test_the_selection_follows_the_remeasured_accuracies(tmp_path: Path) -> None:
    """A point that passes on the run's own figures but not re-measured is not selected (and the reverse)."""
    curve = density_curve(_fake_run(tmp_path / "r", {1.0: 0.9250, 0.5: 0.9200, 0.3: 0.9200}))
    assert curve.select(0.5).density == 0.3
    points = curve.points
    again = replace(
        curve,
        points=(
            replace(points[0], accuracy=0.9260, accuracy_at_training=points[0].accuracy),
            replace(points[1], accuracy=0.9215, accuracy_at_training=points[1].accuracy),
            replace(points[2], accuracy=0.9205, accuracy_at_training=points[2].accuracy),
        ),
    )
    assert again.select(0.5).density == 0.5
    table = curve_table([again], 0.5)
    assert "| 0.30 | 92.05% | -0.55 | 1000 | 92.00% |  |" in table
    assert again.to_dict(0.5)["points"][1]["accuracy_at_training"] == 0.92


def test_trace_refuses_a_run_folder_without_select_within(random_data: Path, tmp_path: Path) -> None:
    from winosim.nn.commands import trace_main

    run = _fake_run(tmp_path / "r", {1.0: 0.8})
    with pytest.raises(ConfigError, match="--select-within"):
        trace_main([str(run), "--data", str(random_data), "--out", str(tmp_path / "t.npz")])
    assert not (tmp_path / "t.npz").exists()

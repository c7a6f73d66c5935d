"""The committed analysis outputs (analyses/out/*.md) are what the current code makes from the shipped traces.

Each script under analyses/ is run as a reader would run it (`python analyses/<name>.py`), writing into a
temporary folder, and every Markdown table it writes must equal the committed one byte for byte; it must
also write every committed figure of its own. A failure here means the code changed the numbers: rerun
the scripts (`python analyses/<name>.py`) and commit analyses/out/ together with the change.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANALYSES = ROOT / "analyses"
COMMITTED = ANALYSES / "out"
SCRIPTS = {
    "multiply_tables.py": ("multiplies-", "density-"),
    "pe_scaling.py": ("pe-scaling-", "pe-scaling-"),
    "arch_sensitivity.py": ("arch-sensitivity-", "arch-sensitivity-"),
    "trace_cards.py": ("card-|claims", "card-"),
    "training_curves.py": ("training-curves", "training-curves"),
}
"""Each script and the prefixes of the Markdown tables (|-separated) and of the PNG figures it writes."""
CHECKED_ELSEWHERE = {
    "validation.py": "needs the validation extra (ZigZag) and minutes: tests/test_validation.py",
    "readme_table.py": "rewrites README.md's main-command table in place: tests/test_doc_outputs.py",
}


def test_every_script_is_listed_here() -> None:
    scripts = sorted(p.name for p in ANALYSES.glob("*.py") if not p.name.startswith("_"))
    assert scripts == sorted([*SCRIPTS, *CHECKED_ELSEWHERE])


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_script_reproduces_its_committed_tables(script: str, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ANALYSES / script), "--out", str(tmp_path)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    tables, figures = SCRIPTS[script]
    made = sorted(p.name for prefix in tables.split("|") for p in tmp_path.glob(f"{prefix}*.md"))
    committed = sorted(p.name for prefix in tables.split("|") for p in COMMITTED.glob(f"{prefix}*.md"))
    assert made, f"{script} wrote no Markdown table"
    assert made == committed, "the set of tables changed: rerun the script and commit analyses/out/"
    for name in made:
        assert (tmp_path / name).read_text(encoding="utf-8") == (COMMITTED / name).read_text(encoding="utf-8"), name
    # figures are compared by name only: PNG bytes depend on the fonts and FreeType of the machine
    made_figures = sorted(p.name for p in tmp_path.glob(f"{figures}*.png"))
    assert made_figures, f"{script} wrote no figure"
    assert made_figures == sorted(p.name for p in COMMITTED.glob(f"{figures}*.png"))


def test_traces_readme_quotes_the_variant_table_of_every_trained_trace() -> None:
    """traces/README.md's per-variant tables are the cards' tables, made from the traces (so they cannot drift)."""
    sys.path.insert(0, str(ANALYSES))
    try:
        import trace_cards
    finally:
        sys.path.remove(str(ANALYSES))
    from winosim.trace import load_trace

    readme = (ROOT / "traces" / "README.md").read_text(encoding="utf-8")
    trained = [t for t in map(load_trace, sorted((ROOT / "traces").glob("*.npz"))) if not t.provenance.synthetic]
    assert trained
    for trace in trained:
        table = trace_cards.variant_table(trace).split("\n\n")[0]
        assert table in readme, f"traces/README.md lacks the current variant table of the {trace.network} trace"


def test_readme_quotes_the_claim_table_of_the_shipped_traces() -> None:
    """README.md's claim table is `trace_cards.readme_claims` of the trained traces in traces/: when a trace is
    replaced (new models, new accuracies), the README must be updated with it (run analyses/trace_cards.py)."""
    sys.path.insert(0, str(ANALYSES))
    try:
        import trace_cards
    finally:
        sys.path.remove(str(ANALYSES))
    from winosim.trace import load_trace

    trained = [
        (p.name, t) for p in sorted((ROOT / "traces").glob("*.npz")) if not (t := load_trace(p)).provenance.synthetic
    ]
    table = trace_cards.readme_claims(trained).split("\n\n")[0]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in readme, (
        "README.md's claim table is not the one made from the shipped traces (analyses/out/claims.md)"
    )


def _training_curves() -> ModuleType:
    sys.path.insert(0, str(ANALYSES))
    try:
        import training_curves
    finally:
        sys.path.remove(str(ANALYSES))
    return training_curves


def _run_log(
    name: str, *, epochs: int, test: list[float], init_from: str | None = None, lr: float = 0.1, **config: Any
) -> Any:
    records = tuple(
        {"phase": 0, "epoch": i + 1, "epochs": epochs, "train_accuracy": 0.9, "test_accuracy": t, "test_images": 10000}
        for i, t in enumerate(test)
    )
    base = {"network": "vgg_nagadomi", "mode": "winograd_relu", "lr": lr, "epochs": epochs, "init_from": init_from}
    return _training_curves().RunLog(name, {**base, **config}, records)


def test_dense_points_are_finished_dense_phases_trained_from_scratch() -> None:
    tc = _training_curves()
    runs = [
        _run_log("done", epochs=2, test=[0.5, 0.8]),
        _run_log("running", epochs=3, test=[0.5, 0.8]),  # 2 of 3 dense epochs: not a point yet
        _run_log("converted", epochs=2, test=[0.5, 0.9], init_from="runs/x/phase0_dense.pt"),
        _run_log("branch", epochs=2, test=[0.5, 0.8], branch_from="runs/done/phase0_dense.pt"),  # done's dense
    ]
    points = tc.dense_points(runs)
    assert [(p.run, p.dense_epochs, p.test_accuracy) for p in points] == [("done", 2, 0.8)]


def test_epoch_fit_is_the_log_linear_line_and_its_crossing() -> None:
    """Closed form: 89% at 16 epochs and 90% at 32 is +1 point per doubling, 92% at 128 epochs."""
    tc = _training_curves()
    runs = [_run_log("a", epochs=16, test=[0.0] * 15 + [0.89]), _run_log("b", epochs=32, test=[0.0] * 31 + [0.90])]
    (fit,) = tc.fit_epochs(tc.dense_points(runs))
    assert fit.points_per_doubling == pytest.approx(1.0)
    assert fit.accuracy_at(64) == pytest.approx(91.0)
    assert fit.epochs_to_reach(92.0) == pytest.approx(128.0)
    # with two lengths the last doubling is the line
    assert fit.last_doubling_points == pytest.approx(1.0)
    assert fit.epochs_to_reach_on_last_slope(92.0) == pytest.approx(128.0)
    flat = tc.EpochFit("n", "m", 0.1, 2, (16, 32), 0.0, 90.0, 0.0, 90.0)
    assert flat.epochs_to_reach(92.0) is None
    assert flat.epochs_to_reach_on_last_slope(92.0) is None
    # one epoch count alone is no line
    assert tc.fit_epochs(tc.dense_points(runs[:1])) == []


def test_the_last_doubling_extends_the_longest_point_at_the_latest_slope() -> None:
    """Closed form: 80% at 4 epochs, 86% at 8 and, two runs, 87% and 89% at 32: the line through all four
    rises faster than the curve's latest slope, (88 - 86) / log2(32 / 8) = +1 point per doubling from 88% at 32,
    which reaches 92% at 32 x 2^4 = 512 epochs."""
    tc = _training_curves()
    runs = [
        _run_log("a", epochs=4, test=[0.0] * 3 + [0.80]),
        _run_log("b", epochs=8, test=[0.0] * 7 + [0.86]),
        _run_log("c", epochs=32, test=[0.0] * 31 + [0.87]),
        _run_log("d", epochs=32, test=[0.0] * 31 + [0.89]),
    ]
    (fit,) = tc.fit_epochs(tc.dense_points(runs))
    assert (fit.points, fit.epochs) == (4, (4, 8, 32))
    assert fit.last_doubling_points == pytest.approx(1.0)
    assert fit.longest_points == pytest.approx(88.0)
    assert fit.epochs_to_reach_on_last_slope(92.0) == pytest.approx(512.0)
    assert fit.points_per_doubling > fit.last_doubling_points
    assert fit.epochs_to_reach(92.0) < 512.0


def test_a_change_to_the_recipe_is_its_own_curve() -> None:
    """Runs that depart from the paper recipe in anything but the epochs (and the peak rate, its own column)
    lie on their own curve: a preconditioned run is not fitted with plain ones, an unrecorded option is the
    recipe's value (the run predates the option)."""
    tc = _training_curves()
    runs = [
        _run_log("a", epochs=2, test=[0.0, 0.80]),
        _run_log("b", epochs=4, test=[0.0] * 3 + [0.82], precondition="none", batch_size=256),
        _run_log("c", epochs=4, test=[0.0] * 3 + [0.99], precondition="position_rms", label_smoothing=0.0),
    ]
    points = tc.dense_points(runs)
    assert [p.changes for p in points] == ["", "", "label smoothing 0.0, precondition position_rms"]
    (fit,) = tc.fit_epochs(points)  # a and b; c alone is one epoch count
    assert (fit.points, fit.changes, fit.points_per_doubling) == (2, "", pytest.approx(2.0))
    assert "| label smoothing 0.0, precondition position_rms | 4 |" in tc.dense_epochs_table(points)


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(ANALYSES))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ANALYSES))


def test_a_card_names_each_merged_variants_extraction_and_the_standard_errors() -> None:
    """A merged trace (`winosim merge`) keeps every variant's own extraction command; the card shows each, and
    every accuracy with its binomial standard error over the images it was measured on."""
    from dataclasses import replace

    from winosim.commands.merge import merge_traces
    from winosim.geometry import LayerGeometry, NetworkGeometry
    from winosim.synthetic import synthetic_trace

    layers = (
        LayerGeometry("a", "winograd", "conv", 4, 4, 4, 4, kernel=3, stride=1, padding=1),
        LayerGeometry("fc", "spatial", "fc", 4, 10, 1, 1, kernel=1),
    )
    parts = []
    for seed, methods in ((1, ("spatial", "winograd_relu")), (2, ("winograd_relu",))):
        trace = synthetic_trace(NetworkGeometry("tiny", 4, 4, 10, layers), images=1, seed=seed, methods=methods)
        recipe: dict[str, Any] = {"test_images_for_accuracy": 10000}
        if seed == 2:
            recipe["train_command"] = "python -m winosim train --epochs 80"
        variants = tuple(replace(v, accuracy=0.9, dense_accuracy=0.5, recipe=recipe) for v in trace.variants)
        provenance = replace(trace.provenance, command=f"extract {seed}", torch_version=f"2.{seed}", seed=0)
        parts.append((f"t{seed}.npz", replace(trace, variants=variants, provenance=provenance)))
    merged = merge_traces(parts, "merge t1 t2")
    shared, cards = _module("_shared"), _module("trace_cards")
    head = shared.header("card", Path("t.npz"), merged)
    assert "- made by: `merge t1 t2`" in head
    assert "  - `spatial` extracted by: `extract 1` (torch 2.1)" in head
    assert "  - `winograd_relu` extracted by: `extract 2` (torch 2.2)" in head
    assert "extracted by" not in shared.header("card", Path("t.npz"), parts[0][1])
    table = cards.variant_table(merged)
    assert "| 90.00% ± 0.30 | 50.00% ± 0.50 | +40.00 |" in table and "| ? | ? s |" in table
    assert "- `spatial`: `not recorded`\n- `winograd_relu`: `python -m winosim train --epochs 80`" in table
    assert "Training commands" not in cards.variant_table(parts[0][1])  # none recorded: no list
    assert shared.standard_error_points(0.5, 100) == pytest.approx(5.0)


def test_a_card_says_where_and_in_which_precision_each_variant_trained() -> None:
    """`trained_in` (a run's segments: machine and resolved precision, one per change) over `trained_on` (the
    last checkpoint's machine), and `trained_on` alone where the segments are missing or not winosim's."""
    from dataclasses import replace

    from winosim.geometry import LayerGeometry, NetworkGeometry
    from winosim.synthetic import synthetic_trace

    layers = (LayerGeometry("fc", "spatial", "fc", 4, 10, 1, 1, kernel=1),)
    trace = synthetic_trace(NetworkGeometry("tiny", 4, 1, 1, layers), images=1, seed=0, methods=("spatial", "native"))
    two = [
        {"from_step": 0, "machine": "CPU A", "precision": "bf16"},
        {"from_step": 1234, "machine": "CPU B", "precision": "fp32"},
    ]
    recipes = [
        {"trained_on": "CPU B", "trained_in": two, "extracted_on": "CPU C"},
        {"trained_on": "CPU D", "trained_in": [{"machine": "CPU E"}], "extracted_on": "CPU C"},
    ]
    variants = tuple(replace(v, recipe=r) for v, r in zip(trace.variants, recipes, strict=True))
    text = _module("trace_cards")._machines(replace(trace, variants=variants))
    assert "`spatial` trained on CPU A in bf16, then CPU B in fp32 from step 1,234, extracted on CPU C" in text
    assert "`native` trained on CPU D, extracted on CPU C" in text
    resumed = [{"from_step": 50, "machine": "CPU A", "precision": "fp32"}]
    assert _module("trace_cards")._trained_in({"trained_in": resumed}) == (
        "steps before 50: not recorded, then CPU A in fp32 from step 50"
    )


def test_replace_table_puts_a_table_in_the_place_of_the_one_it_replaces() -> None:
    cards = _module("trace_cards")
    text = "# t\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n### `x.npz`: x\n\n| a | b |\n|---|---|\n| 3 | 4 |\nafter\n"
    new = "| a | b |\n|---|---|\n| 5 | 6 |\n| 7 | 8 |"
    assert cards.replace_table(text, new, "| a |") == text.replace("| 1 | 2 |", "| 5 | 6 |\n| 7 | 8 |")
    assert cards.replace_table(text, new, "| a |", after="### `x.npz`:") == text.replace(
        "| 3 | 4 |", "| 5 | 6 |\n| 7 | 8 |"
    )
    for args, message in [
        ((new, "| a |", "### `y.npz`:"), "no line beginning '### `y.npz`:'"),
        (("| c |\n|---|", "| c |"), "no table beginning '| c |'"),
        ((new, "| c |"), "not a Markdown table beginning '| c |'"),
    ]:
        with pytest.raises(ValueError, match=message.replace("|", r"\|").replace("(", r"\(")):
            cards.replace_table(text, *args)


def test_update_readmes_restores_the_tables_of_the_shipped_traces(tmp_path: Path) -> None:
    """With the last row of every table in both READMEs made stale, `readme_updates` writes back exactly the
    tables the shipped traces make, in their places (README.md: the claim table; traces/README.md: each trained
    trace's variant table), and leaves every other table alone; on the committed READMEs it changes nothing."""
    cards = _module("trace_cards")
    from winosim.trace import load_trace

    trained = [(p, t) for p in sorted((ROOT / "traces").glob("*.npz")) if not (t := load_trace(p)).provenance.synthetic]
    assert cards.readme_updates(ROOT, trained) == {}
    (tmp_path / "traces").mkdir()
    stale = {}
    for name in ("README.md", "traces/README.md"):
        lines = (ROOT / name).read_text(encoding="utf-8").split("\n")
        stale[name] = "\n".join(
            line.replace("|", "| STALE |", 1) if line.startswith("|") and not after.startswith("|") else line
            for line, after in zip(lines, [*lines[1:], ""], strict=True)
        )
        (tmp_path / name).write_text(stale[name], encoding="utf-8")
    updates = cards.readme_updates(tmp_path, trained)
    readme, traces_readme = updates[tmp_path / "README.md"], updates[tmp_path / "traces" / "README.md"]
    assert len(updates) == 2
    assert cards.readme_claims([(p.name, t) for p, t in trained]).split("\n\n")[0] in readme
    assert readme.count("| STALE |") == stale["README.md"].count("| STALE |") - 1
    for _, trace in trained:
        assert cards.variant_table(trace).split("\n\n")[0] in traces_readme
    assert traces_readme.count("| STALE |") == stale["traces/README.md"].count("| STALE |") - len(trained)


def test_an_ablation_is_a_change_against_the_recipe_run_as_long_on_the_same_machine() -> None:
    """Closed form: 92.0% for the recipe and 91.0% without label smoothing, both on 10,000 images, differ by
    -1.00 point with s.e. sqrt(se(0.92)^2 + se(0.91)^2); a run of another length, another machine or another
    method has no reference and is no ablation; a peak rate of its own is part of the change."""
    tc = _training_curves()
    runs = [
        _run_log("ablate_base", epochs=2, test=[0.0, 0.92], lr=0.4, mode="spatial"),
        _run_log("ablate_no_smoothing", epochs=2, test=[0.0, 0.91], lr=0.4, mode="spatial", label_smoothing=0.0),
        _run_log("ablate_batch128", epochs=2, test=[0.0, 0.925], lr=0.2, mode="spatial", batch_size=128),
        _run_log("longer", epochs=4, test=[0.0] * 3 + [0.95], lr=0.4, mode="spatial", label_smoothing=0.0),
        _run_log("h200_ablate_dropout", epochs=2, test=[0.0, 0.90], lr=0.4, mode="spatial", dropout=True),
        _run_log("wr", epochs=2, test=[0.0, 0.88], lr=0.4, mode="winograd_relu", label_smoothing=0.0),
        _run_log("ablate_again", epochs=2, test=[0.0, 0.918], lr=0.4, mode="spatial", seed=1),  # seed 0 refers
    ]
    pairs = tc.ablations(tc.dense_points(runs))
    assert [(a.point.run, a.reference.run, a.change) for a in pairs] == [
        ("ablate_again", "ablate_base", "seed 1 (the recipe again)"),
        ("ablate_batch128", "ablate_base", "batch size 128, peak lr 0.2"),
        ("ablate_no_smoothing", "ablate_base", "label smoothing 0.0"),
    ]
    no_smoothing = pairs[2]
    assert no_smoothing.difference_points == pytest.approx(-1.0)
    se = math.hypot(100 * math.sqrt(0.92 * 0.08 / 10000), 100 * math.sqrt(0.91 * 0.09 / 10000))
    assert no_smoothing.difference_error_points == pytest.approx(se)
    table = tc.ablation_table(tc.dense_points(runs))
    assert "| label smoothing 0.0 | 91.00% | 92.00% | -1.00 ± 0.39 | `ablate_no_smoothing` |" in table
    assert "No such runs" in tc.ablation_table(tc.dense_points(runs[3:]))

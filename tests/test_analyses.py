"""The committed analysis outputs (analyses/out/*.md) are what the current code makes from the shipped traces.

Each script under analyses/ is run as a reader would run it (`python analyses/<name>.py`), writing into a
temporary folder, and every Markdown table it writes must equal the committed one byte for byte; it must
also write every committed figure of its own. A failure here means the code changed the numbers: rerun
the scripts (`python analyses/<name>.py`) and commit analyses/out/ together with the change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
CHECKED_ELSEWHERE = {"validation.py": "needs the validation extra (ZigZag) and minutes: tests/test_validation.py"}


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

"""`winosim merge`: one trace from the variants of traces measured on the same network and the same images.

A merged trace must be what extracting all its variants together would have given: the masks bit for bit,
each variant's accuracies and recipe (plus where it was extracted), the first trace's variant order with
replacements in place; and traces whose variants were not measured on the same thing are refused in one line.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from winosim import cli
from winosim.commands.merge import dataset_split, merge_traces, sampled_images
from winosim.errors import ConfigError, TraceError
from winosim.geometry import LayerGeometry, NetworkGeometry
from winosim.synthetic import synthetic_trace
from winosim.trace import Trace, load_trace, write_trace

LAYERS = (
    LayerGeometry("stem", "spatial", "conv", 3, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("a", "winograd", "conv", 8, 8, 8, 8, kernel=3, stride=1, padding=1),
    LayerGeometry("fc", "spatial", "fc", 8, 10, 1, 1, kernel=1),
)
NET = NetworkGeometry("tiny", 8, 8, 10, LAYERS)


def _trained(seed: int, methods: tuple[str, ...], *, torch_version: str = "2.13.0", images: str = "[3, 7]") -> Trace:
    """A trace as `winosim trace` writes one (not synthetic, image indices in the notes), with seeded masks."""
    trace = synthetic_trace(NET, images=2, seed=seed, methods=methods)
    provenance = replace(
        trace.provenance,
        synthetic=False,
        dataset=f"cifar10-npz:test (/data/{seed})",
        seed=0,
        torch_version=torch_version,
        command=f"python -m winosim trace run{seed}",
        notes=f"activation masks from test images {images}; accuracy measured at extraction on 10000 test images",
    )
    variants = tuple(
        replace(v, accuracy=0.9 + seed / 100, dense_accuracy=0.91, recipe={"seed": seed}) for v in trace.variants
    )
    return replace(trace, variants=variants, provenance=provenance)


def _same_masks(a: Trace, name_a: str, b: Trace, name_b: str) -> bool:
    va, vb = a.variant(name_a), b.variant(name_b)
    return all(
        np.array_equal(x.weight, y.weight) and np.array_equal(x.activation, y.activation)
        for x, y in zip(va.masks, vb.masks, strict=True)
    )


def test_later_variant_replaces_in_place_masks_and_recipe_kept() -> None:
    old = _trained(1, ("spatial", "native", "winograd_relu"))
    new = _trained(2, ("winograd_relu",), torch_version="2.11.0+cu130")
    merged = merge_traces([("old.npz", old), ("new.npz", new)], "python -m winosim merge old.npz new.npz")
    assert [v.name for v in merged.variants] == ["spatial", "native", "winograd_relu"]
    assert _same_masks(merged, "spatial", old, "spatial") and _same_masks(merged, "native", old, "native")
    assert _same_masks(merged, "winograd_relu", new, "winograd_relu")
    assert not _same_masks(merged, "winograd_relu", old, "winograd_relu")
    wr = merged.variant("winograd_relu")
    assert wr.accuracy == new.variant("winograd_relu").accuracy
    assert wr.recipe["seed"] == 2
    assert wr.recipe["extraction"]["command"] == "python -m winosim trace run2"
    assert wr.recipe["extraction"]["torch_version"] == "2.11.0+cu130"
    assert merged.variant("spatial").recipe["extraction"]["command"] == "python -m winosim trace run1"
    prov = merged.provenance
    assert prov.command == "python -m winosim merge old.npz new.npz"
    assert prov.torch_version == "2.11.0+cu130, 2.13.0"
    assert prov.notes.startswith("activation masks from test images [3, 7]")
    assert "spatial, native from old.npz; winograd_relu from new.npz" in prov.notes
    assert sampled_images(prov) == "[3, 7]"


def test_new_names_are_appended_and_a_second_merge_keeps_the_first_record() -> None:
    a = _trained(1, ("spatial",))
    b = _trained(2, ("native", "winograd_relu"))
    ab = merge_traces([("a", a), ("b", b)], "merge a b")
    assert [v.name for v in ab.variants] == ["spatial", "native", "winograd_relu"]
    again = merge_traces([("ab", ab), ("c", _trained(3, ("native",)))], "merge ab c")
    assert again.variant("spatial").recipe["extraction"]["command"] == "python -m winosim trace run1"
    assert again.variant("native").recipe["extraction"]["command"] == "python -m winosim trace run3"


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda t: replace(t, provenance=replace(t.provenance, seed=1)), "image seed"),
        (lambda t: replace(t, provenance=replace(t.provenance, dataset="cifar10-npz:train (/x)")), "dataset"),
        (lambda t: replace(t, provenance=replace(t.provenance, notes="test images [3, 8]")), "sampled image indices"),
        (lambda t: replace(t, provenance=replace(t.provenance, synthetic=True)), "synthetic flag"),
        (lambda t: replace(t, network="other"), "network"),
    ],
)
def test_traces_measured_on_different_things_are_refused(change: object, what: str) -> None:
    base = _trained(1, ("spatial", "winograd_relu"))
    other = change(_trained(2, ("winograd_relu",)))  # type: ignore[operator]
    with pytest.raises(TraceError, match=f"cannot merge b into a: not the same {what}"):
        merge_traces([("a", base), ("b", other)], "merge")


def test_other_geometry_is_refused() -> None:
    wider = NetworkGeometry(
        "tiny", 8, 8, 10, (LAYERS[0], replace(LAYERS[1], out_channels=16), replace(LAYERS[2], in_channels=16))
    )
    other = replace(synthetic_trace(wider, images=2, seed=0), provenance=_trained(1, ("spatial",)).provenance)
    with pytest.raises(TraceError, match="not the same layer geometry"):
        merge_traces([("a", _trained(1, ("spatial",))), ("b", other)], "merge")


def test_one_trace_is_not_a_merge() -> None:
    with pytest.raises(ConfigError, match="at least two traces"):
        merge_traces([("a", _trained(1, ("spatial",)))], "merge")


def test_dataset_split_ignores_the_folder() -> None:
    assert dataset_split("cifar10-npz:test (/root/data)") == dataset_split("cifar10-npz:test (../shared/data)")
    assert dataset_split("unit-test") == "unit-test"


def test_cli_merges_in_place_deterministically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write_trace(_trained(1, ("spatial", "native", "winograd_relu")), tmp_path / "net.npz")
    new = write_trace(_trained(2, ("winograd_relu",)), tmp_path / "wr.npz")
    copy = tmp_path / "copy.npz"
    copy.write_bytes(old.read_bytes())
    assert cli.main(["merge", str(old), str(new), "--output", str(tmp_path / "out.npz")]) == 0
    assert cli.main(["merge", str(copy), str(new), "--output", str(copy)]) == 0  # in place
    merged, in_place = load_trace(tmp_path / "out.npz"), load_trace(copy)
    assert [v.name for v in merged.variants] == ["spatial", "native", "winograd_relu"]
    assert _same_masks(merged, "winograd_relu", load_trace(new), "winograd_relu")
    assert _same_masks(in_place, "spatial", load_trace(old), "spatial")
    with zipfile.ZipFile(tmp_path / "out.npz") as z:
        members = sorted(z.namelist())
    with zipfile.ZipFile(copy) as z:
        assert sorted(z.namelist()) == members
    meta = json.loads(bytes(np.load(copy, allow_pickle=False)["meta"]).decode())
    assert meta["variants"][2]["recipe"]["extraction"]["command"] == "python -m winosim trace run2"
    first = (tmp_path / "out.npz").read_bytes()
    assert cli.main(["merge", str(old), str(new), "--output", str(tmp_path / "out.npz")]) == 0
    assert (tmp_path / "out.npz").read_bytes() == first  # same inputs, same bytes


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_trace(_trained(1, ("spatial",)), tmp_path / "a.npz")
    other = write_trace(replace(_trained(2, ("native",)), network="other"), tmp_path / "b.npz")
    out = tmp_path / "out.npz"
    cases = (
        ([str(good), "--output", str(out)], "at least two traces"),
        ([str(good), str(tmp_path / "missing.npz"), "--output", str(out)], "trace file not found"),
        ([str(good), str(other), "--output", str(out)], "not the same network"),
        ([str(good), str(other), str(good), "--output", str(good)], "is given twice"),
    )
    for args, message in cases:
        capsys.readouterr()
        assert cli.main(["merge", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("winosim: error:") and message in err and "\n" not in err
        assert not out.exists()

"""traces/recipes/device/pack_cifar.py: a packed CIFAR folder unpacks to the same arrays, bit for bit, in parts
no larger than asked, and a damaged part is refused rather than trained on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "traces" / "recipes" / "device" / "pack_cifar.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pack_cifar", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dataset(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    shards = {}
    for name in ("test.npz", "train_0.npz", "train_1.npz"):
        images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=40).astype(np.int64)
        np.savez(folder / name, images=images, labels=labels)
        shards[name] = (images, labels)
    return shards


def test_round_trip_is_exact_and_parts_respect_the_size(tmp_path: Path) -> None:
    pack = _script()
    shards = _dataset(tmp_path / "cifar")
    assert pack.main(["pack", str(tmp_path / "cifar"), str(tmp_path / "packed"), "--part-mb", "0.2"]) == 0
    parts = sorted((tmp_path / "packed").glob("part*"))
    assert len(parts) >= 2  # random bytes do not compress: ~0.12 MB per shard, at most one per 0.2 MB part
    for part in parts:  # a part holds one shard or stays within the size
        files = list(part.iterdir())
        assert len(files) == 1 or sum(f.stat().st_size for f in files) <= 0.2e6
    assert pack.main(["unpack", *map(str, parts), str(tmp_path / "out")]) == 0
    for name, (images, labels) in shards.items():
        with np.load(tmp_path / "out" / name, allow_pickle=False) as unpacked:
            assert np.array_equal(unpacked["images"], images) and unpacked["images"].dtype == np.uint8
            assert np.array_equal(unpacked["labels"], labels)


def test_a_damaged_part_is_refused(tmp_path: Path) -> None:
    pack = _script()
    _dataset(tmp_path / "cifar")
    pack.main(["pack", str(tmp_path / "cifar"), str(tmp_path / "packed")])
    packed = tmp_path / "packed" / "part0" / "train_0.npz"
    with np.load(packed, allow_pickle=False) as shard:
        fields = dict(shard)
    fields["sha256"] = np.array("0" * 64)
    np.savez(packed, **fields)
    with pytest.raises(SystemExit, match="do not match"):
        pack.main(["unpack", str(tmp_path / "packed" / "part0"), str(tmp_path / "out")])
    assert not (tmp_path / "out" / "train_0.npz").exists()


def test_unpacking_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no packed shards"):
        _script().main(["unpack", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()

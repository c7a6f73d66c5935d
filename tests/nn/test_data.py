"""Data: the three CIFAR layouts load to the same arrays, augmentation is a seeded pad-crop-flip, and the
training batches of an epoch are a pure function of (seed, epoch, batch)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

from winosim.errors import ConfigError
from winosim.nn.data import ArrayDataset, augment, load_dataset


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def test_npz_layout(random_data: Path) -> None:
    train, test = load_dataset(random_data, "train"), load_dataset(random_data, "test")
    assert isinstance(train, ArrayDataset)
    assert (len(train), len(test), train.num_classes) == (128, 48, 10)
    with np.load(random_data / "train_0.npz") as z:
        np.testing.assert_array_equal(train.images.numpy(), z["images"].transpose(0, 3, 1, 2))


def test_cifar10_python_distribution(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    images = _images(12)
    flat = images.transpose(0, 3, 1, 2).reshape(12, -1)
    for i in range(1, 6):
        rows = slice(2 * (i - 1), 2 * i)
        batch = {b"data": flat[rows], b"labels": list(range(2 * (i - 1), 2 * i))}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (root / "test_batch").write_bytes(pickle.dumps({b"data": flat[10:], b"labels": [1, 2]}))
    train = load_dataset(tmp_path, "train")  # the parent folder works too
    assert isinstance(train, ArrayDataset)
    assert len(train) == 10 and train.labels.tolist() == list(range(10))
    np.testing.assert_array_equal(train.images.numpy(), images[:10].transpose(0, 3, 1, 2))
    assert load_dataset(root, "test").labels.tolist() == [1, 2]


@pytest.mark.parametrize("hundred", [False, True], ids=["cifar-10", "cifar-100"])
def test_a_python_distribution_reads_from_its_archive_as_downloaded(tmp_path: Path, hundred: bool) -> None:
    """`--data cifar-10-python.tar.gz` (or cifar-100's) reads the archive in place: the same arrays as the
    unpacked folder, nothing written next to it."""
    import tarfile

    folder = tmp_path / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir()
    flat = _images(12).transpose(0, 3, 1, 2).reshape(12, -1)
    key = b"fine_labels" if hundred else b"labels"
    names = (
        [("train", slice(0, 10)), ("test", slice(10, 12)), ("meta", slice(0, 0))]
        if hundred
        else [
            *((f"data_batch_{i}", slice(2 * i - 2, 2 * i)) for i in range(1, 6)),
            ("test_batch", slice(10, 12)),
        ]
    )
    for name, rows in names:
        labels = [i % 10 for i in range(rows.start, rows.stop)]
        (folder / name).write_bytes(pickle.dumps({b"data": flat[rows], key: labels}))
    archive = tmp_path / "downloaded" / f"{folder.name}.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    dotted = tmp_path / "dotted.tar"  # made from inside: members named ./cifar-.../...
    with tarfile.open(dotted, "w") as tar:
        tar.add(folder, arcname=f"./{folder.name}")
    for split in ("train", "test"):
        packed, unpacked = load_dataset(archive, split), load_dataset(folder, split)
        assert isinstance(packed, ArrayDataset) and isinstance(unpacked, ArrayDataset)
        assert packed.num_classes == unpacked.num_classes == (100 if hundred else 10)
        np.testing.assert_array_equal(packed.images.numpy(), unpacked.images.numpy())
        assert packed.labels.tolist() == unpacked.labels.tolist() and packed.name == unpacked.name
        assert load_dataset(dotted, split).labels.tolist() == unpacked.labels.tolist()
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


def test_a_foreign_or_broken_archive_is_one_line(tmp_path: Path) -> None:
    import tarfile

    other = tmp_path / "other.tar"
    (tmp_path / "notes.txt").write_text("not CIFAR\n")
    with tarfile.open(other, "w") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    with pytest.raises(ConfigError, match=r"other\.tar: not a CIFAR python archive \(no cifar-10-batches-py/data_"):
        load_dataset(other, "train")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": _images(2).reshape(2, -1), b"labels": [0, 1]}))
    (folder / "data_batch_3").write_bytes(b"crafted, or cut short")
    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(broken, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    with pytest.raises(
        ConfigError, match=r"broken\.tar\.gz/cifar-10-batches-py/data_batch_3: not a CIFAR python batch"
    ):
        load_dataset(broken, "train")
    (tmp_path / "plain.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(ConfigError, match=r"plain\.bin is a file but not a CIFAR archive"):
        load_dataset(tmp_path / "plain.bin", "train")


def test_cifar100_python_distribution(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    flat = _images(6).transpose(0, 3, 1, 2).reshape(6, -1)
    for name, rows in (("train", slice(0, 4)), ("test", slice(4, 6))):
        (root / name).write_bytes(
            pickle.dumps({b"data": flat[rows], b"fine_labels": [99, 0, 5, 7][: rows.stop - rows.start]})
        )
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": []}))
    train = load_dataset(root, "train")
    assert train.num_classes == 100 and train.labels.tolist() == [99, 0, 5, 7]


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(_images(1)[0]).resize((300, 260)).save(folder / "a.png")
    train = load_dataset(tmp_path, "train")
    assert train.num_classes == 2 and len(train) == 2
    x, y = next(iter(train.train_batches(seed=0, epoch=0, batch_size=2)))
    assert x.shape == (2, 3, 224, 224) and y.tolist() in ([0, 1], [1, 0])
    xt, _ = load_dataset(tmp_path, "test").take([0])
    assert xt.shape == (1, 3, 224, 224)
    # ImageNet's val as unpacked holds its images directly: say what to do, not just "no images"
    for cls in ("cat", "dog"):
        (tmp_path / "val" / cls / "a.png").rename(tmp_path / "val" / f"{cls}.PNG")
        (tmp_path / "val" / cls).rmdir()
    with pytest.raises(ConfigError, match=r"its images lie directly in it; each must be in its class's folder"):
        load_dataset(tmp_path, "test")


def test_both_dataset_kinds_take_subsets_and_shuffle_alike(tmp_path: Path, random_data: Path) -> None:
    """A subset keeps the first images and the normalisation, a limit below 1 is an error, and `epoch_images`
    cuts an epoch short, in both kinds of dataset."""
    from PIL import Image

    for split in ("train", "val"):
        for i in range(4):
            folder = tmp_path / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_images(1, seed=i)[0]).save(folder / f"{i}.png")
    folder_data = load_dataset(tmp_path, "train")
    array_data = load_dataset(random_data, "train").subset(len(folder_data))
    for data in (folder_data, array_data):
        assert data.subset(None) is data and data.subset(len(data) + 5) is data
        part = data.subset(2)
        assert len(part) == 2 and (part.mean, part.std) == (data.mean, data.std)
        assert torch.equal(part.labels, data.labels[:2])
        with pytest.raises(ConfigError, match="image limit must be >= 1"):
            data.subset(0)
    for data in (folder_data, array_data):
        assert data.batches_per_epoch(3) == 2 and data.batches_per_epoch(3, epoch_images=3) == 1
        epoch = [y for _, y in data.train_batches(seed=3, epoch=1, batch_size=3, epoch_images=3)]
        assert len(epoch) == 1 and len(epoch[0]) == 3


def test_unknown_layout_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a known dataset layout"):
        load_dataset(tmp_path, "train")
    with pytest.raises(ConfigError, match="not found"):
        load_dataset(tmp_path / "nope", "train")
    (tmp_path / "train_0.npz").write_bytes(b"")
    with pytest.raises(
        ConfigError, match=r"train_0\.npz is a file but not a CIFAR archive: --data takes the dataset's folder"
    ):
        load_dataset(tmp_path / "train_0.npz", "train")


def test_augment_is_a_crop_of_the_padded_image_or_its_mirror() -> None:
    images = torch.from_numpy(_images(16).transpose(0, 3, 1, 2).copy())
    out = augment(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for i in range(16):
        crops = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        plain = any(torch.equal(out[i], c) for c in crops)
        mirrored = any(torch.equal(out[i], c.flip(-1)) for c in crops)
        assert plain or mirrored
        flips += int(mirrored and not plain)
    assert 0 < flips < 16
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(0)))


def test_epoch_batches_are_seeded_and_resumable(random_data: Path) -> None:
    data = load_dataset(random_data, "train")
    full = list(data.train_batches(seed=1, epoch=2, batch_size=32))
    tail = list(data.train_batches(seed=1, epoch=2, batch_size=32, start_batch=2))
    assert len(full) == 4
    for (xa, ya), (xb, yb) in zip(full[2:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = next(iter(data.train_batches(seed=1, epoch=3, batch_size=32)))
    assert not torch.equal(other[1], full[0][1])
    labels = torch.cat([y for _, y in full])
    assert sorted(labels.tolist()) == sorted(data.labels.tolist())  # an epoch is a permutation


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_a_dataset_moved_to_a_device_gives_the_same_batches(random_data: Path, device: str) -> None:
    """Data on the GPU: the same seeded shuffles, crops and flips as on the CPU, computed where the images are."""
    data = load_dataset(random_data, "train").subset(40)
    assert isinstance(data, ArrayDataset)
    moved = data.to(device)
    for (x, y), (xm, ym) in zip(
        data.train_batches(seed=3, epoch=1, batch_size=16),
        moved.train_batches(seed=3, epoch=1, batch_size=16),
        strict=True,
    ):
        assert xm.device.type == device
        torch.testing.assert_close(xm.cpu(), x)
        assert torch.equal(ym.cpu(), y)
    xt, _ = moved.take([0, 5])
    torch.testing.assert_close(xt.cpu(), data.take([0, 5])[0])


# --- bad data: one ConfigError naming the file, before any training (never a failure mid-run) -------------------


def _npz_folder(root: Path, **members: Any) -> Path:  # Any: numpy types savez's own keywords
    root.mkdir()
    np.savez(root / "train_0.npz", **members)
    np.savez(root / "test.npz", images=_images(2), labels=np.array([0, 1]))
    return root


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"images": _images(4), "labels": np.array([0, 1, 12, 3])}, r"labels must be class indices in \[0, 10\)"),
        ({"images": _images(0), "labels": np.zeros(0, np.int64)}, r"its train split holds no images"),
        ({"images": _images(4), "labels": np.array([0, -1, 2, 3])}, r"found -1\.\.3"),
        ({"images": _images(4), "labels": np.array([0.0, 1.0, 2.0, 3.0])}, r"'labels' is float64"),
        ({"images": _images(4), "labels": np.array([0, 1])}, r"'labels' is int64 \(2,\) for 4 images"),
        ({"images": _images(4)[..., 0], "labels": np.arange(4)}, r"'images' is uint8 \(4, 32, 32\)"),
        ({"images": _images(4).astype(np.float32), "labels": np.arange(4)}, r"'images' is float32"),
        ({"x": _images(4), "y": np.arange(4)}, r"not a CIFAR \.npz part .*found x, y"),
        ({"images": np.array([{"a": 1}] * 4, dtype=object), "labels": np.arange(4)}, r"not a readable CIFAR \.npz"),
    ],
    ids=["label_too_big", "no_images", "negative_label", "float_labels", "label_count", "no_channels", "float_images",
         "foreign_members", "pickled"],
)  # fmt: skip
def test_a_malformed_npz_part_is_one_error_naming_it(tmp_path: Path, members: dict, message: str) -> None:
    root = _npz_folder(tmp_path / "data", **members)
    with pytest.raises(ConfigError, match=message):
        load_dataset(root, "train")


def test_a_truncated_npz_part_is_one_error_naming_it(tmp_path: Path) -> None:
    root = _npz_folder(tmp_path / "data", images=_images(4), labels=np.arange(4))
    part = root / "train_0.npz"
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"train_0\.npz: not a readable CIFAR \.npz part"):
        load_dataset(root, "train")


class _Exploit:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (pickle.dumps({b"data": _Exploit(), b"labels": [0]}), "refusing to load builtins.print"),
        (b"not a pickle", "not a CIFAR python batch"),
        (pickle.dumps([1, 2]), "not a CIFAR python batch"),
        (pickle.dumps({b"labels": [0]}), r"needs b'data' and b'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}), r"not uint8 \(N, 3072\)"),
    ],
    ids=["code", "garbage", "a_list", "no_data", "wrong_shape"],
)
def test_a_malformed_python_batch_is_refused_and_runs_no_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    flat = _images(2).transpose(0, 3, 1, 2).reshape(2, -1)
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps({b"data": flat, b"labels": [0, 1]}))
    (root / "data_batch_1").write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_dataset(root, "train")
    assert "code ran" not in capsys.readouterr().out


def test_an_unreadable_image_in_a_folder_names_the_file(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "a.png").write_bytes(b"not a png")
    train = load_dataset(tmp_path, "train")
    with pytest.raises(ConfigError, match=r"a\.png: not a readable image"):
        train.take([0])

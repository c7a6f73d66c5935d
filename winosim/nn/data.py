"""Image data for training and extraction: CIFAR-10/100 and ImageNet-style folders, in plain torch.

Formats read (detected from the folder's contents by `load_dataset`):
- the `.npz` layout of the project's CIFAR-10 copy: `train_0.npz` .. `train_4.npz`, `test.npz`, each with
  `images` (N, 32, 32, 3) uint8 and `labels` (N,) int64;
- the standard python distributions `cifar-10-batches-py` (`data_batch_1..5`, `test_batch`) and
  `cifar-100-python` (`train`, `test`, fine labels), either the folder itself or its parent, or the archive as
  downloaded (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`), read in place without extracting;
- an image folder `<root>/{train,val}/<class>/<image>` (ImageNet-style; classes sorted by name), decoded with
  PIL on demand, resized (shorter side 256) and cropped to 224.

A CIFAR dataset is held in memory as uint8 (N, 3, 32, 32). Batches are produced deterministically from
(seed, epoch, batch index): the epoch's permutation and each batch's augmentation (4-pixel zero pad and random
32x32 crop, horizontal flip) come from generators seeded by those numbers, so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch
from torch import Tensor

from winosim.errors import ConfigError
from winosim.text import first_line

Split = Literal["train", "test"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived deterministically from integers (numpy SeedSequence)."""
    return int(
        np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1
    )


def _normalise(images: Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 normalised per channel, on the images' device."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255.0) - mean_t) / std_t


def _check_labels(name: str, labels: Tensor, num_classes: int) -> None:
    """ConfigError unless `labels` are integers in [0, num_classes) (a label outside would fail mid-run)."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ConfigError(f"dataset {name!r}: labels must be integers, got {labels.dtype}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigError(
            f"dataset {name!r}: labels must be class indices in [0, {num_classes}), found "
            f"{int(labels.min())}..{int(labels.max())}"
        )


def _subset_count(count: int | None, length: int) -> int | None:
    """How many images a `subset(count)` keeps: None (all) when `count` is None or covers the set."""
    if count is None or count >= length:
        return None
    if count < 1:
        raise ConfigError(f"image limit must be >= 1, got {count}")
    return count


def _batch_count(length: int, batch_size: int, epoch_images: int | None) -> int:
    count = length if epoch_images is None else min(epoch_images, length)
    return -(-count // batch_size)


def _epoch_order(length: int, seed: int, epoch: int, epoch_images: int | None) -> Tensor:
    """The epoch's image order (the first `epoch_images` of a seeded permutation), on the CPU."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))
    return order if epoch_images is None else order[:epoch_images]


def _batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The CPU generator of one training batch's augmentation draws."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, batch, 7))


@dataclass(frozen=True)
class ArrayDataset:
    """An in-memory labelled image set: `images` uint8 (N, 3, H, W), `labels` int64 (N,)."""

    name: str
    images: Tensor
    labels: Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ConfigError(f"ArrayDataset {self.name!r}: images must be uint8 (N, 3, H, W), got {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ConfigError(f"ArrayDataset {self.name!r}: labels shape {self.labels.shape} != ({len(self)},)")
        _check_labels(self.name, self.labels, self.num_classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, count: int | None) -> ArrayDataset:
        """The first `count` images (all when None)."""
        keep = _subset_count(count, len(self))
        if keep is None:
            return self
        return ArrayDataset(self.name, self.images[:keep], self.labels[:keep], self.num_classes, self.mean, self.std)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """The same images on `device` (a CUDA GPU: the whole set stays there, and shuffling, augmentation and
        normalisation run there too, with the same seeded draws as on the CPU, so batches are the same)."""
        return ArrayDataset(
            self.name, self.images.to(device), self.labels.to(device), self.num_classes, self.mean, self.std
        )

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float32 normalised, on the images' device."""
        return _normalise(images, self.mean, self.std)

    def take(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Normalised, unaugmented images and labels at `indices`."""
        index = torch.as_tensor(indices, dtype=torch.long).to(self.images.device)
        return self.normalise(self.images[index]), self.labels[index]

    def batches_per_epoch(self, batch_size: int, epoch_images: int | None = None) -> int:
        return _batch_count(len(self), batch_size, epoch_images)

    def train_batches(
        self, *, seed: int, epoch: int, batch_size: int, start_batch: int = 0, epoch_images: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Augmented, shuffled training batches of one epoch, starting at batch `start_batch`."""
        order = _epoch_order(len(self), seed, epoch, epoch_images).to(self.images.device)
        for b in range(start_batch, self.batches_per_epoch(batch_size, epoch_images)):
            index = order[b * batch_size : (b + 1) * batch_size]
            yield self.normalise(augment(self.images[index], _batch_generator(seed, epoch, b))), self.labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.normalise(self.images[start : start + batch_size]), self.labels[start : start + batch_size]


def augment(images: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop after zero padding by `pad` pixels, then random horizontal flip. uint8 (B, 3, H, W).

    The draws come from the CPU `generator` (the same on every device); the gathers run on the images' device.
    """
    b, _, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(device)
    rows = (dy.view(b, 1) + torch.arange(h, device=device).view(1, h)).view(b, 1, h, 1).expand(b, 3, h, w + 2 * pad)
    cropped = torch.gather(padded, 2, rows)
    cols_base = torch.arange(w, device=device).view(1, w)
    cols_base = torch.where(flip.view(b, 1), w - 1 - cols_base, cols_base)
    cols = (dx.view(b, 1) + cols_base).view(b, 1, 1, w).expand(b, 3, h, w)
    return torch.gather(cropped, 3, cols)


def _from_nhwc(name: str, images: np.ndarray, labels: np.ndarray, classes: int, stats: tuple) -> ArrayDataset:
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return ArrayDataset(name, tensor, torch.from_numpy(labels.astype(np.int64)), classes, stats[0], stats[1])


def _npz_part(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`images` (N, H, W, 3) uint8 and `labels` (N,) integers of one file of the CIFAR .npz layout; ConfigError
    naming the file for anything else (a missing member, a pickled or corrupt file, another shape or type)."""
    expected = "needs 'images' (N, H, W, 3) uint8 and 'labels' (N,) integers"
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or not {"images", "labels"} <= set(z.files):
                found = ", ".join(sorted(getattr(z, "files", []))) or "no named arrays"
                raise ConfigError(f"{path}: not a CIFAR .npz part ({expected}; found {found})")
            images, labels = z["images"], z["labels"]
    except ConfigError:
        raise
    except Exception as exc:  # numpy raises many types for corrupt, truncated or pickled files
        raise ConfigError(f"{path}: not a readable CIFAR .npz part ({first_line(exc)})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"{path}: {expected}; 'images' is {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(images):
        raise ConfigError(f"{path}: {expected}; 'labels' is {labels.dtype} {labels.shape} for {len(images)} images")
    return images, labels


def _load_npz_layout(root: Path, split: Split) -> ArrayDataset:
    files = sorted(root.glob("train_*.npz")) if split == "train" else [root / "test.npz"]
    parts = [_npz_part(path) for path in files]
    sizes = {images.shape[1:] for images, _ in parts}
    if len(sizes) > 1:
        raise ConfigError(f"{root}: its .npz parts hold images of different sizes {sorted(sizes)}")
    if not any(len(images) for images, _ in parts):
        raise ConfigError(f"{root}: its {split} split holds no images")
    return _from_nhwc(
        f"cifar10-npz:{split}",
        np.concatenate([images for images, _ in parts]),
        np.concatenate([labels for _, labels in parts]),
        10,
        (CIFAR10_MEAN, CIFAR10_STD),
    )


class _CifarUnpickler(pickle.Unpickler):
    """The official CIFAR python distribution is a pickle of plain dicts, lists, bytes and numpy arrays; this
    unpickler builds those and nothing else, so a crafted file cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3's protocol 2 stores an array's bytes
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds plain data only)")
        return super().find_class(module, name)


def _unpickle(path: Path, handle: IO[bytes] | None = None) -> dict[bytes, object]:
    """The batch in the file `path`, or read from `handle` (a member of an archive, `path` naming it)."""
    try:
        if handle is None:
            with path.open("rb") as opened:
                data = _CifarUnpickler(opened, encoding="bytes").load()
        else:
            data = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # corrupt, truncated, foreign or crafted: one line naming the file
        raise ConfigError(f"{path}: not a CIFAR python batch ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a CIFAR python batch")
    return data


def _batch_arrays(path: Path, batch: dict[bytes, object], key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python batch's images as uint8 (N, 3, 32, 32) and its labels; ConfigError naming the file."""
    if b"data" not in batch or key not in batch:
        raise ConfigError(f"{path}: not a CIFAR python batch (needs {b'data'!r} and {key!r})")
    try:
        images = np.asarray(batch[b"data"])
        labels = np.asarray(batch[key])
        if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
            raise ValueError(f"'data' is {images.dtype} {images.shape}, not uint8 (N, 3072)")
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels are {labels.dtype} {labels.shape} for {len(images)} images")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a CIFAR python batch ({exc})") from None
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int64)


_CIFAR_FOLDERS = {False: "cifar-10-batches-py", True: "cifar-100-python"}
"""The folder each python distribution unpacks to (`hundred` -> name): its archive holds the same path."""


def _cifar_batch_names(split: Split, hundred: bool) -> list[str]:
    if hundred:
        return ["train"] if split == "train" else ["test"]
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _cifar_dataset(split: Split, hundred: bool, batches: Sequence[tuple[Path, dict[bytes, object]]]) -> ArrayDataset:
    """The `split` from its python batches (each with the path that names it in errors)."""
    key, classes, stats = (
        (b"fine_labels", 100, (CIFAR100_MEAN, CIFAR100_STD))
        if hundred
        else (b"labels", 10, (CIFAR10_MEAN, CIFAR10_STD))
    )
    arrays = [_batch_arrays(path, batch, key) for path, batch in batches]
    tag = "cifar100" if hundred else "cifar10"
    data = torch.from_numpy(np.concatenate([images for images, _ in arrays]))
    labels = torch.from_numpy(np.concatenate([labels for _, labels in arrays]))
    return ArrayDataset(f"{tag}:{split}", data, labels, classes, stats[0], stats[1])


def _cifar_python(root: Path, split: Split, hundred: bool) -> ArrayDataset:
    names = _cifar_batch_names(split, hundred)
    return _cifar_dataset(split, hundred, [(root / name, _unpickle(root / name)) for name in names])


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:  # unreadable: reported as a file that is not a dataset
        return False


def _cifar_archive(archive: Path, split: Split) -> ArrayDataset:
    """The `split` of a CIFAR python distribution as downloaded (.tar.gz), read in place: its members are
    unpickled (by `_CifarUnpickler`) from the archive, never written to disk."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            # "./cifar-10-batches-py/..." where the archive was made from inside its folder
            members = {member.name.removeprefix("./"): member for member in tar.getmembers() if member.isfile()}
            for hundred, folder in _CIFAR_FOLDERS.items():
                names = [f"{folder}/{name}" for name in _cifar_batch_names(split, hundred)]
                if all(name in members for name in names):
                    batches = []
                    for name in names:
                        handle = tar.extractfile(members[name])
                        assert handle is not None  # a regular file member
                        batches.append((archive / name, _unpickle(archive / name, handle)))
                    return _cifar_dataset(split, hundred, batches)
    except (tarfile.TarError, OSError, EOFError) as exc:  # truncated, corrupt or not a tar archive
        raise ConfigError(f"{archive}: not a readable CIFAR archive ({first_line(exc)})") from None
    wanted = " or ".join(
        f"{folder}/{_cifar_batch_names(split, hundred)[0]}" for hundred, folder in _CIFAR_FOLDERS.items()
    )
    raise ConfigError(f"{archive}: not a CIFAR python archive (no {wanted} in it)")


@dataclass(frozen=True)
class ImageFolderDataset:
    """An ImageNet-style folder `<root>/<split>/<class>/<image>`, decoded lazily with PIL (224x224 crops)."""

    name: str
    files: tuple[Path, ...]
    labels: Tensor
    num_classes: int
    train: bool
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, count: int | None) -> ImageFolderDataset:
        """The first `count` images (all when None)."""
        keep = _subset_count(count, len(self))
        if keep is None:
            return self
        return ImageFolderDataset(
            self.name,
            self.files[:keep],
            self.labels[:keep],
            self.num_classes,
            self.train,
            self.size,
            self.mean,
            self.std,
        )

    def _load(self, index: int, gen: torch.Generator | None) -> Tensor:
        try:
            return self._decode(index, gen)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: unreadable, truncated or foreign image files
            raise ConfigError(f"{self.files[index]}: not a readable image ({exc})") from None

    def _decode(self, index: int, gen: torch.Generator | None) -> Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as img:
            rgb = img.convert("RGB")
            w, h = rgb.size
            scale = 256 / min(w, h)
            rgb = rgb.resize(
                (max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.Resampling.BILINEAR
            )
            w, h = rgb.size
            if gen is None:
                left, top = (w - self.size) // 2, (h - self.size) // 2
            else:
                left = int(torch.randint(0, w - self.size + 1, (1,), generator=gen))
                top = int(torch.randint(0, h - self.size + 1, (1,), generator=gen))
            rgb = rgb.crop((left, top, left + self.size, top + self.size))
            array = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        if gen is not None and bool(torch.rand(1, generator=gen) < 0.5):
            array = array.flip(-1)
        return array

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float32 normalised."""
        return _normalise(images, self.mean, self.std)

    def take(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = [int(i) for i in torch.as_tensor(indices).tolist()]
        return self.normalise(torch.stack([self._load(i, None) for i in index])), self.labels[index]

    def batches_per_epoch(self, batch_size: int, epoch_images: int | None = None) -> int:
        return _batch_count(len(self), batch_size, epoch_images)

    def train_batches(
        self, *, seed: int, epoch: int, batch_size: int, start_batch: int = 0, epoch_images: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Augmented (random crop, flip), shuffled training batches of one epoch, from batch `start_batch`."""
        order = _epoch_order(len(self), seed, epoch, epoch_images)
        for b in range(start_batch, self.batches_per_epoch(batch_size, epoch_images)):
            index = order[b * batch_size : (b + 1) * batch_size].tolist()
            gen = _batch_generator(seed, epoch, b)
            batch = torch.stack([self._load(i, gen) for i in index])
            yield self.normalise(batch), self.labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.take(range(start, min(start + batch_size, len(self))))


def _image_folder(root: Path, split: Split) -> ImageFolderDataset:
    folder = root / ("train" if split == "train" else "val")
    if not folder.is_dir() and split == "test":
        folder = root / "test"
    if not folder.is_dir():
        raise ConfigError(f"image folder {root}: has no {split} folder ('train', 'val' or 'test')")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {name: i for i, name in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in index:
            raise ConfigError(f"image folder {root}: class {class_dir.name!r} of {folder.name} is not in train/")
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in _IMAGE_SUFFIXES:
                files.append(path)
                labels.append(index[class_dir.name])
    if not files:
        if any(p.suffix.lower() in _IMAGE_SUFFIXES for p in folder.iterdir()):  # ImageNet's val as unpacked
            raise ConfigError(
                f"image folder {folder}: its images lie directly in it; each must be in its class's folder "
                f"({folder.name}/<class>/<image>, as train/ is: for ImageNet's val, its devkit's valprep.sh does this)"
            )
        raise ConfigError(f"image folder {folder}: no images found")
    return ImageFolderDataset(
        f"imagefolder:{split}", tuple(files), torch.tensor(labels), len(classes), train=split == "train"
    )


Dataset = ArrayDataset | ImageFolderDataset


def load_dataset(path: str | Path, split: Split) -> Dataset:
    """Load the `split` of the dataset at `path`, detecting its format (module docstring)."""
    root = Path(path)
    if root.is_file() and _is_tar(root):
        return _cifar_archive(root, split)
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"{root} is a file but not a CIFAR archive: --data takes the dataset's folder or its .tar.gz as "
            "downloaded (module winosim.nn.data lists the layouts)"
        )
    if not root.is_dir():
        raise ConfigError(f"dataset folder not found: {root}")
    if (root / "test.npz").is_file() and any(root.glob("train_*.npz")):
        return _load_npz_layout(root, split)
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file() and (candidate / "test_batch").is_file():
            return _cifar_python(candidate, split, hundred=False)
    for candidate in (root, root / "cifar-100-python"):
        if (candidate / "train").is_file() and (candidate / "test").is_file() and (candidate / "meta").is_file():
            return _cifar_python(candidate, split, hundred=True)
    if (root / "train").is_dir():
        return _image_folder(root, split)
    raise ConfigError(
        f"{root}: not a known dataset layout (CIFAR .npz files, cifar-10-batches-py, cifar-100-python, "
        "or an image folder with train/ and val/)"
    )

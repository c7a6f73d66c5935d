"""Shared fixtures of the torch-side tests: tiny datasets in the project's CIFAR `.npz` layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REAL_CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"


def write_npz_layout(
    root: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "train_0.npz", images=train_images, labels=train_labels)
    np.savez(root / "test.npz", images=test_images, labels=test_labels)
    return root


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine OpenMP threads stall behind other processes (measured
    2.5-4x slower with 2 threads while anything else runs)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """128 training and 48 test images of random noise, 10 classes (shape and plumbing tests)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(176, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=176).astype(np.int64)
    return write_npz_layout(tmp_path_factory.mktemp("random"), images[:128], labels[:128], images[128:], labels[128:])


@pytest.fixture(scope="session")
def cifar_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred real CIFAR-10 images (256 train, 64 test, taken from the shared test split)."""
    source = REAL_CIFAR / "test.npz"
    if not source.is_file():
        pytest.skip(f"real CIFAR-10 not available at {source}")
    with np.load(source) as z:
        images, labels = z["images"][:320], z["labels"][:320]
    return write_npz_layout(tmp_path_factory.mktemp("cifar"), images[:256], labels[:256], images[256:], labels[256:])

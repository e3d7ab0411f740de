"""Shared fixtures: where the real MNIST lives, and tiny MNIST-format data sets made on the fly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratch.data import MNIST_FILES, raw_dir

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    for candidate in (os.environ.get("SIMPLECNN_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and all((raw_dir(candidate) / n).exists() or (raw_dir(candidate) / f"{n}.gz").exists()
                             for n in MNIST_FILES):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST (CI points SIMPLECNN_DATA at it). Missing data fails in CI, skips elsewhere."""
    found = _real_data_dir()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("MNIST not found: CI must set SIMPLECNN_DATA")
        pytest.skip("real MNIST not available (set SIMPLECNN_DATA)")
    return found


@pytest.fixture
def mnist_copy(mnist_dir, tmp_path) -> Path:
    """A writable copy of the real MNIST folder, for tests that corrupt or remove files."""
    target = raw_dir(tmp_path / "data")
    target.mkdir(parents=True)
    for name in MNIST_FILES:
        source = raw_dir(mnist_dir) / name
        if not source.exists():
            source = raw_dir(mnist_dir) / f"{name}.gz"
        shutil.copyfile(source, target / source.name)
        os.chmod(target / source.name, 0o644)
    return tmp_path / "data"


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Write a uint8 array as an IDX file (magic ``0x0000 08 <ndim>`` unless given)."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def idx_writer():
    """The :func:`write_idx` helper, for tests that build their own IDX files."""
    return write_idx


@pytest.fixture(autouse=True)
def _no_network_downloads(monkeypatch):
    """Tests never reach the internet: downloads only happen where a test points the mirrors."""
    monkeypatch.setenv("SIMPLECNN_NO_DOWNLOAD", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


def write_mnist_like(directory: Path, n_train: int = 120, n_test: int = 40, classes: int = 3, seed: int = 0,
                     gz: bool = False) -> dict[str, np.ndarray]:
    """Write a small, learnable MNIST-format data set (the four IDX files, raw or .gz) into ``directory``:
    class ``c``'s images are noise plus a bright 7x7 block at a position of their own. Returns the arrays."""
    import gzip

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % classes
        rng.shuffle(labels)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for c in range(classes):
            row, col = divmod(c, 3)
            images[labels == c, 7 * row + 2:7 * row + 9, 7 * col + 2:7 * col + 9] = 255
        arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"] = images, labels.astype(np.uint8)
    for name, array in arrays.items():
        write_idx(directory / name, array)
        if gz:
            with open(directory / name, "rb") as src, gzip.open(directory / f"{name}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (directory / name).unlink()
    return arrays


@pytest.fixture
def tiny_idx(tmp_path) -> Path:
    """A folder holding a small learnable MNIST-format data set of three classes (``--dataset idx``)."""
    write_mnist_like(tmp_path / "tiny")
    return tmp_path / "tiny"

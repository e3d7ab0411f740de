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

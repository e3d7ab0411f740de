"""Reading MNIST: IDX parsing (raw and gzip), validation with clear errors, download, split, batches."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from scratch import data
from scratch.data import MNIST_FILES, DataError, epoch_batches, load_mnist, parse_idx, raw_dir, split_mnist


def gzip_copy(source, target) -> None:
    with open(source, "rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)


def test_idx_round_trip_raw_and_gzip(tmp_path, idx_writer):
    array = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    idx_writer(tmp_path / "a", array)
    gzip_copy(tmp_path / "a", tmp_path / "b.gz")
    for name in ("a", "b.gz"):
        decoded = parse_idx(data.read_idx_bytes(tmp_path / name), tmp_path / name, 2051)
        np.testing.assert_array_equal(decoded, array)


def test_real_mnist_loads_with_expected_shapes(mnist_dir):
    mnist = load_mnist(mnist_dir, download=False)
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.dtype == np.int64 and set(np.unique(mnist.test_labels)) == set(range(10))


def test_gzip_copies_read_like_raw_files(mnist_copy):
    directory = raw_dir(mnist_copy)
    for name in MNIST_FILES:
        gzip_copy(directory / name, directory / f"{name}.gz")
        (directory / name).unlink()
    mnist = load_mnist(mnist_copy, download=False)
    assert mnist.train_images.shape == (60000, 28, 28)


def test_missing_files_error_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    message = str(err.value)
    assert str(raw_dir(tmp_path)) in message
    assert all(name in message for name in MNIST_FILES)


def test_bad_magic_number_is_reported_with_the_file(mnist_copy):
    path = raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x03  # claims 3 dimensions
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*magic"):
        load_mnist(mnist_copy, download=False, verify=False)


def test_truncated_file_is_reported(mnist_copy):
    path = raw_dir(mnist_copy) / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-784])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_mnist(mnist_copy, download=False, verify=False)


def test_truncated_gzip_is_reported(mnist_copy):
    directory = raw_dir(mnist_copy)
    with open(directory / "t10k-images-idx3-ubyte", "rb") as src:
        compressed = gzip.compress(src.read(), compresslevel=1)
    (directory / "t10k-images-idx3-ubyte").unlink()
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(mnist_copy, download=False)


def test_label_count_disagreeing_with_images_is_reported(mnist_copy, idx_writer):
    labels = load_mnist(mnist_copy, download=False).test_labels[:9999].astype(np.uint8)
    idx_writer(raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="10000 t10k images but 9999 labels"):
        load_mnist(mnist_copy, download=False, verify=False)


def test_checksum_mismatch_is_reported(mnist_copy):
    path = raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # still a valid IDX file, but not MNIST's
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*checksum mismatch"):
        load_mnist(mnist_copy, download=False)


def test_download_fetches_verifies_and_renames(mnist_dir, tmp_path, monkeypatch):
    """The download path, offline: a file:// mirror holding gzip copies of the real files."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MNIST_FILES:
        gzip_copy(raw_dir(mnist_dir) / name, mirror / f"{name}.gz")
    monkeypatch.setattr(data, "MIRRORS", ("file:///nonexistent/mirror/", mirror.as_uri() + "/"))
    mnist = load_mnist(tmp_path / "fresh", download=True, progress=False)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert sorted(p.name for p in raw_dir(tmp_path / "fresh").iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)


def test_failed_download_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MIRRORS", ("file:///nonexistent/mirror/",))
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "d", download=True, progress=False)
    assert "Put these four files there" in str(err.value) and str(raw_dir(tmp_path / "d")) in str(err.value)
    assert not (tmp_path / "d").exists()  # an offline first run leaves no empty d/MNIST/raw (nor .part files)


def test_failed_download_keeps_a_folder_that_existed(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MIRRORS", ("file:///nonexistent/mirror/",))
    raw_dir(tmp_path / "d").mkdir(parents=True)
    with pytest.raises(DataError):
        load_mnist(tmp_path / "d", download=True, progress=False)
    assert raw_dir(tmp_path / "d").is_dir() and not any(raw_dir(tmp_path / "d").iterdir())


def test_normalization_and_seeded_split(mnist_dir):
    mnist = load_mnist(mnist_dir, download=False)
    a = split_mnist(mnist, val_split=0.1, seed=3)
    b = split_mnist(mnist, val_split=0.1, seed=3)
    c = split_mnist(mnist, val_split=0.1, seed=4)
    assert a.train_x.shape == (54000, 1, 28, 28) and a.val_x.shape == (6000, 1, 28, 28)
    assert a.train_x.dtype == np.float32
    np.testing.assert_array_equal(a.val_y, b.val_y)
    assert not np.array_equal(a.val_y, c.val_y)
    all_train = np.concatenate([a.train_x, a.val_x])
    assert abs(all_train.mean()) < 0.01 and abs(all_train.std() - 1) < 0.01
    limited = split_mnist(mnist, val_split=0.2, seed=0, train_limit=1000)
    assert len(limited.train_x) == 800 and len(limited.val_x) == 200


def test_epoch_batches_are_seeded_and_cover_everything_once():
    batches = epoch_batches(1000, 64, seed=1, epoch=2)
    assert [len(b) for b in batches] == [64] * 15 + [40]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(epoch_batches(1000, 64, 1, 2)))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(1000, 64, 1, 3)))
    assert [len(b) for b in epoch_batches(129, 64, 0, 1)] == [64, 64]  # a last batch of 1 is dropped

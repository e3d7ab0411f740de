"""MNIST: reading IDX files (raw or gzip), checking them, downloading them, splitting and batching.

Both implementations read MNIST through this module, so for the same seed they see the same images,
normalized the same way, in the same batches and the same order.

The IDX format (one file per array): a 4-byte magic number ``0x00 0x00 <type> <ndim>`` where type
``0x08`` is unsigned bytes, then ``ndim`` big-endian uint32 dimensions, then the data. MNIST images
are ``(count, 28, 28)`` (magic 2051), labels ``(count,)`` (magic 2049).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: The four files, with the SHA-256 of their uncompressed contents (the same for raw and .gz copies).
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class DataError(Exception):
    """A data file is missing, corrupt or inconsistent; the message names the file and the problem.

    Chapter: docs/01-overview.md.
    """


def default_data_dir() -> Path:
    """``$SIMPLECNN_DATA`` if set, else ``./data``. (docs/01-overview.md)"""
    return Path(os.environ.get("SIMPLECNN_DATA") or "data")


def raw_dir(data_dir: str | os.PathLike) -> Path:
    """Where the raw IDX files live: ``<data_dir>/MNIST/raw`` (docs/01-overview.md)."""
    return Path(data_dir) / "MNIST" / "raw"


# --- reading ------------------------------------------------------------------------------------

def read_idx_bytes(path: Path) -> bytes:
    """The uncompressed bytes of ``path`` (gzip is detected by its magic bytes, not the file name).

    Chapter: docs/01-overview.md.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as gz:
                    return gz.read()
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None


def parse_idx(data: bytes, path: Path, expected_magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a uint8 array, checking magic number, dimensions and size. (docs/01-overview.md)"""
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero1, zero2, dtype_code, ndim = data[:4]
    magic = int.from_bytes(data[:4], "big")
    if zero1 or zero2 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DataError(f"{path}: bad magic number 0x{magic:08x} (not an unsigned-byte IDX file)")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: bad magic number {magic}, expected {expected_magic}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{path}: truncated or oversized: header says {shape} = {expected} bytes of data, "
                        f"file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_file(directory: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``directory``, whichever exists (raw first). (docs/01-overview.md)"""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx(directory: Path, name: str, magic: int, verify: bool = True) -> np.ndarray:
    """One IDX array from ``directory`` (``name`` or ``name.gz``), checked (docs/01-overview.md)."""
    path = find_file(directory, name)
    if path is None:
        raise DataError(f"{directory}: missing {name} (or {name}.gz)")
    array, data = _read_idx(path, magic)
    if verify:
        verify_checksum(path, name, data)
    return array


def _read_idx(path: Path, magic: int) -> tuple[np.ndarray, bytes]:
    data = read_idx_bytes(path)
    return parse_idx(data, path, magic), data  # the structure first: a known problem is named as such


def verify_checksum(path: Path, name: str, data: bytes) -> None:
    """The SHA-256 of an MNIST file, checked after its structure (magic, size, label range) was.

    Chapter: docs/01-overview.md.
    """
    if name not in MNIST_FILES:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_FILES[name]:
        raise DataError(f"{path}: checksum mismatch (sha256 {digest[:16]}..., expected "
                        f"{MNIST_FILES[name][:16]}...): the file is corrupt or not MNIST; delete it "
                        "to download it again")


# --- downloading --------------------------------------------------------------------------------

def missing_files(directory: Path) -> list[str]:
    """The MNIST files not found in ``directory`` (docs/01-overview.md)."""
    return [name for name in MNIST_FILES if find_file(directory, name) is None]


def download_mnist(data_dir: str | os.PathLike, progress: bool = True) -> None:
    """Fetch the missing MNIST files into ``<data_dir>/MNIST/raw`` from the first mirror that works.

    Each file is downloaded to a temporary name, checked against its SHA-256 and only then renamed,
    so an interrupted or corrupt download never looks like data.

    Chapter: docs/01-overview.md.
    """
    directory = raw_dir(data_dir)
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _download_missing(directory, progress)
    except BaseException:
        for folder in created:  # an offline first run leaves no empty data/MNIST/raw behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _download_missing(directory: Path, progress: bool) -> None:
    for name in missing_files(directory):
        errors = []
        for mirror in MIRRORS:
            try:
                _download_one(f"{mirror}{name}.gz", directory / f"{name}.gz", MNIST_FILES[name], progress)
                break
            except (OSError, DataError) as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(_where_to_put_files(directory, "downloading failed:\n  " + "\n  ".join(errors)))


def _download_one(url: str, target: Path, sha256: str, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, _progress_bar(total, target.name, progress) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
            digest = hashlib.sha256(read_idx_bytes(Path(tmp_name))).hexdigest()
            if digest != sha256:
                raise DataError(f"{url}: checksum mismatch after download")
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)


class _NoBar:
    def __init__(self, *args, **kwargs): ...
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def update(self, n): ...


def _progress_bar(total: int, name: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=f"downloading {name}")


def _where_to_put_files(directory: Path, reason: str) -> str:
    names = "\n  ".join(f"{n}  (or {n}.gz)" for n in MNIST_FILES)
    return (f"MNIST not found in {directory} ({reason}).\nPut these four files there:\n  {names}\n"
            "or point --data-dir / SIMPLECNN_DATA at a folder containing MNIST/raw/.")


# --- the data set -------------------------------------------------------------------------------

@dataclass
class MNIST:
    """Raw MNIST arrays: uint8 images (N, 28, 28) and int64 labels (N,). (docs/01-overview.md)"""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool | None = None,
               verify: bool = True, progress: bool = True) -> MNIST:
    """Read MNIST from ``<data_dir>/MNIST/raw`` (downloading missing files unless ``download`` is false).

    ``download=None`` means: download unless ``$SIMPLECNN_NO_DOWNLOAD`` is set.

    Chapter: docs/01-overview.md.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    directory = raw_dir(data_dir)
    if download is None:
        download = not os.environ.get("SIMPLECNN_NO_DOWNLOAD")
    missing = missing_files(directory)
    if missing:
        if not download:
            raise DataError(_where_to_put_files(directory, "missing: " + ", ".join(missing)))
        download_mnist(data_dir, progress)
    arrays = {}
    raw: dict[str, tuple[Path, bytes]] = {}

    def read(name: str, magic: int) -> np.ndarray:
        path = find_file(directory, name)
        if path is None:
            raise DataError(f"{directory}: missing {name} (or {name}.gz)")
        array, data = _read_idx(path, magic)
        raw[name] = (path, data)
        return array

    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read(f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC)
        labels = read(f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{directory}: {prefix} images have shape {images.shape}, expected (N, 28, 28)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{directory}: {len(images)} {prefix} images but {labels.shape[0]} labels")
        if labels.size and labels.max() > 9:
            raise DataError(f"{directory}: {prefix} labels contain {labels.max()}, expected digits 0-9")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    if verify:  # checksums last: a wrong magic, a truncated file or a label 12 is named as such above
        for name, (path, data) in raw.items():
            verify_checksum(path, name, data)
    return MNIST(**arrays)


def normalize(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 1, 28, 28) in ``dtype``: ``(pixel / 255 - 0.1307) / 0.3081``.

    Chapter: docs/01-overview.md.
    """
    scalar = np.dtype(dtype).type
    x = images.astype(dtype)[:, None] / scalar(255)
    x -= scalar(MNIST_MEAN)
    x /= scalar(MNIST_STD)
    return x


@dataclass
class Split:
    """Normalized arrays for training, validation and test. (docs/01-overview.md)"""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def split_mnist(mnist: MNIST, val_split: float = 0.1, seed: int = 0, train_limit: int | None = None,
                dtype=np.float32) -> Split:
    """Take the first ``train_limit`` training images (all if None), hold out a seeded ``val_split``
    fraction of them for validation, and normalize everything.

    Chapter: docs/01-overview.md.
    """
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    images, labels = mnist.train_images, mnist.train_labels
    if train_limit is not None:
        images, labels = images[:train_limit], labels[:train_limit]
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(round(len(images) * val_split))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Split(normalize(images[train_idx], dtype), labels[train_idx],
                 normalize(images[val_idx], dtype), labels[val_idx],
                 normalize(mnist.test_images, dtype), mnist.test_labels)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The index batches of one epoch: a permutation seeded by ``(seed, epoch)``, cut into batches.

    A last batch of a single image is dropped: batch-norm cannot normalize one value per channel.

    Chapter: docs/01-overview.md.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if batches and len(batches[-1]) < 2:
        batches.pop()
    return batches

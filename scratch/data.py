"""MNIST and its family: reading IDX files (raw or gzip), checking them, downloading them, splitting and batching.

Both implementations read their data through this module, so for the same seed they see the same images,
normalized the same way, in the same batches and the same order. :data:`DATASETS` is the family: MNIST
(handwritten digits), Fashion-MNIST (Zalando's clothing photos), KMNIST (cursive Japanese, Kuzushiji) and
``idx``, any folder holding the four MNIST-format files.

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
from collections.abc import Iterable, Iterator
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


@dataclass(frozen=True)
class DatasetInfo:
    """One data set of the MNIST family.

    ``folder``: where it lives under the data directory (torchvision's layout, ``<folder>/raw``); None for
    ``idx``, whose files are in the data directory itself. ``sha256``: the SHA-256 of each file's
    uncompressed contents (None: checked by structure only). ``mean``/``std``: the normalization, the
    mean and standard deviation of the training pixels scaled to [0, 1] (None: computed from the training
    images when loaded, see :func:`pixel_statistics`). ``classes``: the class names (None: ``0..K-1``,
    K from the labels).

    Chapter: docs/01-overview.md.
    """

    name: str
    title: str
    folder: str | None
    sha256: dict[str, str] | None
    mirrors: tuple[str, ...]
    mean: float | None
    std: float | None
    classes: tuple[str, ...] | None


FILE_NAMES = tuple(MNIST_FILES)

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", "MNIST", MNIST_FILES, MIRRORS, MNIST_MEAN, MNIST_STD,
                         tuple(str(d) for d in range(10))),
    # SHA-256 of the uncompressed files, as published with the data set (their SHA256SUMS); mean and std
    # computed from its 60000 training images with pixel_statistics: 0.28604, 0.35302.
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", "FashionMNIST",
        {"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        0.2860, 0.3530,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    # KMNIST: no checksums of the uncompressed files could be confirmed, so its files are checked by
    # structure (magic numbers, sizes, 28x28, labels 0-9) only, and its statistics computed when loaded.
    "kmnist": DatasetInfo("kmnist", "KMNIST", "KMNIST", None, ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
                          None, None, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    "idx": DatasetInfo("idx", "MNIST-format folder", None, None, (), None, None, None),
}


def dataset_info(dataset: str) -> DatasetInfo:
    """The registry entry of ``dataset``; an unknown name is a :class:`DataError` listing the known ones.

    Chapter: docs/01-overview.md.
    """
    try:
        return DATASETS[dataset]
    except (KeyError, TypeError):
        raise DataError(f"unknown data set {dataset!r}: expected one of {', '.join(DATASETS)}") from None


IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class DataError(Exception):
    """A data file is missing, corrupt or inconsistent; the message names the file and the problem.

    Chapter: docs/01-overview.md.
    """


def default_data_dir() -> Path:
    """``$SIMPLECNN_DATA`` if set, else ``./data``. (docs/01-overview.md)"""
    return Path(os.environ.get("SIMPLECNN_DATA") or "data")


def raw_dir(data_dir: str | os.PathLike, dataset: str = "mnist") -> Path:
    """Where ``dataset``'s four files live: ``<data_dir>/<folder>/raw``, or ``data_dir`` itself for ``idx``.

    Chapter: docs/01-overview.md.
    """
    folder = dataset_info(dataset).folder
    return Path(data_dir) / folder / "raw" if folder else Path(data_dir)


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


def _read_idx(path: Path, magic: int) -> tuple[np.ndarray, bytes]:
    data = read_idx_bytes(path)
    return parse_idx(data, path, magic), data  # the structure first: a known problem is named as such


def _known_as(digest: str, name: str) -> str | None:
    """The data set whose ``name`` file has this SHA-256, if one does."""
    for info in DATASETS.values():
        if info.sha256 and info.sha256.get(name) == digest:
            return info.name
    return None


def verify_checksum(path: Path, name: str, data: bytes, dataset: str = "mnist") -> None:
    """The SHA-256 of one of ``dataset``'s files, checked after its structure (magic, size, label range) was.

    A mismatch names the data set expected and, when the file is another known set's, says which
    ``--dataset`` reads it.

    Chapter: docs/01-overview.md.
    """
    info = dataset_info(dataset)
    if not info.sha256 or name not in info.sha256:
        return
    digest = hashlib.sha256(data).hexdigest()
    expected = info.sha256[name]
    if digest == expected:
        return
    other = _known_as(digest, name)
    if other is not None:
        raise DataError(f"{path}: checksum mismatch: expected {info.title}'s {name}, but this is "
                        f"{DATASETS[other].title}'s: use --dataset {other} (its files belong in "
                        f"<data-dir>/{DATASETS[other].folder}/raw)")
    raise DataError(f"{path}: checksum mismatch (sha256 {digest[:16]}..., expected {info.title}'s "
                    f"{expected[:16]}...): the file is corrupt or not {info.title}; delete it "
                    "to download it again (or use --dataset idx for another MNIST-format data set)")


# --- downloading --------------------------------------------------------------------------------

def missing_files(directory: Path) -> list[str]:
    """The four files not found in ``directory`` (docs/01-overview.md)"""
    return [name for name in FILE_NAMES if find_file(directory, name) is None]


def _mirrors(info: DatasetInfo) -> tuple[str, ...]:
    return MIRRORS if info.name == "mnist" else info.mirrors  # the module's MIRRORS: tests point it elsewhere


def download_mnist(data_dir: str | os.PathLike, progress: bool = True, dataset: str = "mnist") -> None:
    """Fetch ``dataset``'s missing files into ``<data_dir>/<folder>/raw`` from the first mirror that works.

    Each file is downloaded to a temporary name, checked (its SHA-256, or its structure for a set
    without checksums) and only then renamed, so an interrupted or corrupt download never looks like data.

    Chapter: docs/01-overview.md.
    """
    info = dataset_info(dataset)
    directory = raw_dir(data_dir, dataset)
    if not info.mirrors and info.name != "mnist":
        raise DataError(_where_to_put_files(directory, info, "missing: " + ", ".join(missing_files(directory))))
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _download_missing(directory, info, progress)
    except BaseException:
        for folder in created:  # an offline first run leaves no empty data/MNIST/raw behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _download_missing(directory: Path, info: DatasetInfo, progress: bool) -> None:
    for name in missing_files(directory):
        errors = []
        for mirror in _mirrors(info):
            try:
                _download_one(f"{mirror}{name}.gz", directory / f"{name}.gz", name, info, progress)
                break
            except (OSError, DataError) as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(_where_to_put_files(directory, info, "downloading failed:\n  " + "\n  ".join(errors)))


def _download_one(url: str, target: Path, name: str, info: DatasetInfo, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, _progress_bar(total, target.name, progress) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
            data = read_idx_bytes(Path(tmp_name))
            if info.sha256:
                if hashlib.sha256(data).hexdigest() != info.sha256[name]:
                    raise DataError(f"{url}: checksum mismatch after download")
            else:
                parse_idx(data, Path(url), IMAGES_MAGIC if "images" in name else LABELS_MAGIC)
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


def _where_to_put_files(directory: Path, info: DatasetInfo, reason: str) -> str:
    names = "\n  ".join(f"{n}  (or {n}.gz)" for n in FILE_NAMES)
    if info.folder is None:  # one line: the folder, what is missing, what it needs
        return (f"{directory}: not a complete MNIST-format folder ({reason}); --dataset idx needs all four of "
                f"{', '.join(FILE_NAMES)} (each raw or .gz)")
    return (f"{info.title} not found in {directory} ({reason}).\nPut these four files there:\n  {names}\n"
            f"or point --data-dir / SIMPLECNN_DATA at a folder containing {info.folder}/raw/.")


# --- the data set -------------------------------------------------------------------------------

@dataclass
class MNIST:
    """Raw arrays of an MNIST-family data set: uint8 images (N, 28, 28) and int64 labels (N,), with the
    set's name, normalization and class names. (docs/01-overview.md)"""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    dataset: str = "mnist"
    mean: float = MNIST_MEAN
    std: float = MNIST_STD
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` scaled to [0, 1], computed exactly from the
    histogram of the 256 pixel values (no float copy of the images)::

        mean = sum_x hist[x] (x / 255) / sum_x hist[x]
        std  = sqrt(sum_x hist[x] (x / 255 - mean)^2 / sum_x hist[x])     (the population std, as torchvision's)

    Chapter: docs/01-overview.md.
    """
    counts = np.bincount(np.asarray(images, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    if not counts.sum():
        raise DataError("no training images to compute the normalization from")
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    return mean, float(np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum()))


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool | None = None,
               verify: bool = True, progress: bool = True, dataset: str = "mnist") -> MNIST:
    """Read ``dataset`` (MNIST by default) from ``<data_dir>/<folder>/raw`` (``data_dir`` itself for
    ``idx``), downloading missing files unless ``download`` is false.

    ``download=None`` means: download unless ``$SIMPLECNN_NO_DOWNLOAD`` is set (never for ``idx``).

    Chapter: docs/01-overview.md.
    """
    info = dataset_info(dataset)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    directory = raw_dir(data_dir, dataset)
    if download is None:
        download = not os.environ.get("SIMPLECNN_NO_DOWNLOAD")
    missing = missing_files(directory)
    if missing:
        if not download or info.folder is None:
            raise DataError(_where_to_put_files(directory, info, "missing: " + ", ".join(missing)))
        download_mnist(data_dir, progress, dataset)
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
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    classes = info.classes or _classes_from_labels(directory, arrays["train_labels"])
    for prefix, labels in (("train", arrays["train_labels"]), ("t10k", arrays["test_labels"])):
        if labels.size and labels.max() >= len(classes):
            expected = "digits 0-9" if info.name == "mnist" else f"classes 0-{len(classes) - 1}"
            raise DataError(f"{directory}: {prefix} labels contain {labels.max()}, outside the {len(classes)} "
                            f"classes of {info.title} (expected {expected})")
    if verify:  # checksums last: a wrong magic, a truncated file or a label 12 is named as such above
        for name, (path, data) in raw.items():
            verify_checksum(path, name, data, dataset)
    if info.mean is not None and info.std is not None:
        mean, std = info.mean, info.std
    else:
        mean, std = pixel_statistics(arrays["train_images"])
        if std == 0:
            raise DataError(f"{directory}: every training pixel has the same value; cannot normalize")
    return MNIST(**arrays, dataset=info.name, mean=mean, std=std, classes=classes)


def _classes_from_labels(directory: Path, labels: np.ndarray) -> tuple[str, ...]:
    """``idx``: the class count is one more than the largest training label."""
    if not labels.size:
        raise DataError(f"{directory}: no training labels")
    return tuple(str(c) for c in range(int(labels.max()) + 1))


def normalize(images: np.ndarray, dtype=np.float32, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 1, 28, 28) in ``dtype``: ``(pixel / 255 - mean) / std`` (MNIST's by default).

    Chapter: docs/01-overview.md.
    """
    scalar = np.dtype(dtype).type
    x = images.astype(dtype)[:, None] / scalar(255)
    x -= scalar(mean)
    x /= scalar(std)
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
    fraction of them for validation, and normalize everything with the data set's mean and std. (docs/01-overview.md)"""
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    images, labels = mnist.train_images, mnist.train_labels
    if train_limit is not None:
        images, labels = images[:train_limit], labels[:train_limit]
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(round(len(images) * val_split))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    stats = {"mean": mnist.mean, "std": mnist.std}
    return Split(normalize(images[train_idx], dtype, **stats), labels[train_idx],
                 normalize(images[val_idx], dtype, **stats), labels[val_idx],
                 normalize(mnist.test_images, dtype, **stats), mnist.test_labels)


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


class EpochBatches:
    """The training batch order as a re-iterable: the n-th iteration yields :func:`epoch_batches` of
    epoch n (1, 2, ...), so a loop over epochs sees the same batches as the CLI's run with that seed.

    Chapter: docs/01-overview.md.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        self.epoch += 1
        return iter(epoch_batches(self.n, self.batch_size, self.seed, self.epoch))

    def __len__(self) -> int:
        return len(epoch_batches(self.n, self.batch_size, self.seed, 1))


class ArrayLoader:
    """A plain re-iterable of NumPy ``(x, y)`` batches over in-memory arrays: the NumPy counterpart of a
    ``DataLoader``. ``batches`` is an :class:`EpochBatches` (training: a new seeded order each pass) or
    None (evaluation: in order, ``batch_size`` at a time). (docs/01-overview.md)"""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 batches: EpochBatches | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images, self.labels, self.batch_size, self.batches = images, labels, batch_size, batches

    def _indices(self) -> Iterable[np.ndarray | slice]:
        if self.batches is not None:
            return self.batches
        return (slice(i, i + self.batch_size) for i in range(0, len(self.images), self.batch_size))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx in self._indices():
            yield self.images[idx], self.labels[idx]

    def __len__(self) -> int:
        if self.batches is not None:
            return len(self.batches)
        return -(-len(self.images) // self.batch_size)



def load_dataset(dataset: str = "mnist", data_dir: str | os.PathLike | None = None,
                 download: bool | None = None, verify: bool = True, progress: bool = True) -> MNIST:
    """The named data set's arrays (one of :data:`DATASETS`; for ``idx``, ``data_dir`` is the folder).

    Chapter: docs/01-overview.md.
    """
    return load_mnist(data_dir, download, verify, progress, dataset)

"""``--dataset``: which member of the MNIST family a command reads (``scratch.data.DATASETS``).

One argparse helper for every command that reads data (``train``, ``evaluate``, ``compare``, and
``sweep``), and what ``evaluate`` does with the data set a model was trained on.
"""

from __future__ import annotations

import argparse

from scratch.data import DATASETS

DATASET_HELP = ("mnist (handwritten digits), fashion-mnist (clothing), kmnist (cursive Japanese), each in "
                "<data-dir>/<MNIST|FashionMNIST|KMNIST>/raw; or idx: --data-dir is any folder holding the four "
                "MNIST-format files (28x28, raw or .gz; no checksums, normalization and class count from its "
                "training files)")


def add_dataset_option(parser: argparse.ArgumentParser, default: str | None = "mnist") -> None:
    """Add ``--dataset {mnist,fashion-mnist,kmnist,idx}`` (``default`` None: the command decides, e.g. the
    data set the checkpoint was trained on)."""
    shown = default if default is not None else "the one the model was trained on"
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=default, metavar="NAME",
                        help=f"{{{','.join(DATASETS)}}}: {DATASET_HELP} (default: {shown})")


def model_config(dataset: str, num_classes: int, classes: tuple[str, ...]) -> dict:
    """The data-set part of the configuration recorded in ``model.npz`` (``simplecnn.checkpoint``)."""
    return {"dataset": dataset, "num_classes": num_classes, "classes": list(classes)}


def evaluation_dataset(requested: str | None, config: dict) -> tuple[str, str | None]:
    """``(dataset, note)``: the data set to evaluate on (the one asked for, else the one the model was
    trained on, MNIST for a model without a record), and a line to show when the two differ."""
    trained_on = config.get("dataset", "mnist")
    dataset = requested or trained_on
    if dataset == trained_on:
        return dataset, None
    trained_title = DATASETS[trained_on].title if trained_on in DATASETS else trained_on
    return dataset, (f"note: this model was trained on {trained_title} ({trained_on}); evaluating it on "
                     f"{DATASETS[dataset].title} ({dataset})")


def prepare_evaluation(args, checkpoint, state: dict):
    """``evaluate``'s network and data: the network rebuilt from the checkpoint's recorded configuration
    (``num_classes``, ``activation``, ``pool``; for a file without ``num_classes``, the rows of its last
    layer), and the test set of ``--dataset`` (else the one it was trained on) normalized with that set's
    statistics. Returns ``(backend, data, test_x)``."""
    import numpy as np

    from scratch.data import DataError, load_dataset, normalize

    from .backends import make_backend
    from .checkpoint import load_model_config

    config = load_model_config(checkpoint)
    dataset, note = evaluation_dataset(args.dataset, config)
    if note:
        print(note)
    last = state.get("fc2.weight")
    num_classes = int(config.get("num_classes", last.shape[0] if last is not None and last.ndim == 2 else 10))
    network = {k: config[k] for k in ("activation", "pool") if k in config}
    data = load_dataset(dataset, args.data_dir)
    if data.test_labels.size and int(data.test_labels.max()) >= num_classes:
        raise DataError(f"{DATASETS[dataset].title} has {data.num_classes} classes (test labels up to "
                        f"{int(data.test_labels.max())}), but the model in {checkpoint} has {num_classes} outputs")
    backend = make_backend(args.impl, seed=0, device=args.device, num_classes=num_classes, **network)
    backend.load_model_state(state)
    return backend, data, normalize(data.test_images, np.float32, data.mean, data.std)

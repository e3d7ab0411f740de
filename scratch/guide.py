"""The guide's API for the NumPy network: the names its script calls, with its call shapes.

The guide drives its model with::

    cnn_model, loss_fn, adam_optimizer, h_device = _setup_model_for_training(num_class, learning_rate)
    train_loader, val_loader, test_loader = get_mnist_dataloaders(batch_size, validation_split)
    train_losses, validation_losses = train_model(cnn_model, loss_fn, adam_optimizer, train_loader, val_loader,
                                                  h_device)
    test_accuracy, test_loss = evaluate_model(cnn_model, loss_fn, test_loader, h_device)
    plot_training_losses(train_losses, validation_losses)

and this module (and ``torch_impl.guide``, its PyTorch twin) makes that script run with
``from scratch import ...``. Nothing here is a second training loop: ``train_model`` runs
:func:`scratch.train.train_one_epoch`, the loop the CLI runs, and the loaders serve the CLI's data
(``scratch.data``: the same images, normalization and seeded batch order).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .data import ArrayLoader, EpochBatches, load_dataset, split_mnist
from .loss import CrossEntropyLoss
from .model import SimpleCNN
from .optim import Adam
from .train import Optimizer, epoch_line, evaluate_batches, progress_bar, train_one_epoch

#: Where ``plot_training_losses`` saves its figure when there is no display and no path was given.
DEFAULT_PLOT_PATH = Path("training_losses.png")


def setup_model_for_training(num_class: int = 10, learning_rate: float = 1e-3, *, seed: int | None = None,
                             dtype=np.float32) -> tuple[SimpleCNN, CrossEntropyLoss, Adam, str]:
    """``(model, loss_fn, optimizer, device)``: a ``SimpleCNN(num_class)``, cross-entropy, Adam at
    ``learning_rate``, and the device, which for NumPy is always ``"cpu"``. (docs/01-overview.md)"""
    model = SimpleCNN(num_class, seed=seed, dtype=dtype)
    return model, CrossEntropyLoss(), Adam(model.parameters(), lr=learning_rate), "cpu"


_setup_model_for_training = setup_model_for_training  # the guide's own (underscored) name


def get_mnist_dataloaders(batch_size: int = 64, validation_split: float = 0.1, *,
                          data_dir: str | os.PathLike | None = None, dataset: str = "mnist", seed: int = 0,
                          train_limit: int | None = None, dtype=np.float32,
                          download: bool | None = None) -> tuple[ArrayLoader, ArrayLoader, ArrayLoader]:
    """Train, validation and test loaders: re-iterables of NumPy ``(x, y)`` batches, ``x`` of shape
    ``(B, 1, 28, 28)`` normalized with the data set's mean and std, ``y`` int64 class indices.

    The training loader yields a new seeded order each pass (the CLI's ``--seed`` order); the others go in
    order. ``dataset`` is one of ``scratch.data.DATASETS`` (``"idx"``: any MNIST-format folder given as
    ``data_dir``); ``data_dir`` defaults to ``$SIMPLECNN_DATA`` or ``./data``; ``train_limit`` keeps the first
    that many training images before the validation split.

    Chapter: docs/01-overview.md.
    """
    data = load_dataset(dataset, data_dir, download=download)
    split = split_mnist(data, validation_split, seed, train_limit, dtype)
    train = ArrayLoader(split.train_x, split.train_y, batch_size, EpochBatches(len(split.train_x), batch_size, seed))
    return (train, ArrayLoader(split.val_x, split.val_y, batch_size),
            ArrayLoader(split.test_x, split.test_y, batch_size))


def check_cpu(device: object) -> None:
    """The NumPy network runs on the CPU: any other device is a ``ValueError`` (docs/01-overview.md)."""
    if str(device) != "cpu":
        raise ValueError(f"the NumPy implementation runs on the CPU only; device must be 'cpu', got {device!r}")


def fit(train_epoch: Callable[[int, Callable[[int, float], None]], float],
        validate: Callable[[], tuple[float, float]], steps: int, epochs: int,
        log: Callable[[str], None] = print) -> tuple[list[float], list[float]]:
    """The epochs around an implementation's one training loop, with the CLI's progress display (a bar per
    epoch, then the epoch's line). ``train_epoch(epoch, after_step)`` runs one epoch and returns its mean
    loss; ``validate()`` returns ``(loss, accuracy)`` (NaN when there is no validation set). (docs/01-overview.md)"""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    train_losses: list[float] = []
    validation_losses: list[float] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        bar = progress_bar(steps, 0, f"epoch {epoch}/{epochs}")

        def after_step(step: int, loss: float, bar=bar) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        try:
            train_loss = train_epoch(epoch, after_step)
        finally:
            bar.close()
        val_loss, val_acc = validate()
        train_losses.append(train_loss)
        validation_losses.append(val_loss)
        log(epoch_line(epoch, epochs, train_loss, val_loss, val_acc, time.perf_counter() - start))
    return train_losses, validation_losses


def train_model(model: SimpleCNN, loss_fn: CrossEntropyLoss, optimizer: Optimizer, train_loader: ArrayLoader,
                val_loader: ArrayLoader, device: str = "cpu", epochs: int = 10) -> tuple[list[float], list[float]]:
    """Train for ``epochs`` epochs; returns the per-epoch training and validation losses. (docs/01-overview.md)"""
    check_cpu(device)

    def train_epoch(epoch: int, after_step: Callable[[int, float], None]) -> float:
        return train_one_epoch(model, loss_fn, optimizer, train_loader, epoch, after_step)

    def validate() -> tuple[float, float]:
        if not len(val_loader):
            return float("nan"), float("nan")
        loss, accuracy, _ = evaluate_batches(model, val_loader, loss_fn)
        return loss, accuracy

    return fit(train_epoch, validate, len(train_loader), epochs)


def evaluate_model(model: SimpleCNN, loss_fn: CrossEntropyLoss, test_loader: ArrayLoader,
                   device: str = "cpu") -> tuple[float, float]:
    """``(accuracy_percent, loss)`` over ``test_loader`` (the loss is the mean over its images).

    Chapter: docs/01-overview.md.
    """
    check_cpu(device)
    loss, accuracy, _ = evaluate_batches(model, test_loader, loss_fn)
    return accuracy, loss


def draw_losses(ax, train_losses: Sequence[float], validation_losses: Sequence[float], title: str = "SimpleCNN"):
    """The guide's plot on a Matplotlib ``ax``: the training and validation loss per epoch (no validation
    curve when every validation loss is NaN). The CLI's ``losses.png`` is drawn by this too. (docs/01-overview.md)"""
    epochs = np.arange(1, len(train_losses) + 1)
    ax.plot(epochs, train_losses, "o-", label="training loss")
    if np.isfinite(np.asarray(validation_losses, dtype=float)).any():  # --val-split 0: no validation curve
        ax.plot(epochs, validation_losses, "s--", label="validation loss")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)


_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def plot_training_losses(train_losses: Sequence[float], validation_losses: Sequence[float],
                         path: str | os.PathLike | None = None, title: str = "SimpleCNN") -> Path | None:
    """Draw the guide's loss plot: shown in a window, or saved to ``path`` when one is given or when there
    is no display (then to ``training_losses.png``, and the path is printed). Returns the saved path.

    Chapter: docs/01-overview.md.
    """
    if path is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        draw_losses(fig.add_subplot(), train_losses, validation_losses, title)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=110, bbox_inches="tight")
        return target
    import matplotlib.pyplot as plt

    if plt.get_backend().lower().removeprefix("module://") in _NON_INTERACTIVE:
        saved = plot_training_losses(train_losses, validation_losses, DEFAULT_PLOT_PATH, title)
        print(f"No display: saved the plot to {saved}", file=sys.stderr)
        return saved
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_losses(ax, train_losses, validation_losses, title)
    plt.show()
    return None

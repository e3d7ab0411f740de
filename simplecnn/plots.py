"""The pictures: loss curves, confusion matrix, conv1 filters, misclassified digits, and the drift
between the two implementations. Matplotlib with the non-interactive Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def plot_losses(train_losses, val_losses, path, title="SimpleCNN") -> None:
    from scratch.guide import draw_losses  # the guide's plot_training_losses draws the same figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_losses(ax, train_losses, val_losses, title)
    _save(fig, path)


def _class_names(classes, labels: np.ndarray, predicted: np.ndarray) -> list[str]:
    """The class names (the digits when none are given), enough for every label and prediction."""
    count = max(len(classes) if classes else 10, int(max(labels.max(initial=0), predicted.max(initial=0))) + 1)
    names = list(classes or ())
    return names + [str(c) for c in range(len(names), count)]


def plot_confusion_matrix(labels: np.ndarray, predicted: np.ndarray, path, classes=None) -> np.ndarray:
    """Rows: true class, columns: predicted class, named by ``classes`` (the digits by default).
    Returns the KxK count matrix (10x10 for MNIST)."""
    names = _class_names(classes, labels, predicted)
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 3 else "black")
    ax.set_xticks(range(len(names)), names, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = 100.0 * np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.2f}%)")
    _save(fig, path)
    return matrix


def plot_filters(weight: np.ndarray, path) -> None:
    """conv1's 32 kernels (32, 1, 5, 5) as images, each scaled to its own range."""
    plt = _pyplot()
    n = weight.shape[0]
    cols = 8
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < n:
            limit = np.abs(weight[k]).max()
            ax.imshow(weight[k, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle("conv1 filters")
    _save(fig, path)


def plot_misclassified(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, path, classes=None,
                       limit: int = 36) -> int:
    """A grid of test images the model got wrong, titled 'predicted (true)' with the class names (the
    digits by default). Returns how many are wrong."""
    names = _class_names(classes, labels, predicted)
    wrong = np.flatnonzero(predicted != labels)
    plt = _pyplot()
    shown = wrong[:limit]
    cols = 6
    rows = max(-(-len(shown) // cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), shown, strict=False):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{names[predicted[i]]} ({names[labels[i]]})", fontsize=9 if len(names[labels[i]]) < 6 else 7,
                     color="crimson")
    fig.suptitle(f"Misclassified: {len(wrong)} of {len(labels)}  —  predicted (true)")
    _save(fig, path)
    return len(wrong)


def plot_compare_losses(history: dict, path) -> None:
    """Training-loss curves (per step) of both implementations, with their per-epoch validation losses."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for impl, style in (("numpy", "-"), ("torch", "--")):
        ax.plot(np.arange(1, len(history[impl]["step_losses"]) + 1), history[impl]["step_losses"], style,
                lw=1, label=f"{impl} training loss")
    steps_per_epoch = history["steps_per_epoch"]
    for impl, marker in (("numpy", "o"), ("torch", "x")):
        val = history[impl]["val_losses"]
        ax.plot(np.arange(1, len(val) + 1) * steps_per_epoch, val, marker, ms=8, label=f"{impl} validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("NumPy vs PyTorch: same weights, batches and dropout masks")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_drift(drift: list[float], drift_without_absorbed: list[float], path, dtype: str) -> None:
    """Largest relative weight difference between the two models after each step (log scale), over
    all weights and without the biases batch-norm absorbs (see ``compare.BN_ABSORBED``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(drift) + 1)
    ax.semilogy(steps, np.maximum(drift, 1e-300), label="all weights and buffers")
    ax.semilogy(steps, np.maximum(drift_without_absorbed, 1e-300),
                label="without conv biases before batch-norm and running means")
    ax.axhline(np.finfo(np.dtype(dtype)).eps, color="gray", ls=":", label=f"{dtype} machine epsilon")
    ax.set_xlabel("step")
    ax.set_ylabel("max relative weight difference")
    ax.set_title(f"Drift between NumPy and PyTorch weights ({dtype})")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)

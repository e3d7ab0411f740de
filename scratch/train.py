"""Training and evaluating the NumPy SimpleCNN: the whole loop, with nothing hidden.

One training step is the four stages of docs/01-overview.md::

    logits = model(x)                              forward, caching what backward needs
    loss, dlogits = cross_entropy(logits, y)       loss and its gradient w.r.t. the logits
    model.backward(dlogits)                        every layer's parameter gradients
    optimizer.step()                               Adam update of every parameter
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from .loss import cross_entropy
from .model import Sequential
from .module import no_grad


class Stepper(Protocol):
    """Any optimizer of ``scratch.optim``: all the loop needs is ``step()``. (docs/01-overview.md)"""

    def step(self) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stops rather than continue on garbage. (docs/01-overview.md)"""

    def __init__(self, epoch: int, step: int, loss: float):
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}: training stopped "
                         "(try a smaller --lr)")
        self.epoch, self.step, self.loss = epoch, step, loss


def train_step(model: Sequential, optimizer: Stepper, x: np.ndarray, y: np.ndarray,
               dropout_masks: dict[str, np.ndarray] | None = None) -> float:
    """One forward, backward and optimizer step on a batch. Returns the batch's mean loss. (docs/01-overview.md)"""
    logits = model.forward(x, dropout_masks)
    loss, dlogits = cross_entropy(logits, y)
    model.backward(dlogits)
    optimizer.step()
    return loss


def train_one_epoch(model: Sequential, optimizer: Stepper, images: np.ndarray, labels: np.ndarray,
                    batches: Iterable[np.ndarray], epoch: int = 1,
                    after_step: Callable[[int, float], None] | None = None, first_step: int = 1) -> float:
    """Train on every batch of indices in ``batches``; returns the mean of the batch losses.

    Steps are numbered from ``first_step`` (a resumed epoch starts further in).
    ``after_step(step, loss)`` is called after each step (progress bars, interruption checks).
    A NaN or infinite loss raises :class:`NonFiniteLossError` before the optimizer uses it.

    Chapter: docs/01-overview.md.
    """
    model.train()
    total, count = 0.0, 0
    for step, idx in enumerate(batches, start=first_step):
        logits = model.forward(images[idx])
        loss, dlogits = cross_entropy(logits, labels[idx])
        if not math.isfinite(loss):
            raise NonFiniteLossError(epoch, step, loss)
        model.backward(dlogits)
        optimizer.step()
        total, count = total + loss, count + 1
        if after_step is not None:
            after_step(step, loss)
    return total / max(count, 1)


def evaluate(model: Sequential, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy (in %) and predicted classes, in eval mode with no caches kept.

    Chapter: docs/01-overview.md.
    """
    was_training = model.training
    model.eval()
    total_loss, predictions = 0.0, []
    try:
        with no_grad():
            for i in range(0, len(images), batch_size):
                logits = model.forward(images[i:i + batch_size])
                loss, _ = cross_entropy(logits, labels[i:i + batch_size], reduction="sum")
                total_loss += loss
                predictions.append(logits.argmax(axis=1))
    finally:
        model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    n = max(len(images), 1)
    return total_loss / n, 100.0 * float((predicted == labels).sum()) / n, predicted

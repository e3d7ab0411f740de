"""Training and evaluating the NumPy SimpleCNN: the whole loop, with nothing hidden.

One training step is the four stages of docs/01-overview.md::

    logits = model(x)                              forward, caching what backward needs
    loss, dlogits = cross_entropy(logits, y)       loss and its gradient w.r.t. the logits
    model.backward(dlogits, optimizer)             every layer's parameter gradients (and, on another
                                                   core, the update of those already final)
    optimizer.step()                               Adam update of every parameter
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

import numpy as np

from .loss import CrossEntropyLoss, cross_entropy
from .memory import EVAL_BATCH_SIZE
from .model import Sequential
from .module import Parameter, no_grad


class Optimizer(Protocol):
    """What the training loop asks of an optimizer (every one in ``scratch.optim``). (docs/01-overview.md)"""

    params: Mapping[str, Parameter]

    def zero_grad(self, set_to_none: bool = True) -> None: ...
    def start_update(self, names: Iterable[str]) -> None: ...
    def step(self) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stops rather than continue on garbage. (docs/01-overview.md)"""

    def __init__(self, epoch: int, step: int, loss: float):
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}: training stopped "
                         "(try a smaller --lr)")
        self.epoch, self.step, self.loss = epoch, step, loss


def train_step(model: Sequential, optimizer: Optimizer, x: np.ndarray, y: np.ndarray,
               dropout_masks: dict[str, np.ndarray] | None = None) -> float:
    """One forward, backward and optimizer step on a batch. Returns the batch's mean loss. (docs/01-overview.md)"""
    logits = model.forward(x, dropout_masks)
    loss, dlogits = cross_entropy(logits, y)
    model.backward(dlogits, optimizer)
    optimizer.step()
    return loss


def train_one_epoch(model: Sequential, loss_fn: CrossEntropyLoss, optimizer: Optimizer,
                    batches: Iterable[tuple[np.ndarray, np.ndarray]], epoch: int = 1,
                    after_step: Callable[[int, float], None] | None = None, first_step: int = 1) -> float:
    """Train on every ``(x, y)`` batch of ``batches``; returns the mean of the batch losses.

    The one training loop of the NumPy implementation: the CLI (``simplecnn.backends``) and the guide's
    ``train_model`` (``scratch.guide``) both run it. Each step is ``loss_fn(model(x), y)``,
    ``model.backward(loss_fn.backward(), optimizer)``, ``optimizer.step()``: the updates of the last
    layers start while the backward pass goes on (``Sequential.backward``), the same numbers as
    ``model.backward(...)`` then ``optimizer.step()``.
    Steps are numbered from ``first_step`` (a resumed epoch starts further in).
    ``after_step(step, loss)`` is called after each step (progress bars, interruption checks).
    A NaN or infinite loss raises :class:`NonFiniteLossError` before the optimizer uses it.

    Chapter: docs/01-overview.md.
    """
    model.train()
    total, count = 0.0, 0
    for step, (x, y) in enumerate(batches, start=first_step):
        optimizer.zero_grad()
        loss = float(loss_fn(model.forward(x), y))
        if not math.isfinite(loss):
            raise NonFiniteLossError(epoch, step, loss)
        model.backward(loss_fn.backward(), optimizer)
        optimizer.step()
        total, count = total + loss, count + 1
        if after_step is not None:
            after_step(step, loss)
    return total / max(count, 1)


def index_batches(images: np.ndarray, labels: np.ndarray,
                  batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ``(x, y)`` batches that index arrays select from in-memory ``images`` and ``labels``.

    Chapter: docs/01-overview.md.
    """
    for idx in batches:
        yield images[idx], labels[idx]


def evaluate(model: Sequential, images: np.ndarray, labels: np.ndarray,
             batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy (in %) and predicted classes, in eval mode with no caches kept, in
    batches of ``batch_size`` images (:data:`~scratch.memory.EVAL_BATCH_SIZE`).

    Chapter: docs/01-overview.md.
    """
    batches = ((images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(images), batch_size))
    return evaluate_batches(model, batches)


def evaluate_batches(model: Sequential, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                     loss_fn: Callable[[np.ndarray, np.ndarray], float] | None = None
                     ) -> tuple[float, float, np.ndarray]:
    """Mean loss per image, accuracy (in %) and predicted classes over the ``(x, y)`` batches, in eval mode
    with no caches kept. The loss is cross-entropy, or ``loss_fn`` (a batch-mean loss, weighted here by
    each batch's size). (docs/01-overview.md)"""
    was_training = model.training
    model.eval()
    total_loss, correct, seen, predictions = 0.0, 0, 0, []
    try:
        with no_grad():
            for x, y in batches:
                logits = model.forward(x)
                if loss_fn is None:
                    total_loss += cross_entropy(logits, y, reduction="sum")[0]
                else:
                    total_loss += float(loss_fn(logits, y)) * len(y)
                predicted = logits.argmax(axis=1)
                correct += int((predicted == y).sum())
                seen += len(y)
                predictions.append(predicted)
    finally:
        model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    n = max(seen, 1)
    return total_loss / n, 100.0 * correct / n, predicted


# --- the progress display, shared by the CLI and the guide's train_model (both implementations) -----------

class _NoBar:
    def __init__(self, *args, **kwargs): ...
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def update(self, n=1): ...
    def set_postfix(self, *args, **kwargs): ...
    def close(self): ...


def progress_bar(total: int, initial: int, desc: str):
    """The per-epoch progress bar (tqdm, when it is installed; nothing otherwise). (docs/01-overview.md)"""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, leave=False, unit="batch",
                disable=None, dynamic_ncols=True)


def epoch_line(epoch: int, epochs: int, train_loss: float, val_loss: float, val_acc: float, seconds: float) -> str:
    """The line printed after each epoch. (docs/01-overview.md)"""
    validation = (f"val loss {val_loss:.4f}, val accuracy {val_acc:.2f}%" if np.isfinite(val_loss)
                  else "no validation (--val-split 0)")
    return f"Epoch {epoch}/{epochs}: train loss {train_loss:.4f}, {validation}, {seconds:.1f}s"

"""Training and evaluating the PyTorch SimpleCNN, the idiomatic way.

The data comes from ``scratch.data`` (the same arrays, normalized the same way) and the batch order
from ``scratch.data.epoch_batches``, so that for one seed both implementations see identical batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from scratch.data import EpochBatches
from scratch.train import NonFiniteLossError


class FixedBatches(Sampler[list[int]]):
    """A batch sampler that yields precomputed index batches (the epoch's shared batch order), or, given a
    ``scratch.data.EpochBatches``, each epoch's batches in turn."""

    def __init__(self, batches: Sequence[np.ndarray] | EpochBatches):
        self.batches = batches

    def __iter__(self):
        for batch in self.batches:
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(images: np.ndarray, labels: np.ndarray, batches: Sequence[np.ndarray] | None = None,
                batch_size: int = 1000) -> DataLoader:
    """A DataLoader over in-memory arrays: in the given batch order, or sequential for evaluation."""
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    # A DataLoader draws a seed from its generator each time it is iterated. Giving it its own keeps
    # the global RNG (dropout's) untouched, so a resumed run sees the same dropout masks.
    generator = torch.Generator().manual_seed(0)
    if batches is not None:
        return DataLoader(dataset, batch_sampler=FixedBatches(batches), generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=generator)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when it is available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str, epoch: int = 1,
                    after_step: Callable[[int, float], None] | None = None, first_step: int = 1) -> float:
    """One pass over ``loader`` (steps numbered from ``first_step``); returns the mean batch loss.

    The one training loop of the PyTorch implementation: the CLI (``simplecnn.backends``) and the guide's
    ``train_model`` (``torch_impl.guide``) both run it."""
    model.train()
    total, count = 0.0, 0
    for step, (x, y) in enumerate(loader, start=first_step):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, step, value)
        loss.backward()
        optimizer.step()
        total, count = total + value, count + 1
        if after_step is not None:
            after_step(step, value)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str,
             loss_fn: nn.Module | None = None) -> tuple[float, float, np.ndarray]:
    """Mean loss per image, accuracy (in %) and predicted classes over ``loader``, in eval mode. The loss is
    cross-entropy, or ``loss_fn`` (a batch-mean loss, weighted here by each batch's size)."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen, predictions = 0.0, 0, 0, []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        if loss_fn is None:
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        else:
            total_loss += loss_fn(logits, y).item() * len(y)
        predicted = logits.argmax(dim=1)
        correct += int((predicted == y).sum())
        seen += len(y)
        predictions.append(predicted.cpu().numpy())
    model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return total_loss / max(seen, 1), 100.0 * correct / max(seen, 1), predicted


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One forward, backward and Adam step on a batch. Returns the batch's mean loss."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


class fixed_dropout_masks:
    """Within this context, ``model.<name>`` dropout layers apply the given keep-masks instead of
    drawing their own (a forward hook replaces the output with ``input * mask / (1 - p)``).
    Used to give the NumPy and the PyTorch network the same masks."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.model, self.masks = model, masks
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self):
        for name, mask in self.masks.items():
            layer = getattr(self.model, name)
            scale = 1.0 / (1.0 - layer.p)

            def hook(module, inputs, output, mask=mask, scale=scale):
                return inputs[0] * (mask.to(inputs[0].dtype) * scale) if module.training else output

            self.handles.append(layer.register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return False

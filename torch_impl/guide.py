"""The guide's API for the PyTorch network: the names its script calls, with its call shapes (see
``scratch.guide``, the NumPy twin, for the script). ``train_model`` runs
:func:`torch_impl.train.train_one_epoch`, the loop the CLI runs; the loaders are ``DataLoader``\\ s over the
CLI's data (``scratch.data``), in the same seeded batch order as the NumPy loaders.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scratch.data import EpochBatches, load_dataset, split_mnist
from scratch.guide import fit, plot_training_losses

from .model import SimpleCNN
from .train import FixedBatches, evaluate, resolve_device, train_one_epoch

__all__ = ["_setup_model_for_training", "evaluate_model", "get_mnist_dataloaders", "plot_training_losses",
           "setup_model_for_training", "train_model"]


def setup_model_for_training(num_class: int = 10, learning_rate: float = 1e-3, *, device: str = "auto"
                             ) -> tuple[SimpleCNN, nn.CrossEntropyLoss, torch.optim.Adam, torch.device]:
    """``(model, loss_fn, optimizer, device)``: a ``SimpleCNN(num_class)`` on ``device`` (CUDA when
    available for ``"auto"``), ``nn.CrossEntropyLoss()`` and ``torch.optim.Adam`` at ``learning_rate``."""
    where = resolve_device(device)
    model = SimpleCNN(num_class).to(where)
    return model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=learning_rate), where


_setup_model_for_training = setup_model_for_training  # the guide's own (underscored) name


def _loader(x: np.ndarray, y: np.ndarray, **kwargs) -> DataLoader:
    # Its own generator: iterating a DataLoader draws a seed, which would otherwise move the global RNG.
    return DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                      generator=torch.Generator().manual_seed(0), **kwargs)


def get_mnist_dataloaders(batch_size: int = 64, validation_split: float = 0.1, *,
                          data_dir: str | os.PathLike | None = None, dataset: str = "mnist", seed: int = 0,
                          train_limit: int | None = None,
                          download: bool | None = None) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test ``DataLoader``\\ s of float32 ``(x, y)`` tensors: the arrays and batches
    of ``scratch.guide.get_mnist_dataloaders`` (same keywords), as tensors."""
    split = split_mnist(load_dataset(dataset, data_dir, download=download), validation_split, seed, train_limit)
    order = EpochBatches(len(split.train_x), batch_size, seed)
    return (_loader(split.train_x, split.train_y, batch_sampler=FixedBatches(order)),
            _loader(split.val_x, split.val_y, batch_size=batch_size),
            _loader(split.test_x, split.test_y, batch_size=batch_size))


def train_model(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader,
                val_loader: DataLoader, device: torch.device | str, epochs: int = 10
                ) -> tuple[list[float], list[float]]:
    """Train for ``epochs`` epochs; returns the per-epoch training and validation losses."""

    def train_epoch(epoch: int, after_step: Callable[[int, float], None]) -> float:
        return train_one_epoch(model, loss_fn, optimizer, train_loader, device, epoch, after_step)

    def validate() -> tuple[float, float]:
        if not len(val_loader):
            return float("nan"), float("nan")
        loss, accuracy, _ = evaluate(model, val_loader, device, loss_fn)
        return loss, accuracy

    return fit(train_epoch, validate, len(train_loader), epochs)


def evaluate_model(model: nn.Module, loss_fn: nn.Module, test_loader: DataLoader,
                   device: torch.device | str) -> tuple[float, float]:
    """``(accuracy_percent, loss)`` over ``test_loader`` (the loss is the mean over its images)."""
    loss, accuracy, _ = evaluate(model, test_loader, device, loss_fn)
    return accuracy, loss

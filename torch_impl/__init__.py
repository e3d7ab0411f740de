"""SimpleCNN in idiomatic PyTorch, the counterpart of the NumPy reference in ``scratch``.

``guide`` holds the guide's API (``setup_model_for_training``, ``get_mnist_dataloaders``, ``train_model``,
``evaluate_model``, ``plot_training_losses``), so its script runs with ``from torch_impl import ...``.
"""

from .guide import (
    _setup_model_for_training,
    evaluate_model,
    get_mnist_dataloaders,
    plot_training_losses,
    setup_model_for_training,
    train_model,
)
from .model import SimpleCNN

__all__ = ["SimpleCNN", "_setup_model_for_training", "evaluate_model", "get_mnist_dataloaders",
           "plot_training_losses", "setup_model_for_training", "train_model"]

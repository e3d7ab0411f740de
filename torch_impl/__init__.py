"""SimpleCNN in idiomatic PyTorch, the counterpart of the NumPy reference in ``scratch``."""

from .model import SimpleCNN

__all__ = ["SimpleCNN"]

"""ReLU and Flatten: the layers with no parameters and (almost) no math.

ReLU (docs/07-linear-and-relu.md)::

    y = max(x, 0)             dL/dx = dL/dy * [x > 0]

The derivative at exactly 0 is taken as 0, as PyTorch does. Flatten reshapes (N, C, H, W) to
(N, C*H*W) in C-order, i.e. (channel, height, width), which is PyTorch's order: the weights of the
first linear layer line up with PyTorch's only because of that. Its backward reshapes back.
"""

from __future__ import annotations

import numpy as np

from .module import Layer, check_input


def relu_forward(x: np.ndarray):
    """``y = max(x, 0)``. Returns ``(y, cache)``; the cache is the mask ``x > 0``."""
    positive = x > 0
    return np.maximum(x, 0), positive


def relu_backward(grad_out: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """``dL/dx = dL/dy * [x > 0]``."""
    return grad_out * positive


class ReLU(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        y, cache = relu_forward(x)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return relu_backward(grad_out, self._take_cache())


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), C-order (PyTorch's ``nn.Flatten()``)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        self._keep(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self._take_cache())

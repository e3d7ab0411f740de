"""Activations (ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax) and Flatten: no parameters.

The guide's other activations are derived in docs/11-activations.md; ReLU and Flatten below.

ReLU (docs/07-linear-and-relu.md)::

    y = max(x, 0)             dL/dx = dL/dy * [x > 0]

The derivative at exactly 0 is taken as 0, as PyTorch does. Flatten reshapes (N, C, H, W) to
(N, C*H*W) in C-order, i.e. (channel, height, width), which is PyTorch's order: the weights of the
first linear layer line up with PyTorch's only because of that. Its backward reshapes back.
"""

from __future__ import annotations

import numpy as np

from . import parallel
from .conv import to_batch_last
from .module import Layer, check_input, grad_enabled, is_batch_last, memory_order


def relu_forward(x: np.ndarray):
    """``y = max(x, 0)``. Returns ``(y, cache)``; the cache is the mask ``x > 0``. (docs/07-linear-and-relu.md)"""
    y, positive = np.empty_like(x), np.empty_like(x, dtype=bool)      # laid out as x
    x_m, y_m, positive_m = memory_order(x), memory_order(y, x), memory_order(positive, x)

    def rows(part: slice) -> None:          # the rows ``part``, on one core (scratch/parallel.py)
        np.greater(x_m[part], 0, out=positive_m[part])
        np.maximum(x_m[part], 0, out=y_m[part])

    parallel.run(rows, len(x_m), 2 * x.size)
    return y, positive


def relu_backward(grad_out: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """``dL/dx = dL/dy * [x > 0]``. (docs/07-linear-and-relu.md)"""
    return parallel.split_call(np.multiply, grad_out, positive, out=np.empty_like(grad_out))


class ReLU(Layer):
    """``nn.ReLU()`` in NumPy: ``max(x, 0)``, gradient masked by ``x > 0`` (docs/07-linear-and-relu.md)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        if not grad_enabled():
            return parallel.split_call(np.maximum, x, 0, out=np.empty_like(x))   # no backward: no mask
        y, cache = relu_forward(x)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return relu_backward(grad_out, self._take_cache())


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), C-order (PyTorch's ``nn.Flatten()``). (docs/07-linear-and-relu.md)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """A view: of NCHW memory, a C-order matrix; of batch-last memory (scratch/module.py), a matrix
        stored column by column (each image's C*H*W numbers N apart), which ``fc1``'s products take as it is."""
        check_input(self, x, x.ndim, "(N, ...)")
        self._keep((x.shape, is_batch_last(x)))
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """The gradient reshaped back, laid out in memory as the input was (a batch-last input gets a
        batch-last gradient, which the layers before it take without a copy)."""
        shape, batch_last = self._take_cache()
        grad = grad_out.reshape(shape)
        # (two copies, scratch/conv.py: 34 microseconds against 95 for one transposing copy, at batch 64)
        return to_batch_last(grad).transpose(3, 0, 1, 2) if batch_last else grad


# --- the guide's other activations (docs/11-activations.md) -----------------------------------------

def sigmoid_forward(x: np.ndarray):
    """``y = 1 / (1 + exp(-x))``, computed without overflow. Returns ``(y, cache)``; the cache is ``y``.

    ``exp(-x)`` overflows for ``x < -709`` (float64; ``-88`` in float32). With ``e = exp(-|x|)``, which
    is always in (0, 1], ``y = 1 / (1 + e)`` for ``x >= 0`` and ``y = e / (1 + e)`` for ``x < 0``: the same
    value, and no exponent is ever positive. The numerator is picked arithmetically,
    ``[x >= 0] + [x < 0] * e`` (exactly 1 or exactly e), because ``np.where`` on a random mask is several
    times slower than the whole rest of the computation (branch mispredictions).

    Chapter: docs/11-activations.md.
    """
    e = np.exp(-np.abs(x))
    nonnegative = x >= 0
    y = (nonnegative + ~nonnegative * e) / (1 + e)
    return y, y


def sigmoid_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dL/dx = dL/dy * y * (1 - y)``: the derivative written with the output, so nothing is recomputed.

    Chapter: docs/11-activations.md.
    """
    return grad_out * (1 - y) * y


def tanh_forward(x: np.ndarray):
    """``y = tanh(x)`` (``np.tanh`` saturates to +-1 without overflow). Returns ``(y, cache)``: ``y``.

    Chapter: docs/11-activations.md.
    """
    y = np.tanh(x)
    return y, y


def tanh_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dL/dx = dL/dy * (1 - y^2)``. (docs/11-activations.md)"""
    return grad_out * (1 - y * y)


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01):
    """``y = x`` where ``x > 0``, else ``negative_slope * x``. Returns ``(y, cache)``; the cache is the local
    slope ``dy/dx``: 1 where ``x > 0``, ``negative_slope`` elsewhere.

    The slope is built as ``[x > 0] + [x <= 0] * negative_slope`` (each entry exactly 1 or exactly the
    slope), so ``y = x * slope`` rounds as PyTorch's ``x * negative_slope``; a multiplication is several
    times faster than ``np.where`` on a random mask.

    Chapter: docs/11-activations.md.
    """
    positive = x > 0
    slope = positive + ~positive * x.dtype.type(negative_slope)
    return x * slope, slope


def leaky_relu_backward(grad_out: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``dL/dx = dL/dy * (1 if x > 0 else negative_slope)``. At exactly ``x = 0`` the slope is
    ``negative_slope``, as in PyTorch (its kernel tests ``x > 0``).

    Chapter: docs/11-activations.md.
    """
    return grad_out * slope


def softmax_forward(x: np.ndarray, dim: int):
    """``y = exp(x - max) / sum(exp(x - max))`` along ``dim``. Returns ``(y, cache)``: ``(y, dim)``.

    Subtracting the maximum of each slice leaves the value unchanged and every exponent <= 0: rows
    of +-1e4 neither overflow nor divide by zero (the maximum contributes exp(0) = 1 to the sum).

    Chapter: docs/11-activations.md.
    """
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    y = e / e.sum(axis=dim, keepdims=True)
    return y, (y, dim)


def softmax_backward(grad_out: np.ndarray, cache) -> np.ndarray:
    """``dL/dx_i = y_i * (dL/dy_i - sum_j dL/dy_j * y_j)`` along ``dim``.

    From the Jacobian ``dy_j/dx_i = y_j ([i == j] - y_i)``; the product with the upstream gradient is a
    dot product per slice, so the (K, K) Jacobian is never built.

    Chapter: docs/11-activations.md.
    """
    y, dim = cache
    return y * (grad_out - (grad_out * y).sum(axis=dim, keepdims=True))


def log_softmax_forward(x: np.ndarray, dim: int):
    """``y = x - max - log(sum(exp(x - max)))`` along ``dim`` (log-sum-exp, stable). Cache: ``(y, dim)``.

    Chapter: docs/11-activations.md.
    """
    shifted = x - x.max(axis=dim, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return y, (y, dim)


def log_softmax_backward(grad_out: np.ndarray, cache) -> np.ndarray:
    """``dL/dx_i = dL/dy_i - exp(y_i) * sum_j dL/dy_j``: ``dy_j/dx_i = [i == j] - softmax_i``.

    Chapter: docs/11-activations.md.
    """
    y, dim = cache
    return grad_out - np.exp(y) * grad_out.sum(axis=dim, keepdims=True)


class Sigmoid(Layer):
    """``nn.Sigmoid()``: ``y = 1 / (1 + exp(-x))``, stable for any finite input. (docs/11-activations.md)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        y, cache = sigmoid_forward(x)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return sigmoid_backward(grad_out, self._take_cache())


class Tanh(Layer):
    """``nn.Tanh()``. (docs/11-activations.md)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        y, cache = tanh_forward(x)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return tanh_backward(grad_out, self._take_cache())


class LeakyReLU(Layer):
    """``nn.LeakyReLU(negative_slope=0.01)``. (docs/11-activations.md)"""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.floating)) \
                or not np.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be a finite number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(N, ...)")
        y, cache = leaky_relu_forward(x, self.negative_slope)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return leaky_relu_backward(grad_out, self._take_cache())

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def _check_dim(layer: Layer, x: np.ndarray, dim: int) -> int:
    """``dim`` as a non-negative axis of ``x`` (negative counts from the end, as in PyTorch)."""
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1) or x.ndim == 0:
        raise ValueError(f"{layer.name}: dim {dim} is out of range for an input of shape {x.shape}")
    return dim % x.ndim


class _SoftmaxBase(Layer):
    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise ValueError(f"{type(self).__name__}: dim must be an int (the axis to normalize), got {dim!r}")
        self.dim = int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """``nn.Softmax(dim)``: the slices along ``dim`` become probability vectors. ``dim`` is required
    (PyTorch's implicit choice when it is omitted is deprecated).

    Chapter: docs/11-activations.md.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(..., K, ...)")
        y, cache = softmax_forward(x, _check_dim(self, x, self.dim))
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return softmax_backward(grad_out, self._take_cache())


class LogSoftmax(_SoftmaxBase):
    """``nn.LogSoftmax(dim)``: ``log(softmax(x))`` computed directly (no log of an underflowed 0).

    Chapter: docs/11-activations.md.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, x.ndim, "(..., K, ...)")
        y, cache = log_softmax_forward(x, _check_dim(self, x, self.dim))
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return log_softmax_backward(grad_out, self._take_cache())

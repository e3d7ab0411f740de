"""Fully connected layer (PyTorch's ``nn.Linear``), forward and backward.

Notation (docs/07-linear-and-relu.md): input ``x`` (N, in), weight ``w`` (out, in), bias ``b`` (out,)::

    y = x @ w.T + b                                  y: (N, out)

Each ``y[n, o] = sum_i x[n, i] w[o, i] + b[o]``, so with ``g = dL/dy`` (N, out)::

    dL/dw = g.T @ x        (out, in)     sum over the batch of outer products g[n] x[n]^T
    dL/db = g.sum(axis=0)  (out,)
    dL/dx = g @ w          (N, in)

Extra leading axes (N, ..., in) are flattened into the batch, as PyTorch allows.
"""

from __future__ import annotations

import numpy as np

from .init import default_weight_and_bias
from .module import Layer, Parameter, check_input, require_float_dtype


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None):
    """``y = x w^T + b``. Returns ``(y, cache)``. (docs/07-linear-and-relu.md)"""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(grad_out: np.ndarray, cache):
    """Gradients ``(dx, dw, db)`` from ``grad_out = dL/dy``. (docs/07-linear-and-relu.md)"""
    x, weight, has_bias = cache
    g2 = grad_out.reshape(-1, weight.shape[0])
    dweight = g2.T @ x.reshape(-1, weight.shape[1])
    dbias = g2.sum(axis=0) if has_bias else None
    return grad_out @ weight, dweight, dbias


class Linear(Layer):
    """``nn.Linear(in_features, out_features, bias=True)`` in NumPy. (docs/07-linear-and-relu.md)"""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be positive, "
                             f"got {in_features} and {out_features}")
        rng = rng if rng is not None else np.random.default_rng()
        weight, bias_data = default_weight_and_bias(rng, (self.out_features, self.in_features),
                                                    require_float_dtype(dtype))
        self.weight = Parameter(weight)
        self.bias = Parameter(bias_data) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            check_input(self, x, 2, "(N, in_features)")
        check_input(self, x, x.ndim, "(N, in_features)", self.weight.data.dtype, self.in_features, -1)
        y, cache = linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx, self.weight.grad, dbias = linear_backward(grad_out, self._take_cache())
        if self.bias is not None:
            self.bias.grad = dbias
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

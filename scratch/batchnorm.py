"""Batch normalization over channels (PyTorch's ``nn.BatchNorm2d``), forward and backward.

Notation (docs/05-batch-normalization.md): input ``x`` (N, C, H, W); the statistics of channel c are
taken over its ``m = N*H*W`` values. In training::

    mu      = mean(x)                          over (n, h, w), per channel
    var     = mean((x - mu)^2)                 the *biased* variance (divide by m)
    inv_std = 1 / sqrt(var + eps)
    x_hat   = (x - mu) * inv_std
    y       = gamma * x_hat + beta             gamma = ``weight``, beta = ``bias``

and the running statistics move towards the batch's (momentum is the weight of the *new* value)::

    running_mean = (1 - momentum) * running_mean + momentum * mu
    running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)

In evaluation, ``mu`` and ``var`` are the running statistics, constants with respect to x.

Backward in training (derived in the docs). Every x moves mu and var too, which gives the two
correction terms; with ``g = dL/dy`` and means over (n, h, w)::

    dL/dbeta  = sum(g)
    dL/dgamma = sum(g * x_hat)
    dL/dx     = gamma * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))

In evaluation the statistics are constants and ``dL/dx = gamma * inv_std * g``.

Precision: a float32 sum over the tens of thousands of values of a channel, added one by one, loses
~1e-4 relative accuracy in the mean, enough to move float32 gradients visibly. :func:`channel_sums`
avoids that cheaply, in two stages: each (image, channel) row of H*W contiguous numbers is summed in
the input dtype by ``np.einsum`` (it accumulates in several SIMD lanes, so no running sum gets long,
and it is 3x faster than ``sum`` here), then the N partial sums of a channel are added in float64.
Measured on batch-norm 1's input (batch 64): about 1e-8 relative error in the sums. The statistics are
computed in float64 from those sums and cast back, as PyTorch's CPU kernel does. Every array the
layer returns keeps the input dtype.

Speed: every pass over an (N, C, H, W) array costs about the same, so the code counts them. The
arithmetic is written with ``out=`` and in-place operators, so that each line is one pass and no
temporary array is allocated that an existing buffer can hold.
"""

from __future__ import annotations

import numpy as np

from .module import Layer, Parameter, check_input, require_float_dtype


def _channel(v: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C, 1, 1), to broadcast a per-channel value against (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def channel_sums(a: np.ndarray) -> np.ndarray:
    """Per-channel sum of ``a`` (N, C, H, W) over (n, h, w), as float64 (see the module docstring).

    Chapter: docs/05-batch-normalization.md.
    """
    n, c = a.shape[:2]
    row_sums = np.einsum("ncp->nc", a.reshape(n, c, -1))   # (N, C), in a's dtype
    return row_sums.sum(axis=0, dtype=np.float64)           # (C,): the N partial sums, in float64


def batchnorm2d_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                        running_var: np.ndarray, training: bool, momentum: float, eps: float):
    """``y = gamma * x_hat + beta``. In training, updates ``running_*`` in place. Returns ``(y, cache)``.

    Chapter: docs/05-batch-normalization.md.
    """
    x_hat = np.empty_like(x)
    y = np.empty_like(x)                               # first a scratch buffer for the squares
    if training:
        m = x.size // x.shape[1]
        mu = channel_sums(x) / m                                     # float64
        np.subtract(x, _channel(mu.astype(x.dtype)), out=x_hat)     # x - mu (x_hat once scaled)
        var = channel_sums(np.square(x_hat, out=y)) / m             # biased: divides by m
        running_mean[...] = (1 - momentum) * running_mean + momentum * mu
        running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
    else:
        mu, var = running_mean, running_var
        np.subtract(x, _channel(mu), out=x_hat)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    x_hat *= _channel(inv_std)
    np.multiply(x_hat, _channel(gamma), out=y)
    y += _channel(beta)
    return y, (x_hat, inv_std, gamma, training)


def batchnorm2d_backward(grad_out: np.ndarray, cache):
    """Gradients ``(dx, dgamma, dbeta)`` from ``grad_out = dL/dy`` (see the module docstring).

    Chapter: docs/05-batch-normalization.md.
    """
    x_hat, inv_std, gamma, training = cache
    g = grad_out
    g_x_hat = g * x_hat                                # reused below as scratch space
    dbeta = channel_sums(g)
    dgamma = channel_sums(g_x_hat)
    scale = _channel(gamma * inv_std)
    if training:
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)), one pass per operation:
        m = g.size // g.shape[1]
        mean_g = _channel((dbeta / m).astype(g.dtype))
        mean_g_xhat = _channel((dgamma / m).astype(g.dtype))
        dx = np.subtract(g, mean_g)
        dx -= np.multiply(x_hat, mean_g_xhat, out=g_x_hat)
        dx *= scale
    else:
        dx = g * scale
    return dx, dgamma.astype(g.dtype), dbeta.astype(g.dtype)


class BatchNorm2d(Layer):
    """``nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1)`` in NumPy (affine, tracking statistics).

    ``momentum=None`` gives PyTorch's cumulative moving average (momentum ``1 / num_batches_tracked``).

    Chapter: docs/05-batch-normalization.md.
    """

    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *,
                 dtype=np.float32):
        super().__init__()
        dtype = require_float_dtype(dtype)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        if self.num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be positive, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1] or None, got {momentum}")
        self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        self.running_mean = np.zeros(self.num_features, dtype=dtype)
        self.running_var = np.ones(self.num_features, dtype=dtype)
        self.num_batches_tracked = np.array(0, dtype=np.int64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 4, "(N, C, H, W)", self.weight.data.dtype, self.num_features)
        momentum = self.momentum
        if self.training:
            if x.size // x.shape[1] < 2:
                raise ValueError(f"{self.name}: expected more than 1 value per channel when training, "
                                 f"got input shape {x.shape}")
            self.num_batches_tracked += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        y, cache = batchnorm2d_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                       self.running_var, self.training, momentum or 0.0, self.eps)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx, self.weight.grad, self.bias.grad = batchnorm2d_backward(grad_out, self._take_cache())
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

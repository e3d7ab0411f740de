"""Inverted dropout (PyTorch's ``nn.Dropout``), forward and backward.

Notation (docs/06-dropout.md): ``p`` is the probability of *dropping* a unit. In training each unit is
kept with probability ``1 - p`` (``mask = 1``) and the kept ones are scaled by ``1 / (1 - p)``, so the
expected output equals the input and evaluation needs no rescaling::

    y = x * mask / (1 - p)          (training)        y = x          (evaluation)

The backward pass applies the *same* mask and scale: ``dL/dx = dL/dy * mask / (1 - p)``.
``p = 1`` drops everything (the output is zero, as in PyTorch).

The mask can be supplied, so a test can give the NumPy and the PyTorch network the same one.
"""

from __future__ import annotations

import math

import numpy as np

from . import parallel
from .module import Layer, check_input, is_batch_last, memory_order


def drop_threshold(p: float) -> int:
    """The 32-bit integer below which a unit is dropped: ``round(p * 2^32)`` (``2^32`` for ``p = 1``: every
    unit dropped, as no 32-bit integer reaches it).

    Chapter: docs/06-dropout.md.
    """
    return round(p * 2 ** 32)


def dropout_forward(x: np.ndarray, keep_mask: np.ndarray, p: float):
    """``y = x * keep_mask / (1 - p)``. Returns ``(y, cache)``; the cache is the scaled mask.

    Chapter: docs/06-dropout.md.
    """
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    scaled_mask, y = np.empty_like(x), np.empty_like(x)      # laid out as x (NCHW, or batch last)
    x_m, mask_m, scaled_m, y_m = (memory_order(a, x) for a in (x, keep_mask, scaled_mask, y))

    def rows(part: slice) -> None:          # the rows ``part``, on one core (scratch/parallel.py)
        np.multiply(mask_m[part], x.dtype.type(scale), out=scaled_m[part])   # 0 or 1/(1-p)
        np.multiply(x_m[part], scaled_m[part], out=y_m[part])

    parallel.run(rows, len(x_m), 2 * x.size)
    return y, scaled_mask


def dropout_backward(grad_out: np.ndarray, scaled_mask: np.ndarray, overwrite_mask: bool = False) -> np.ndarray:
    """``dL/dx = dL/dy * mask / (1 - p)``. ``overwrite_mask``: the result is written over ``scaled_mask``,
    for a caller that uses the mask once (:meth:`Dropout.backward`; docs/05-batch-normalization.md, "Memory").
    (docs/06-dropout.md)"""
    reuse = overwrite_mask and scaled_mask.shape == grad_out.shape and scaled_mask.dtype == grad_out.dtype
    out = scaled_mask if reuse else np.empty_like(grad_out)
    return parallel.split_call(np.multiply, grad_out, scaled_mask, out=out)


class Dropout(Layer):
    """``nn.Dropout(p)``: draws its mask from ``rng`` unless one is given to :meth:`forward`.

    Chapter: docs/06-dropout.md.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is the drop probability and must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def sample_mask(self, shape: tuple[int, ...], batch_last: bool = False) -> np.ndarray:
        """A boolean keep-mask: each unit kept (True) with probability ``1 - p``. ``batch_last`` (4-D
        ``shape`` only): the numbers are drawn in the order of batch-last memory, (C, H, W, N), and the mask
        is laid out that way (scratch/module.py), as the input it will multiply.

        Each unit gets one uniform 32-bit integer ``u`` (a half of one of the generator's 64-bit outputs,
        ``random_raw``) and is kept when ``u >= round(p * 2^32)``: with probability ``1 - p`` to within
        2^-33, finer than a float32 uniform's 2^-24 steps, and 40% cheaper than drawing floats (no
        conversion, two units per output; docs/06-dropout.md)."""
        count = math.prod(shape)
        numbers = self.rng.bit_generator.random_raw((count + 1) // 2).view(np.uint32)[:count]
        keep = numbers >= drop_threshold(self.p)
        if not batch_last:
            return keep.reshape(shape)
        n, c, h, w = shape
        return keep.reshape(c, h, w, n).transpose(3, 0, 1, 2)

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Drop units of ``x``. ``mask`` (boolean, ``x``'s shape, True = keep) overrides the random draw."""
        check_input(self, x, x.ndim, "(N, ...)")
        if not self.training or self.p == 0.0:
            self._keep((None,))            # the identity: backward passes the gradient through
            return x
        if mask is None:
            mask = self.sample_mask(x.shape, batch_last=is_batch_last(x))
        elif mask.shape != x.shape:
            raise ValueError(f"{self.name}: mask shape {mask.shape} does not match input shape {x.shape}")
        y, scaled_mask = dropout_forward(x, mask, self.p)
        self._keep((scaled_mask,))
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (scaled_mask,) = self._take_cache()
        return grad_out if scaled_mask is None else dropout_backward(grad_out, scaled_mask, overwrite_mask=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"

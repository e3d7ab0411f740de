"""PyTorch's default initializations, reproduced in NumPy.

``nn.Conv2d`` and ``nn.Linear`` call ``kaiming_uniform_(weight, a=sqrt(5))``: a uniform distribution on
``[-bound, bound]`` with ``bound = gain * sqrt(3 / fan_in)`` and ``gain = sqrt(2 / (1 + a^2))``. With
``a = sqrt(5)`` the gain is ``sqrt(1/3)``, so ``bound = 1 / sqrt(fan_in)``. The bias is uniform on
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` too. ``fan_in`` is ``in_features`` for a linear layer and
``in_channels * kh * kw`` for a convolution.

The distributions are PyTorch's; the random numbers are NumPy's (the two generators differ), so two
models that must start equal copy their weights through the state dict.
"""

from __future__ import annotations

import math

import numpy as np


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one output unit: ``shape[1] * prod(shape[2:])`` for (out, in, *kernel).

    Chapter: docs/07-linear-and-relu.md.
    """
    return int(shape[1] * math.prod(shape[2:]))


def uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype) -> np.ndarray:
    """Uniform on ``[-bound, bound)`` in ``dtype`` (docs/07-linear-and-relu.md, initialization)."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def default_weight_and_bias(rng: np.random.Generator, weight_shape: tuple[int, ...], dtype):
    """``(weight, bias)`` drawn as PyTorch's ``reset_parameters`` for conv and linear layers.

    Chapter: docs/07-linear-and-relu.md.
    """
    bound = 1.0 / math.sqrt(fan_in(weight_shape)) if fan_in(weight_shape) > 0 else 0.0
    weight = uniform(rng, weight_shape, bound, dtype)
    bias = uniform(rng, (weight_shape[0],), bound, dtype)
    return weight, bias

"""Central-difference gradients: an oracle that owes nothing to PyTorch.

For a scalar function ``f`` of an array ``x``::

    df/dx[i] ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)

with error h^2 |f'''| / 6 from truncation plus about eps_machine * |f| / h from rounding; in float64 with
h = 1e-6 truncation is about 2e-13 and rounding about 1e-10 for well-scaled functions, so rounding dominates.
One loop over the elements of ``x``:
slow by design, for small test shapes only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """``df/dx`` by central differences, perturbing ``x`` in place and restoring it exactly.

    Chapter: docs/10-verifying-gradients.md.
    """
    if x.dtype != np.float64:
        raise ValueError(f"numerical_gradient needs float64 (got {x.dtype}): float32 rounding swamps it")
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat_x, x):
        raise ValueError("numerical_gradient needs a contiguous array it can perturb in place")
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + h
        f_plus = f()
        flat_x[i] = original - h
        f_minus = f()
        flat_x[i] = original
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad

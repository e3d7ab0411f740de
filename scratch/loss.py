"""Softmax cross-entropy from logits (PyTorch's ``nn.CrossEntropyLoss``), value and gradient.

Notation (docs/08-softmax-cross-entropy.md): logits ``z`` (N, K), integer targets ``t`` (N,)::

    log p[n, k] = z[n, k] - logsumexp(z[n])          (log-softmax)
    L = -(1/N) sum_n log p[n, t_n]                   (reduction "mean"; "sum" drops the 1/N)

Numerical stability: ``logsumexp(z) = max(z) + log(sum(exp(z - max(z))))``. After subtracting the
row maximum every exponent is <= 0, so nothing overflows and at least one term is exp(0) = 1, so the
log never sees 0. Logits of +-1e4 stay finite.

Gradient: ``dL/dz[n, k] = (softmax(z)[n, k] - [k == t_n]) / N``: the predicted probabilities minus
the one-hot target, averaged over the batch.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` along the last axis, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def check_targets(logits: np.ndarray, targets: np.ndarray) -> None:
    if not isinstance(logits, np.ndarray) or logits.ndim != 2 or logits.dtype.kind != "f":
        raise ValueError(f"cross_entropy: expected float logits of shape (N, K), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    integer = isinstance(targets, np.ndarray) and targets.dtype.kind in "iu"
    if not integer or targets.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: expected integer targets of shape ({logits.shape[0]},), got "
                         f"{getattr(targets, 'dtype', type(targets).__name__)} {getattr(targets, 'shape', '')}")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: targets must be class indices in [0, {logits.shape[1] - 1}], "
                         f"got values in [{targets.min()}, {targets.max()}]")


def cross_entropy(logits: np.ndarray, targets: np.ndarray, reduction: str = "mean"):
    """Loss and its gradient: ``(L, dL/dlogits)``. ``L`` is a Python float of the logits' precision."""
    check_targets(logits, targets)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    n = logits.shape[0]
    log_p = log_softmax(logits)
    rows = np.arange(n)
    total = -log_p[rows, targets].sum(dtype=np.float64)
    divisor = n if reduction == "mean" else 1
    grad = np.exp(log_p)                       # softmax
    grad[rows, targets] -= 1                   # minus the one-hot target
    grad /= logits.dtype.type(divisor)
    return float(logits.dtype.type(total / divisor)), grad

"""Softmax cross-entropy from logits (PyTorch's ``nn.CrossEntropyLoss``), value and gradient; and the loss
classes (``CrossEntropyLoss``, ``MSELoss``, ``L1Loss``, ``MultiMarginLoss``, ``MeanBiasError``,
docs/13-losses.md) at the end of this module.

Notation (docs/08-softmax-cross-entropy.md): logits ``z`` (N, K), integer targets ``tau`` (N,)::

    log pi[n, k] = z[n, k] - logsumexp(z[n])         (log-softmax; ``log_p`` in the code)
    L = -(1/N) sum_n log pi[n, tau_n]                (reduction "mean"; "sum" drops the 1/N)

Numerical stability: ``logsumexp(z) = max(z) + log(sum(exp(z - max(z))))``. After subtracting the
row maximum every exponent is <= 0, so nothing overflows and at least one term is exp(0) = 1, so the
log never sees 0. Logits of +-1e4 stay finite.

Gradient: ``dL/dz[n, k] = (softmax(z)[n, k] - [k == tau_n]) / N``: the predicted probabilities minus
the one-hot target, averaged over the batch.
"""

from __future__ import annotations

import numpy as np

from .module import FLOAT_DTYPES, grad_enabled


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` along the last axis, computed stably. (docs/08-softmax-cross-entropy.md)"""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def check_targets(logits: np.ndarray, targets: np.ndarray) -> None:
    """ValueError unless logits are float (N, K) and targets N class indices (docs/08-softmax-cross-entropy.md)."""
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
    """Loss and its gradient: ``(L, dL/dlogits)``. ``L`` is a Python float of the logits' precision.

    Chapter: docs/08-softmax-cross-entropy.md.
    """
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


# --- loss classes (docs/13-losses.md) -----------------------------------------------------------------
#
# All share one shape, PyTorch's: ``loss_fn = MSELoss(reduction="mean")``; ``value = loss_fn(input,
# target)`` (a Python float, or an array shaped like the per-element losses for ``reduction="none"``);
# then ``dinput = loss_fn.backward(grad_output=1.0)`` (``grad_output`` shaped like ``value`` for "none").
# Each forward computes the per-element losses ``l``; the reduction is ``mean(l)``, ``sum(l)`` or ``l``,
# so backward multiplies ``dl/dinput`` by ``grad_output`` and, for "mean", by ``1 / divisor``.

REDUCTIONS = ("none", "mean", "sum")


class _Loss:
    """Reduction bookkeeping, input checks and the forward/backward hand-over shared by every loss."""

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.name = type(self).__name__
        self._cache: tuple | None = None   # what the last forward kept for backward

    def __call__(self, input: np.ndarray, target: np.ndarray):
        return self.forward(input, target)

    def forward(self, input: np.ndarray, target: np.ndarray):
        raise NotImplementedError

    def _check_input(self, input: np.ndarray) -> None:
        if not isinstance(input, np.ndarray) or input.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{self.name}: input must be a float32 or float64 NumPy array, got "
                             f"{getattr(input, 'dtype', type(input).__name__)}")

    def _check_same_shape(self, input: np.ndarray, target: np.ndarray) -> None:
        """Element-wise losses: a float target of the input's shape and dtype (no silent broadcasting)."""
        self._check_input(input)
        if not isinstance(target, np.ndarray) or target.shape != input.shape or target.dtype != input.dtype:
            raise ValueError(f"{self.name}: target must be an array of the input's shape {input.shape} and dtype "
                             f"{input.dtype}, got {getattr(target, 'dtype', type(target).__name__)} "
                             f"{getattr(target, 'shape', '')}")

    def _reduce(self, losses: np.ndarray, divisor: float, grad_per_loss, dtype: np.dtype):
        """Apply the reduction to the per-element ``losses`` and keep what backward needs.

        ``grad_per_loss(g)`` maps the gradient w.r.t. the per-element losses, ``g`` (shaped like
        ``losses``), to the gradient w.r.t. the input. "mean" divides by ``divisor``.
        """
        if grad_enabled():
            self._cache = (grad_per_loss, losses.shape, divisor, dtype)
        if self.reduction == "none":
            return losses.astype(dtype, copy=False)
        total = losses.sum(dtype=np.float64)
        if self.reduction == "sum":
            return float(dtype.type(total))
        return float(dtype.type(total / divisor)) if divisor else float("nan")

    def backward(self, grad_output=1.0) -> np.ndarray:
        """``dL/dinput`` for ``dL/d(value) = grad_output`` (a scalar, or shaped like the value for "none")."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called without a forward pass to differentiate")
        grad_per_loss, shape, divisor, dtype = self._cache
        self._cache = None
        g = np.asarray(grad_output, dtype=dtype)
        if self.reduction == "none":
            if g.shape != shape:
                raise ValueError(f"{self.name}: grad_output must have the shape of the loss {shape} for "
                                 f"reduction='none', got {g.shape}")
        else:
            if g.size != 1:
                raise ValueError(f"{self.name}: grad_output must be a scalar for reduction={self.reduction!r}, "
                                 f"got shape {g.shape}")
            if self.reduction == "mean":
                # All-ignored batches: the value is 0/0 = NaN, and no element has a gradient (as in torch).
                g = g.reshape(()) / dtype.type(divisor) if divisor else np.zeros((), dtype)
            g = np.broadcast_to(g.reshape(()), shape)
        return grad_per_loss(g)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{self.name}({self.extra_repr()})"


class MSELoss(_Loss):
    """``nn.MSELoss``: ``l = (x - tau)^2``; ``dl/dx = 2 (x - tau)``. (docs/13-losses.md)"""

    def forward(self, input: np.ndarray, target: np.ndarray):
        self._check_same_shape(input, target)
        diff = input - target
        return self._reduce(diff * diff, input.size, lambda g: 2 * diff * g, input.dtype)


class L1Loss(_Loss):
    """``nn.L1Loss`` (the guide's MAE): ``l = |x - tau|``; ``dl/dx = sign(x - tau)``, 0 at exactly ``x = tau``
    (PyTorch's choice: ``sign(0) = 0``, a valid subgradient).

    Chapter: docs/13-losses.md.
    """

    def forward(self, input: np.ndarray, target: np.ndarray):
        self._check_same_shape(input, target)
        diff = input - target
        return self._reduce(np.abs(diff), input.size, lambda g: np.sign(diff) * g, input.dtype)


class MeanBiasError(_Loss):
    """The guide's mean bias error: ``l = x - tau`` (signed; no PyTorch twin); ``dl/dx = 1``.

    A diagnostic, not a training objective: its minimum is -infinity (docs/13-losses.md).
    """

    def forward(self, input: np.ndarray, target: np.ndarray):
        self._check_same_shape(input, target)
        return self._reduce(input - target, input.size, lambda g: np.array(g, dtype=input.dtype, copy=True),
                            input.dtype)


def _check_class_weight(name: str, weight, classes: int | None = None) -> np.ndarray | None:
    if weight is None:
        return None
    weight = np.asarray(weight)
    if weight.ndim != 1 or weight.dtype.kind not in "fiu" or not np.all(np.isfinite(weight)):
        raise ValueError(f"{name}: weight must be a 1-D array of finite numbers (one per class), got "
                         f"{weight.dtype} {weight.shape}")
    if classes is not None and weight.shape[0] != classes:
        raise ValueError(f"{name}: weight has {weight.shape[0]} entries, the input has {classes} classes")
    return weight


def _check_class_indices(name: str, target, shape: tuple[int, ...], classes: int,
                         ignore_index: int | None = None) -> None:
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu" or target.shape != shape:
        raise ValueError(f"{name}: expected integer class indices of shape {shape}, got "
                         f"{getattr(target, 'dtype', type(target).__name__)} {getattr(target, 'shape', '')}")
    valid = (target >= 0) & (target < classes)
    if ignore_index is not None:
        valid |= target == ignore_index
    if not valid.all():
        bad = target[~valid][0]
        raise ValueError(f"{name}: target {bad} is not a class index in [0, {classes - 1}]"
                         + (f" nor ignore_index {ignore_index}" if ignore_index is not None else ""))


class CrossEntropyLoss(_Loss):
    """``nn.CrossEntropyLoss(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0)``.

    Input: logits ``z`` of shape (N, K) or (N, K, d1, ...) (K classes on axis 1), or (K,) for one sample.
    Target: class indices (N,) / (N, d1, ...) / (), or class probabilities of the input's shape. Every
    case is one formula with a coefficient ``a[n, k] >= 0`` per logit (docs/13-losses.md)::

        l[n] = -sum_k a[n, k] log pi[n, k]       log pi = log_softmax(z) over the classes
        dl[n]/dz[n, k] = (sum_k' a[n, k']) pi[n, k] - a[n, k]

    Class indices: ``a[n, k] = w[tau_n] (1 - eps_ls) [k == tau_n] + eps_ls w[k] / K`` (``eps_ls =
    label_smoothing``, ``eps`` in the code; ``w = weight`` or ones), and ``a[n] = 0`` where
    ``tau_n == ignore_index``; "mean" divides by ``sum_n w[tau_n]`` over the samples not ignored.
    Probabilities ``tau[n, k]``: ``a[n, k] = w[k] ((1 - eps_ls) tau[n, k] + eps_ls / K)``; "mean" divides by
    the number of samples N*d1*... .
    """

    def __init__(self, weight: np.ndarray | None = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.weight = _check_class_weight("CrossEntropyLoss", weight)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"CrossEntropyLoss: ignore_index must be an int, got {ignore_index!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)

    def forward(self, input: np.ndarray, target: np.ndarray):
        self._check_input(input)
        if input.ndim < 1:
            raise ValueError(f"{self.name}: expected logits of shape (C,), (N, C) or (N, C, d1, ...), "
                             f"got {input.shape}")
        axis = 1 if input.ndim > 1 else 0                  # the class axis; (C,) is one unbatched sample
        classes, dtype = input.shape[axis], input.dtype
        weight = _check_class_weight(self.name, self.weight, classes)
        w = np.ones(classes, dtype) if weight is None else weight.astype(dtype)
        # Classes last, every other axis flattened into rows: (M, C) with M = N*d1*...
        z = np.moveaxis(input, axis, -1).reshape(-1, classes)
        out_shape = input.shape[:axis] + input.shape[axis + 1:]
        eps = dtype.type(self.label_smoothing)
        if isinstance(target, np.ndarray) and target.dtype.kind == "f":
            if target.shape != input.shape or target.dtype != dtype:
                raise ValueError(f"{self.name}: class-probability targets must have the input's shape {input.shape} "
                                 f"and dtype {dtype}, got {target.dtype} {target.shape}")
            if self.ignore_index >= 0:
                raise ValueError(f"{self.name}: ignore_index ({self.ignore_index}) is not supported with "
                                 "class-probability targets (as in PyTorch); leave it at -100")
            q = np.moveaxis(target, axis, -1).reshape(-1, classes)
            coef = (q * (1 - eps) + eps / classes) * w
            divisor = float(z.shape[0])
        else:
            _check_class_indices(self.name, target, out_shape, classes, self.ignore_index)
            t = target.reshape(-1)
            kept = t != self.ignore_index
            rows, t_kept = np.flatnonzero(kept), t[kept]
            coef = np.zeros_like(z)
            if eps:
                coef[rows] = (eps / classes) * w
            coef[rows, t_kept] += (1 - eps) * w[t_kept]
            divisor = float(w[t_kept].sum(dtype=np.float64))
        log_p = log_softmax(z)
        losses = -(coef * log_p).sum(axis=1)

        def grad_per_loss(g: np.ndarray) -> np.ndarray:
            g = g.reshape(-1, 1)
            dz = (coef.sum(axis=1, keepdims=True) * np.exp(log_p) - coef) * g
            return np.moveaxis(dz.reshape(*out_shape, classes), -1, axis)

        return self._reduce(losses.reshape(out_shape), divisor, grad_per_loss, dtype)

    def extra_repr(self) -> str:
        return (f"weight={None if self.weight is None else self.weight.shape}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}")


class MultiMarginLoss(_Loss):
    """``nn.MultiMarginLoss(p=1, margin=1.0, weight=None, reduction="mean")``: the multi-class hinge.

    For scores ``x`` (N, K) (or (K,), one sample) and target classes ``tau`` (N,), with
    ``xi[n, k] = margin - x[n, tau_n] + x[n, k]`` (``z`` in the code) and the exponent ``P = p``::

        l[n] = w[tau_n] / K * sum_{k != tau_n} max(0, xi[n, k])^P
        dl[n]/dx[n, k] = w[tau_n] / K * P xi^(P-1) [xi > 0]        (k != tau_n)
        dl[n]/dx[n, tau_n] = -sum_{k != tau_n} dl[n]/dx[n, k]

    The division by the number of classes K is PyTorch's (the guide's hinge has none). At exactly
    ``xi = 0`` the gradient is 0, as in PyTorch (its kernel tests ``xi > 0``).

    Chapter: docs/13-losses.md.
    """

    def __init__(self, p: int = 1, margin: float = 1.0, weight: np.ndarray | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got {p!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or not np.isfinite(margin):
            raise ValueError(f"MultiMarginLoss: margin must be a finite number, got {margin!r}")
        self.p, self.margin = int(p), float(margin)
        self.weight = _check_class_weight("MultiMarginLoss", weight)

    def forward(self, input: np.ndarray, target: np.ndarray):
        self._check_input(input)
        if input.ndim not in (1, 2):
            raise ValueError(f"{self.name}: expected scores of shape (N, C) or (C,), got {input.shape}")
        unbatched = input.ndim == 1
        if unbatched:
            # One sample, as PyTorch allows: target () or (1,); reduction "none" gives a loss of that shape.
            if not isinstance(target, np.ndarray) or target.shape not in ((), (1,)):
                raise ValueError(f"{self.name}: for scores of shape (C,) the target must be one class index "
                                 f"of shape () or (1,), got {getattr(target, 'shape', type(target).__name__)}")
            target_shape, input, target = target.shape, input[None], target.reshape(1)
        n, classes = input.shape
        dtype = input.dtype
        _check_class_indices(self.name, target, (n,), classes)
        weight = _check_class_weight(self.name, self.weight, classes)
        rows = np.arange(n)
        z = dtype.type(self.margin) - input[rows, target][:, None] + input      # (N, C)
        active = z > 0
        active[rows, target] = False                                            # j == y_n is not summed
        zp = np.where(active, z, 0)
        scale = np.full(n, 1 / classes, dtype) if weight is None else weight.astype(dtype)[target] / classes
        losses = (zp if self.p == 1 else zp * zp).sum(axis=1) * scale

        def grad_per_loss(g: np.ndarray) -> np.ndarray:
            dx = (active if self.p == 1 else 2 * zp) * (g.reshape(n) * scale)[:, None]
            dx = dx.astype(dtype, copy=False)
            dx[rows, target] = -dx.sum(axis=1)
            return dx[0] if unbatched else dx

        return self._reduce(losses.reshape(target_shape) if unbatched else losses, float(n), grad_per_loss, dtype)

    def extra_repr(self) -> str:
        return (f"p={self.p}, margin={self.margin}, weight={None if self.weight is None else self.weight.shape}, "
                f"reduction={self.reduction!r}")

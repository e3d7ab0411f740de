"""Batch normalization over channels (PyTorch's ``nn.BatchNorm2d``), forward and backward.

Notation (docs/05-batch-normalization.md): input ``x`` (N, C, H, W); the statistics of channel c are
taken over its ``n_c = N*H*W`` values (``m`` in the code). In training::

    mu      = mean(x)                          over (n, h, w), per channel
    var     = mean((x - mu)^2)                 the *biased* variance (divide by n_c)
    inv_std = 1 / sqrt(var + eps)
    x_hat   = (x - mu) * inv_std
    y       = gamma * x_hat + beta             gamma = ``weight``, beta = ``bias``

and the running statistics move towards the batch's (momentum is the weight of the *new* value)::

    running_mean = (1 - momentum) * running_mean + momentum * mu
    running_var  = (1 - momentum) * running_var  + momentum * var * n_c / (n_c - 1)   (unbiased)

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

Speed: every pass over an (N, C, H, W) array costs about the same, so the code counts them. The arithmetic
is written with ``out=`` and in-place operators, so that each line is one pass and no temporary array is
allocated that an existing buffer can hold. Sums of products (``var``'s squares, ``dgamma``'s ``g * x_hat``)
go through :func:`row_dots` (:func:`channel_dots` for a whole array), an einsum dot product per row that
never stores the product. Each group of passes that needs no new statistic runs as one :func:`parallel.run`,
every thread doing all of the group's passes on its own images: three groups forward (the row sums;
``x - mu`` and its rows' squares; the scaling), two backward (the rows' sums of ``g`` and ``g * x_hat``; the
passes of ``dx``). Handing work to a thread costs about as much as one pass over a million numbers, so
paying it once per group rather than once per pass is faster; the per-row results, finished by
:func:`channel_total` in a fixed order, are the same for any number of threads. In evaluation under
``no_grad``, :func:`batchnorm2d_inference` folds the layer into one affine map per channel (two passes).
"""

from __future__ import annotations

import numpy as np

from . import parallel
from .module import (
    Layer,
    Parameter,
    check_input,
    empty_laid_out_as,
    grad_enabled,
    is_batch_last,
    laid_out_as,
    per_channel,
    require_float_dtype,
)

_channel = per_channel   # (C,) -> (1, C, H, W) for x.shape, or (1, C, 1, 1) (scratch/module.py)


def row_sums(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Stage one of :func:`channel_sums`: ``out[n, c]`` = the sum of row (n, c) of ``a`` (N, C, ...), in
    ``a``'s dtype, by ``np.einsum``. Runs in the calling thread (a part of :func:`parallel.run`).

    Chapter: docs/05-batch-normalization.md.
    """
    return np.einsum("ncp->nc", a.reshape(*a.shape[:2], -1), out=out)


def row_dots(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Stage one of :func:`channel_dots`: ``out[n, c]`` = the dot product of rows (n, c) of ``a`` and ``b``,
    without storing ``a * b``. Runs in the calling thread (a part of :func:`parallel.run`).

    Chapter: docs/05-batch-normalization.md.
    """
    return np.einsum("ncp,ncp->nc", a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1), out=out)


def channel_total(rows: np.ndarray) -> np.ndarray:
    """Stage two: the N per-image partial results ``rows`` (N, C) of each channel added in float64.

    Chapter: docs/05-batch-normalization.md.
    """
    return rows.sum(axis=0, dtype=np.float64)


def channel_sums(a: np.ndarray) -> np.ndarray:
    """Per-channel sum of ``a`` (N, C, H, W) over (n, h, w), as float64 (see the module docstring).

    Chapter: docs/05-batch-normalization.md.
    """
    rows = np.empty(a.shape[:2], a.dtype)
    parallel.run(lambda part: row_sums(a[part], out=rows[part]), len(a), a.size)
    return channel_total(rows)


def channel_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel sum of ``a * b`` over (n, h, w), as float64, without making ``a * b`` (see the module
    docstring).

    Chapter: docs/05-batch-normalization.md.
    """
    rows = np.empty(a.shape[:2], a.dtype)
    parallel.run(lambda part: row_dots(a[part], b[part], out=rows[part]), len(a), 2 * a.size)
    return channel_total(rows)


#: The longest run a row sum of :func:`walk`'s view adds up (batch last), in numbers.
ROW_NUMBERS = 384


def walk(a: np.ndarray) -> np.ndarray:
    """The (N, C, H, W)-shaped array this module's passes run over: ``a`` itself when it is NCHW, and for
    a batch-last ``a`` (scratch/module.py) an (R, C, 1, P) view of the same memory, in which each "image"
    is a piece of one row h of every channel and each "plane" that piece's P numbers: whole pixels, each
    with its N images, one run in memory. The passes cut the "images" between the cores and sum each
    plane in the input's dtype, so batch last they cut row pieces and sum runs of P numbers, without a
    transpose. A row is cut into the fewest pieces of at most :data:`ROW_NUMBERS` numbers (P = W*N / k for
    the smallest k dividing W): the longer a float32 sum, the larger its rounding error (batch-norm 1's
    batch mean at batch 64: 1.3e-7 relative with whole rows of 1,536 numbers, 2.5e-8 with pieces of 384,
    1.3e-8 NCHW, rows of 576), and pieces cost no measurable time. Each channel's numbers are the same in
    either layout, so are the statistics, up to the order of the additions.

    Chapter: docs/05-batch-normalization.md.
    """
    if not is_batch_last(a):
        return a
    n, c, h, w = a.shape
    pieces = next(k for k in range(1, w + 1) if (w % k == 0 and w // k * n <= ROW_NUMBERS) or k == w)
    return a.transpose(1, 2, 3, 0).reshape(c, h * pieces, 1, w // pieces * n).transpose(1, 0, 2, 3)


def constant_planes(x: np.ndarray) -> tuple[int, ...] | None:
    """The shape to repeat the per-channel constants over (:func:`~scratch.module.per_channel`): whole
    (C, H, W) images for NCHW ``x``, whose planes are short runs; nothing for batch-last ``x``, whose
    :func:`walk` rows are long runs already (a constant of shape (1, C, 1, 1) is fastest there: measured
    on batch-norm 1's input, batch last, 0.52 ms forward against 0.75 with (1, C, 1, W*N) constants).

    Chapter: docs/05-batch-normalization.md.
    """
    return None if is_batch_last(x) else x.shape


def batchnorm2d_forward(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                        running_mean: np.ndarray | None, running_var: np.ndarray | None, training: bool,
                        momentum: float, eps: float, overwrite_x: bool = False):
    """``y = gamma * x_hat + beta``. In training, updates ``running_*`` in place. Returns ``(y, cache)``.

    ``gamma``/``beta`` ``None``: no affine transform (``affine=False``; ``beta`` alone for ``bias=False``),
    i.e. gamma = 1 and beta = 0. ``running_*`` ``None`` (``track_running_stats=False``): nothing is
    tracked, and the batch statistics are used in evaluation too (``training`` is then ignored).

    The passes between two statistics run as one :func:`parallel.run` each (module docstring, "Speed").

    ``overwrite_x``: ``x_hat`` is computed in ``x``'s own memory, for a caller that never reads ``x`` again
    (docs/05-batch-normalization.md, "Memory"). Each number of ``x`` is read (for the mean, then for
    ``x - mu``) before its ``x_hat`` is written over it, so the result is the same.

    Chapter: docs/05-batch-normalization.md.
    """
    training = training or running_mean is None or running_var is None
    in_place = overwrite_x and x.flags.writeable and (x.flags.c_contiguous or is_batch_last(x))
    x_hat_out = x if in_place else empty_laid_out_as(x)             # laid out as x (NCHW or batch last)
    y_out = empty_laid_out_as(x)
    planes = constant_planes(x)
    x, x_hat, y = walk(x), walk(x_hat_out), walk(y_out)
    if training:
        m = x.size // x.shape[1]
        mu = channel_sums(x) / m                                     # float64
        mu_c = _channel(mu.astype(x.dtype), planes)
        row_squares = np.empty(x.shape[:2], x.dtype)

        def center(part: slice) -> None:       # the images ``part``, on one core (scratch/parallel.py)
            np.subtract(x[part], mu_c, out=x_hat[part])               # x - mu (x_hat once scaled)
            row_dots(x_hat[part], x_hat[part], out=row_squares[part])

        parallel.run(center, len(x), 2 * x.size)
        var = channel_total(row_squares) / m                         # biased: divides by m
        if running_mean is not None and running_var is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mu
            running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
    else:
        assert running_mean is not None and running_var is not None   # (training is set when either is None)
        mu, var = running_mean, running_var
        mu_c = _channel(mu, planes)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    inv_std_c = _channel(inv_std, planes)
    gamma_c = None if gamma is None else _channel(gamma, planes)
    beta_c = None if beta is None else _channel(beta, planes)

    def normalize(part: slice) -> None:        # the images ``part``, on one core (scratch/parallel.py)
        if not training:
            np.subtract(x[part], mu_c, out=x_hat[part])
        np.multiply(x_hat[part], inv_std_c, out=x_hat[part])
        if gamma_c is not None:
            np.multiply(x_hat[part], gamma_c, out=y[part])
        else:
            y[part] = x_hat[part]
        if beta_c is not None:
            np.add(y[part], beta_c, out=y[part])

    parallel.run(normalize, len(x), 3 * x.size)
    return y_out, (x_hat_out, inv_std, gamma, training)


def inference_affine(gamma: np.ndarray | None, beta: np.ndarray | None, running_mean: np.ndarray,
                     running_var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation mode's layer as one affine map per channel, ``y = x * scale + shift``, in float64::

        scale = gamma * inv_std,   shift = beta - running_mean * scale,   inv_std = 1 / sqrt(running_var + eps)

    (gamma = 1 and beta = 0 where the layer has none.)

    Chapter: docs/05-batch-normalization.md.
    """
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    scale = inv_std if gamma is None else gamma * inv_std
    shift = -running_mean * scale if beta is None else beta - running_mean * scale
    return scale, shift


def batchnorm2d_inference(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                          running_mean: np.ndarray, running_var: np.ndarray, eps: float) -> np.ndarray:
    """``y`` in evaluation mode alone, for forward passes that keep no cache (``no_grad``).

    With the running statistics fixed, the layer is one affine map per channel; its two constants are
    folded first (C numbers each), so the (N, C, H, W) array is read once and written in two passes
    instead of four, and ``x_hat`` (kept only for backward) is never made::

        scale = gamma * inv_std,   shift = beta - mu * scale,   y = x * scale + shift

    PyTorch's CPU kernel folds evaluation mode the same way. The result equals
    :func:`batchnorm2d_forward`'s up to float rounding.

    Chapter: docs/05-batch-normalization.md.
    """
    scale, shift = inference_affine(gamma, beta, running_mean, running_var, eps)
    y_out, planes = empty_laid_out_as(x), constant_planes(x)
    x, y = walk(x), walk(y_out)
    scale_c, shift_c = _channel(scale.astype(x.dtype), planes), _channel(shift.astype(x.dtype), planes)

    def affine(part: slice) -> None:           # the images ``part``, on one core (scratch/parallel.py)
        np.multiply(x[part], scale_c, out=y[part])
        np.add(y[part], shift_c, out=y[part])

    parallel.run(affine, len(x), 2 * x.size)
    return y_out


def batchnorm2d_backward(grad_out: np.ndarray, cache, overwrite_x_hat: bool = False):
    """Gradients ``(dx, dgamma, dbeta)`` from ``grad_out = dL/dy`` (see the module docstring).

    Without ``gamma`` (``affine=False``) the formulas hold with gamma = 1; ``dgamma`` is still returned
    (the caller drops what it has no parameter for).

    ``overwrite_x_hat``: ``dx`` is written in the memory of the cache's ``x_hat``, for a caller that uses
    the cache once (:meth:`BatchNorm2d.backward`). Each number of ``x_hat`` is read (for ``dgamma``, then for
    its own ``dx``) before its ``dx`` is written over it, so the result is the same.

    Chapter: docs/05-batch-normalization.md.
    """
    x_hat_in, inv_std, gamma, training = cache
    dx_out = x_hat_in if overwrite_x_hat else empty_laid_out_as(x_hat_in)
    planes = constant_planes(x_hat_in)
    g, x_hat, dx = walk(laid_out_as(grad_out, x_hat_in)), walk(x_hat_in), walk(dx_out)
    n, m = len(g), g.size // g.shape[1]
    g_rows, g_xhat_rows = np.empty(g.shape[:2], g.dtype), np.empty(g.shape[:2], g.dtype)

    def reduce(part: slice) -> None:           # the images ``part``, on one core (scratch/parallel.py)
        row_sums(g[part], out=g_rows[part])
        row_dots(g[part], x_hat[part], out=g_xhat_rows[part])    # g * x_hat never stored

    parallel.run(reduce, n, 2 * g.size)
    dbeta, dgamma = channel_total(g_rows), channel_total(g_xhat_rows)       # sum(g), sum(g * x_hat)
    scale = _channel(inv_std if gamma is None else gamma * inv_std, planes)
    minus_mean_g = _channel((-dbeta / m).astype(g.dtype), planes)
    minus_mean_g_xhat = _channel((-dgamma / m).astype(g.dtype), planes)

    def input_gradient(part: slice) -> None:   # the images ``part``, on one core (scratch/parallel.py)
        if not training:                       # the statistics are constants
            np.multiply(g[part], scale, out=dx[part])
            return
        # dx = scale * (x_hat * (-mean(g * x_hat)) - mean(g) + g), one pass per operation:
        np.multiply(x_hat[part], minus_mean_g_xhat, out=dx[part])
        np.add(dx[part], minus_mean_g, out=dx[part])
        np.add(dx[part], g[part], out=dx[part])
        np.multiply(dx[part], scale, out=dx[part])

    parallel.run(input_gradient, n, (3 if training else 2) * g.size)
    return dx_out, dgamma.astype(g.dtype), dbeta.astype(g.dtype)


class BatchNorm2d(Layer):
    """``nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
    bias=True)`` in NumPy, arguments in torch's order (torch's ``device``/``dtype`` become the keyword
    ``dtype``).

    ``momentum=None`` gives PyTorch's cumulative moving average (momentum ``1 / num_batches_tracked``).
    ``affine=False``: no ``weight``/``bias`` (gamma = 1, beta = 0), none in the state dict.
    ``bias=False`` (torch 2.13's keyword): a ``weight`` but no ``bias``.
    ``track_running_stats=False``: no buffers, and batch statistics in evaluation mode too.
    Inputs must be 4-D (N, C, H, W), as for torch's BatchNorm2d.

    Chapter: docs/05-batch-normalization.md.
    """

    buffer_names: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, bias: bool = True, dtype=np.float32):
        super().__init__()
        dtype = require_float_dtype(dtype)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        if self.num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be positive, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1] or None, got {momentum}")
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.weight = Parameter(np.ones(self.num_features, dtype=dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(self.num_features, dtype=dtype)) if self.affine and bias else None
        self.dtype = dtype
        if self.track_running_stats:
            self.running_mean: np.ndarray | None = np.zeros(self.num_features, dtype=dtype)
            self.running_var: np.ndarray | None = np.ones(self.num_features, dtype=dtype)
            self.num_batches_tracked: np.ndarray | None = np.array(0, dtype=np.int64)
        else:   # as torch: the attributes exist and are None, and the state dict has no buffers
            self.running_mean = self.running_var = self.num_batches_tracked = None
            self.buffer_names = ()

    def forward(self, x: np.ndarray, overwrite_input: bool = False) -> np.ndarray:
        """Normalize ``x``. ``overwrite_input=True`` lets the layer keep ``x_hat`` in ``x``'s memory: for a
        caller that never reads ``x`` again (:class:`~scratch.model.Sequential` passes it after a
        convolution, whose output nothing else holds; docs/05-batch-normalization.md, "Memory")."""
        check_input(self, x, 4, "(N, C, H, W)", self.dtype, self.num_features)
        momentum = self.momentum
        batch_statistics = self.training or not self.track_running_stats
        if batch_statistics and x.size // x.shape[1] < 2:
            raise ValueError(f"{self.name}: expected more than 1 value per channel when training, "
                             f"got input shape {x.shape}")
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        gamma = None if self.weight is None else self.weight.data
        beta = None if self.bias is None else self.bias.data
        if not batch_statistics and not grad_enabled():
            assert self.running_mean is not None and self.running_var is not None   # tracked: not batch statistics
            return batchnorm2d_inference(x, gamma, beta, self.running_mean, self.running_var, self.eps)
        y, cache = batchnorm2d_forward(x, gamma, beta, self.running_mean, self.running_var, batch_statistics,
                                       momentum or 0.0, self.eps, overwrite_x=overwrite_input)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        # the cache is used once: dx can take x_hat's memory, which is read in the same pass (docs/05, "Memory")
        dx, dgamma, dbeta = batchnorm2d_backward(grad_out, self._take_cache(), overwrite_x_hat=True)
        if self.weight is not None:
            self.weight.grad = dgamma
        if self.bias is not None:
            self.bias.grad = dbeta
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

"""2-D max-pooling (PyTorch's ``nn.MaxPool2d``) and average pooling (``nn.AvgPool2d``, at the end of this
module, docs/12-average-pooling.md), forward and backward.

Notation (docs/04-max-pooling.md): input ``x`` (N, C, H, W), kernel (kh, kw), stride s (default: the
kernel), padding p (implicit -inf, at most half the kernel), dilation d. Window (i, j) of
channel (n, c) covers ``xp[n, c, s_h i + d_h u, s_w j + d_w v]`` for the kernel offsets (u, v)::

    y[n, c, i, j] = max_{u, v} xp[n, c, s_h i + d_h u, s_w j + d_w v]

The max is piecewise the identity on one input: the *winner* of the window. So the backward pass
routes each output gradient to its window's winner and sends nothing to the others::

    dL/dx[pixel] = sum over the windows whose winner is that pixel of dL/dy[window]

It is a *sum* because windows overlap when ``stride < d (k - 1) + 1`` (the dilated kernel's span): one
pixel can win several windows.

Ties follow PyTorch's CPU kernel exactly: it scans a window row by row and replaces the running
maximum only on a strictly greater value (or a NaN), so the *first* maximum in scan order wins and
gets the whole gradient. (Sending it to every tied maximum is a classic bug: ties are common on
MNIST's constant background after ReLU.)

Vectorization: one loop over the kh*kw kernel offsets, never over pixels. For offset (u, v) the
strided slice ``xp[:, :, d_h u::s_h, d_w v::s_w]`` (rows ``d_h u, d_h u + s_h, ...``, cut to Ho rows
and Wo columns) holds that offset's candidate for *every* window at once.

* Forward copies the kh*kw slices into one contiguous array ``candidates`` of shape
  (kh*kw, N, C, Ho, Wo): ``candidates[k]`` is entry k (scan order, k = u*kw + v) of every window. The
  copies are the only strided memory traffic; everything after runs on contiguous planes, which NumPy
  processes several times faster than strided slices: ``y = candidates.max(axis=0)``.
* Backward finds the winners from ``candidates`` and ``y`` (training needs them; evaluation under
  ``no_grad`` never pays for them): ``candidates[k] == y`` marks every maximum, and keeping only the
  first True along the k axis applies the scan-order tie rule. The gradient times the 0/1 winner mask
  of each offset goes into that offset's slice; no per-element scatter (``np.add.at``) is needed
  because, for one offset, different windows hit different pixels. Windows that overlap (stride <
  kernel) add their offsets' contributions; windows that do not overlap (the common 2x2, stride 2
  case) simply write. (Multiplying by the mask is 3x faster than ``np.where(mask, g, 0)``; the two
  differ only for an infinite or NaN upstream gradient, where ``inf * 0`` gives NaN instead of 0, so
  such a gradient, checked once per call, takes the ``np.where`` path: the losers get 0, as in torch.)
* NaN: a window containing NaN has ``y = NaN`` (``max`` propagates it, as PyTorch does), and since
  PyTorch's scan also replaces the running maximum on *every* NaN, the *last* NaN wins there.
"""

from __future__ import annotations

import numpy as np

from . import parallel
from .conv import _offset_slice
from .module import (
    Layer,
    as_pair,
    check_image_input,
    empty_laid_out_as,
    grad_enabled,
    is_batch_last,
    laid_out_as,
    memory_order,
)

Pair = tuple[int, int]


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """Output length along one axis, PyTorch's ``pooling_output_shape`` (ceil mode included).

    Chapter: docs/04-max-pooling.md.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input or the left padding
    return out


def _window_entry(x_pad: np.ndarray, k: int, kernel: Pair, stride: Pair, dilation: Pair,
                  out_hw: Pair) -> np.ndarray:
    """View of entry ``k`` (scan order) of every window: ``x_pad[:, :, s_h i + d_h u, s_w j + d_w v]``."""
    u, v = divmod(k, kernel[1])
    return x_pad[:, :, _offset_slice(u * dilation[0], out_hw[0], stride[0]),
                 _offset_slice(v * dilation[1], out_hw[1], stride[1])]


def _keep_first(mask: np.ndarray) -> np.ndarray:
    """In place, along axis 0: keep only the first True of every column (the scan-order tie rule)."""
    seen = mask[0].copy(order="K")                 # laid out as the mask (NCHW or batch last)
    for k in range(1, len(mask)):
        mask[k] &= ~seen
        seen |= mask[k]
    return mask


def _pad_with_minus_inf(x: np.ndarray, out_hw: Pair, kernel: Pair, stride: Pair, padding: Pair,
                        dilation: Pair) -> np.ndarray:
    """``x`` padded with -inf (padding never wins); ceil mode may need a little more room on the
    right/bottom. ``x`` itself when no padding is needed."""
    n, c, h, w = x.shape
    (ho, wo), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = out_hw, kernel, stride, padding, dilation
    pad_bottom = max((ho - 1) * sh + dh * (kh - 1) + 1 - h - ph, 0)
    pad_right = max((wo - 1) * sw + dw * (kw - 1) + 1 - w - pw, 0)
    if not (ph or pw or pad_bottom or pad_right):
        return x
    x_pad = empty_laid_out_as(x, (n, c, ph + h + pad_bottom, pw + w + pad_right))
    x_pad[...] = -np.inf
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    return x_pad


def _max_windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                 ceil_mode: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """The input padded with -inf (padding never wins a max) and the output size ``(ho, wo)``."""
    h, w = x.shape[2:]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    return _pad_with_minus_inf(x, (ho, wo), kernel, stride, padding, dilation), (ho, wo)


def _part(a: np.ndarray, part: slice) -> tuple[slice, ...]:
    """The index of one core's part of the (N, C, ...) array ``a`` (scratch/parallel.py): ``part`` of the
    first axis of :func:`~scratch.module.memory_order` ``(a)``, so images for NCHW, channels for batch last,
    whose images are side by side in every run of memory."""
    return (slice(None), part) if is_batch_last(a) else (part,)


def maxpool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
                      dilation: Pair = (1, 1), ceil_mode: bool = False, floor: float | None = None):
    """``y = maxpool(x)``. Returns ``(y, cache)``; the cache holds every window's entries and ``y``.

    ``floor`` starts every window's maximum there, ``y = max(floor, window)`` (NaN still propagates), as in
    :func:`maxpool2d_inference`: with ``floor=0`` this is the max-pool of ReLU's output
    (:meth:`MaxPool2d.forward` explains the backward pass that goes with it).

    Chapter: docs/04-max-pooling.md.
    """
    n, c = x.shape[:2]
    kh, kw = kernel
    x_pad, (ho, wo) = _max_windows(x, kernel, stride, padding, dilation, ceil_mode)
    y = empty_laid_out_as(x, (n, c, ho, wo))       # laid out as x: NCHW, or batch last
    candidates = empty_laid_out_as(y, (kh * kw, *y.shape))   # (kh*kw, N, C, Ho, Wo), each entry laid out as y

    def pool_part(part: slice) -> None:            # images or channels ``part``, on one core (scratch/parallel.py)
        where = _part(y, part)
        entries = candidates[(slice(None), *where)]
        for k in range(kh * kw):                   # scan order: row by row, like PyTorch
            entries[k] = _window_entry(x_pad[where], k, kernel, stride, dilation, (ho, wo))
        if floor is None:
            np.max(entries, axis=0, out=y[where])  # NaN propagates, as in PyTorch
        else:
            np.max(entries, axis=0, out=y[where], initial=x.dtype.type(floor))

    parallel.run(pool_part, len(memory_order(y)), candidates.size)
    # The cache keeps its own copy of y: whatever the caller later does with the returned array, the
    # winners found in backward stay right.
    cache = (candidates, y.copy(order="K"), x_pad.shape, x.shape, kernel, stride, padding, dilation)
    return y, cache


def maxpool2d_inference(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
                        dilation: Pair = (1, 1), ceil_mode: bool = False, floor: float | None = None) -> np.ndarray:
    """``y = maxpool(x)`` alone, for forward passes that keep no cache (evaluation under ``no_grad``).

    The same maximum as :func:`maxpool2d_forward` without the ``candidates`` array that only the
    winners need: a running ``np.maximum`` over the kh*kw strided slices, written into ``y``. Max is
    exact, so the result is bit-identical (NaN propagates through ``np.maximum`` as through ``max``).

    ``floor`` starts every window's running maximum there: ``max(floor, window)``. With ``floor=0`` that is
    the max-pool of ReLU's output, ``max(relu(window)) = max(0, window)``, computed without ReLU's pass
    (scratch/inference.py). ``y`` is laid out in memory as ``x`` is: an ``x`` that is batch last in
    memory (a view that :func:`~scratch.conv.conv2d_forward` returns) gives a batch-last ``y``, whose
    slices are runs of N numbers.

    Chapter: docs/04-max-pooling.md.
    """
    n, c = x.shape[:2]
    kh, kw = kernel
    x_pad, (ho, wo) = _max_windows(x, kernel, stride, padding, dilation, ceil_mode)
    y = empty_laid_out_as(x, (n, c, ho, wo))       # laid out as x: NCHW, or batch last

    def pool_part(part: slice) -> None:            # images or channels ``part``, on one core (scratch/parallel.py)
        where = _part(y, part)
        x_part, y_part = x_pad[where], y[where]
        first = _window_entry(x_part, 0, kernel, stride, dilation, (ho, wo))
        if floor is None:
            y_part[...] = first
        else:
            np.maximum(first, x.dtype.type(floor), out=y_part)
        for k in range(1, kh * kw):
            np.maximum(y_part, _window_entry(x_part, k, kernel, stride, dilation, (ho, wo)), out=y_part)

    parallel.run(pool_part, len(memory_order(y)), x_pad.size)
    return y


def _inside_input(kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, out_hw: Pair,
                  input_hw: Pair) -> np.ndarray:
    """(kh*kw, 1, 1, Ho, Wo) mask: entry k of window (i, j) is a real input pixel, not padding."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo), (h, w) = kernel, stride, padding, dilation, out_hw, input_hw
    rows = np.arange(kh)[:, None] * dh + np.arange(ho) * sh - ph          # (kh, Ho) input row of entry u
    cols = np.arange(kw)[:, None] * dw + np.arange(wo) * sw - pw          # (kw, Wo)
    rows_in, cols_in = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    inside = rows_in[:, None, :, None] & cols_in[None, :, None, :]         # (kh, kw, Ho, Wo)
    return inside.reshape(kh * kw, 1, 1, ho, wo)


def _winners(cache, where: tuple[slice, ...] = ()) -> np.ndarray:
    """(kh*kw, N, C, Ho, Wo) 0/1 mask: entry k is its window's winner (PyTorch's tie and NaN rules).
    Only for the part ``where`` (images or channels, :func:`_part`), when it is given."""
    candidates, y, padded_shape, input_shape, kernel, stride, (ph, pw), dilation = cache
    candidates, y = candidates[(slice(None), *where)], y[where]
    # The winner of each window: the first entry equal to the max, or, where the max is NaN, the last NaN.
    is_max = candidates == y
    if padded_shape != input_shape:
        # Padding cells hold -inf: they can only "equal" the max of a window whose real values are all
        # -inf, and PyTorch never picks them (its scan starts at the first real pixel).
        is_max &= _inside_input(kernel, stride, (ph, pw), dilation, y.shape[2:], input_shape[2:])
    is_winner = _keep_first(is_max)
    nan_windows = np.isnan(y)
    if nan_windows.any():                          # rare: only with NaN in the input
        last_nan = _keep_first(np.isnan(candidates)[::-1])[::-1]
        is_winner[:, nan_windows] = last_nan[:, nan_windows]
    return is_winner


def maxpool2d_indices(cache) -> np.ndarray:
    """PyTorch's ``return_indices``: for each window, its winner's flat index ``row * W + col`` within
    its own (H, W) input plane, as int64. The winner is never a padding cell (see :func:`_winners`).

    Chapter: docs/04-max-pooling.md.
    """
    _, y, _, input_shape, (_, kw), (sh, sw), (ph, pw), (dh, dw) = cache
    k = _winners(cache).argmax(axis=0)                           # (N, C, Ho, Wo): winner's entry
    u, v = np.divmod(k, kw)
    rows = np.arange(y.shape[2]).reshape(-1, 1) * sh + u * dh - ph
    cols = np.arange(y.shape[3]) * sw + v * dw - pw
    return (rows * input_shape[3] + cols).astype(np.int64)


def maxpool2d_backward(grad_out: np.ndarray, cache) -> np.ndarray:
    """``dL/dx``: every window's gradient goes to its winner; overlapping windows add up.

    Chapter: docs/04-max-pooling.md.
    """
    _, _, padded_shape, input_shape, kernel, stride, (ph, pw), dilation = cache
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    overlapping = sh < dh * (kh - 1) + 1 or sw < dw * (kw - 1) + 1
    y = cache[1]
    # every pixel in exactly one window (2x2 windows, stride 2, even sizes): the writes below cover dx
    tiled = ((dh, dw) == (1, 1) and (sh, sw) == (kh, kw)
             and tuple(padded_shape[2:]) == (kh * y.shape[2], kw * y.shape[3]))
    grad_out = laid_out_as(grad_out, y)
    dx_pad = empty_laid_out_as(y, padded_shape, grad_out.dtype)

    def route_part(part: slice) -> None:           # images or channels ``part``, on one core (scratch/parallel.py)
        where = _part(y, part)
        is_winner, g, dx = _winners(cache, where), grad_out[where], dx_pad[where]
        finite = bool(np.isfinite(g).all())
        if not (tiled and finite):
            dx[...] = 0
        for k in range(kh * kw):
            target = _window_entry(dx, k, kernel, stride, dilation, g.shape[2:])
            if not finite:                         # rare: inf * 0 would be NaN; torch gives the losers 0
                target += np.where(is_winner[k], g, 0)
            elif overlapping:
                target += g * is_winner[k]
            else:                                  # each pixel is in one window at most: write
                np.multiply(g, is_winner[k], out=target)

    parallel.run(route_part, len(memory_order(y)), dx_pad.size)
    h, w = input_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d(Layer):
    """``nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False)`` in NumPy, arguments in torch's order.

    Inputs are (N, C, H, W) or one unbatched image (C, H, W). With ``return_indices=True`` the forward
    pass returns ``(output, indices)``: each window's winner as a flat index into its (H, W) plane, int64,
    as torch does (what ``nn.MaxUnpool2d`` takes); backward still takes the gradient of the output alone.

    Chapter: docs/04-max-pooling.md.
    """

    #: ``dx = backward_function(grad_out, cache)`` for batched input (the exercises plug a learner's in here).
    backward_function = staticmethod(maxpool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = as_pair(stride if stride is not None else kernel_size, "stride")
        self.padding = as_pair(padding, "padding")
        self.dilation = as_pair(dilation, "dilation")
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)
        if min(*self.kernel_size, *self.stride, *self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"MaxPool2d: kernel_size, stride, dilation must be positive and padding "
                             f">= 0, got kernel {self.kernel_size}, stride {self.stride}, "
                             f"padding {self.padding}, dilation {self.dilation}")
        if any(2 * p > k for k, p in zip(self.kernel_size, self.padding, strict=True)):
            raise ValueError(f"MaxPool2d: padding {self.padding} must be at most half of the kernel size "
                             f"{self.kernel_size} (as PyTorch requires)")

    def forward(self, x: np.ndarray, floor: float | None = None):
        """Pool ``x``; ``floor=0`` pools ``relu(x)`` without ReLU's pass (the merge of scratch/model.py).

        ``max(relu(window)) = max(0, window)``, so the output is the max-pool of ReLU's output, bit for bit.
        Backward, ReLU's derivative is 1 exactly where its input is positive; the only input of a window
        that gets a gradient is the winner, whose value is the output, so the gradient of the merged step
        is max-pool's backward of ``g * [y > 0]``: the windows whose maximum is not positive send
        nothing. That equals the two layers' backward passes, except for an infinite or NaN upstream
        gradient in such a window, which ReLU's multiply by 0 makes NaN and this makes 0, as torch's
        ReLU does."""
        if not grad_enabled() and not self.return_indices:
            return self.inference(x, floor)   # no cache to keep: skip the winners' candidates
        if floor is not None and self.return_indices:
            raise ValueError(f"{self.name}: floor is not supported with return_indices")
        x, unbatched = self._checked_input(x)
        y, cache = maxpool2d_forward(x, *self._geometry, floor=floor)
        self._keep((cache, unbatched, floor))
        if unbatched:
            y = y[0]
        if self.return_indices:
            indices = maxpool2d_indices(cache)
            return y, (indices[0] if unbatched else indices)
        return y

    def inference(self, x: np.ndarray, floor: float | None = None) -> np.ndarray:
        """The output alone, keeping nothing, with every window's maximum started at ``floor``
        (:func:`maxpool2d_inference`): ``floor=0`` pools ReLU's output without running the ReLU."""
        x, unbatched = self._checked_input(x)
        y = maxpool2d_inference(x, *self._geometry, floor=floor)
        return y[0] if unbatched else y

    @property
    def _geometry(self) -> tuple[Pair, Pair, Pair, Pair, bool]:
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def _checked_input(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """``x`` as (N, C, H, W) and whether it was one unbatched image, once it is known to fit the kernel."""
        x, unbatched = check_image_input(self, x)
        for size, k, p, d in zip(x.shape[2:], self.kernel_size, self.padding, self.dilation, strict=True):
            if size + 2 * p < d * (k - 1) + 1:
                raise ValueError(f"{self.name}: input {x.shape[2]}x{x.shape[3]} (padding {self.padding}) "
                                 f"is smaller than the kernel {self.kernel_size} (dilation {self.dilation})")
        return x, unbatched

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        cache, unbatched, floor = self._take_cache()
        g = grad_out[None] if unbatched else grad_out
        if floor is not None:                  # only windows whose maximum is above the floor pass
            above = cache[1] > floor
            # (a multiply is 3x faster than np.where; an infinite or NaN g takes np.where, as in
            # maxpool2d_backward, so that the windows that do not pass get 0, not inf * 0 = NaN)
            g = g * above if np.isfinite(g).all() else np.where(above, g, g.dtype.type(0))
        dx = self.backward_function(g, cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, return_indices={self.return_indices}, ceil_mode={self.ceil_mode}")



# --- average pooling (docs/12-average-pooling.md) ---------------------------------------------------

def avgpool_divisors(size: int, kernel: int, stride: int, padding: int, out: int,
                     count_include_pad: bool) -> np.ndarray:
    """Along one axis, how many positions window ``i`` divides by (PyTorch's ``avg_pool2d`` rule).

    Window ``i`` starts at ``start = i s - p`` and ends at ``end = min(start + k, size + p)``: it may
    cover padding (positions < 0 or >= size) but, in ceil mode, never more than the padding.
    ``count_include_pad`` divides by ``end - start``; otherwise by the input positions only,
    ``min(end, size) - max(start, 0)``. The 2-D divisor is the product of the row and column counts.

    Chapter: docs/12-average-pooling.md.
    """
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def avgpool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
                      ceil_mode: bool = False, count_include_pad: bool = True,
                      divisor_override: int | None = None):
    """``y = sum(window) / divisor``. Returns ``(y, cache)``; the cache holds the divisors and geometry.

    Zero padding adds nothing to a window's sum, so the sum is the same with or without it: only the
    divisor depends on ``count_include_pad``. One loop over the kh*kw kernel offsets adds the strided
    slice of every window's entry at once (as in max-pooling).

    Chapter: docs/12-average-pooling.md.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho = pool_output_size(h, kh, sh, ph, 1, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    pad_bottom = max((ho - 1) * sh + kh - h - ph, 0)
    pad_right = max((wo - 1) * sw + kw - w - pw, 0)
    if ph or pw or pad_bottom or pad_right:
        x_pad = empty_laid_out_as(x, (n, c, ph + h + pad_bottom, pw + w + pad_right))   # laid out as x
        x_pad[...] = 0
        x_pad[:, :, ph:ph + h, pw:pw + w] = x
    else:
        x_pad = x
    total = empty_laid_out_as(x, (n, c, ho, wo))
    total[...] = 0
    for k in range(kh * kw):
        total += _window_entry(x_pad, k, kernel, stride, (1, 1), (ho, wo))
    if divisor_override is not None:
        divisor = np.full((ho, wo), divisor_override, dtype=x.dtype)
    else:
        rows = avgpool_divisors(h, kh, sh, ph, ho, count_include_pad)
        cols = avgpool_divisors(w, kw, sw, pw, wo, count_include_pad)
        divisor = np.outer(rows, cols).astype(x.dtype)
    y = total / divisor
    cache = (divisor, x_pad.shape, x.shape, kernel, stride, padding)
    return y, cache


def avgpool2d_backward(grad_out: np.ndarray, cache) -> np.ndarray:
    """``dL/dx[pixel] = sum over the windows covering the pixel of dL/dy[window] / divisor[window]``.

    Every entry of a window gets the same share of its gradient; overlapping windows (stride < kernel)
    add their shares. Shares that land on padding are dropped by the final crop.

    Chapter: docs/12-average-pooling.md.
    """
    divisor, padded_shape, input_shape, kernel, stride, (ph, pw) = cache
    share = grad_out / divisor
    dx_pad = empty_laid_out_as(grad_out, padded_shape)                  # laid out as the gradient
    dx_pad[...] = 0
    for k in range(kernel[0] * kernel[1]):
        _window_entry(dx_pad, k, kernel, stride, (1, 1), grad_out.shape[2:])[...] += share
    h, w = input_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


class AvgPool2d(Layer):
    """``nn.AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None)`` in NumPy.

    Chapter: docs/12-average-pooling.md.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = as_pair(stride if stride is not None else kernel_size, "stride")
        self.padding = as_pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if min(*self.kernel_size, *self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"AvgPool2d: kernel_size and stride must be positive and padding >= 0, got "
                             f"kernel_size {self.kernel_size}, stride {self.stride}, padding {self.padding}")
        if any(2 * p > k for k, p in zip(self.kernel_size, self.padding, strict=True)):
            raise ValueError(f"AvgPool2d: padding {self.padding} must be at most half of the kernel_size "
                             f"{self.kernel_size} (as PyTorch requires)")
        if divisor_override is not None:
            if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)) \
                    or divisor_override == 0:
                raise ValueError(f"AvgPool2d: divisor_override must be a non-zero int or None, "
                                 f"got {divisor_override!r}")
            divisor_override = int(divisor_override)
        self.divisor_override = divisor_override

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, unbatched = check_image_input(self, x)     # (N, C, H, W) or one unbatched (C, H, W)
        for size, k, p in zip(x.shape[2:], self.kernel_size, self.padding, strict=True):
            if size + 2 * p < k:
                raise ValueError(f"{self.name}: input {x.shape[2]}x{x.shape[3]} (padding {self.padding}) "
                                 f"is smaller than the kernel_size {self.kernel_size}")
        y, cache = avgpool2d_forward(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                     self.count_include_pad, self.divisor_override)
        self._keep((cache, unbatched))
        return y[0] if unbatched else y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        cache, unbatched = self._take_cache()
        dx = avgpool2d_backward(grad_out[None] if unbatched else grad_out, cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}, "
                f"divisor_override={self.divisor_override}")

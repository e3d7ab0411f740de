"""Loop versions of the layers whose fast code uses a vectorization trick: read these first.

Each function computes exactly what its fast counterpart in ``conv.py`` / ``pool.py`` computes, one
output position at a time, straight from the definition. They are far too slow for training and are
used as a second oracle (besides PyTorch) in the tests.
"""

from __future__ import annotations

import numpy as np

from .conv import conv_output_size
from .pool import pool_output_size


def _pad(x: np.ndarray, padding, value=0.0) -> np.ndarray:
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv2d_forward_naive(x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """``y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] xp[n, c, s i + d u, s j + d v]``.

    Chapter: docs/03-convolution.md.
    """
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho, wo = conv_output_size(h, kh, sh, padding[0], dh), conv_output_size(w, kw, sw, padding[1], dw)
    xp = _pad(x, padding)
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            y[:, :, i, j] = np.einsum("ncuv,ocuv->no", patch, weight)
    if bias is not None:
        y += bias.reshape(1, o, 1, 1)
    return y


def conv2d_backward_naive(grad_out, x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """``(dx, dw, db)``: each output position adds ``g * patch`` to dw and ``g * w`` to its patch of dx.

    Chapter: docs/03-convolution.md.
    """
    _, _, kh, kw = weight.shape
    (sh, sw), (dh, dw_), (ph, pw) = stride, dilation, padding
    xp = _pad(x, padding)
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(weight)
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
            g = grad_out[:, :, i, j]                                   # (N, O)
            dweight += np.einsum("no,ncuv->ocuv", g, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("no,ocuv->ncuv", g, weight)
    dbias = grad_out.sum(axis=(0, 2, 3))
    return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], dweight, dbias


def _pool_windows(x, kernel, stride, padding, dilation, ceil_mode):
    """Yield ``(i, j, rows, cols)`` for every window, in padded-input coordinates."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = pool_output_size(x.shape[2], kh, sh, ph, dh, ceil_mode)
    wo = pool_output_size(x.shape[3], kw, sw, pw, dw, ceil_mode)
    for i in range(ho):
        for j in range(wo):
            yield i, j, [i * sh + dh * u for u in range(kh)], [j * sw + dw * v for v in range(kw)]


def maxpool2d_forward_naive(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """Scan each window row by row, as PyTorch's CPU kernel does. Returns ``(y, winners)``.

    The running maximum is replaced when a value is strictly greater, or is NaN: so among tied maxima
    the *first* in scan order wins, and a window holding NaN outputs NaN with its *last* NaN as winner.
    Padding cells are skipped (they never win); ``winners[n, c, i, j]`` is the winner's (row, column)
    in ``x``.

    Chapter: docs/04-max-pooling.md.
    """
    n, c, h, w = x.shape
    (ph, pw) = padding
    windows = list(_pool_windows(x, kernel, stride, padding, dilation, ceil_mode))
    ho, wo = windows[-1][0] + 1, windows[-1][1] + 1
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    winners = {}
    for a in range(n):
        for b in range(c):
            for i, j, rows, cols in windows:
                best, where = -np.inf, None
                for r in rows:
                    for s in cols:
                        if not (0 <= r - ph < h and 0 <= s - pw < w):
                            continue                   # padding
                        value = x[a, b, r - ph, s - pw]
                        # the first cell starts the scan (PyTorch starts at the first cell too)
                        if where is None or value > best or np.isnan(value):
                            best, where = value, (r - ph, s - pw)
                y[a, b, i, j] = best
                winners[a, b, i, j] = where
    return y, winners


def maxpool2d_backward_naive(grad_out, x, winners):
    """Each window's gradient is added to its winner's position. (docs/04-max-pooling.md)"""
    dx = np.zeros_like(x)
    for (a, b, i, j), (r, s) in winners.items():
        dx[a, b, r, s] += grad_out[a, b, i, j]
    return dx


def _avgpool_windows(input_hw, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Each window, straight from PyTorch's definition: ``((i, j), rows, cols, divisor)`` with the input
    rows/cols it covers (padding clipped away) and the number it divides by."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = input_hw, kernel, stride, padding
    ho, wo = pool_output_size(h, kh, sh, ph, 1, ceil_mode), pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)      # padding counts, the rest does not
            with_padding = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            divisor = divisor_override or (with_padding if count_include_pad else (h1 - h0) * (w1 - w0))
            yield (i, j), slice(h0, h1), slice(w0, w1), divisor


def avgpool2d_forward_naive(x, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,
                            divisor_override=None):
    """``y[n, c, i, j] = sum of the window's input pixels / divisor``, one window at a time.

    Chapter: docs/12-average-pooling.md.
    """
    windows = list(_avgpool_windows(x.shape[2:], kernel, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override))
    ho, wo = windows[-1][0][0] + 1, windows[-1][0][1] + 1
    y = np.zeros((*x.shape[:2], ho, wo), dtype=x.dtype)
    for (i, j), rows, cols, divisor in windows:
        y[:, :, i, j] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor
    return y


def avgpool2d_backward_naive(grad_out, x, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,
                             divisor_override=None):
    """Each window adds ``g / divisor`` to every input pixel it covers. (docs/12-average-pooling.md)"""
    dx = np.zeros_like(x, dtype=grad_out.dtype)
    for (i, j), rows, cols, divisor in _avgpool_windows(x.shape[2:], kernel, stride, padding, ceil_mode,
                                                        count_include_pad, divisor_override):
        dx[:, :, rows, cols] += (grad_out[:, :, i, j] / divisor)[:, :, None, None]
    return dx

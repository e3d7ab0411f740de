"""Loop versions of the layers whose fast code uses a vectorization trick: read these first.

Each function computes exactly what its fast counterpart in ``conv.py`` / ``pool.py`` computes, one
output position at a time, straight from the definition. They are far too slow for training and are
used as a second oracle (besides PyTorch) in the tests.
"""

from __future__ import annotations

import numpy as np

from .conv import conv_output_size
from .pool import pool_output_size


def padded_source(position: int, before: int, size: int, mode: str) -> int | None:
    """Which input index padded position ``position`` copies along one axis (``None``: a zero).

    Straight from the definitions: input index ``i = position - before``; inside ``[0, size)`` it is
    itself, outside it ``zeros`` gives 0, ``replicate`` the nearest edge, ``reflect`` the mirror image
    about the edge cell (edge not repeated), ``circular`` wraps around.

    Chapter: docs/12-average-pooling.md.
    """
    i = position - before
    if 0 <= i < size:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if i < 0 else size - 1
    if mode == "reflect":
        return -i if i < 0 else 2 * (size - 1) - i
    if mode == "circular":
        return i % size
    raise ValueError(f"padding_mode must be zeros, reflect, replicate or circular, got {mode!r}")


def _as_pads(padding) -> tuple[int, int, int, int]:
    """(ph, pw) -> (ph, ph, pw, pw); a 4-tuple (top, bottom, left, right) stays."""
    return (padding[0], padding[0], padding[1], padding[1]) if len(padding) == 2 else tuple(padding)


def _padding_map(shape, pads, mode):
    """Yield ``(r, c, (input row, input column) or None)`` for every cell of the padded plane."""
    top, bottom, left, right = pads
    h, w = shape[2:]
    for r in range(h + top + bottom):
        for c in range(w + left + right):
            sr, sc = padded_source(r, top, h, mode), padded_source(c, left, w, mode)
            yield r, c, (None if sr is None or sc is None else (sr, sc))


def pad_naive(x, pads, mode="zeros"):
    """``x`` padded cell by cell: each padded cell copies the input cell :func:`padded_source` names.

    Chapter: docs/12-average-pooling.md.
    """
    top, bottom, left, right = pads
    xp = np.zeros((*x.shape[:2], x.shape[2] + top + bottom, x.shape[3] + left + right), dtype=x.dtype)
    for r, c, source in _padding_map(x.shape, pads, mode):
        if source is not None:
            xp[:, :, r, c] = x[:, :, source[0], source[1]]
    return xp


def unpad_gradient_naive(grad_padded, input_shape, pads, mode="zeros"):
    """The adjoint of :func:`pad_naive`: each padded cell's gradient is added to the cell it copies.

    Chapter: docs/12-average-pooling.md.
    """
    dx = np.zeros(input_shape, dtype=grad_padded.dtype)
    for r, c, source in _padding_map(input_shape, pads, mode):
        if source is not None:
            dx[:, :, source[0], source[1]] += grad_padded[:, :, r, c]
    return dx


def conv2d_forward_naive(x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                         padding_mode="zeros"):
    """``y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] xp[n, chi C/groups + c, s i + d u, s j + d v]``.

    ``chi = o // (O/groups)`` is output channel o's group (``g`` in the loop): it sees only the C/groups input
    channels of its group.
    ``padding`` is (ph, pw) or (top, bottom, left, right); ``xp`` is :func:`pad_naive` of ``x``.

    Chapter: docs/03-convolution.md.
    """
    n = x.shape[0]
    o, c_group, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = pad_naive(x, _as_pads(padding), padding_mode)
    ho, wo = conv_output_size(xp.shape[2], kh, sh, 0, dh), conv_output_size(xp.shape[3], kw, sw, 0, dw)
    o_group = o // groups
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            for g in range(groups):
                outs, ins = slice(g * o_group, (g + 1) * o_group), slice(g * c_group, (g + 1) * c_group)
                y[:, outs, i, j] = np.einsum("ncuv,ocuv->no", patch[:, ins], weight[outs])
    if bias is not None:
        y += bias.reshape(1, o, 1, 1)
    return y


def conv2d_backward_naive(grad_out, x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                          padding_mode="zeros"):
    """``(dx, dw, db)``: each output position adds ``g * patch`` to dw and ``g * w`` to its patch of dxp
    (within each group); then every padded cell's gradient goes back to the input cell it copies.

    Chapter: docs/03-convolution.md.
    """
    o, c_group, kh, kw = weight.shape
    (sh, sw), (dh, dw_) = stride, dilation
    pads = _as_pads(padding)
    xp = pad_naive(x, pads, padding_mode)
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(weight)
    o_group = o // groups
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw_ * (kw - 1) + 1, dw_)
            for g in range(groups):
                outs, ins = slice(g * o_group, (g + 1) * o_group), slice(g * c_group, (g + 1) * c_group)
                grad = grad_out[:, outs, i, j]                                  # (N, O/G)
                dweight[outs] += np.einsum("no,ncuv->ocuv", grad, xp[:, ins, rows, cols])
                dxp[:, ins, rows, cols] += np.einsum("no,ocuv->ncuv", grad, weight[outs])
    dbias = grad_out.sum(axis=(0, 2, 3))
    return unpad_gradient_naive(dxp, x.shape, pads, padding_mode), dweight, dbias


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

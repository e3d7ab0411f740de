"""2-D convolution (PyTorch's ``nn.Conv2d``: a cross-correlation), forward and backward.

Notation (docs/03-convolution.md): input ``x`` of shape (N, C, H, W), weight ``w`` of shape
(O, C, kh, kw), bias ``b`` of shape (O,), stride ``s``, padding ``p``, dilation ``d``. The output
``y`` has shape (N, O, Ho, Wo) with ``Ho = (H + 2 p_h - d_h (kh - 1) - 1) // s_h + 1`` (same for W)::

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, s_h i + d_h u, s_w j + d_w v]

where ``xp`` is ``x`` zero-padded by ``p`` on each side.

The vectorization trick is *im2col*: gather every receptive field into one column of a "patch
matrix" ``cols`` with C*kh*kw rows and one column per output position (n, i, j). The whole
convolution is then one matrix product, ``y = w.reshape(O, C*kh*kw) @ cols``. Building ``cols`` needs
a loop over the kh*kw kernel offsets (never over pixels or images): for the offset (u, v), row block
``cols[.., u, v, ..]`` is the padded input shifted by (d_h u, d_w v) and subsampled by the stride.
(How the columns are ordered, per image or batch last, is a speed choice explained below.)

Backward, with ``g = dL/dy`` laid out like the columns (O rows, one column per output position):

* ``dL/dw = g @ cols.T``   (every output position adds ``g * patch``),
* ``dL/db = g.sum(over n, i, j)`` (batch last, the forward product adds the bias itself:
  :func:`patch_matrix` puts a row of ones under the patches),
* ``dL/dcols = w2.T @ g``, and ``dL/dx`` is *col2im* of that: each patch entry is added back to the
  input pixel it was copied from. Patches overlap when the stride is smaller than the dilated kernel's
  span ``d (k - 1) + 1``, so the scatter must *add*; it does so with one slice-add per kernel offset,
  the mirror image of im2col. Batch last, the product and the scatter run one input row at a time
  instead (:func:`input_gradient_by_input_rows`): the same sums, without the large ``dL/dcols``.

Speed: the column order. The matrix products run near the machine's peak whatever the order of the
N*Ho*Wo columns, so the only question is how cheaply im2col and col2im move memory. NumPy copies a
strided slice one *contiguous run* at a time, and a short run costs about as much as a long one:

* "Per image", x kept in NCHW: ``cols`` is (N, C*kh*kw, Ho*Wo), one patch matrix per image, and
  ``y[n] = w2 @ cols[n]`` is a stack of matrix products (``np.matmul`` broadcasts ``w2`` over the
  images) whose result is already NCHW: no transposes at all. Each slice copy in im2col moves runs
  of Wo numbers (one output row): fine for wide outputs of several input channels.
* "Batch last": x is laid out as (C, H, W, N) and ``cols`` is one (C*kh*kw, Ho*Wo*N) matrix, so that a
  slice over (i, j) keeps whole runs of Wo*N numbers together (512 for the second layer: Wo = 8,
  N = 64). im2col and col2im become about 2x and 4x faster there. The output stays batch last, an
  (N, O, Ho, Wo) view of (O, Ho, Wo, N) memory (scratch/module.py), and so does the input gradient:
  batch-norm, max-pool and dropout keep that layout, so between SimpleCNN's two convolutions nothing is
  transposed. Only data that arrives NCHW is (the images, in two copies, see :func:`to_batch_last`).

:func:`conv2d_forward` computes batch last when an output row is shorter than :data:`SHORT_ROW` numbers
(a 64-byte cache line of float32), or when the input has one channel (the first layer: its input is
small, its output large and best left batch last). Both orders give the same numbers up to summation
order.

Memory: the patch matrix is the largest array of a training step (13 MB for the second layer at
batch 64). Memory that is new to the process costs a page fault per 4 KB page on first touch, and the
C allocator hands freed blocks this large back to the operating system: with a fresh patch matrix
(and ``dL/dcols``) each step, a training step took 1300-2000 page faults, several milliseconds.
Instead, :class:`Conv2d` passes its previous patch matrix back in as ``cols_out``, and the backward
pass (per image) writes ``dL/dcols`` (same shape) over ``cols`` once ``dL/dw`` no longer needs it. A
patch matrix whose memory the backward pass handed out as ``dL/dx`` (batch last) is the caller's, and
not recycled.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import numpy as np

from . import parallel
from .init import default_weight_and_bias
from .module import Layer, Parameter, as_pair, check_image_input, grad_enabled, per_channel, require_float_dtype

Pair = tuple[int, int]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: ``(size + 2p - d(k-1) - 1) // s + 1``. (docs/03-convolution.md)"""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _offset_slice(offset: int, count: int, stride: int) -> slice:
    """The positions ``offset, offset + stride, ..., offset + (count-1) * stride``."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


#: Output rows shorter than this (in numbers) make the convolution use the batch-last column order.
SHORT_ROW = 16


def to_batch_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> contiguous (C, H, W, N).

    Two copies: first swap N and C (moving whole H*W planes), then transpose each channel's (N, H*W)
    block. Each block is small enough to stay in cache while it is transposed; a one-step transpose
    jumps across the whole array for every number it writes, and is ~5x slower.

    An ``a`` that is already batch last in memory (the (N, C, H, W) view :func:`conv2d_forward` returns
    when it computes batch last) is returned as that (C, H, W, N) array, without a copy.

    Chapter: docs/03-convolution.md.
    """
    if a.transpose(1, 2, 3, 0).flags.c_contiguous:
        return a.transpose(1, 2, 3, 0)
    a_cn = np.ascontiguousarray(a.transpose(1, 0, 2, 3))          # (C, N, H, W)
    return np.ascontiguousarray(a_cn.transpose(0, 2, 3, 1))        # (C, H, W, N)


def from_batch_last(a: np.ndarray) -> np.ndarray:
    """(C, H, W, N) -> contiguous (N, C, H, W): :func:`to_batch_last` undone, in the same two copies.

    Chapter: docs/03-convolution.md.
    """
    a_cn = np.ascontiguousarray(a.transpose(0, 3, 1, 2))          # (C, N, H, W)
    return np.ascontiguousarray(a_cn.transpose(1, 0, 2, 3))        # (N, C, H, W)


def im2col(x_pad: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair,
           batch_last: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Patch matrix of the padded input, one slice copy per kernel offset.

    Per image:  ``x_pad`` is (N, C, H, W) and the result (N, C, kh, kw, Ho, Wo), i.e. for each image
                the (C*kh*kw, Ho*Wo) patch matrix of the module docstring.
    Batch last: ``x_pad`` is (C, H, W, N) and the result (C, kh, kw, Ho, Wo, N), i.e. one
                (C*kh*kw, Ho*Wo*N) patch matrix for the whole batch.
    ``out``, if it has the result's shape and dtype, is filled instead of a new array.

    Chapter: docs/03-convolution.md.
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    if batch_last:
        c, _, _, n = x_pad.shape
        shape = (c, kh, kw, ho, wo, n)
    else:
        n, c = x_pad.shape[:2]
        shape = (n, c, kh, kw, ho, wo)
    if out is not None and out.shape == shape and out.dtype == x_pad.dtype:
        cols = out
    else:
        cols = np.empty(shape, dtype=x_pad.dtype)

    def copy_patches(part: slice) -> None:   # part: channels (batch last) or images (per image)
        for u in range(kh):
            for v in range(kw):
                rows, columns = _offset_slice(u * dh, ho, sh), _offset_slice(v * dw, wo, sw)
                if batch_last:
                    cols[part, u, v] = x_pad[part, rows, columns, :]          # runs of Wo*N numbers
                else:
                    cols[part, :, u, v] = x_pad[part, :, rows, columns]       # runs of Wo numbers

    parallel.run(copy_patches, len(cols), cols.size)
    return cols


def col2im(dcols: np.ndarray, padded_shape: tuple[int, ...], stride: Pair, dilation: Pair,
           batch_last: bool = False) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every patch entry back to the padded-input pixel it came from.

    ``padded_shape`` and the result are in the layout im2col read: (N, C, H, W), or (C, H, W, N) when
    ``batch_last``.

    Chapter: docs/03-convolution.md.
    """
    if batch_last:
        _, kh, kw, ho, wo, _ = dcols.shape
    else:
        _, _, kh, kw, ho, wo = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx_pad = np.zeros(padded_shape, dtype=dcols.dtype)

    def add_patches(part: slice) -> None:    # part: channels (batch last) or images (per image)
        for u in range(kh):
            for v in range(kw):
                rows, columns = _offset_slice(u * dh, ho, sh), _offset_slice(v * dw, wo, sw)
                if batch_last:
                    target = dx_pad[part, rows, columns, :]
                    target += dcols[part, u, v]
                else:
                    target = dx_pad[part, :, rows, columns]
                    target += dcols[part, :, u, v]

    parallel.run(add_patches, len(dx_pad), dcols.size)
    return dx_pad


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1),
                   batch_last: bool | None = None, cols_out: np.ndarray | None = None, groups: int = 1):
    """``y = conv2d(x, w) + b``. Returns ``(y, cache)``; ``cache`` is what :func:`conv2d_backward` needs.

    ``batch_last`` chooses the column order of the patch matrix (module docstring); ``None`` picks the
    faster one for this shape. The result is the same either way, up to the order of additions. Batch
    last, ``y`` is laid out as the product made it: an (N, O, Ho, Wo) *view* of (O, Ho, Wo, N) memory
    (scratch/module.py), which batch-norm, max-pool and dropout keep, and which the next convolution
    takes without a transpose. ``cols_out`` is memory for the patch matrix, used when it has the right
    shape (see "Memory" in the module docstring).

    ``groups`` splits the C input and O output channels into that many groups; output group chi sees only
    input group chi, and ``w`` is (O, C/groups, kh, kw). The patch matrix's rows are channel-major, so its
    rows of group chi are one contiguous block of C/groups*kh*kw rows, and the convolution is ``groups``
    independent products, one ``np.matmul`` over a stack: ``y_chi = w_chi @ cols_chi`` (``w_g @ cols_g``
    in the code) with ``w_chi`` (O/groups, C/groups*kh*kw).

    Chapter: docs/03-convolution.md.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if batch_last is None:
        batch_last = wo < SHORT_ROW or c == 1

    def back(y_bl: np.ndarray) -> np.ndarray:   # (O, Ho, Wo, N) memory as (N, O, Ho, Wo)
        return y_bl.transpose(3, 0, 1, 2)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    if batch_last:
        x_pad = to_batch_last(x_pad)                                   # (C, H + 2ph, W + 2pw, N)
    w2 = weight.reshape(o, -1)                                         # (O, C*kh*kw)
    if batch_last and groups == 1:
        # One (C*kh*kw, Ho*Wo*N) patch matrix, and under it a row of ones when there is a bias: the bias
        # is then one more column of the weights, [w2 | b] @ [cols; 1] = w2 @ cols + b, and the product
        # adds it (patch_matrix).
        cols = patch_matrix(x_pad, (kh, kw), stride, dilation, (ho, wo), bias is not None, out=cols_out)
        w_b = w2 if bias is None else np.concatenate([w2, bias[:, None]], axis=1)
        y = back((w_b @ cols).reshape(o, ho, wo, n))
    else:
        cols = im2col(x_pad, (kh, kw), stride, dilation, (ho, wo), batch_last, out=cols_out)
        if groups > 1:
            w_g = weight.reshape(groups, o // groups, -1)              # (G, O/G, C/G*kh*kw)
            if batch_last:
                y = back((w_g @ cols.reshape(groups, -1, ho * wo * n)).reshape(o, ho, wo, n))
            else:
                y = (w_g @ cols.reshape(n, groups, -1, ho * wo)).reshape(n, o, ho, wo)
        else:
            y = per_image_products(w2, cols.reshape(n, -1, ho * wo)).reshape(n, o, ho, wo)
        if bias is not None:   # over whole planes when y is NCHW in memory: long inner loops (module.per_channel)
            parallel.split_call(np.add, y, per_channel(bias, y.shape if y.flags.c_contiguous else None), out=y)
    cache = (cols, weight, x_pad.shape, x.shape, stride, padding, dilation, bias is not None, batch_last, groups)
    return y, cache


def patch_matrix(x_pad: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair, ones_row: bool,
                 out: np.ndarray | None = None) -> np.ndarray:
    """The batch-last patch matrix of :func:`im2col`, (C*kh*kw, Ho*Wo*N), with a row of ones under it when
    ``ones_row``: (C*kh*kw + 1, Ho*Wo*N). ``out``, if it has that shape and dtype, is filled instead of a
    new array.

    The row of ones adds the bias inside the forward product::

        y = [w2 | b] @ [cols; 1] = w2 @ cols + b 1^T

    so the bias costs no pass of its own over the output: one more row of K, where K is C*kh*kw (800 for
    the second layer). Measured on SimpleCNN's convolutions at batch 64: the product takes the same time
    with the extra row, and the separate add it replaces took 0.13 ms on ``conv1``. (Backward sums the bias
    gradient on its own, :func:`position_sums` says why.)

    Chapter: docs/03-convolution.md.
    """
    c, _, _, n = x_pad.shape
    (kh, kw), (ho, wo) = kernel, out_hw
    shape = (c * kh * kw + ones_row, ho * wo * n)
    if out is None or out.shape != shape or out.dtype != x_pad.dtype:
        out = np.empty(shape, dtype=x_pad.dtype)
    im2col(x_pad, kernel, stride, dilation, out_hw, batch_last=True,
           out=out[:c * kh * kw].reshape(c, kh, kw, ho, wo, n))
    if ones_row:
        out[-1] = 1
    return out


def per_image_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a stack of images (``b``, and ``a`` unless it is one matrix), the images split between
    the cores (scratch/parallel.py): the same products, each image's on one core.

    ``np.matmul`` runs a stack as one small BLAS product per image, one after the other, and OpenBLAS runs
    a product that small on one core (conv1's: CPU time equal to wall time), so the other core would wait.
    (:func:`parallel.run_with_blas` makes sure each part's products stay on its core.)
    Measured on conv1 (batch 64, float32): 0.59 ms forward and 0.60 ms for ``dL/dw`` in one thread, 0.35
    and 0.38 ms split in two.

    Chapter: docs/03-convolution.md.
    """
    out = np.empty((*b.shape[:-2], a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))

    def multiply(part: slice) -> None:         # the images ``part``, on one core
        np.matmul(a if a.ndim == 2 else a[part], b[part], out=out[part])

    parallel.run_with_blas(multiply, len(b), a.size + b.size + out.size)
    return out


def position_sums(g_bl: np.ndarray) -> np.ndarray:
    """``dL/db``: each channel's sum of the batch-last gradient ``g_bl`` (O, Ho, Wo, N) over its positions.

    Two stages, as batch-norm's statistics (scratch/batchnorm.py): each output row's Wo*N contiguous
    numbers summed in the gradient's dtype by ``np.einsum`` (several SIMD lanes, so no running sum gets
    long), then the Ho row sums of a channel added in float64. A third of the time of NumPy's pairwise
    ``sum`` along the (O, Ho*Wo*N) rows on conv1's gradient (0.05 against 0.16 ms), and as accurate.

    The row of ones of :func:`patch_matrix` would give the same sums for free, as the last column of
    ``G @ [cols; 1]^T``, but added by the BLAS in float32. A bias that feeds batch-norm (both of SimpleCNN's)
    has a true gradient of zero, so what is computed is rounding noise, which Adam turns into steps of up to
    ``lr``; with the BLAS's sums that noise is larger, and in ``simplecnn compare`` (float32) the two
    implementations' other weights drifted 16 times further apart (median 7.7e-3 against 4.7e-4 over 18
    steps; tests/test_compare.py fails on it).

    Chapter: docs/03-convolution.md.
    """
    o, ho = g_bl.shape[:2]
    rows = np.einsum("orp->or", g_bl.reshape(o, ho, -1))
    return rows.sum(axis=1, dtype=np.float64).astype(g_bl.dtype)


def conv2d_backward(grad_out: np.ndarray, cache, need_input_grad: bool = True):
    """Gradients ``(dx, dw, db)`` of a convolution from ``grad_out = dL/dy`` (see the module docstring).

    ``dx`` is ``None`` when ``need_input_grad`` is false (the first layer, whose input is the data).
    ``db`` is ``None`` for a convolution without bias. The cache can be used once: once ``dw`` is known,
    the patch matrix is not needed any more, and its memory holds ``dL/dcols`` (per image) or the
    arrays of :func:`input_gradient_by_input_rows` (batch last, where ``dx`` comes from one product per
    input row).

    Chapter: docs/03-convolution.md.
    """
    cols, weight, padded_shape, input_shape, stride, padding, dilation, has_bias, batch_last, groups = cache
    o, n = weight.shape[0], input_shape[0]
    if not batch_last:   # per image: NCHW (a batch-last gradient would make the products' operands strided)
        grad_out = np.ascontiguousarray(grad_out)
    if groups > 1:
        return _grouped_conv2d_backward(grad_out, cache, need_input_grad)
    (ph, pw), (h, w) = padding, input_shape[2:]
    if batch_last:   # G as an (O, Ho*Wo*N) matrix (batch last), cols the patch matrix (patch_matrix)
        g_bl = to_batch_last(grad_out)     # no copy when grad_out is batch last, as batch-norm returns it
        g_m = g_bl.reshape(o, -1)
        patches = cols[:weight[0].size]    # the patch rows, without the row of ones (patch_matrix)
        dweight = (g_m @ patches.T).reshape(weight.shape)      # dL/dw = G @ cols.T
        dbias = position_sums(g_bl) if has_bias else None      # G @ 1, summed more accurately than by BLAS
        if not need_input_grad:
            return None, dweight, dbias
        dx_pad = input_gradient_by_input_rows(g_bl, weight, padded_shape[1:3], stride, dilation,
                                              workspace=cols)   # dL/dw is known: cols's memory is free
        return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias
    # per image: g as (N, O, Ho*Wo) (NCHW already), cols as (N, C*kh*kw, Ho*Wo)
    g = grad_out.reshape(n, o, -1)
    cols_m = cols.reshape(n, -1, g.shape[2])
    dweight = per_image_products(g, cols_m.transpose(0, 2, 1)).sum(axis=0)   # sum over images of g[n] cols[n].T
    dbias = g.sum(axis=(0, 2)) if has_bias else None
    dweight = np.ascontiguousarray(dweight).reshape(weight.shape)
    if not need_input_grad:
        return None, dweight, dbias
    dcols = np.matmul(weight.reshape(o, -1).T, g, out=cols_m).reshape(cols.shape)   # in place of cols
    dx_pad = col2im(dcols, padded_shape, stride, dilation)
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias


def input_gradient_by_input_rows(g: np.ndarray, weight: np.ndarray, padded_hw: tuple[int, ...], stride: Pair,
                                 dilation: Pair, workspace: np.ndarray | None = None) -> np.ndarray:
    """``dL/dx_pad`` as one product per input row, with no patch matrix and no col2im; ``g`` is the upstream
    gradient batch last, (O, Ho, Wo, N), and so is the result: an (N, C, Hp, Wp) view of (C, Hp, Wp, N)
    memory (scratch/module.py).

    ``dL/dcols = w2.T @ G`` followed by col2im adds, for every kernel offset (u, v), the rows of
    ``dL/dcols`` that belong to (u, v), ``w[:, :, u, v].T @ G``, into the input positions that offset
    read. Input row r of ``x_pad`` is read by kernel row u of output row i exactly when ``s_h i + d_h u = r``,
    so::

        dx[c, r, s_w j + d_w v, n] = sum over (i, u) with s_h i + d_h u = r, and over o,
                                     of w[o, c, u, v] * g[o, i, j, n]

    For one input row, the sum over (i, u) and o is one matrix product: the kernel rows u that reach r side
    by side, ``(kw*C, count*O)``, times the output rows i they take there stacked in the same order,
    ``(count*O, Wo*N)``. Its rows are (v, c): the blocks of the kw column offsets, which are then added into
    the row at their positions ``s_w j + d_w v``::

        product = w_side @ g_stack                      ((kw*C, count*O) @ (count*O, Wo*N))
        dx[:, r, s_w j + d_w v, :] += product[(v, :), (j, n)]      for each v

    where every slice over j is a run of N numbers (of Wo*N with stride 1). The products cost the same
    multiply-adds as ``w2.T @ G``, but the (C*kh*kw, Ho*Wo*N) ``dL/dcols`` is never written and never read
    back (docs/03, "Backward as matrix products"), and each number of ``dx`` gets kw additions instead of
    kh*kw: the sum over kernel rows happens inside the products.

    The pairs (i, u) that reach a row are spaced evenly (u down by ``s_h / gcd(s_h, d_h)``, i up by
    ``d_h / gcd(s_h, d_h)``), so both factors are slices: the kernel is laid out once as (kw*C, kh*O),
    kernel rows in reverse order, and ``g`` as (Ho, O, Wo*N), output rows outermost; where the stride
    equals the dilation (both 1 in SimpleCNN's conv2) ``w_side`` and ``g_stack`` are views, no copies.

    The work is split between the cores by input rows (:func:`parallel.run_with_blas`): a part owns the
    rows ``rows`` of ``dx`` and computes their products on its own core and adds them in at once, while they
    are in its cache. Each row's product is the same BLAS call whichever part owns the row, and no two
    parts write the same number: the result is the same, bit for bit, for any number of parts.

    ``workspace``, if large enough, holds the rearranged ``g``, the rows' products and the (C, Hp, Wp, N)
    sum instead of new arrays (:func:`conv2d_backward` passes the patch matrix, which ``dL/dw`` no longer
    needs).

    Chapter: docs/03-convolution.md.
    """
    o, c, kh, kw = weight.shape
    _, ho, wo, n = g.shape
    (sh, sw), (dh, dw) = stride, dilation
    hp = padded_hw[0]
    u_step, i_step = sh // math.gcd(sh, dh), dh // math.gcd(sh, dh)   # the pairs (i, u) reaching a row
    # the kernel as (kw*C, kh*O), kernel rows in reverse order: column block kh - 1 - u is kernel row u
    w_side = np.ascontiguousarray(weight[:, :, ::-1].transpose(3, 1, 2, 0)).reshape(kw * c, kh, o)
    row_size, sum_shape = kw * c * wo * n, (c, *padded_hw, n)      # a product: (kw, C, Wo, N)
    rows_size, products_size, sum_size = g.size, hp * row_size, int(np.prod(sum_shape))
    total = rows_size + products_size + sum_size
    if (workspace is not None and workspace.size >= total and workspace.dtype == g.dtype
            and workspace.flags.c_contiguous):
        memory = workspace.reshape(-1)[:total]
    else:
        memory = np.empty(total, dtype=g.dtype)
    g_rows = memory[:rows_size].reshape(ho, o, wo * n)                         # [i]: output row i
    np.copyto(g_rows, g.reshape(o, ho, wo * n).transpose(1, 0, 2))            # runs of Wo*N numbers
    products = memory[rows_size:rows_size + products_size].reshape(hp, kw * c, wo * n)
    dx_pad = memory[rows_size + products_size:].reshape(sum_shape)           # (C, Hp, Wp, N)

    def input_rows(rows: slice) -> None:       # the input rows ``rows``, on one core (scratch/parallel.py)
        dx_pad[:, rows] = 0
        for r in range(rows.start, rows.stop):
            # the kernel rows u (ascending) whose output row i = (r - d_h u) / s_h exists
            reaching = [u for u in range(kh) if (r - u * dh) % sh == 0 and 0 <= (r - u * dh) // sh < ho]
            if not reaching:
                continue
            u_first, u_last = reaching[0], reaching[-1]
            # kernel rows u_last down to u_first (w_side's order) go with output rows i going up
            w_part = w_side[:, kh - 1 - u_last:kh - u_first:u_step].reshape(kw * c, -1)
            g_stack = g_rows[(r - u_last * dh) // sh:(r - u_first * dh) // sh + 1:i_step].reshape(-1, wo * n)
            np.matmul(w_part, g_stack, out=products[r])
            product_v = products[r].reshape(kw, c, wo, n)
            for v in range(kw):
                target = dx_pad[:, r, _offset_slice(v * dw, wo, sw)]
                target += product_v[v]

    parallel.run_with_blas(input_rows, hp, 2 * (products_size + sum_size))
    return dx_pad.transpose(3, 0, 1, 2)


def _grouped_conv2d_backward(grad_out: np.ndarray, cache, need_input_grad: bool):
    """:func:`conv2d_backward` for ``groups > 1``: the same three products, one per group.

    With ``g_chi`` the upstream gradient of output group chi and ``cols_chi`` the patch rows of input group
    chi: ``dL/dw_chi = g_chi @ cols_chi.T``, ``dL/dcols_chi = w_chi.T @ g_chi``; input group chi receives
    gradient only from output group chi. ``dL/db`` is per output channel, as without groups.
    """
    cols, weight, padded_shape, input_shape, stride, padding, dilation, has_bias, batch_last, groups = cache
    o, n = weight.shape[0], input_shape[0]
    w_g = weight.reshape(groups, o // groups, -1)                      # (G, O/G, K), K = C/G*kh*kw
    g: np.ndarray
    cols_m: np.ndarray
    if batch_last:   # g as (G, O/G, Ho*Wo*N), cols as (G, K, Ho*Wo*N)
        g = to_batch_last(grad_out).reshape(groups, o // groups, -1)
        cols_m = cols.reshape(groups, -1, g.shape[-1])
        dweight = g @ cols_m.transpose(0, 2, 1)
        dbias = g.sum(axis=2).reshape(o) if has_bias else None
    else:            # per image: g as (N, G, O/G, Ho*Wo), cols as (N, G, K, Ho*Wo)
        g = grad_out.reshape(n, groups, o // groups, -1)
        cols_m = cols.reshape(n, groups, -1, g.shape[-1])
        dweight = (g @ cols_m.transpose(0, 1, 3, 2)).sum(axis=0)
        dbias = g.sum(axis=(0, 3)).reshape(o) if has_bias else None
    dweight = np.ascontiguousarray(dweight).reshape(weight.shape)
    if not need_input_grad:
        return None, dweight, dbias
    dcols = np.matmul(w_g.transpose(0, 2, 1), g, out=cols_m).reshape(cols.shape)   # in place of cols
    dx_pad = col2im(dcols, padded_shape, stride, dilation, batch_last)
    (ph, pw), (h, w) = padding, input_shape[2:]
    if batch_last:
        dx_pad = from_batch_last(dx_pad)
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias


# --- padding modes ---------------------------------------------------------------------------------
#
# ``padding_mode`` other than "zeros" (or an asymmetric "same" padding) pads the input explicitly before
# the convolution, which then runs with padding 0. The padded input ``xp`` is a function of ``x``: each
# padded cell is a copy of one input cell. Backward therefore *folds* ``dL/dxp`` back onto ``x``: the
# gradient of every padded cell is added to the input cell it copies (docs/03-convolution.md, "Padding
# modes"). Padding acts on the two spatial axes separately, so each fold works on one axis at a time.

#: scratch's ``padding_mode`` -> ``np.pad``'s mode (the same copies; torch's "circular" is NumPy's "wrap").
NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
PADDING_MODES = tuple(NUMPY_PAD_MODES)
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]

Pads = tuple[int, int, int, int]   # (top, bottom, left, right)


def pad_input(x: np.ndarray, pads: Pads, mode: str) -> np.ndarray:
    """``x`` (N, C, H, W) padded by ``pads = (top, bottom, left, right)`` in ``mode`` (a padding_mode).

    Chapter: docs/03-convolution.md.
    """
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=NUMPY_PAD_MODES[mode])  # type: ignore[call-overload]


def _on_axis(a: np.ndarray, axis: int, index: slice) -> np.ndarray:
    """``a[..., index, ...]`` with ``index`` on ``axis`` (a view)."""
    where: list[slice] = [slice(None)] * a.ndim
    where[axis] = index
    return a[tuple(where)]


def fold_zeros(grad: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Zero padding copies nothing: the padded cells are constants, their gradient is dropped.

    ``dL/dx[a] = dL/dxp[before + a]`` for ``0 <= a < size``: a crop.

    Chapter: docs/03-convolution.md.
    """
    return _on_axis(grad, axis, slice(before, grad.shape[axis] - after)).copy()


def fold_replicate(grad: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Replicate padding copies the edge cell: ``xp[e] = x[0]`` for the ``before`` cells, ``x[size-1]``
    for the ``after`` cells. So::

        dL/dx[0]      += sum of dL/dxp over the before-cells
        dL/dx[size-1] += sum of dL/dxp over the after-cells

    Chapter: docs/03-convolution.md.
    """
    dx = fold_zeros(grad, before, after, axis)
    size = dx.shape[axis]
    _on_axis(dx, axis, slice(0, 1))[...] += _on_axis(grad, axis, slice(0, before)).sum(axis, keepdims=True)
    _on_axis(dx, axis, slice(size - 1, size))[...] += _on_axis(
        grad, axis, slice(before + size, None)).sum(axis, keepdims=True)
    return dx


def fold_reflect(grad: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Reflect padding mirrors about the edge cell, without repeating it: ``xp[before - e] = x[e]`` and
    ``xp[before + size - 1 + e] = x[size - 1 - e]`` for ``e = 1 .. pad`` (pad < size). So the before-cells,
    read backwards, add onto ``x[1 .. before]`` and the after-cells, read backwards, onto
    ``x[size - 1 - after .. size - 2]``::

        dL/dx[e]            += dL/dxp[before - e]                 e = 1 .. before
        dL/dx[size - 1 - e] += dL/dxp[before + size - 1 + e]      e = 1 .. after

    Chapter: docs/03-convolution.md.
    """
    dx = fold_zeros(grad, before, after, axis)
    size = dx.shape[axis]
    _on_axis(dx, axis, slice(1, before + 1))[...] += np.flip(_on_axis(grad, axis, slice(0, before)), axis)
    _on_axis(dx, axis, slice(size - 1 - after, size - 1))[...] += np.flip(
        _on_axis(grad, axis, slice(before + size, None)), axis)
    return dx


def fold_circular(grad: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Circular padding wraps around: the before-cells copy the *last* ``before`` cells in order,
    ``xp[e] = x[size - before + e]``, the after-cells the *first* ``after``, ``xp[before + size + e] = x[e]``
    (pad <= size). So::

        dL/dx[size - before + e] += dL/dxp[e]                    e = 0 .. before - 1
        dL/dx[e]                 += dL/dxp[before + size + e]    e = 0 .. after - 1

    Chapter: docs/03-convolution.md.
    """
    dx = fold_zeros(grad, before, after, axis)
    size = dx.shape[axis]
    _on_axis(dx, axis, slice(size - before, size))[...] += _on_axis(grad, axis, slice(0, before))
    _on_axis(dx, axis, slice(0, after))[...] += _on_axis(grad, axis, slice(before + size, None))
    return dx


FOLDS = {"zeros": fold_zeros, "reflect": fold_reflect, "replicate": fold_replicate, "circular": fold_circular}


def unpad_gradient(grad: np.ndarray, pads: Pads, mode: str) -> np.ndarray:
    """``dL/dx`` from ``dL/dxp`` for ``xp = pad_input(x, pads, mode)``: the rows fold, then the columns.

    Chapter: docs/03-convolution.md.
    """
    top, bottom, left, right = pads
    fold = FOLDS[mode]
    return fold(fold(grad, top, bottom, 2), left, right, 3)


def same_padding(kernel: Pair, dilation: Pair) -> Pads:
    """torch's ``padding="same"``: ``d (k - 1)`` cells per axis, half before, the odd one after.

    Chapter: docs/03-convolution.md.
    """
    (kh, kw), (dh, dw) = kernel, dilation
    total_h, total_w = dh * (kh - 1), dw * (kw - 1)
    return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2


class Conv2d(Layer):
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode="zeros")`` in NumPy, arguments in torch's order.

    ``padding`` is an int, a pair, ``"valid"`` (no padding) or ``"same"`` (output as large as the input;
    stride 1 only, and an even ``d (k - 1)`` puts the extra cell after, as torch does). ``padding_mode``
    is ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Inputs are (N, C, H, W) or one
    unbatched image (C, H, W), whose output is then (O, Ho, Wo).

    ``need_input_grad=False`` skips dL/dx in backward (PyTorch skips it too when the input does not
    require a gradient): the network's first convolution has no layer below it to send it to.

    Chapter: docs/03-convolution.md.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 rng: np.random.Generator | None = None, dtype=np.float32, need_input_grad: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = as_pair(stride, "stride")
        self.dilation = as_pair(dilation, "dilation")
        if min(self.in_channels, self.out_channels, *self.kernel_size, *self.stride, *self.dilation) < 1:
            raise ValueError(f"Conv2d: channels, kernel_size, stride and dilation must be positive, got "
                             f"{self.in_channels}->{self.out_channels}, kernel {self.kernel_size}, "
                             f"stride {self.stride}, dilation {self.dilation}")
        self.padding: str | Pair
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1 (as in PyTorch), got stride {self.stride}")
            self.padding = padding
            self._pads = same_padding(self.kernel_size, self.dilation) if padding == "same" else (0, 0, 0, 0)
        else:
            self.padding = as_pair(padding, "padding")
            if min(self.padding) < 0:
                raise ValueError(f"Conv2d: padding must be >= 0, got {self.padding}")
            (ph, pw) = self.padding
            self._pads = (ph, ph, pw, pw)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"Conv2d: groups must be a positive int, got {groups!r}")
        if self.in_channels % groups or self.out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels ({self.in_channels}) and "
                             f"out_channels ({self.out_channels})")
        self.groups = int(groups)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {', '.join(PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        self.padding_mode = cast(PaddingMode, padding_mode)   # checked just above
        self.need_input_grad = need_input_grad
        rng = rng if rng is not None else np.random.default_rng()
        weight, bias_data = default_weight_and_bias(
            rng, (self.out_channels, self.in_channels // self.groups, *self.kernel_size),
            require_float_dtype(dtype))
        self.weight = Parameter(weight)
        self.bias = Parameter(bias_data) if bias else None
        self._cols = None  # the last patch matrix, recycled as memory for the next one

    @property
    def explicit_padding(self) -> bool:
        """Whether the input is padded before im2col (a padding mode, or unequal sides) rather than by it."""
        top, bottom, left, right = self._pads
        return (self.padding_mode != "zeros" and any(self._pads)) or top != bottom or left != right

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.forward_with(x, self.weight.data, None if self.bias is None else self.bias.data)

    def forward_with(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                     batch_last_output: bool = False) -> np.ndarray:
        """This layer's convolution (padding, stride, groups, ...) with other weights of the same shapes:
        :meth:`forward` passes the layer's own; scratch/inference.py passes weights with a batch-norm
        folded in, under ``no_grad`` only (a backward pass computes the gradient of the layer's own weights).
        ``batch_last_output``: compute batch last, whatever the shape, so that the output is batch last in
        memory (:func:`conv2d_forward`)."""
        if grad_enabled() and weight is not self.weight.data:
            raise RuntimeError(f"{self.name}: forward_with other weights runs under no_grad() only")
        x, unbatched = check_image_input(self, x, self.weight.data.dtype, self.in_channels)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        top, bottom, left, right = self._pads
        if x.shape[2] + top + bottom < dh * (kh - 1) + 1 or x.shape[3] + left + right < dw * (kw - 1) + 1:
            raise ValueError(f"{self.name}: input {x.shape[2]}x{x.shape[3]} (padding {self.padding}) is "
                             f"smaller than the kernel {kh}x{kw} (dilation {self.dilation})")
        if self.explicit_padding:
            self._check_padding_fits(x.shape[2:])
            x, padding = pad_input(x, self._pads, self.padding_mode), (0, 0)
        else:
            padding = (top, left)
        # Recycle the last patch matrix only once its backward pass is done: while a cache is pending,
        # its patches must stay intact.
        free_cols = self._cols if self._cache is None else None
        y, cache = conv2d_forward(x, weight, bias, self.stride, padding, self.dilation,
                                  batch_last=True if batch_last_output else None, cols_out=free_cols,
                                  groups=self.groups)
        self._cols = cache[0]
        self._keep((cache, unbatched))
        return y[0] if unbatched else y

    def _check_padding_fits(self, hw: tuple[int, ...]) -> None:
        """torch's limits: reflect needs each pad < the input size, circular each pad <= it."""
        top, bottom, left, right = self._pads
        for size, pads in zip(hw, ((top, bottom), (left, right)), strict=True):
            if self.padding_mode == "reflect" and max(pads) >= size:
                raise ValueError(f"{self.name}: padding_mode='reflect' needs padding < input size, got padding "
                                 f"{self.padding} for input {hw[0]}x{hw[1]}")
            if self.padding_mode == "circular" and max(pads) > size:
                raise ValueError(f"{self.name}: padding_mode='circular' needs padding <= input size, got "
                                 f"padding {self.padding} for input {hw[0]}x{hw[1]}")

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        cache, unbatched = self._take_cache()
        if unbatched:
            grad_out = grad_out[None]
        dx, self.weight.grad, dbias = conv2d_backward(grad_out, cache, self.need_input_grad)
        if self.bias is not None:
            self.bias.grad = dbias
        if dx is None:
            return None
        if np.may_share_memory(dx, self._cols):
            # dx lies in the patch matrix's memory (batch last: conv2d_backward's workspace), and the caller
            # keeps it: that memory is not recycled by the next forward (malloc reuses it once dx is freed)
            self._cols = None
        if self.explicit_padding:
            dx = unpad_gradient(dx, self._pads, self.padding_mode)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"padding_mode={self.padding_mode!r}")

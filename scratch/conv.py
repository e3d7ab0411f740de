"""2-D convolution (PyTorch's ``nn.Conv2d``: a cross-correlation), forward and backward.

Notation (docs/03-convolution.md): input ``x`` of shape (N, C, H, W), weight ``w`` of shape
(O, C, kh, kw), bias ``b`` of shape (O,), stride ``s``, padding ``p``, dilation ``d``. The output
``y`` has shape (N, O, Ho, Wo) with ``Ho = (H + 2 p_h - d_h (kh - 1) - 1) // s_h + 1`` (same for W)::

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, s_h i + d_h u, s_w j + d_w v]

where ``xp`` is ``x`` zero-padded by ``p`` on each side.

The vectorization trick is *im2col*: gather every receptive field into one column of a "patch
matrix" ``cols`` of shape (C*kh*kw, N*Ho*Wo). The whole convolution is then one matrix product,
``y = w.reshape(O, C*kh*kw) @ cols``. Building ``cols`` needs a loop over the kh*kw kernel offsets
(never over pixels or images): for the offset (u, v), row block ``cols[:, u, v]`` is the padded input
shifted by (d_h u, d_w v) and subsampled by the stride.

Backward, with ``g = dL/dy`` laid out as a matrix (O, N*Ho*Wo):

* ``dL/dw = g @ cols.T``   (every output position adds ``g * patch``),
* ``dL/db = g.sum(over n, i, j)``,
* ``dL/dcols = w2.T @ g``, and ``dL/dx`` is *col2im* of that: each patch entry is added back to the
  input pixel it was copied from. Patches overlap when the stride is smaller than the kernel, so the
  scatter must *add*; it does so with one slice-add per kernel offset, the mirror image of im2col.
"""

from __future__ import annotations

import numpy as np

from .init import default_weight_and_bias
from .module import Layer, Parameter, as_pair, check_input, require_float_dtype

Pair = tuple[int, int]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: ``(size + 2p - d(k-1) - 1) // s + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _offset_slice(offset: int, count: int, stride: int) -> slice:
    """The positions ``offset, offset + stride, ..., offset + (count-1) * stride``."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def im2col(x_pad: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> np.ndarray:
    """Patch matrix of the padded input: shape (C, kh, kw, N, Ho, Wo), one loop step per kernel offset."""
    n, c = x_pad.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x_pad.dtype)
    for u in range(kh):
        for v in range(kw):
            window = x_pad[:, :, _offset_slice(u * dh, ho, sh), _offset_slice(v * dw, wo, sw)]
            cols[:, u, v] = window.transpose(1, 0, 2, 3)
    return cols


def col2im(dcols: np.ndarray, padded_shape: tuple[int, ...], stride: Pair, dilation: Pair) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every patch entry back to the padded-input pixel it came from."""
    _, kh, kw, _, ho, wo = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx_pad = np.zeros(padded_shape, dtype=dcols.dtype)
    for u in range(kh):
        for v in range(kw):
            target = dx_pad[:, :, _offset_slice(u * dh, ho, sh), _offset_slice(v * dw, wo, sw)]
            target += dcols[:, u, v].transpose(1, 0, 2, 3)
    return dx_pad


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                   stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)):
    """``y = conv2d(x, w) + b``. Returns ``(y, cache)``; ``cache`` is what :func:`conv2d_backward` needs."""
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    cols = im2col(x_pad, (kh, kw), stride, dilation, (ho, wo))
    y = weight.reshape(o, -1) @ cols.reshape(-1, n * ho * wo)          # (O, N*Ho*Wo)
    y = y.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)                  # (N, O, Ho, Wo)
    y = np.ascontiguousarray(y) if bias is None else y + bias.reshape(1, o, 1, 1)
    cache = (cols, weight, x_pad.shape, x.shape, stride, padding, dilation, bias is not None)
    return np.ascontiguousarray(y), cache


def conv2d_backward(grad_out: np.ndarray, cache, need_input_grad: bool = True):
    """Gradients ``(dx, dw, db)`` of a convolution from ``grad_out = dL/dy`` (see the module docstring).

    ``dx`` is ``None`` when ``need_input_grad`` is false (the first layer, whose input is the data).
    ``db`` is ``None`` for a convolution without bias.
    """
    cols, weight, padded_shape, input_shape, stride, padding, dilation, has_bias = cache
    o = weight.shape[0]
    g = grad_out.transpose(1, 0, 2, 3).reshape(o, -1)                 # (O, N*Ho*Wo)
    cols2d = cols.reshape(-1, g.shape[1])                              # (C*kh*kw, N*Ho*Wo)
    dweight = (g @ cols2d.T).reshape(weight.shape)
    dbias = g.sum(axis=1) if has_bias else None
    if not need_input_grad:
        return None, dweight, dbias
    dcols = (weight.reshape(o, -1).T @ g).reshape(cols.shape)         # (C, kh, kw, N, Ho, Wo)
    dx_pad = col2im(dcols, padded_shape, stride, dilation)
    (ph, pw), (h, w) = padding, input_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias


class Conv2d(Layer):
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)`` in NumPy.

    ``need_input_grad=False`` skips dL/dx in backward (PyTorch skips it too when the input does not
    require a gradient): the network's first convolution has no layer below it to send it to.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, *, rng: np.random.Generator | None = None,
                 dtype=np.float32, need_input_grad: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = as_pair(stride, "stride")
        self.padding = as_pair(padding, "padding")
        self.dilation = as_pair(dilation, "dilation")
        if min(self.in_channels, self.out_channels, *self.kernel_size, *self.stride, *self.dilation) < 1:
            raise ValueError(f"Conv2d: channels, kernel_size, stride and dilation must be positive, got "
                             f"{self.in_channels}->{self.out_channels}, kernel {self.kernel_size}, "
                             f"stride {self.stride}, dilation {self.dilation}")
        if min(self.padding) < 0:
            raise ValueError(f"Conv2d: padding must be >= 0, got {self.padding}")
        self.need_input_grad = need_input_grad
        rng = rng if rng is not None else np.random.default_rng()
        weight, bias_data = default_weight_and_bias(
            rng, (self.out_channels, self.in_channels, *self.kernel_size), require_float_dtype(dtype))
        self.weight = Parameter(weight)
        self.bias = Parameter(bias_data) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input(self, x, 4, "(N, C, H, W)", self.weight.data.dtype, self.in_channels)
        (kh, kw), (ph, pw), (dh, dw) = self.kernel_size, self.padding, self.dilation
        if x.shape[2] + 2 * ph < dh * (kh - 1) + 1 or x.shape[3] + 2 * pw < dw * (kw - 1) + 1:
            raise ValueError(f"{self.name}: input {x.shape[2]}x{x.shape[3]} (padding {self.padding}) is "
                             f"smaller than the kernel {kh}x{kw} (dilation {self.dilation})")
        bias = self.bias.data if self.bias is not None else None
        y, cache = conv2d_forward(x, self.weight.data, bias, self.stride, self.padding, self.dilation)
        self._keep(cache)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        dx, self.weight.grad, dbias = conv2d_backward(grad_out, self._take_cache(), self.need_input_grad)
        if self.bias is not None:
            self.bias.grad = dbias
        return dx

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}")

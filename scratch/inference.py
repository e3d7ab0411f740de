"""Evaluation in fewer passes: two rewrites of the layer list that change no output.

Under :func:`~scratch.module.no_grad` nothing will be differentiated, so no layer has to keep its input
or its output for a backward pass, and neighbouring layers may be merged. :func:`inference_steps`
makes these merges (docs/01-overview.md, "Evaluation in fewer passes"):

1. **A convolution followed by a batch-norm layer in evaluation mode is one convolution.** With its
   running statistics, the batch-norm layer is an affine map per channel,
   ``y = x * scale + shift`` (:func:`~scratch.batchnorm.inference_affine`), and output channel o of a
   convolution is linear in that channel's weights and bias::

       scale[o] * (w[o] * x + b[o]) + shift[o] = (scale[o] * w[o]) * x + (scale[o] * b[o] + shift[o])

   So the merged layer convolves with ``w'[o] = scale[o] * w[o]`` and ``b'[o] = scale[o] * b[o] +
   shift[o]`` (:func:`fold_batchnorm`; a few thousand numbers, folded in float64 on every call, so a
   changed weight or statistic is never missed). The batch-norm layer's two passes over the
   convolution's output disappear. The outputs are equal up to float rounding (the products are
   summed in another order), as for PyTorch's own fused inference models.

2. **ReLU followed by max-pooling is max-pooling that starts at 0.** ReLU never decreases, so the largest
   ReLU output of a window is the ReLU of the window's largest input, and both equal
   ``max(0, x_1, ..., x_k)``: :meth:`~scratch.pool.MaxPool2d.inference` with ``floor=0``. Maximum is
   exact (NaN included), so the output is bit-identical, and the ReLU's pass over the (four times
   larger) input is gone.

3. **Both at once.** The folded convolution runs batch last (its output stays in the memory order the
   max-pool reads fastest and the next convolution wants), adds its bias inside its matrix product
   (:func:`~scratch.conv.patch_matrix`), and the max-pool starts at 0: convolution, batch-norm, ReLU and
   max-pool become one step whose output is bit-identical to that of merges 1 and 2 (where merge 1 computes
   batch last too, as it does for narrow outputs like SimpleCNN's).

Every other layer runs as it is. A merge happens only where it is exact: the batch-norm layer must be in
evaluation mode with running statistics (in training mode, or without them, it normalizes with the
batch's own statistics, which a fixed weight cannot do), and the activation must be ``ReLU`` itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .activations import ReLU
from .batchnorm import BatchNorm2d, inference_affine
from .conv import Conv2d
from .module import Layer
from .pool import MaxPool2d

Step = tuple[str, Callable[[np.ndarray], np.ndarray]]


def can_fold(conv: Layer | None, bn: Layer | None) -> bool:
    """Whether ``bn`` after ``conv`` is one convolution: ``bn`` in evaluation mode with running statistics,
    over the convolution's output channels, in its dtype.

    Chapter: docs/01-overview.md.
    """
    return (isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d) and not bn.training
            and bn.running_mean is not None and bn.running_var is not None
            and bn.num_features == conv.out_channels and bn.dtype == conv.weight.data.dtype)


def fold_batchnorm(conv: Conv2d, bn: BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias of the convolution ``bn(conv(x))``: ``w'[o] = scale[o] w[o]``, ``b'[o] = scale[o]
    b[o] + shift[o]`` (module docstring), computed in float64 and returned in the convolution's dtype.

    Chapter: docs/01-overview.md.
    """
    assert bn.running_mean is not None and bn.running_var is not None   # can_fold checked it
    scale, shift = inference_affine(None if bn.weight is None else bn.weight.data,
                                    None if bn.bias is None else bn.bias.data,
                                    bn.running_mean, bn.running_var, bn.eps)
    weight = conv.weight.data
    bias = shift if conv.bias is None else scale * conv.bias.data + shift
    folded = weight * scale.reshape(-1, *[1] * (weight.ndim - 1))
    return folded.astype(weight.dtype), bias.astype(weight.dtype)


def _conv_batchnorm(conv: Conv2d, bn: BatchNorm2d) -> Callable[[np.ndarray], np.ndarray]:
    def step(x: np.ndarray) -> np.ndarray:
        if getattr(x, "ndim", None) != 4:      # batch-norm takes (N, C, H, W) only: let it say so
            return bn.forward(conv.forward(x))
        return conv.forward_with(x, *fold_batchnorm(conv, bn))
    return step


def _conv_batchnorm_relu_maxpool(conv: Conv2d, bn: BatchNorm2d, pool: MaxPool2d) -> Callable[[np.ndarray], np.ndarray]:
    def step(x: np.ndarray) -> np.ndarray:
        if getattr(x, "ndim", None) != 4:
            return pool.inference(bn.forward(conv.forward(x)), floor=0)
        # Batch last in memory until the end: the max-pool then reads runs of N numbers, and the next
        # convolution needs that layout anyway.
        return pool.inference(conv.forward_with(x, *fold_batchnorm(conv, bn), batch_last_output=True), floor=0)
    return step


def _relu_maxpool(pool: MaxPool2d) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: pool.inference(x, floor=0)


def is_relu_maxpool(relu: Layer | None, pool: Layer | None) -> bool:
    """Whether ``pool`` after ``relu`` is one max-pool that starts at 0 (merge 2). (docs/01-overview.md)"""
    return type(relu) is ReLU and isinstance(pool, MaxPool2d) and not pool.return_indices


def inference_steps(layers: dict[str, Layer]) -> list[Step]:
    """The layers as named steps, with the merges of the module docstring made where they are exact:
    ``("conv1+batch1+relu1+max1", ...)``, ``("conv1+batch1", ...)``, ``("relu1+max1", ...)``, and
    ``(name, layer.forward)`` for the rest.

    Chapter: docs/01-overview.md.
    """
    names = list(layers)
    found: list[Layer | None] = [*layers.values(), None, None, None]   # None: nothing after the last layer
    steps: list[Step] = []
    i = 0
    while i < len(names):
        layer, after = found[i], found[i + 1:i + 4]
        if can_fold(layer, after[0]) and is_relu_maxpool(after[1], after[2]):
            step, merged = _conv_batchnorm_relu_maxpool(layer, after[0], after[2]), 4   # type: ignore[arg-type]
        elif can_fold(layer, after[0]):
            step, merged = _conv_batchnorm(layer, after[0]), 2                           # type: ignore[arg-type]
        elif is_relu_maxpool(layer, after[0]):
            step, merged = _relu_maxpool(after[0]), 2                                    # type: ignore[arg-type]
        else:
            assert layer is not None
            step, merged = layer.forward, 1
        steps.append(("+".join(names[i:i + merged]), step))
        i += merged
    return steps


def inference_forward(layers: dict[str, Layer], x: np.ndarray) -> np.ndarray:
    """Run :func:`inference_steps`: the layers' output, under ``no_grad``, in fewer passes.

    Chapter: docs/01-overview.md.
    """
    for _, step in inference_steps(layers):
        x = step(x)
    return x

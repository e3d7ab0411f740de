"""Conv2d: scratch vs ``nn.Conv2d``, vs finite differences, and the fast (im2col) vs the loop version."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.conv import PADDING_MODES, conv_output_size, pad_input, same_padding, unpad_gradient
from scratch.naive import conv2d_backward_naive, conv2d_forward_naive, pad_naive, unpad_gradient_naive
from torch_impl.mirror import torch_twin

from .parity import assert_close, assert_matches_numerical, assert_parity, random_upstream

DTYPES = [np.float64, np.float32]
pairs = st.tuples


@st.composite
def conv_configs(draw, max_channels=4, max_extra_size=6):
    """A Conv2d torch accepts and an input shape that fits it: non-square kernels, strides, padding
    (pairs, "same", "valid"), dilation, groups (depthwise and one channel per group included), every
    padding_mode, batched or unbatched inputs."""
    kernel = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(pairs(st.integers(1, 2), st.integers(1, 2)))
    padding = draw(st.one_of(pairs(st.integers(0, 2), st.integers(0, 2)), st.sampled_from(["same", "valid"])))
    stride = (1, 1) if padding == "same" else draw(pairs(st.integers(1, 3), st.integers(1, 3)))
    pads = layer_pads(padding, kernel, dilation)
    # The smallest input the (dilated) kernel fits in, given the padding, and larger than every pad (so
    # that reflect and circular padding are defined), plus something; sometimes wide, so that scratch's
    # two im2col layouts (batch-last for short output rows, per-image for rows of 16 or more, see
    # scratch/conv.py) are both exercised.
    extra_h = draw(st.integers(0, max_extra_size))
    extra_w = draw(st.one_of(st.integers(0, max_extra_size), st.integers(16, 20)))
    hw = [max(1, d * (k - 1) + 1 - before - after, before + 1, after + 1) + extra
          for k, d, before, after, extra in zip(kernel, dilation, pads[::2], pads[1::2], (extra_h, extra_w))]
    groups = draw(st.integers(1, 3))
    config = dict(batch=draw(st.one_of(st.none(), st.integers(1, 3))),   # None: one unbatched image
                  in_channels=groups * draw(st.integers(1, max(1, max_channels // groups))),
                  out_channels=groups * draw(st.integers(1, max(1, max_channels // groups))),
                  hw=tuple(hw), kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias=draw(st.booleans()), padding_mode=draw(st.sampled_from(PADDING_MODES)))
    return config, draw(st.integers(0, 2**32 - 1))


def layer_pads(padding, kernel, dilation):
    """(top, bottom, left, right) for a Conv2d ``padding`` argument (torch's "same" rule included)."""
    if padding == "same":
        return same_padding(kernel, dilation)
    if padding == "valid":
        return (0, 0, 0, 0)
    return (padding[0], padding[0], padding[1], padding[1])


def make_conv(config, dtype, rng):
    layer = scratch.Conv2d(config["in_channels"], config["out_channels"], config["kernel_size"],
                           config["stride"], config["padding"], config["dilation"], config["groups"],
                           config["bias"], config["padding_mode"], rng=rng, dtype=dtype)
    batch = () if config["batch"] is None else (config["batch"],)
    x = rng.standard_normal((*batch, config["in_channels"], *config["hw"])).astype(dtype)
    pads = layer_pads(config["padding"], config["kernel_size"], config["dilation"])
    out_hw = [conv_output_size(s + before + after, k, st_, 0, d) for s, k, st_, d, before, after in
              zip(config["hw"], config["kernel_size"], config["stride"], config["dilation"], pads[::2], pads[1::2])]
    upstream = random_upstream(rng, (*batch, config["out_channels"], *out_hw), dtype)
    return layer, x, upstream


@pytest.mark.parametrize("dtype", DTYPES)
@given(conv_configs())
def test_conv2d_matches_torch(dtype, config_and_seed):
    """Output, dL/dx, dL/dweight and dL/dbias equal nn.Conv2d's for any kernel/stride/padding/dilation,
    groups and padding_mode, batched or not."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, dtype, np.random.default_rng(seed))
    assert_parity(layer, torch_twin(layer), x, upstream)


@given(conv_configs(max_channels=2, max_extra_size=3))
def test_conv2d_matches_finite_differences(config_and_seed):
    """The analytic gradients equal central differences (an oracle independent of PyTorch)."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, np.float64, np.random.default_rng(seed))
    assert_matches_numerical(layer, x, upstream)


@pytest.mark.parametrize("batch_last", [False, True])
@given(conv_configs())
def test_conv2d_fast_matches_naive_loops(batch_last, config_and_seed):
    """im2col/col2im, in either column order, grouped or not, and the padding folds compute what the
    loop-over-output-positions definition (with its cell-by-cell padding) computes."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, np.float64, np.random.default_rng(seed))
    if config["batch"] is None:
        x, upstream = x[None], upstream[None]
    pads = layer_pads(config["padding"], config["kernel_size"], config["dilation"])
    mode = config["padding_mode"]
    bias = layer.bias.data if layer.bias is not None else None
    if layer.explicit_padding:     # padded before im2col, the gradient folded back after col2im
        x_in, padding = pad_input(x, pads, mode), (0, 0)
    else:                          # zero padding on equal sides: done by im2col itself
        x_in, padding = x, (pads[0], pads[2])
    y, cache = scratch.conv2d_forward(x_in, layer.weight.data, bias, layer.stride, padding, layer.dilation,
                                      batch_last=batch_last, groups=layer.groups)
    dx, dweight, dbias = scratch.conv2d_backward(upstream, cache)
    if layer.explicit_padding:
        dx = unpad_gradient(dx, pads, mode)
    geometry = (layer.stride, pads, layer.dilation, layer.groups, mode)
    y_naive = conv2d_forward_naive(x, layer.weight.data, bias, *geometry)
    dx_naive, dweight_naive, dbias_naive = conv2d_backward_naive(upstream, x, layer.weight.data, *geometry)
    assert_close(y, y_naive, 1e-12, what="output")
    assert_close(dx, dx_naive, 1e-12, what="grad input")
    assert_close(dweight, dweight_naive, 1e-12, what="grad weight")
    if bias is not None:
        assert_close(dbias, dbias_naive, 1e-12, what="grad bias")


@given(st.sampled_from(PADDING_MODES), pairs(st.integers(0, 3), st.integers(0, 3)),
       pairs(st.integers(0, 3), st.integers(0, 3)), st.integers(0, 2**32 - 1))
def test_padding_folds_are_the_adjoints_of_padding(mode, rows, cols, seed):
    """Each fold is the transpose of its padding: <pad(x), G> = <x, fold(G)> for random x and G, and
    equals the cell-by-cell definition. (Reflect needs pad < size, circular pad <= size.)"""
    rng = np.random.default_rng(seed)
    pads = (*rows, *cols)
    x = rng.standard_normal((2, 3, max(rows) + 1 + rng.integers(0, 3), max(cols) + 1 + rng.integers(0, 3)))
    padded = pad_input(x, pads, mode)
    np.testing.assert_array_equal(padded, pad_naive(x, pads, mode))
    grad = rng.standard_normal(padded.shape)
    folded = unpad_gradient(grad, pads, mode)
    assert_close(folded, unpad_gradient_naive(grad, x.shape, pads, mode), 1e-14, what=f"{mode} fold")
    assert abs(np.sum(padded * grad) - np.sum(x * folded)) <= 1e-12 * np.sum(np.abs(padded * grad))

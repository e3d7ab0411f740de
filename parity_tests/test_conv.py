"""Conv2d: scratch vs ``nn.Conv2d``, vs finite differences, and the fast (im2col) vs the loop version."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.conv import conv_output_size
from scratch.naive import conv2d_backward_naive, conv2d_forward_naive
from torch_impl.mirror import torch_twin

from .parity import assert_close, assert_matches_numerical, assert_parity, random_upstream

DTYPES = [np.float64, np.float32]
pairs = st.tuples


@st.composite
def conv_configs(draw, max_channels=4, max_extra_size=6):
    """A Conv2d and an input shape that fits it: non-square kernels, strides, padding, dilation."""
    kernel = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    stride = draw(pairs(st.integers(1, 3), st.integers(1, 3)))
    padding = draw(pairs(st.integers(0, 2), st.integers(0, 2)))
    dilation = draw(pairs(st.integers(1, 2), st.integers(1, 2)))
    # The smallest input the (dilated) kernel fits in, given the padding, plus something; sometimes
    # wide, so that scratch's two im2col layouts (batch-last for short output rows, per-image for rows
    # of 16 or more, see scratch/conv.py) are both exercised.
    extra_h = draw(st.integers(0, max_extra_size))
    extra_w = draw(st.one_of(st.integers(0, max_extra_size), st.integers(16, 20)))
    hw = [max(1, d * (k - 1) + 1 - 2 * p) + extra
          for k, p, d, extra in zip(kernel, padding, dilation, (extra_h, extra_w), strict=True)]
    config = dict(batch=draw(st.integers(1, 3)), in_channels=draw(st.integers(1, max_channels)),
                  out_channels=draw(st.integers(1, max_channels)), hw=tuple(hw), kernel_size=kernel,
                  stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()))
    return config, draw(st.integers(0, 2**32 - 1))


def make_conv(config, dtype, rng):
    layer = scratch.Conv2d(config["in_channels"], config["out_channels"], config["kernel_size"],
                           config["stride"], config["padding"], config["dilation"], bias=config["bias"],
                           rng=rng, dtype=dtype)
    x = rng.standard_normal((config["batch"], config["in_channels"], *config["hw"])).astype(dtype)
    out_hw = [conv_output_size(s, k, st_, p, d) for s, k, st_, p, d in
              zip(config["hw"], config["kernel_size"], config["stride"], config["padding"], config["dilation"],
                  strict=True)]
    upstream = random_upstream(rng, (config["batch"], config["out_channels"], *out_hw), dtype)
    return layer, x, upstream


@pytest.mark.parametrize("dtype", DTYPES)
@given(conv_configs())
def test_conv2d_matches_torch(dtype, config_and_seed):
    """Output, dL/dx, dL/dweight and dL/dbias equal nn.Conv2d's for any kernel/stride/padding/dilation."""
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
    """im2col/col2im, in either column order, compute what the loop-over-output-positions definition
    computes."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, np.float64, np.random.default_rng(seed))
    geometry = (layer.stride, layer.padding, layer.dilation)
    bias = layer.bias.data if layer.bias is not None else None
    y, cache = scratch.conv2d_forward(x, layer.weight.data, bias, *geometry, batch_last=batch_last)
    dx, dweight, dbias = scratch.conv2d_backward(upstream, cache)
    y_naive = conv2d_forward_naive(x, layer.weight.data, bias, *geometry)
    dx_naive, dweight_naive, dbias_naive = conv2d_backward_naive(upstream, x, layer.weight.data, *geometry)
    assert_close(y, y_naive, 1e-12, what="output")
    assert_close(dx, dx_naive, 1e-12, what="grad input")
    assert_close(dweight, dweight_naive, 1e-12, what="grad weight")
    if bias is not None:
        assert_close(dbias, dbias_naive, 1e-12, what="grad bias")

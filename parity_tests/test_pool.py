"""MaxPool2d: scratch vs ``nn.MaxPool2d`` (distinct values, then deliberate ties), finite differences,
and the fast (strided slices) vs the loop version. AvgPool2d: scratch vs ``nn.AvgPool2d`` with padding
counted and not, ceil mode and divisor_override, finite differences, and the loop version."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import scratch
from scratch.naive import (
    avgpool2d_backward_naive,
    avgpool2d_forward_naive,
    maxpool2d_backward_naive,
    maxpool2d_forward_naive,
)
from scratch.pool import pool_output_size
from simplecnn import properties as prop
from torch_impl.mirror import torch_twin

from .parity import DTYPES, assert_close, assert_matches_numerical, assert_parity, random_upstream

pairs = st.tuples


@st.composite
def pool_configs(draw, max_dilation=2):
    """A MaxPool2d PyTorch accepts, including stride < kernel (overlapping windows), padding, dilation
    and ceil mode, and an input shape it fits."""
    kernel = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    stride = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(pairs(st.integers(1, max_dilation), st.integers(1, max_dilation)))
    # PyTorch: padding <= kernel // 2 and <= half the effective (dilated) kernel.
    padding = tuple(draw(st.integers(0, min(k // 2, (d * (k - 1) + 1) // 2)))
                    for k, d in zip(kernel, dilation, strict=True))
    hw = tuple(max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 5))
               for k, p, d in zip(kernel, padding, dilation, strict=True))
    ceil_mode = draw(st.booleans())
    # Leave out windows made only of padding (possible with dilation or ceil mode): PyTorch 2.13 returns
    # -inf there with an index outside the input, and its backward then writes out of bounds (a crash).
    assume(all(every_window_sees_input(*axis, ceil_mode)
               for axis in zip(hw, kernel, stride, padding, dilation, strict=True)))
    config = dict(batch=draw(st.integers(1, 2)), channels=draw(st.integers(1, 3)), hw=hw,
                  kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    return config, draw(st.integers(0, 2**32 - 1))


def every_window_sees_input(size, kernel, stride, padding, dilation, ceil_mode) -> bool:
    """Along one axis: every window covers at least one input position (not only padding)."""
    windows = range(pool_output_size(size, kernel, stride, padding, dilation, ceil_mode))
    return all(any(0 <= i * stride + u * dilation - padding < size for u in range(kernel)) for i in windows)


def make_pool(config):
    return scratch.MaxPool2d(config["kernel_size"], config["stride"], config["padding"], config["dilation"],
                             config["ceil_mode"])


def output_shape(config):
    sizes = [pool_output_size(s, k, st_, p, d, config["ceil_mode"]) for s, k, st_, p, d in
             zip(config["hw"], config["kernel_size"], config["stride"], config["padding"], config["dilation"],
                 strict=True)]
    return (config["batch"], config["channels"], *sizes)


def distinct_input(config, dtype, rng):
    """Every value different (a shuffled ramp), so each window has exactly one maximum; the values are
    1/size apart, far more than a finite-difference step."""
    shape = (config["batch"], config["channels"], *config["hw"])
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(dtype)


def tied_input(config, dtype, rng, levels):
    """Integer values from a tiny range: most windows hold several equal maxima (``levels=1``: constant)."""
    shape = (config["batch"], config["channels"], *config["hw"])
    return rng.integers(0, levels, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(pool_configs())
def test_maxpool2d_matches_torch(dtype, config_and_seed):
    """Output and dL/dx equal nn.MaxPool2d's; overlapping windows accumulate, padding never wins."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_pool(config)
    assert_parity(layer, torch_twin(layer), distinct_input(config, dtype, rng),
                  random_upstream(rng, output_shape(config), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(pool_configs(), st.integers(1, 3))
def test_maxpool2d_ties_go_where_torch_sends_them(dtype, config_and_seed, levels):
    """With tied maxima the whole window gradient goes to the first maximum in scan order, as in torch.

    The gradients are random, so sending it to another tied position, or splitting it, shows up.
    """
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_pool(config)
    assert_parity(layer, torch_twin(layer), tied_input(config, dtype, rng, levels),
                  random_upstream(rng, output_shape(config), dtype))


@given(pool_configs())
def test_maxpool2d_matches_finite_differences(config_and_seed):
    """With distinct values the max is locally the identity on its winner: central differences agree."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    assert_matches_numerical(make_pool(config), distinct_input(config, np.float64, rng),
                             random_upstream(rng, output_shape(config), np.float64))


@given(pool_configs(), st.sampled_from(["distinct", "tied"]))
def test_maxpool2d_fast_matches_naive_loops(config_and_seed, values):
    """The strided-slice version picks the same winners as a plain scan of every window, ties included."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    x = distinct_input(config, np.float64, rng) if values == "distinct" else tied_input(config, np.float64, rng, 2)
    upstream = random_upstream(rng, output_shape(config), np.float64)
    geometry = (config["kernel_size"], config["stride"], config["padding"], config["dilation"], config["ceil_mode"])
    y, cache = scratch.maxpool2d_forward(x, *geometry)
    y_naive, winners = maxpool2d_forward_naive(x, *geometry)
    np.testing.assert_array_equal(y, y_naive)
    assert_close(scratch.maxpool2d_backward(upstream, cache), maxpool2d_backward_naive(upstream, x, winners),
                 1e-14, what="grad input")


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.avg_pool_configs())
def test_avgpool2d_matches_torch(dtype, config_and_seed):
    """Output and dL/dx equal nn.AvgPool2d's: the divisor counts padding or not (count_include_pad), a
    ceil-mode window past the padding divides by what it covers up to the padding's end, divisor_override
    replaces the divisor, overlapping windows add their shares."""
    prop.avgpool2d_matches_torch(config_and_seed, dtype)


@given(prop.avg_pool_configs())
def test_avgpool2d_matches_finite_differences(config_and_seed):
    """Average pooling is linear: its gradient is exact, and central differences agree."""
    prop.avgpool2d_matches_finite_differences(config_and_seed)


@given(prop.avg_pool_configs())
def test_avgpool2d_fast_matches_naive_loops(config_and_seed):
    """The strided-slice version equals a plain loop over every window that counts its own divisor."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config["batch"], config["channels"], *config["hw"]))
    upstream = random_upstream(rng, prop.pool_output_shape(config), np.float64)
    options = (config["kernel_size"], config["stride"], config["padding"], config["ceil_mode"],
               config["count_include_pad"], config["divisor_override"])
    y, cache = scratch.avgpool2d_forward(x, *options)
    assert_close(y, avgpool2d_forward_naive(x, *options), 1e-14, what="output")
    assert_close(scratch.avgpool2d_backward(upstream, cache), avgpool2d_backward_naive(upstream, x, *options),
                 1e-14, what="grad input")


@pytest.mark.parametrize("options, message", [
    (dict(kernel_size=2, padding=2), "padding"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(kernel_size=2, stride=0), "stride"),
    (dict(kernel_size=2, divisor_override=0), "divisor_override"),
    (dict(kernel_size=2, divisor_override=1.5), "divisor_override"),
    (dict(kernel_size=(2, 2, 2)), "kernel_size"),
])
def test_avgpool2d_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        scratch.AvgPool2d(**options)


def test_avgpool2d_rejects_an_input_smaller_than_the_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel_size"):
        scratch.AvgPool2d(3)(np.zeros((1, 1, 2, 5)))

"""MaxPool2d: scratch vs ``nn.MaxPool2d`` (distinct values, then deliberate ties), finite differences,
and the fast (strided slices) vs the loop version. AvgPool2d: scratch vs ``nn.AvgPool2d`` with padding
counted and not, ceil mode and divisor_override, finite differences, and the loop version."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.naive import (
    avgpool2d_backward_naive,
    avgpool2d_forward_naive,
    maxpool2d_backward_naive,
    maxpool2d_forward_naive,
)
from simplecnn import properties as prop
from torch_impl.mirror import TOLERANCES, to_numpy, to_torch, torch_twin

from .parity import DTYPES, assert_close, random_upstream

pool_configs = prop.pool_configs
make_pool = prop.make_pool
output_shape = prop.pool_output_shape
distinct_input = prop.distinct_input
tied_input = prop.tied_input


@pytest.mark.parametrize("dtype", DTYPES)
@given(pool_configs())
def test_maxpool2d_matches_torch(dtype, config_and_seed):
    """Output, dL/dx (and the indices) equal nn.MaxPool2d's; overlapping windows accumulate, padding never
    wins."""
    prop.maxpool2d_matches_torch(config_and_seed, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(pool_configs(), prop.tie_levels)
def test_maxpool2d_ties_go_where_torch_sends_them(dtype, config_and_seed, levels):
    """With tied maxima the whole window gradient goes to the first maximum in scan order, as in torch.

    The gradients are random, so sending it to another tied position, or splitting it, shows up.
    """
    prop.maxpool2d_ties_go_where_torch_sends_them((config_and_seed, levels), dtype)


@given(pool_configs())
def test_maxpool2d_matches_finite_differences(config_and_seed):
    """With distinct values the max is locally the identity on its winner: central differences agree."""
    prop.maxpool2d_matches_finite_differences(config_and_seed)


@given(pool_configs(), st.sampled_from(["distinct", "tied"]))
def test_maxpool2d_fast_matches_naive_loops(config_and_seed, values):
    """The strided-slice version picks the same winners as a plain scan of every window, ties included;
    the cache-free evaluation version (running maximum) gives the same output."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    x = distinct_input(config, np.float64, rng) if values == "distinct" else tied_input(config, np.float64, rng, 2)
    if config["batch"] is None:
        x = x[None]
    upstream = random_upstream(rng, x.shape[:2] + output_shape(config)[-2:], np.float64)
    geometry = (config["kernel_size"], config["stride"], config["padding"], config["dilation"], config["ceil_mode"])
    y, cache = scratch.maxpool2d_forward(x, *geometry)
    y_naive, winners = maxpool2d_forward_naive(x, *geometry)
    np.testing.assert_array_equal(y, y_naive)
    np.testing.assert_array_equal(scratch.maxpool2d_inference(x, *geometry), y_naive)   # the no_grad path
    rows, cols = np.vectorize(lambda *key: winners[key][0]), np.vectorize(lambda *key: winners[key][1])
    flat = rows(*np.indices(y.shape)) * x.shape[3] + cols(*np.indices(y.shape))
    np.testing.assert_array_equal(scratch.maxpool2d_indices(cache), flat)
    assert_close(scratch.maxpool2d_backward(upstream, cache), maxpool2d_backward_naive(upstream, x, winners),
                 1e-14, what="grad input")


@pytest.mark.parametrize("very_negative", [-1e30, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_never_picks_padding(very_negative, dtype):
    """Padding is -inf and never wins, even where every real value of a window is -1e30 or -inf: the
    output is the real value, the index a real cell, and the gradient lands there, as in torch. (Compared
    directly rather than through assert_parity, whose relative errors need finite outputs.)"""
    rng = np.random.default_rng(7)
    layer = scratch.MaxPool2d(3, 2, 1, return_indices=True)
    x = np.full((2, 3, 5, 4), very_negative, dtype=dtype)
    x[:, :, 3:, 2:] = rng.standard_normal((2, 3, 2, 2))     # windows at the top-left hold only very_negative
    y, indices = layer.forward(x)
    upstream = random_upstream(rng, y.shape, dtype)
    dx = layer.backward(upstream)
    assert y[0, 0, 0, 0] == dtype(very_negative) and indices[0, 0, 0, 0] == 0   # the real cell (0, 0)
    x_t = to_torch(x, requires_grad=True)
    y_t, indices_t = torch_twin(layer)(x_t)
    y_t.backward(to_torch(upstream))
    np.testing.assert_array_equal(y, to_numpy(y_t))
    np.testing.assert_array_equal(indices, to_numpy(indices_t))
    assert_close(dx, to_numpy(x_t.grad), TOLERANCES[np.dtype(dtype)].backward, what="grad input")


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
    x = rng.standard_normal((config["batch"] or 1, config["channels"], *config["hw"]))   # the 4-D functions
    upstream = random_upstream(rng, x.shape[:2] + output_shape(config)[-2:], np.float64)
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


@pytest.mark.parametrize("hw, kernel, stride, padding", [((6, 4), (2, 2), (2, 2), (0, 0)),   # tiled: no zero fill
                                                         ((5, 5), (2, 2), (2, 2), (0, 0)),   # last row, column unread
                                                         ((6, 6), (3, 3), (2, 2), (1, 1)),   # overlapping, padded
                                                         ((6, 6), (2, 2), (3, 3), (0, 0))])  # gaps between windows
def test_maxpool2d_backward_writes_every_input_pixel(monkeypatch, hw, kernel, stride, padding):
    """The input gradient is written everywhere, also where no window reads (zeros there): the backward pass
    skips filling it with zeros first only where the windows tile the input. Checked with new arrays that
    start out as NaN."""
    def nan_filled(like, shape=None, dtype=None):
        out = scratch.module.empty_laid_out_as(like, shape, dtype)
        out[...] = np.nan
        return out

    monkeypatch.setattr(scratch.pool, "empty_laid_out_as", nan_filled)
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 3 * hw[0] * hw[1]).reshape(2, 3, *hw).astype(np.float64)
    y, cache = scratch.maxpool2d_forward(x, kernel, stride, padding)
    upstream = random_upstream(rng, y.shape, np.float64)
    _, winners = maxpool2d_forward_naive(x, kernel, stride, padding)
    assert_close(scratch.maxpool2d_backward(upstream, cache), maxpool2d_backward_naive(upstream, x, winners), 1e-14,
                 what="grad input")

"""Conv2d: scratch vs ``nn.Conv2d``, vs finite differences, and the fast (im2col) vs the loop version."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.conv import PADDING_MODES, pad_input, unpad_gradient
from scratch.naive import conv2d_backward_naive, conv2d_forward_naive, pad_naive, unpad_gradient_naive
from simplecnn import properties as prop
from simplecnn.properties import conv_configs, conv_layer_pads, make_conv

from .parity import DTYPES, assert_close


@pytest.mark.parametrize("dtype", DTYPES)
@given(conv_configs())
def test_conv2d_matches_torch(dtype, config_and_seed):
    """Output, dL/dx, dL/dweight and dL/dbias equal nn.Conv2d's for any kernel/stride/padding/dilation,
    groups and padding_mode, batched or not."""
    prop.conv2d_matches_torch(config_and_seed, dtype)


@given(conv_configs(max_channels=2, max_extra_size=3))
def test_conv2d_matches_finite_differences(config_and_seed):
    """The analytic gradients equal central differences (an oracle independent of PyTorch)."""
    prop.conv2d_matches_finite_differences(config_and_seed)


@pytest.mark.parametrize("batch_last", [False, True])
@given(conv_configs())
def test_conv2d_fast_matches_naive_loops(batch_last, config_and_seed):
    """im2col and col2im (per image, and grouped batch last), the products kernel row by kernel row (batch last),
    and the padding folds compute what the loop-over-output-positions definition (with its cell-by-cell
    padding) computes."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, np.float64, np.random.default_rng(seed))
    if config["batch"] is None:
        x, upstream = x[None], upstream[None]
    pads = conv_layer_pads(config["padding"], config["kernel_size"], config["dilation"])
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


@given(st.sampled_from(PADDING_MODES), prop.pairs(st.integers(0, 3), st.integers(0, 3)),
       prop.pairs(st.integers(0, 3), st.integers(0, 3)), prop.seeds)
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


@pytest.mark.parametrize("with_bias", [False, True])
def test_batch_last_bias_rides_in_a_row_of_ones_that_every_forward_writes(with_bias):
    """Batch last, the patch matrix has a row of ones under it exactly when there is a bias, and the bias
    goes through the product. The layer recycles the matrix as memory for the next one (a first layer,
    whose backward returns no input gradient in that memory), so each forward writes the row again: with
    the recycled memory overwritten between two steps, the second output equals the first, and both the
    loops' definition."""
    rng = np.random.default_rng(3)
    layer = scratch.Conv2d(3, 4, 3, bias=with_bias, rng=rng, dtype=np.float64, need_input_grad=False)
    x = rng.standard_normal((2, 3, 6, 7))
    bias = layer.bias.data if with_bias else None
    outputs, matrices = [], []
    for _ in range(2):
        y = layer.forward(x)
        (cols, *_), _ = layer._cache
        matrices.append(cols)
        assert cols.shape == (3 * 3 * 3 + with_bias, 4 * 5 * 2)
        assert not with_bias or (cols[-1] == 1).all()
        layer.backward(np.ones_like(y))
        cols[...] = 7.0                                # the memory the next forward gets back
        outputs.append(y.copy())
    assert matrices[1] is matrices[0]                  # the second forward got the first one's memory
    np.testing.assert_array_equal(outputs[0], outputs[1])
    naive = conv2d_forward_naive(x, layer.weight.data, bias, (1, 1), (0, 0, 0, 0), (1, 1), 1, "zeros")
    assert_close(outputs[0], naive, 1e-12, what="output")

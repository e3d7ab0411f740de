"""Batch-last memory (scratch/module.py): every layer computes the same numbers from a batch-last input as
from the same values in NCHW memory, and hands its output and its input gradient on laid out as its input
was. Convolutions that compute batch last return batch-last outputs, and SimpleCNN's layers pass that
layout from one convolution to the next.

Bit for bit where the layer's arithmetic does not depend on the layout (selections, elementwise passes,
the convolution, whose patch matrix holds the same numbers either way); to 1e-12 in float64 for
batch-norm, whose sums run over runs of memory and so add in another order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch import batchnorm
from scratch.module import empty_laid_out_as, is_batch_last, laid_out_as, memory_order
from simplecnn import properties as prop


def batch_last(a: np.ndarray) -> np.ndarray:
    """The values of (N, C, H, W) ``a`` in a new batch-last array."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def memory_axes(a: np.ndarray) -> list[int]:
    """``a``'s axes from the slowest-varying in memory to the fastest, leaving out axes of length 1 (whose
    stride means nothing): [1, 2, 3, 0] for batch last, [0, 1, 2, 3] for NCHW."""
    axes = [axis for axis in range(a.ndim) if a.shape[axis] > 1]
    return sorted(axes, key=lambda axis: -a.strides[axis])


def assert_batch_last(a: np.ndarray, what: str) -> None:
    """``a``'s memory is in batch-last order (axes of length 1 aside), padding cropped or not."""
    expected = [axis for axis in (1, 2, 3, 0) if a.shape[axis] > 1]
    assert memory_axes(a) == expected, f"{what}: memory order {memory_axes(a)}, batch last is {expected}"


def forward_backward(layer, x, upstream, **forward_kwargs):
    y = layer.forward(x, **forward_kwargs)
    return y, layer.backward(upstream)


def assert_same_in_both_layouts(make_layer, x, upstream, exact: bool, **forward_kwargs) -> None:
    """``make_layer()`` twice: fed ``x`` NCHW, and the same values batch last. Output, input gradient and
    parameter gradients agree (bit for bit where ``exact``); the batch-last run's output and input gradient
    are batch last."""
    nchw, last = make_layer(), make_layer()
    y, dx = forward_backward(nchw, x, upstream, **forward_kwargs)
    x_bl = batch_last(x)
    y_bl, dx_bl = forward_backward(last, x_bl, batch_last(upstream), **forward_kwargs)
    if is_batch_last(x_bl):          # (not when it is NCHW too: one image, or one number per image)
        assert_batch_last(y_bl, "output")
        if is_batch_last(y_bl):      # (the gradient follows the output's layout, when it has one)
            assert_batch_last(dx_bl, "input gradient")
    pairs = [("output", y, y_bl), ("input gradient", dx, dx_bl)]
    pairs += [(f"grad {name}", p.grad, last.parameters()[name].grad) for name, p in nchw.parameters().items()]
    for what, ours, theirs in pairs:
        if exact:
            np.testing.assert_array_equal(theirs, ours, err_msg=what, strict=True)
        else:
            scale = float(np.abs(ours).max(initial=1.0))
            np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@given(prop.pool_configs(), st.sampled_from([None, 0.0]))
def test_maxpool2d(config_and_seed, floor):
    """Windows over a batch-last input read runs of N numbers; the same winners, the same gradient,
    ties included (``floor=0``: the merged ReLU)."""
    config, seed = config_and_seed
    if config["batch"] is None or config["return_indices"] and floor is not None:
        return
    rng = np.random.default_rng(seed)
    x = prop.tied_input(config, np.float64, rng, 3) - 1.0
    upstream = prop.random_upstream(rng, prop.pool_output_shape(config), np.float64)
    kwargs = {} if floor is None else {"floor": floor}
    assert_same_in_both_layouts(lambda: prop.make_pool(dict(config, return_indices=False)), x, upstream, True,
                                **kwargs)


@given(prop.avg_pool_configs())
def test_avgpool2d(config_and_seed):
    config, seed = config_and_seed
    if config["batch"] is None:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(prop.pool_input_shape(config))
    upstream = prop.random_upstream(rng, prop.pool_output_shape(config), np.float64)
    assert_same_in_both_layouts(lambda: prop.make_avg_pool(config), x, upstream, True)


@given(prop.batchnorm_configs(), st.booleans(), st.sampled_from([384, 2, 1]))
def test_batchnorm2d(config_and_seed, training, row_numbers):
    """The statistics of a batch-last input are sums over pieces of rows, whole pixels of W*N numbers: the
    same values, added in another order. (``ROW_NUMBERS`` 2 and 1 cut the suite's small rows too: into
    pieces of one pixel, N numbers, and into a piece per pixel however long.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchnorm, "ROW_NUMBERS", row_numbers)
        check_batchnorm2d(config_and_seed, training)


def test_batchnorm_walks_rows_in_pieces():
    """batch1's input at batch 64, batch last: each row of 24 pixels (1,536 numbers) in 4 pieces of 384."""
    x = np.empty((32, 24, 24, 64), dtype=np.float32).transpose(3, 0, 1, 2)
    walked = batchnorm.walk(x)
    assert walked.shape == (96, 32, 1, 384) and np.shares_memory(walked, x)
    assert batchnorm.walk(np.empty((64, 32, 24, 24))).shape == (64, 32, 24, 24)   # NCHW: itself


def check_batchnorm2d(config_and_seed, training):
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    x = prop.batchnorm_input(config, np.float64, rng)
    upstream = prop.random_upstream(rng, config["shape"], np.float64)

    def make():
        layer = prop.make_batchnorm(config, np.float64, np.random.default_rng(seed))
        return layer.train(training)

    assert_same_in_both_layouts(make, x, upstream, exact=False)


@given(prop.dropout_examples)
def test_dropout_with_a_given_mask(example):
    p, shape, seed = example
    if len(shape) != 4:
        shape = (*shape, 2, 3, 2)[:4]
    rng = np.random.default_rng(seed)
    x, upstream = rng.standard_normal(shape), prop.random_upstream(rng, shape, np.float64)
    mask = rng.random(shape) >= p
    assert_same_in_both_layouts(lambda: scratch.Dropout(p), x, upstream, True, mask=mask)


@given(prop.elementwise_examples(kinds=("relu", *prop.ELEMENTWISE)))
def test_elementwise_activations(example):
    activation, seed = example[0], example[-1]
    rng = np.random.default_rng(seed)
    shape = (3, 2, 4, 5)
    x, upstream = rng.standard_normal(shape), prop.random_upstream(rng, shape, np.float64)
    assert_same_in_both_layouts(lambda: prop.make_elementwise(activation), x, upstream, True)


def test_flatten_gives_its_input_layout_back():
    """Flatten's output holds the values in (C, H, W) order for each image either way (what fc1's weights
    expect), a view of batch-last memory too; its gradient comes back in the layout its input had."""
    rng = np.random.default_rng(0)
    x, upstream = rng.standard_normal((4, 3, 2, 5)), rng.standard_normal((4, 30))
    flatten = scratch.Flatten()
    x_bl = batch_last(x)
    y = flatten.forward(x_bl)
    np.testing.assert_array_equal(y, x.reshape(4, -1))
    assert np.shares_memory(y, x_bl)
    dx = flatten.backward(upstream)
    assert is_batch_last(dx)
    np.testing.assert_array_equal(dx, upstream.reshape(x.shape))


@given(prop.conv_configs())
def test_conv2d_takes_either_layout(config_and_seed):
    """The same patch matrix from either layout: the same numbers, bit for bit, forward and backward,
    whatever the layout of the upstream gradient."""
    config, seed = config_and_seed
    if config["batch"] is None:
        return
    _, x, upstream = prop.make_conv(config, np.float64, np.random.default_rng(seed))

    def run(x_in, g):
        layer, _, _ = prop.make_conv(config, np.float64, np.random.default_rng(seed))
        y = layer.forward(x_in)
        return (y, layer.backward(g), *(p.grad for p in layer.parameters().values()))

    reference = run(x, upstream)
    for x_in, g in ((batch_last(x), upstream), (x, batch_last(upstream)), (batch_last(x), batch_last(upstream))):
        for ours, theirs in zip(reference, run(x_in, g), strict=True):
            np.testing.assert_array_equal(theirs, ours, strict=True)


def test_conv2d_computing_batch_last_returns_batch_last_arrays():
    """A convolution that computes batch last (short output rows, or one input channel) leaves its output
    and its input gradient batch last: the next layers take them without a transpose."""
    rng = np.random.default_rng(0)
    for conv, shape in ((scratch.Conv2d(1, 4, 5, rng=rng, dtype=np.float64), (3, 1, 28, 28)),
                        (scratch.Conv2d(4, 6, 5, rng=rng, dtype=np.float64), (3, 4, 12, 12))):
        y = conv.forward(rng.standard_normal(shape))
        assert is_batch_last(y)
        dx = conv.backward(rng.standard_normal(y.shape))
        assert dx is None or is_batch_last(dx)


def test_simplecnn_passes_batch_last_arrays_between_its_layers():
    """In a training step, every 4-D array between conv1 and flatten is batch last, forward and backward,
    and the dropout masks drawn on another core are the draws the layers would make themselves."""
    model = scratch.SimpleCNN(seed=1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28))
    seen = []
    for name, layer in model.layers.items():
        if name in ("flatten", "fc1", "relu3", "fc2"):
            continue
        forward, backward = layer.forward, layer.backward
        layer.forward = lambda *a, _f=forward, _n=name, **k: seen.append((_n, "out", _f(*a, **k))) or seen[-1][2]
        layer.backward = lambda g, _b=backward, _n=name: seen.append((_n, "in", g)) or _b(g)
    logits = model(x)
    model.backward(np.ones_like(logits) / logits.size)
    assert {name for name, _, _ in seen} >= {"conv1", "batch1", "max1", "dropout1", "conv2", "batch2", "max2",
                                             "dropout2"}
    for name, what, array in seen:
        assert is_batch_last(array), f"{name} {what}"
    drawn = scratch.SimpleCNN(seed=1, dtype=np.float64)
    masks = drawn.sample_dropout_masks(5)
    own = scratch.SimpleCNN(seed=1, dtype=np.float64)
    for name in ("dropout1", "dropout2"):
        layer = own.layers[name]
        shape = masks[name].shape
        np.testing.assert_array_equal(masks[name], layer.sample_mask(shape, batch_last=True))


def test_batch_last_masks_are_drawn_in_memory_order():
    """``sample_mask(shape, batch_last=True)``: the generator's numbers fill (C, H, W, N) in order."""
    shape = (3, 2, 4, 5)
    mask = scratch.Dropout(0.3, rng=np.random.default_rng(7)).sample_mask(shape, batch_last=True)
    numbers = np.random.default_rng(7).bit_generator.random_raw(60).view(np.uint32)[:120].reshape(2, 4, 5, 3)
    assert is_batch_last(mask)
    np.testing.assert_array_equal(mask, (numbers >= round(0.3 * 2 ** 32)).transpose(3, 0, 1, 2))


def test_layout_helpers():
    a = np.arange(120.0).reshape(2, 3, 4, 5)
    b = batch_last(a)
    assert is_batch_last(b) and not is_batch_last(a) and not is_batch_last(a[:, :, :2])
    assert is_batch_last(empty_laid_out_as(b, (4, 1, 2, 3))) and empty_laid_out_as(a).flags.c_contiguous
    entries = empty_laid_out_as(b, (4, *b.shape))            # a leading axis, outermost
    assert entries.shape == (4, *b.shape) and is_batch_last(entries[1]) and entries[1].base is not None
    assert laid_out_as(b, b) is b and laid_out_as(a, a) is a
    assert is_batch_last(laid_out_as(a, b)) and laid_out_as(b, a).flags.c_contiguous
    np.testing.assert_array_equal(laid_out_as(a, b), a)
    assert memory_order(b).flags.c_contiguous and memory_order(a) is a
    assert memory_order(np.ones((1, 3, 1, 1)), b).shape == (3, 1, 1, 1)

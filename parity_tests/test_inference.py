"""scratch/inference.py: evaluation's merged steps compute what the layers compute one by one
(docs/01-overview.md, "Evaluation in fewer passes"), and so does training's one merge, ReLU + max-pool
(scratch/model.py). The merges are scratch's own, so the reference here is scratch's layers run one at a
time (each of which the rest of the suite checks against torch)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch
from scratch.conv import pad_input, to_batch_last
from scratch.inference import can_fold, fold_batchnorm, inference_forward, inference_steps
from scratch.model import relus_before_maxpools
from scratch.module import is_batch_last
from simplecnn import properties as prop
from simplecnn.properties import conv_configs, make_conv, make_pool, pool_configs, tie_levels, tied_input
from torch_impl.mirror import TOLERANCES

from .parity import DTYPES, assert_close


def layer_by_layer(layers, x):
    """The layers' own forward passes, one after the other, under no_grad (no merging)."""
    with scratch.no_grad():
        for layer in layers:
            x = layer.forward(x)
    return x


def trained_batchnorm(channels, dtype, rng, affine=True):
    """A batch-norm layer in evaluation mode whose statistics and affine parameters are far from their
    initial values (negative scales included), as after training."""
    bn = scratch.BatchNorm2d(channels, affine=affine, dtype=dtype)
    bn.running_mean[...] = rng.standard_normal(channels)
    bn.running_var[...] = rng.uniform(0.05, 3.0, channels)
    if affine:
        bn.weight.data[...] = rng.standard_normal(channels)
        bn.bias.data[...] = rng.standard_normal(channels)
    return bn.eval()


@pytest.mark.parametrize("dtype", DTYPES)
@given(conv_configs(), st.booleans())
def test_convolution_then_batchnorm_is_one_convolution(dtype, config_and_seed, affine):
    """conv then batch-norm (running statistics) equals the folded convolution for any convolution: any
    kernel, stride, padding, padding mode, dilation and groups, with or without bias."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    conv, x, _ = make_conv(config, dtype, rng)
    if x.ndim == 3:
        x = x[None]                      # batch-norm takes (N, C, H, W) only
    bn = trained_batchnorm(conv.out_channels, dtype, rng, affine)
    assert can_fold(conv, bn)
    with scratch.no_grad():
        merged = conv.forward_with(x, *fold_batchnorm(conv, bn))
    assert_close(merged, layer_by_layer([conv, bn], x), TOLERANCES[np.dtype(dtype)].forward,
                 what="folded output")


@given(pool_configs(), tie_levels, st.booleans())
def test_relu_then_maxpool_is_maxpool_from_zero_bit_for_bit(config_and_seed, levels, with_nan):
    """relu then max-pool equals max-pool with every window started at 0, exactly: ties, -inf padding,
    ceil mode, dilation, and a NaN (which both propagate)."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    pool = make_pool(config)
    x = tied_input(config, np.float64, rng, levels + 1) - levels / 2       # negatives, zeros, ties
    if with_nan:
        x.flat[rng.integers(x.size)] = np.nan
    with scratch.no_grad():
        np.testing.assert_array_equal(pool.inference(x, floor=0), pool.inference(np.maximum(x, 0)), strict=True)


@given(pool_configs(), tie_levels, st.booleans())
def test_relu_then_maxpool_in_training_is_maxpool_from_zero_bit_for_bit(config_and_seed, levels, with_nan):
    """Training's merge: MaxPool2d.forward(x, floor=0) and its backward give exactly the output and the
    input gradient of ReLU then max-pool (ties, zeros, -inf padding, overlapping windows, ceil mode,
    dilation, NaN), for a finite upstream gradient."""
    config, seed = config_and_seed
    config = {**config, "return_indices": False}
    rng = np.random.default_rng(seed)
    x = tied_input(config, np.float64, rng, levels + 1) - levels / 2       # negatives, zeros, ties
    if with_nan:
        x.flat[rng.integers(x.size)] = np.nan
    relu, pool, merged = scratch.ReLU(), make_pool(config), make_pool(config)
    y = merged.forward(x, floor=0)
    np.testing.assert_array_equal(y, pool.forward(relu.forward(x)), strict=True)
    upstream = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(merged.backward(upstream), relu.backward(pool.backward(upstream)), strict=True)


def test_the_merged_step_sends_no_infinite_gradient_where_relu_is_flat():
    """An infinite upstream gradient on a window whose maximum is 0: torch's ReLU gives its input 0 there,
    and so does the merged step (the separate layers' ``g * [x > 0]`` would give NaN), as the docstring of
    MaxPool2d.forward says."""
    torch = pytest.importorskip("torch")
    x = np.array([[[[0.0, -1.0, 2.0, 3.0], [-2.0, -3.0, 1.0, 0.5]]]])   # windows: max 0, max 3
    upstream = np.array([[[[np.inf, 1.0]]]])
    pool = scratch.MaxPool2d(2)
    pool.forward(x, floor=0)
    ours = pool.backward(upstream)
    x_t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(torch.relu(x_t), 2).backward(torch.tensor(upstream))
    np.testing.assert_array_equal(ours, x_t.grad.numpy())
    assert not np.isnan(ours).any()


def test_floor_and_return_indices_do_not_mix():
    with pytest.raises(ValueError, match="floor is not supported with return_indices"):
        scratch.MaxPool2d(2, return_indices=True).forward(np.zeros((1, 1, 4, 4)), floor=0)


@pytest.mark.parametrize("activation, pool, merged", [
    ("relu", "max", {"relu1": "max1", "relu2": "max2"}), ("tanh", "max", {}), ("relu", "avg", {})])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=3)
@given(prop.seeds)
def test_simplecnn_training_step_equals_its_layers(activation, pool, merged, dtype, seed):
    """A training step of model(x) (each ReLU before a max-pool run inside it, keeping no cache; each
    batch-norm after a convolution keeping x_hat in the convolution's output) gives the logits and every
    parameter gradient of the layers run one by one, bit for bit."""
    rng = np.random.default_rng(seed)
    model, reference = (scratch.SimpleCNN(activation=activation, pool=pool, seed=seed % 1000, dtype=dtype)
                        for _ in range(2))
    assert relus_before_maxpools(model.layers) == merged
    x, labels = rng.standard_normal((6, 1, 28, 28)).astype(dtype), rng.integers(0, 10, 6)
    masks = model.sample_dropout_masks(6)
    logits = model(x, masks)
    expected = x
    for name, layer in reference.layers.items():
        expected = layer.forward(expected, masks[name]) if name in masks else layer.forward(expected)
    np.testing.assert_array_equal(logits, expected, strict=True)
    assert all(model.layers[relu]._cache is None for relu in merged)     # skipped, not run twice
    model.backward(scratch.cross_entropy(logits, labels)[1])
    grad = scratch.cross_entropy(expected, labels)[1]
    for layer in reversed(reference.layers.values()):
        grad = layer.backward(grad)
    ours, theirs = model.parameters(), reference.parameters()
    for key in ours:
        np.testing.assert_array_equal(ours[key].grad, theirs[key].grad, err_msg=key, strict=True)


@given(prop.seeds, st.sampled_from([(2, 2, 0), (3, 2, 1), (2, 1, 0)]))
def test_merged_step_changes_no_bit(seed, pool_geometry):
    """conv + batch-norm + ReLU + max-pool as one step gives exactly the output of the two smaller merges
    (conv + batch-norm, then ReLU + max-pool)."""
    rng = np.random.default_rng(seed)
    kernel, stride, padding = pool_geometry
    conv = scratch.Conv2d(3, 5, 3, padding=1, rng=rng, dtype=np.float32)
    layers = {"conv": conv, "bn": trained_batchnorm(5, np.float32, rng), "relu": scratch.ReLU(),
              "pool": scratch.MaxPool2d(kernel, stride, padding)}
    x = rng.standard_normal((4, 3, 9, 8)).astype(np.float32)
    assert [name for name, _ in inference_steps(layers)] == ["conv+bn+relu+pool"]
    with scratch.no_grad():
        whole = inference_forward(layers, x)
        in_two = inference_forward({k: layers[k] for k in ("relu", "pool")},
                                   inference_forward({k: layers[k] for k in ("conv", "bn")}, x))
    np.testing.assert_array_equal(whole, in_two, strict=True)


@pytest.mark.parametrize("activation, pool, steps", [
    ("relu", "max", ["conv1+batch1+relu1+max1", "dropout1", "conv2+batch2+relu2+max2", "dropout2", "flatten",
                     "fc1", "relu3", "fc2"]),
    ("tanh", "max", ["conv1+batch1", "relu1", "max1", "dropout1", "conv2+batch2", "relu2", "max2", "dropout2",
                     "flatten", "fc1", "relu3", "fc2"]),
    ("relu", "avg", ["conv1+batch1", "relu1", "max1", "dropout1", "conv2+batch2", "relu2", "max2", "dropout2",
                     "flatten", "fc1", "relu3", "fc2"]),
])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=5)
@given(prop.seeds)
def test_simplecnn_evaluation_equals_its_layers(activation, pool, steps, dtype, seed):
    """model(x) under no_grad in eval mode runs the merged steps (only those that are exact for the
    chosen activation and pooling) and returns the layers' own logits."""
    rng = np.random.default_rng(seed)
    model = scratch.SimpleCNN(activation=activation, pool=pool, seed=seed % 1000, dtype=dtype)
    for name in ("batch1", "batch2"):
        model.layers[name] = trained_batchnorm(model.layers[name].num_features, dtype, rng)
    model.eval()
    assert [name for name, _ in inference_steps(model.layers)] == steps
    x = rng.standard_normal((5, 1, 28, 28)).astype(dtype)
    with scratch.no_grad():
        logits = model(x)
    assert_close(logits, layer_by_layer(model.layers.values(), x), TOLERANCES[np.dtype(dtype)].forward,
                 what="logits")


def test_batchnorm_with_batch_statistics_is_not_folded():
    """In training mode, or without running statistics, batch-norm normalizes with the batch's own
    statistics: no fixed weight can do that, so the layers run as they are (and the running statistics
    move exactly once)."""
    rng = np.random.default_rng(0)
    conv = scratch.Conv2d(2, 3, 3, rng=rng, dtype=np.float64)
    untracked = scratch.BatchNorm2d(3, track_running_stats=False, dtype=np.float64).eval()
    training = scratch.BatchNorm2d(3, dtype=np.float64)
    x = rng.standard_normal((4, 2, 6, 6))
    for bn in (untracked, training):
        assert not can_fold(conv, bn)
        assert [name for name, _ in inference_steps({"conv": conv, "bn": bn})] == ["conv", "bn"]
    with scratch.no_grad():
        y = inference_forward({"conv": conv, "bn": training}, x)
    assert training.num_batches_tracked == 1
    reference = scratch.BatchNorm2d(3, dtype=np.float64)
    np.testing.assert_array_equal(y, layer_by_layer([conv, reference], x))
    np.testing.assert_array_equal(training.running_mean, reference.running_mean)


def test_the_fold_sees_every_change_of_the_statistics():
    """The folded weights are computed on every call: a new running mean changes the next output."""
    rng = np.random.default_rng(1)
    layers = {"conv": scratch.Conv2d(2, 3, 3, rng=rng, dtype=np.float64),
              "bn": trained_batchnorm(3, np.float64, rng)}
    x = rng.standard_normal((2, 2, 5, 5))
    with scratch.no_grad():
        before = inference_forward(layers, x)
        layers["bn"].running_mean += 1.0
        after = inference_forward(layers, x)
    assert_close(after, layer_by_layer(layers.values(), x), 1e-12, what="after the change")
    assert not np.allclose(before, after)


def test_an_evaluation_in_between_leaves_a_pending_backward_alone():
    """A training forward, an evaluation of other images (merged steps), then the backward: the gradients
    are those of the training forward, as without the evaluation in between."""
    def gradients(evaluate_in_between: bool):
        model = scratch.SimpleCNN(seed=3, dtype=np.float64)
        rng = np.random.default_rng(3)
        x, other = rng.standard_normal((2, 4, 1, 28, 28))
        masks = model.sample_dropout_masks(4)
        _, grad = scratch.cross_entropy(model(x, masks), np.arange(4))
        if evaluate_in_between:
            model.eval()
            with scratch.no_grad():
                model(other)
            model.train()
        model.backward(grad)
        return {k: p.grad.copy() for k, p in model.parameters().items()}

    plain, with_evaluation = gradients(False), gradients(True)
    for key, grad in plain.items():
        np.testing.assert_array_equal(with_evaluation[key], grad, err_msg=key)


def test_other_weights_need_no_grad():
    """forward_with runs other weights only where no backward pass could mistake them for the layer's."""
    conv = scratch.Conv2d(1, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    with pytest.raises(RuntimeError, match="no_grad"):
        conv.forward_with(np.zeros((1, 1, 4, 4)), conv.weight.data * 2, conv.bias.data)


def test_unbatched_input_still_gets_batchnorms_error():
    """Batch-norm takes (N, C, H, W) only; merged with its convolution, it still says so."""
    rng = np.random.default_rng(0)
    layers = {"conv": scratch.Conv2d(1, 2, 3, rng=rng, dtype=np.float64), "bn": trained_batchnorm(2, np.float64, rng)}
    with scratch.no_grad(), pytest.raises(ValueError, match="expected a 4-D input"):
        inference_forward(layers, np.zeros((1, 5, 5)))


@given(conv_configs())
def test_batch_last_output_is_the_same_output_left_in_batch_last_memory(config_and_seed):
    """conv2d_forward(batch_last=True) returns the per-image numbers (up to the order of additions) as a
    view of (O, Ho, Wo, N) memory; per image, the output is NCHW. Max-pool keeps the layout, and
    to_batch_last hands such an array on without a copy."""
    config, seed = config_and_seed
    conv, x, _ = make_conv(config, np.float64, np.random.default_rng(seed))
    if x.ndim == 3:
        x = x[None]
    x_in = pad_input(x, conv._pads, conv.padding_mode) if conv.explicit_padding else x
    padding = (0, 0) if conv.explicit_padding else (conv._pads[0], conv._pads[2])
    geometry = (conv.weight.data, conv.bias.data if conv.bias is not None else None, conv.stride, padding,
                conv.dilation)
    y, _ = scratch.conv2d_forward(x_in, *geometry, batch_last=False, groups=conv.groups)
    y_view, _ = scratch.conv2d_forward(x_in, *geometry, batch_last=True, groups=conv.groups)
    assert y.flags.c_contiguous and (is_batch_last(y_view) or y_view.flags.c_contiguous)
    np.testing.assert_allclose(y_view, y, rtol=1e-12, atol=1e-12 * float(np.abs(y).max(initial=1.0)))
    batch_last = to_batch_last(y_view)
    assert batch_last.flags.c_contiguous and np.shares_memory(batch_last, y_view)
    pooled = scratch.maxpool2d_inference(y_view, (1, 1), (1, 1))
    assert to_batch_last(pooled).flags.c_contiguous
    np.testing.assert_array_equal(pooled, y_view)

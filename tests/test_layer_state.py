"""State a layer or optimizer keeps between calls never makes numbers silently wrong."""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from scratch.module import StateDictError
from scratch.train import NonFiniteLossError, index_batches, train_one_epoch


def _conv_gradients(extra_forward: bool):
    rng = np.random.default_rng(0)
    x, other = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 3, 6, 6))
    g = rng.standard_normal((2, 4, 4, 4))
    conv = scratch.Conv2d(3, 4, 3, rng=np.random.default_rng(1), dtype=np.float64)
    conv.forward(x)
    conv.backward(g)                      # a first step: the layer now has a patch matrix to recycle
    conv.forward(x)
    if extra_forward:
        with scratch.no_grad():
            conv.forward(other)           # e.g. a validation batch between forward and backward
    return conv.backward(g), conv.weight.grad.copy()


def test_conv_buffer_reuse_never_overwrites_a_pending_cache():
    dx_plain, dw_plain = _conv_gradients(extra_forward=False)
    dx, dw = _conv_gradients(extra_forward=True)
    np.testing.assert_array_equal(dx, dx_plain)
    np.testing.assert_array_equal(dw, dw_plain)


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: scratch.Conv2d(3, 4, 3, dtype=np.float64), (2, 3, 6, 6)),       # batch last (short rows)
    (lambda: scratch.Conv2d(3, 4, 3, dtype=np.float64), (2, 3, 20, 20)),     # per image
    (lambda: scratch.BatchNorm2d(3, dtype=np.float64), (2, 3, 6, 6)),
    (lambda: scratch.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda: scratch.Dropout(0.5, rng=np.random.default_rng(0)), (2, 3, 6, 6)),
], ids=["conv-batch-last", "conv-per-image", "batchnorm", "maxpool", "dropout"])
def test_an_input_gradient_the_caller_keeps_survives_the_layers_next_steps(make_layer, shape):
    """A backward pass may put dx in memory its cache owned (the patch matrix, x_hat, the mask): that
    memory is then the caller's, and two more steps of the layer leave a dx the caller kept as it was."""
    rng = np.random.default_rng(0)
    layer = make_layer()
    y = layer.forward(rng.standard_normal(shape))
    dx = layer.backward(rng.standard_normal(y.shape))
    kept = dx.copy()
    for _ in range(2):
        y = layer.forward(rng.standard_normal(shape))
        layer.backward(rng.standard_normal(y.shape))
    np.testing.assert_array_equal(dx, kept)


def test_a_model_never_writes_over_its_callers_input():
    """Only an array the model made itself is reused: batch-norm keeps x_hat in a convolution's output,
    never in the input a caller hands to a model that starts with batch-norm."""
    rng = np.random.default_rng(0)
    model = scratch.Sequential({"bn": scratch.BatchNorm2d(3, dtype=np.float64),
                                "conv": scratch.Conv2d(3, 4, 3, dtype=np.float64),
                                "bn2": scratch.BatchNorm2d(4, dtype=np.float64)})
    x = rng.standard_normal((2, 3, 6, 6))
    kept = x.copy()
    y = model(x)
    model.backward(np.ones_like(y))
    np.testing.assert_array_equal(x, kept)


def test_dropout_backward_uses_the_mask_of_its_pending_forward():
    dropout = scratch.Dropout(0.5, rng=np.random.default_rng(0))
    x = np.ones((4, 6))
    y = dropout.forward(x)
    dropout.eval()
    with scratch.no_grad():
        assert dropout.forward(x) is x    # evaluation in between: identity, keeps nothing
    np.testing.assert_array_equal(dropout.backward(np.ones_like(x)), y)  # mask * 1/(1-p), as before


def test_pool_gradient_ignores_changes_to_its_returned_output():
    x = np.random.default_rng(0).permutation(64).reshape(1, 1, 8, 8).astype(np.float64)
    pool = scratch.MaxPool2d(2)
    y = pool.forward(x)
    expected_mask = (x == np.repeat(np.repeat(y, 2, 2), 2, 3))
    y[...] = -1.0                         # the caller reuses the output array in place
    dx = pool.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx, expected_mask.astype(np.float64))


def test_optimizer_state_mismatches_are_reported_at_once():
    model = scratch.SimpleCNN(seed=0)
    state = scratch.Adam(model.parameters()).state_dict()
    del state["exp_avg.fc2.bias"]
    state["exp_avg_sq.conv1.weight"] = np.zeros(3, np.float32)
    with pytest.raises(StateDictError) as err:
        scratch.Adam(model.parameters()).load_state_dict(state)
    assert "missing key 'exp_avg.fc2.bias'" in str(err.value)
    assert "'exp_avg_sq.conv1.weight': expected shape (32, 1, 5, 5), got (3,)" in str(err.value)


def test_nan_loss_names_the_step_counted_from_a_resumed_position():
    model = scratch.SimpleCNN(seed=0)
    images = np.full((8, 1, 28, 28), np.nan, np.float32)
    with pytest.raises(NonFiniteLossError, match="epoch 3, step 5"):
        train_one_epoch(model, scratch.CrossEntropyLoss(), scratch.Adam(model.parameters()),
                        index_batches(images, np.zeros(8, np.int64), [np.arange(4), np.arange(4, 8)]),
                        epoch=3, first_step=5)


# --- SimpleCNN draws a training step's dropout masks on another core (docs/06-dropout.md) ------------

def _forward_layer_by_layer(model, x):
    """Every layer's own forward in order: each dropout layer draws its own mask when it runs."""
    for layer in model.layers.values():
        x = layer.forward(x)
    return x


@pytest.mark.parametrize("threads", [1, 2])
def test_the_masks_drawn_meanwhile_are_those_the_layers_would_draw(threads):
    """model(x) in training draws both masks before its layers run (on another thread, or first with
    SIMPLECNN_THREADS=1): the same numbers, in the same order, from the same generator, so the logits
    and the generator's state after the step are those of the layers drawing for themselves."""
    saved = scratch.parallel.workers()
    scratch.parallel.set_workers(threads)
    try:
        x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
        model, reference = scratch.SimpleCNN(seed=4), scratch.SimpleCNN(seed=4)
        for _ in range(2):
            np.testing.assert_array_equal(model(x), _forward_layer_by_layer(reference, x))
            assert model.dropout_rng.bit_generator.state == reference.dropout_rng.bit_generator.state
    finally:
        scratch.parallel.set_workers(saved)


def test_a_dropout_layer_in_eval_mode_draws_nothing_ahead():
    """Masks are drawn ahead only when both dropout layers would draw one: with dropout1 in evaluation
    mode, only dropout2 draws, as when the layers run one by one."""
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    model, reference = scratch.SimpleCNN(seed=5), scratch.SimpleCNN(seed=5)
    model.dropout1.eval(), reference.dropout1.eval()
    np.testing.assert_array_equal(model(x), _forward_layer_by_layer(reference, x))
    assert model.dropout_rng.bit_generator.state == reference.dropout_rng.bit_generator.state


def test_a_failed_forward_leaves_the_dropout_generator_as_it_was():
    """The masks are drawn as the forward starts; a forward that then fails (here: float64 images for a
    float32 network) undoes the draw, so the next step drops the units it would have dropped anyway."""
    model = scratch.SimpleCNN(seed=6)
    before = model.dropout_rng.bit_generator.state
    with pytest.raises(ValueError, match="float32"):
        model(np.zeros((2, 1, 28, 28)))
    assert model.dropout_rng.bit_generator.state == before

"""Bad input to a layer is a ValueError naming the layer, what it expected and what it got."""

from __future__ import annotations

import numpy as np
import pytest

import scratch


@pytest.mark.parametrize("layer, x, words", [
    (scratch.Conv2d(3, 4, 3), np.zeros((3, 8), np.float32), ["Conv2d", "4-D", "(C, H, W)", "(3, 8)"]),
    (scratch.Conv2d(3, 4, 3), np.zeros((2, 8, 8), np.float32), ["Conv2d", "3 channels", "(2, 8, 8)"]),
    (scratch.Conv2d(3, 4, 3, padding=2, padding_mode="reflect"), np.zeros((3, 2, 8), np.float32),
     ["Conv2d", "padding_mode='reflect'", "padding < input size", "2x8"]),
    (scratch.Conv2d(3, 4, 1, padding=3, padding_mode="circular"), np.zeros((1, 3, 2, 8), np.float32),
     ["Conv2d", "padding_mode='circular'", "padding <= input size"]),
    (scratch.BatchNorm2d(5), np.zeros((5, 3, 3), np.float32), ["BatchNorm2d", "4-D", "(5, 3, 3)"]),
    (scratch.BatchNorm2d(5, track_running_stats=False).eval(), np.zeros((1, 5, 1, 1), np.float32),
     ["BatchNorm2d", "more than 1 value"]),
    (scratch.Conv2d(3, 4, 3), np.zeros((2, 2, 8, 8), np.float32), ["Conv2d", "3 channels", "(2, 2, 8, 8)"]),
    (scratch.Conv2d(3, 4, 5), np.zeros((2, 3, 4, 4), np.float32), ["Conv2d", "smaller than the kernel"]),
    (scratch.Conv2d(3, 4, 3), np.zeros((2, 3, 8, 8), np.int64), ["Conv2d", "float32 or float64", "int64"]),
    (scratch.Conv2d(3, 4, 3), np.zeros((2, 3, 8, 8), np.float64), ["Conv2d", "float32", "float64"]),
    (scratch.MaxPool2d(3), np.zeros((1, 1, 2, 2), np.float32), ["MaxPool2d", "smaller than the kernel"]),
    (scratch.MaxPool2d(2), np.zeros((4, 4), np.float32), ["MaxPool2d", "4-D"]),
    (scratch.BatchNorm2d(5), np.zeros((2, 4, 3, 3), np.float32), ["BatchNorm2d", "5 channels"]),
    (scratch.BatchNorm2d(5), np.zeros((1, 5, 1, 1), np.float32), ["BatchNorm2d", "more than 1 value"]),
    (scratch.Linear(10, 3), np.zeros((2, 9), np.float32), ["Linear", "10 channels", "(2, 9)"]),
    (scratch.ReLU(), np.zeros((2, 2), np.uint8), ["ReLU", "uint8"]),
])
def test_bad_input_names_layer_and_problem(layer, x, words):
    with pytest.raises(ValueError) as err:
        layer.forward(x)
    for word in words:
        assert word in str(err.value)


def test_model_names_the_expected_image_shape():
    with pytest.raises(ValueError, match=r"SimpleCNN: expected images of shape \(N, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        scratch.SimpleCNN(seed=0)(np.zeros((2, 1, 32, 32), np.float32))


def test_model_layers_report_their_own_name():
    model = scratch.SimpleCNN(seed=0)
    with pytest.raises(ValueError, match="conv1"):
        model.conv1.forward(np.zeros((2, 1, 28, 28), np.float64))


@pytest.mark.parametrize("make", [
    lambda: scratch.Conv2d(0, 4, 3), lambda: scratch.Conv2d(1, 4, 3, stride=0),
    lambda: scratch.Conv2d(1, 4, (3, 3, 3)), lambda: scratch.MaxPool2d(2, padding=2),
    lambda: scratch.Dropout(1.5), lambda: scratch.BatchNorm2d(4, momentum=2.0),
    lambda: scratch.Linear(0, 3), lambda: scratch.Conv2d(1, 4, 3, dtype=np.int32),
])
def test_bad_hyper_parameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("make, words", [
    (lambda: scratch.Conv2d(3, 4, 3, padding_mode="bogus"), ["padding_mode", "'bogus'"]),
    (lambda: scratch.Conv2d(3, 4, 3, padding="full"), ["padding", "'full'"]),
    (lambda: scratch.Conv2d(3, 4, 3, 2, "same"), ["padding='same'", "stride (2, 2)"]),
    (lambda: scratch.Conv2d(3, 4, 3, groups=2), ["groups=2", "in_channels (3)"]),
    (lambda: scratch.Conv2d(4, 6, 3, groups=4), ["groups=4", "out_channels (6)"]),
    (lambda: scratch.Conv2d(4, 4, 3, groups=0), ["groups", "0"]),
])
def test_unsupported_options_name_option_and_value(make, words):
    """An option value torch rejects (or scratch does not know) is a ValueError naming both."""
    with pytest.raises(ValueError) as err:
        make()
    for word in words:
        assert word in str(err.value)


def test_cross_entropy_rejects_bad_targets():
    logits = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        scratch.cross_entropy(logits, np.array([0, 10, 2]))
    with pytest.raises(ValueError, match="integer targets"):
        scratch.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))


def test_backward_without_forward_is_a_clear_error():
    layer = scratch.Linear(4, 2)
    with pytest.raises(RuntimeError, match="Linear: backward called without a forward"):
        layer.backward(np.zeros((1, 2), np.float32))
    with scratch.no_grad():
        layer.forward(np.zeros((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.zeros((1, 2), np.float32))

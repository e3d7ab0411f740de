"""The numbers the docs compute by hand or quote from a measurement, recomputed with the scratch code.

Each test names the chapter and section whose numbers it checks; if the code changes so that an example
in the docs stops being true, the test fails and points to the paragraph to rewrite.
"""

from __future__ import annotations

import numpy as np

from scratch.activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
)
from scratch.batchnorm import batchnorm2d_backward, batchnorm2d_forward, channel_sums
from scratch.conv import conv2d_backward, conv2d_forward, conv_output_size
from scratch.linear import linear_backward, linear_forward
from scratch.loss import L1Loss, MSELoss, cross_entropy
from scratch.model import SimpleCNN
from scratch.module import Parameter
from scratch.optim import SGD, Adam
from scratch.pool import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward


def running_float32_sums(x: np.ndarray) -> np.ndarray:
    """Per-channel sums of ``x`` (N, C, H, W) added one value at a time into a float32 running sum."""
    c = x.shape[1]
    return np.cumsum(np.moveaxis(x, 1, 0).reshape(c, -1), axis=1, dtype=np.float32)[:, -1]


def test_channel_sums_beats_a_running_float32_sum():
    """docs/05, "Precision": at batch1's size (m = 64 * 24 * 24 values per channel), channel_sums is
    accurate to a few float32 roundoffs, and a float32 running sum is a hundred times worse."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 32, 24, 24)) + rng.uniform(0.5, 2.0, (1, 32, 1, 1))).astype(np.float32)
    x_before = x.copy()
    exact = x.astype(np.float64).sum(axis=(0, 2, 3))

    def rel_error(sums: np.ndarray) -> float:
        return float(np.max(np.abs(sums - exact)) / np.max(np.abs(exact)))

    ours, running = rel_error(channel_sums(x)), rel_error(running_float32_sums(x))
    assert ours < 1e-7, f"channel_sums: relative error {ours:.2g}"
    assert running > 100 * ours, f"running sum {running:.2g} vs channel_sums {ours:.2g}"
    np.testing.assert_array_equal(x, x_before)


def test_adam_sparse_gradient_step_reaches_the_papers_bound():
    """docs/09, "The update": after 5000 zero gradients, one gradient moves the parameter by
    lr * (1 - b1) / sqrt(1 - b2) * sqrt(1 - b2^t) / (1 - b1^t) = 3.15 lr, close to the Adam paper's bound
    lr * (1 - b1) / sqrt(1 - b2) = 3.16 lr, and never above it; a constant gradient moves it by lr."""
    lr, (beta1, beta2) = 1e-3, (0.9, 0.999)
    param = Parameter(np.zeros(2))
    adam = Adam({"p": param}, lr=lr, betas=(beta1, beta2))
    param.grad = np.zeros(2)
    for _ in range(5000):
        adam.step()
    assert np.all(param.data == 0)
    param.grad = np.array([2.5, -0.4])                    # the step does not depend on the scale of g
    adam.step()
    t = adam.step_count
    expected = lr * (1 - beta1) / np.sqrt(1 - beta2) * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    np.testing.assert_allclose(-param.data, expected * np.sign(param.grad), rtol=1e-5)
    bound = lr * (1 - beta1) / np.sqrt(1 - beta2)
    assert round(bound / lr, 2) == 3.16 and round(expected / lr, 2) == 3.15
    assert np.all(np.abs(param.data) <= bound)

    steady = Parameter(np.zeros(2))
    adam = Adam({"p": steady}, lr=lr, betas=(beta1, beta2))
    steady.grad = np.array([2.5, -0.4])
    for step in range(1, 4):
        adam.step()
        np.testing.assert_allclose(-steady.data, step * lr * np.sign(steady.grad), rtol=1e-5)


def test_conv1_and_batch1_have_the_largest_sums():
    """docs/10, "Tolerances": conv1's weight gradient and batch1's statistics sum 576 N terms (24 x 24
    outputs), nine times the 64 N of conv2's (8 x 8 outputs)."""
    net = SimpleCNN(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    conv1 = net.conv1(x)
    conv2 = net.conv2(net.max1(net.relu1(net.batch1(conv1))))
    assert conv1.shape[2:] == (24, 24) and conv2.shape[2:] == (8, 8)
    assert conv1[0, 0].size == 576 and conv1[0, 0].size == 9 * conv2[0, 0].size


# ---- The worked examples that open the chapters -----------------------------------------------------------


def row(*values: float) -> np.ndarray:
    """A 1-D example as the (1, 1, 1, W) float64 image the 2-D functions take."""
    return np.array(values, dtype=np.float64).reshape(1, 1, 1, -1)


def test_conv_worked_example():
    """docs/03, "A worked example by hand": a 1-D convolution with stride 2 whose windows overlap."""
    x, w, b = row(1, 2, -1, 3, 0), row(1, -2, 1), np.array([1.0])
    y, cache = conv2d_forward(x, w, b, stride=(1, 2))
    np.testing.assert_array_equal(y, row(-3, -6))
    dx, dw, db = conv2d_backward(row(2, -1), cache)
    np.testing.assert_array_equal(dw, row(3, 1, -2))
    np.testing.assert_array_equal(db, [1.0])
    np.testing.assert_array_equal(dx, row(2, -4, 1, 2, -1))


def test_maxpool_worked_example():
    """docs/04, "A worked example by hand": the tied left window sends its gradient to the first 3 only."""
    x = np.array([[1, 3, 0, 2], [3, 2, 5, 1]], dtype=np.float64).reshape(1, 1, 2, 4)
    y, cache = maxpool2d_forward(x, kernel=(2, 2), stride=(2, 2))
    np.testing.assert_array_equal(y, row(3, 5))
    dx = maxpool2d_backward(row(2, -1), cache)
    np.testing.assert_array_equal(dx.reshape(2, 4), [[0, 2, 0, 0], [0, 0, -1, 0]])


def test_batchnorm_worked_example():
    """docs/05, "A worked example by hand": batch-norm of (2, 2, 4, 4) with gamma 2, beta 0.5, eps 0."""
    x = np.array([2.0, 2.0, 4.0, 4.0]).reshape(4, 1, 1, 1)
    running_mean, running_var = np.zeros(1), np.ones(1)
    y, cache = batchnorm2d_forward(x, np.array([2.0]), np.array([0.5]), running_mean, running_var,
                                   training=True, momentum=0.1, eps=0.0)
    np.testing.assert_array_equal(y.ravel(), [-1.5, -1.5, 2.5, 2.5])
    dx, dgamma, dbeta = batchnorm2d_backward(np.array([1.0, 3.0, -2.0, 2.0]).reshape(4, 1, 1, 1), cache)
    np.testing.assert_allclose(dx.ravel(), [-2, 2, -4, 4], rtol=1e-15)
    np.testing.assert_array_equal([dgamma[0], dbeta[0]], [-4, 4])


def test_cross_entropy_worked_example():
    """docs/08, "A worked example by hand": logits (2, 1, 0), target class 0, the digits the chapter prints."""
    loss, grad = cross_entropy(np.array([[2.0, 1.0, 0.0]]), np.array([0]))
    assert round(loss, 4) == 0.4076
    np.testing.assert_array_equal(np.round(grad, 4), [[-0.3348, 0.2447, 0.0900]])
    np.testing.assert_array_equal(np.round(grad + [[1, 0, 0]], 4), [[0.6652, 0.2447, 0.0900]])   # p


def test_adam_worked_example():
    """docs/09, "A worked example by hand": two Adam steps with gradients 0.5 and -0.5, lr 0.1."""
    param = Parameter(np.array([1.0]))
    adam = Adam({"p": param}, lr=0.1)
    expected = [  # m, v, theta after each step, as the chapter's table prints them
        (0.05, 0.00025, 0.9), (-0.005, 0.00049975, 0.9052632)]
    for g, (m, v, theta) in zip((0.5, -0.5), expected, strict=True):
        param.grad = np.array([g])
        adam.step()
        np.testing.assert_allclose([adam.exp_avg["p"][0], adam.exp_avg_sq["p"][0]], [m, v], rtol=1e-12)
        assert round(float(param.data[0]), 7) == theta


# ---- The answers to the chapters' pen-and-paper exercises --------------------------------------------------


def test_exercise_answers():
    """docs/03, 04, 05, 07, 08, "Exercises": the numeric answers, recomputed."""
    y, cache = conv2d_forward(row(1, 0, 2, 1), row(1, 1), np.array([0.0]))
    dx, dw, db = conv2d_backward(row(1, 2, -1), cache)
    np.testing.assert_array_equal(y, row(1, 2, 3))
    np.testing.assert_array_equal(dw, row(-1, 3))
    np.testing.assert_array_equal(db, [2.0])
    np.testing.assert_array_equal(dx, row(1, 3, 1, -1))
    assert conv_output_size(28, 5, 2, 2, 1) == 14

    _, cache = maxpool2d_forward(np.array([[2.0, 2.0], [1.0, 2.0]]).reshape(1, 1, 2, 2), (2, 2), (2, 2))
    np.testing.assert_array_equal(maxpool2d_backward(np.full((1, 1, 1, 1), 7.0), cache).ravel(), [7, 0, 0, 0])
    _, cache = maxpool2d_forward(row(1, 2, 5, 0, 3), (1, 3), (1, 2))
    np.testing.assert_array_equal(maxpool2d_backward(row(1, 2), cache), row(0, 0, 3, 0, 0))

    x, running_var = np.array([0.0, 4.0]).reshape(2, 1, 1, 1), np.ones(1)
    y, cache = batchnorm2d_forward(x, np.ones(1), np.zeros(1), np.zeros(1), running_var, True, 0.1, 0.0)
    np.testing.assert_array_equal(y.ravel(), [-1, 1])
    np.testing.assert_array_equal(batchnorm2d_backward(np.array([3.0, 5.0]).reshape(2, 1, 1, 1), cache)[0], 0)
    running_var = np.ones(1)
    x4 = np.array([1.0, 2.0, 4.0, 5.0])                      # biased variance 2.5
    batchnorm2d_forward(x4.reshape(4, 1, 1, 1), np.ones(1), np.zeros(1), np.zeros(1), running_var, True, 0.1, 0.0)
    assert round(float(running_var[0]), 4) == 1.2333

    _, (dx, dw, db) = linear_forward_backward(np.array([[1.0, 2.0]]), np.array([[3.0, 1.0], [0.0, 2.0]]),
                                              np.array([[1.0, -1.0]]))
    np.testing.assert_array_equal(dw, [[1, 2], [-1, -2]])
    np.testing.assert_array_equal(db, [1, -1])
    np.testing.assert_array_equal(dx, [[3, -1]])

    loss, grad = cross_entropy(np.zeros((2, 2)), np.array([1, 1]))
    assert round(loss, 4) == 0.6931
    np.testing.assert_array_equal(grad, [[0.25, -0.25], [0.25, -0.25]])


def linear_forward_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray):
    y, cache = linear_forward(x, weight, np.zeros(weight.shape[0]))
    return y, linear_backward(grad_out, cache)


def test_exercise_answers_of_chapters_11_to_14():
    """docs/11, 12, 13, 14, "Exercises": the numeric answers, recomputed."""
    y, cache = sigmoid_forward(np.zeros(1))
    np.testing.assert_array_equal(sigmoid_backward(np.array([2.0]), cache), [0.5])
    _, slope = leaky_relu_forward(np.array([-3.0, 0.0]))
    np.testing.assert_allclose(leaky_relu_backward(np.array([5.0, 5.0]), slope), [0.05, 0.05], rtol=1e-15)
    _, cache = softmax_forward(np.zeros((1, 2)), dim=1)
    np.testing.assert_array_equal(softmax_backward(np.array([[1.0, 0.0]]), cache), [[0.25, -0.25]])

    _, cache = avgpool2d_forward(np.zeros((1, 1, 1, 4)), (1, 3), (1, 1))
    np.testing.assert_allclose(avgpool2d_backward(row(3, 6), cache), row(1, 3, 3, 2), rtol=1e-15)

    mse = MSELoss()
    assert mse(np.array([1.0, 3.0]), np.zeros(2)) == 5
    np.testing.assert_array_equal(mse.backward(), [1, 3])
    l1 = L1Loss()
    l1(np.array([0.5, -2.0]), np.array([0.5, -2.0]))
    np.testing.assert_array_equal(l1.backward(), [0, 0])

    theta = Parameter(np.zeros(1))
    sgd = SGD({"theta": theta}, lr=0.1, momentum=0.9)
    for expected in (-0.1, -0.29):
        theta.grad = np.ones(1)
        sgd.step()
        np.testing.assert_allclose(theta.data, [expected], rtol=1e-15)

"""Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax: scratch vs ``nn.Sigmoid`` / ``nn.Tanh`` / ``nn.LeakyReLU`` /
``nn.Softmax`` / ``nn.LogSoftmax``, finite differences, and extreme inputs without overflow."""

import numpy as np
import pytest
from hypothesis import given

import scratch
from simplecnn import properties as prop

from .parity import DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.elementwise_examples())
def test_elementwise_activation_matches_torch(dtype, example):
    """y and dL/dx equal torch's, inputs exactly 0 included: LeakyReLU's slope there is negative_slope
    (torch's kernel tests x > 0); sigmoid'(0) = 1/4, tanh'(0) = 1."""
    prop.elementwise_activation_matches_torch(example, dtype)


@given(prop.elementwise_examples())
def test_elementwise_activation_matches_finite_differences(example):
    """dL/dx = dL/dy * sigma(1 - sigma), * (1 - tanh^2), * (1 or slope): equal to central differences
    (away from LeakyReLU's kink at 0)."""
    prop.elementwise_activation_matches_finite_differences(example)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.elementwise_examples())
def test_elementwise_activation_of_1000_is_finite_and_matches_torch(dtype, example):
    """sigmoid and tanh of +-1000 (exp(1000) overflows in both precisions): finite values and gradients,
    no NumPy overflow warning, equal to torch's."""
    prop.elementwise_activation_of_1000_is_finite_and_matches_torch(example, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.softmax_problems())
def test_softmax_matches_torch(dtype, problem):
    """softmax / log-softmax along any dim, and dL/dx = y (g - sum(g y)) / g - softmax sum(g), equal torch's."""
    prop.softmax_matches_torch(problem, dtype)


@given(prop.softmax_problems())
def test_softmax_matches_finite_differences(problem):
    prop.softmax_matches_finite_differences(problem)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.softmax_problems())
def test_softmax_of_1e4_is_finite_and_matches_torch(dtype, problem):
    """Slices holding +-1e4: the max is subtracted before exp, so values and gradients stay finite with no
    overflow or division by zero warning, and equal torch's."""
    prop.softmax_of_1e4_is_finite_and_matches_torch(problem, dtype)


@pytest.mark.parametrize("make, message", [
    (lambda: scratch.LeakyReLU(float("nan")), "negative_slope"),
    (lambda: scratch.LeakyReLU("0.1"), "negative_slope"),
    (lambda: scratch.Softmax(1.5), "dim"),
    (lambda: scratch.Softmax(2)(np.zeros((2, 2))), "dim 2 is out of range"),
    (lambda: scratch.LogSoftmax(-3)(np.zeros((2, 2))), "dim -3 is out of range"),
    (lambda: scratch.Sigmoid()(np.zeros(3, dtype=np.int64)), "float32 or float64"),
])
def test_bad_arguments_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()

"""Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax: scratch vs ``nn.Sigmoid`` / ``nn.Tanh`` / ``nn.LeakyReLU`` /
``nn.Softmax`` / ``nn.LogSoftmax``, finite differences, and extreme inputs without overflow."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from torch_impl.mirror import torch_twin

from .parity import (
    DTYPES,
    assert_matches_numerical,
    assert_parity,
    away_from_zero,
    input_with_zeros,
    no_float_warnings,
    random_upstream,
    seeds,
    shapes,
)


@st.composite
def elementwise_activations(draw):
    """Sigmoid, Tanh or LeakyReLU (slope from the guide's 0.01, 0.2, a negative one or 0, as torch allows)."""
    kind = draw(st.sampled_from(["sigmoid", "tanh", "leaky_relu"]))
    if kind == "sigmoid":
        return scratch.Sigmoid()
    if kind == "tanh":
        return scratch.Tanh()
    return scratch.LeakyReLU(draw(st.sampled_from([0.01, 0.2, -0.5, 0.0])))


@st.composite
def softmax_problems(draw):
    """Softmax or LogSoftmax over a ``dim`` of a 1- to 4-D shape (negative dims included), and a seed."""
    shape = draw(shapes)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    layer = draw(st.sampled_from([scratch.Softmax, scratch.LogSoftmax]))(dim)
    return layer, shape, draw(seeds)


def extreme_input(rng, shape, dtype, magnitude):
    """Entries +-``magnitude`` or 0 plus a normal perturbation: exp of any of them overflows."""
    return (rng.choice([-magnitude, 0.0, magnitude], size=shape) + rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(elementwise_activations(), shapes, seeds)
def test_elementwise_activation_matches_torch(dtype, layer, shape, seed):
    """y and dL/dx equal torch's, inputs exactly 0 included: LeakyReLU's slope there is negative_slope
    (torch's kernel tests x > 0); sigmoid'(0) = 1/4, tanh'(0) = 1."""
    rng = np.random.default_rng(seed)
    assert_parity(layer, torch_twin(layer), input_with_zeros(rng, shape, dtype), random_upstream(rng, shape, dtype))


@given(elementwise_activations(), shapes, seeds)
def test_elementwise_activation_matches_finite_differences(layer, shape, seed):
    """dL/dx = dL/dy * sigma(1 - sigma), * (1 - tanh^2), * (1 or slope): equal to central differences
    (away from LeakyReLU's kink at 0)."""
    rng = np.random.default_rng(seed)
    assert_matches_numerical(layer, away_from_zero(rng, shape), random_upstream(rng, shape, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@given(elementwise_activations(), shapes, seeds)
def test_elementwise_activation_of_1000_is_finite_and_matches_torch(dtype, layer, shape, seed):
    """sigmoid and tanh of +-1000 (exp(1000) overflows in both precisions): finite values and gradients,
    no NumPy overflow warning, equal to torch's."""
    rng = np.random.default_rng(seed)
    with no_float_warnings():
        assert_parity(layer, torch_twin(layer), extreme_input(rng, shape, dtype, 1000.0),
                      random_upstream(rng, shape, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(softmax_problems())
def test_softmax_matches_torch(dtype, problem):
    """softmax / log-softmax along any dim, and dL/dx = y (g - sum(g y)) / g - softmax sum(g), equal torch's."""
    layer, shape, seed = problem
    rng = np.random.default_rng(seed)
    x = (rng.uniform(0.1, 5) * rng.standard_normal(shape)).astype(dtype)
    assert_parity(layer, torch_twin(layer), x, random_upstream(rng, shape, dtype))


@given(softmax_problems())
def test_softmax_matches_finite_differences(problem):
    layer, shape, seed = problem
    rng = np.random.default_rng(seed)
    assert_matches_numerical(layer, 3 * rng.standard_normal(shape), random_upstream(rng, shape, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@given(softmax_problems())
def test_softmax_of_1e4_is_finite_and_matches_torch(dtype, problem):
    """Slices holding +-1e4: the max is subtracted before exp, so values and gradients stay finite with no
    overflow or division by zero warning, and equal torch's."""
    layer, shape, seed = problem
    rng = np.random.default_rng(seed)
    with no_float_warnings():
        assert_parity(layer, torch_twin(layer), extreme_input(rng, shape, dtype, 1e4),
                      random_upstream(rng, shape, dtype))


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

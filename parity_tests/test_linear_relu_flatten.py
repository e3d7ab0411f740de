"""Linear, ReLU and Flatten: scratch vs ``nn.Linear`` / ``nn.ReLU`` / ``nn.Flatten``, and vs finite
differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from torch_impl.mirror import torch_twin

from .parity import assert_matches_numerical, assert_parity, random_upstream

DTYPES = [np.float64, np.float32]
seeds = st.integers(0, 2**32 - 1)


@st.composite
def linear_configs(draw):
    """in/out features, with or without bias, and inputs (N, in) or with extra leading axes (N, ..., in)."""
    in_features, out_features = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    leading = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))   # () : one unbatched (in,)
    return in_features, out_features, draw(st.booleans()), leading, draw(seeds)


def make_linear(config, dtype):
    in_features, out_features, bias, leading, seed = config
    rng = np.random.default_rng(seed)
    layer = scratch.Linear(in_features, out_features, bias=bias, rng=rng, dtype=dtype)
    x = rng.standard_normal((*leading, in_features)).astype(dtype)
    return layer, x, random_upstream(rng, (*leading, out_features), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(linear_configs())
def test_linear_matches_torch(dtype, config):
    """y = x W^T + b, dL/dx, dL/dW, dL/db equal nn.Linear's."""
    layer, x, upstream = make_linear(config, dtype)
    assert_parity(layer, torch_twin(layer), x, upstream)


@given(linear_configs())
def test_linear_matches_finite_differences(config):
    """The analytic gradients of the linear layer equal central differences."""
    assert_matches_numerical(*make_linear(config, np.float64))


def input_with_zeros(rng, shape, dtype):
    """Normal values, a quarter of them exactly 0: ReLU's derivative at 0 is 0 in both."""
    x = rng.standard_normal(shape)
    return np.where(rng.random(shape) < 0.25, 0.0, x).astype(dtype)


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shapes, seeds)
def test_relu_matches_torch(dtype, shape, seed):
    """max(x, 0) and dL/dx = dL/dy * [x > 0] equal nn.ReLU's, exact zeros in the input included."""
    rng = np.random.default_rng(seed)
    layer = scratch.ReLU()
    assert_parity(layer, torch_twin(layer), input_with_zeros(rng, shape, dtype), random_upstream(rng, shape, dtype))


@given(shapes, seeds)
def test_relu_matches_finite_differences(shape, seed):
    """Away from 0 (|x| >= 0.1, far more than the finite-difference step) ReLU's gradient is exact."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x += np.where(x >= 0, 0.1, -0.1)
    assert_matches_numerical(scratch.ReLU(), x, random_upstream(rng, shape, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple), seeds)
def test_flatten_matches_torch(dtype, shape, seed):
    """(N, C, H, W) -> (N, C*H*W) in PyTorch's (channel, height, width) order, and back in backward."""
    rng = np.random.default_rng(seed)
    layer = scratch.Flatten()
    flat_shape = (shape[0], int(np.prod(shape[1:])))
    assert_parity(layer, torch_twin(layer), rng.standard_normal(shape).astype(dtype),
                  random_upstream(rng, flat_shape, dtype))


@given(st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), seeds)
def test_flatten_matches_finite_differences(shape, seed):
    """Flatten's backward is the inverse reshape: central differences agree."""
    rng = np.random.default_rng(seed)
    upstream = random_upstream(rng, (shape[0], int(np.prod(shape[1:]))), np.float64)
    assert_matches_numerical(scratch.Flatten(), rng.standard_normal(shape), upstream)

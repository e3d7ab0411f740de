"""Linear, ReLU and Flatten: scratch vs ``nn.Linear`` / ``nn.ReLU`` / ``nn.Flatten``, and vs finite
differences. The properties are defined in :mod:`simplecnn.properties` (shared with the exercise grader)."""

import numpy as np
import pytest
from hypothesis import given

from simplecnn import properties as prop

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.linear_configs())
def test_linear_matches_torch(dtype, config):
    """y = x W^T + b, dL/dx, dL/dW, dL/db equal nn.Linear's."""
    prop.linear_matches_torch(config, dtype)


@given(prop.linear_configs())
def test_linear_matches_finite_differences(config):
    """The analytic gradients of the linear layer equal central differences."""
    prop.linear_matches_finite_differences(config)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.relu_examples)
def test_relu_matches_torch(dtype, example):
    """max(x, 0) and dL/dx = dL/dy * [x > 0] equal nn.ReLU's, exact zeros in the input included."""
    prop.relu_matches_torch(example, dtype)


@given(prop.relu_examples)
def test_relu_matches_finite_differences(example):
    """Away from 0 (|x| >= 0.1, far more than the finite-difference step) ReLU's gradient is exact."""
    prop.relu_matches_finite_differences(example)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.flatten_examples)
def test_flatten_matches_torch(dtype, example):
    """(N, C, H, W) -> (N, C*H*W) in PyTorch's (channel, height, width) order, and back in backward."""
    prop.flatten_matches_torch(example, dtype)


@given(prop.flatten_examples)
def test_flatten_matches_finite_differences(example):
    """Flatten's backward is the inverse reshape: central differences agree."""
    prop.flatten_matches_finite_differences(example)

"""Cross-entropy from logits: scratch vs ``F.cross_entropy`` (mean and sum, extreme logits), and vs
finite differences. The properties are :mod:`simplecnn.properties`' (shared with ``simplecnn exercise``)."""

import pytest
from hypothesis import given

from simplecnn import properties as prop

from .parity import DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.cross_entropy_problems())
def test_cross_entropy_matches_torch(dtype, problem):
    """The loss and dL/dlogits = (softmax - onehot) / N (or without / N for "sum") equal torch's."""
    prop.cross_entropy_matches_torch(problem, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.cross_entropy_problems(extreme=True))
def test_cross_entropy_with_extreme_logits_stays_finite_and_matches_torch(dtype, problem):
    """Logits of +-1e4 (exp overflows at ~710 in float64, ~89 in float32): log-sum-exp keeps the loss
    and the gradient finite (checked by the helper) and equal to torch's."""
    prop.cross_entropy_matches_torch(problem, dtype)


@given(prop.cross_entropy_problems())
def test_cross_entropy_matches_finite_differences(problem):
    """dL/dlogits equals central differences of the loss."""
    prop.cross_entropy_matches_finite_differences(problem)

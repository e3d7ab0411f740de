"""Cross-entropy from logits: scratch vs ``F.cross_entropy`` (mean and sum, extreme logits), and vs
finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torch_impl.mirror import CrossEntropyLayer

from .parity import assert_matches_numerical, assert_parity

DTYPES = [np.float64, np.float32]


@st.composite
def problems(draw, extreme=False):
    """Logits (N, K) and targets. ``extreme``: logits of +-1e4 (and 0) that overflow a naive softmax."""
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if extreme:
        logits = rng.choice([-1e4, 0.0, 1e4], size=(n, k)) + rng.standard_normal((n, k))
    else:
        logits = draw(st.floats(0.1, 10.0)) * rng.standard_normal((n, k))
    targets = rng.integers(0, k, size=n)
    upstream = rng.standard_normal()  # a random scalar dL/d(loss)
    return logits, targets, draw(st.sampled_from(["mean", "sum"])), upstream


def check_against_torch(logits, targets, reduction, upstream, dtype):
    loss = CrossEntropyLayer(targets, reduction)
    assert_parity(loss, loss.torch_twin(), logits.astype(dtype), np.array(upstream, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(problems())
def test_cross_entropy_matches_torch(dtype, problem):
    """The loss and dL/dlogits = (softmax - onehot) / N (or without / N for "sum") equal torch's."""
    check_against_torch(*problem, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(problems(extreme=True))
def test_cross_entropy_with_extreme_logits_stays_finite_and_matches_torch(dtype, problem):
    """Logits of +-1e4 (exp overflows at ~710 in float64, ~89 in float32): log-sum-exp keeps the loss
    and the gradient finite (checked by the helper) and equal to torch's."""
    check_against_torch(*problem, dtype)


@given(problems())
def test_cross_entropy_matches_finite_differences(problem):
    """dL/dlogits equals central differences of the loss."""
    logits, targets, reduction, upstream = problem
    assert_matches_numerical(CrossEntropyLayer(targets, reduction), logits, np.array(upstream))

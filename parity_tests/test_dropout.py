"""Dropout: scratch vs ``nn.Dropout`` with the very mask torch drew, the drop rate, eval mode, and
finite differences."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scratch
from torch_impl.mirror import to_torch

from .parity import assert_matches_numerical, assert_parity, random_upstream

DTYPES = [np.float64, np.float32]
drop_probabilities = st.one_of(st.sampled_from([0.0, 0.35, 0.45, 0.5, 1.0]), st.floats(0.0, 0.95))
shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)


def torch_dropout_with_seed(p: float, seed: int):
    """nn.Dropout(p) that draws the same mask on every call (the manual seed is reset first)."""
    dropout = torch.nn.Dropout(p)

    def run(x):
        torch.manual_seed(seed)
        return dropout(x)

    return run


def input_without_zeros(rng, shape, dtype):
    """Standard normal values pushed away from 0, so that ``output != 0`` is exactly the keep-mask."""
    x = rng.standard_normal(shape)
    return (x + np.where(x >= 0, 0.1, -0.1)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(drop_probabilities, shapes, st.integers(0, 2**32 - 1))
def test_dropout_matches_torch_given_torchs_mask(dtype, p, shape, seed):
    """Run torch's dropout, read its mask off its output (``out != 0``), give scratch that mask: outputs
    (scale 1/(1-p) included) and dL/dx (the same mask applied in backward) are equal."""
    rng = np.random.default_rng(seed)
    x = input_without_zeros(rng, shape, dtype)
    torch_dropout = torch_dropout_with_seed(p, seed)
    keep_mask = (torch_dropout(to_torch(x)) != 0).numpy()
    assert_parity(scratch.Dropout(p), torch_dropout, x, random_upstream(rng, shape, dtype), mask=keep_mask)


@pytest.mark.parametrize("dtype", DTYPES)
@given(drop_probabilities, shapes, st.integers(0, 2**32 - 1))
def test_dropout_in_eval_mode_is_the_identity_like_torch(dtype, p, shape, seed):
    """In evaluation mode both pass x and dL/dy through unchanged."""
    rng = np.random.default_rng(seed)
    torch_dropout = torch.nn.Dropout(p).eval()
    assert_parity(scratch.Dropout(p).eval(), torch_dropout, rng.standard_normal(shape).astype(dtype),
                  random_upstream(rng, shape, dtype))


@pytest.mark.parametrize("p", [0.1, 0.35, 0.45, 0.5, 0.9])
def test_dropout_drops_a_fraction_p_of_the_units(p):
    """The sampled mask drops each unit with probability p: over 200 000 units the dropped fraction is
    within 5 standard deviations (sqrt(p(1-p)/n) ~ 1e-3) of p; the kept units are scaled by 1/(1-p)."""
    n = 200_000
    layer = scratch.Dropout(p, rng=np.random.default_rng(1234))
    x = np.ones((n, 1), dtype=np.float32)
    y = layer.forward(x)
    dropped = float(np.mean(y == 0))
    assert abs(dropped - p) <= 5 * np.sqrt(p * (1 - p) / n), dropped
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)


@given(st.floats(0.0, 0.9), shapes, st.integers(0, 2**32 - 1))
def test_dropout_matches_finite_differences(p, shape, seed):
    """With a fixed mask dropout is linear: its gradient is mask / (1 - p), as central differences show."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) >= p
    assert_matches_numerical(scratch.Dropout(p), rng.standard_normal(shape), random_upstream(rng, shape, np.float64),
                             mask=mask)

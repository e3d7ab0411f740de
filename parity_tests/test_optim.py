"""Adam and AdamW: K-step trajectories of scratch vs ``torch.optim.Adam`` / ``AdamW`` on the same gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torch_impl.mirror import TOLERANCES, optimizer_trajectories

DTYPES = [np.float64, np.float32]


@st.composite
def optimizer_settings(draw):
    """lr, betas, eps (up to 0.1, so where eps is added matters), weight decay (0 or not), amsgrad."""
    return dict(lr=draw(st.floats(1e-4, 0.1)),
                betas=(draw(st.sampled_from([0.0, 0.5, 0.9])), draw(st.sampled_from([0.9, 0.99, 0.999]))),
                eps=10.0 ** draw(st.integers(-8, -1)),
                weight_decay=draw(st.sampled_from([0.0, 1e-2, 0.3])),
                amsgrad=draw(st.booleans()))


@st.composite
def gradient_sequences(draw, dtype):
    """Initial parameters of a few shapes and K steps of random gradients with varying scale (a shrinking
    gradient makes amsgrad's max differ from v)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = {"weight": (3, 4), "bias": (3,)}
    steps = draw(st.integers(1, 6))
    initial = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    gradients = [{k: (10.0 ** rng.uniform(-3, 1) * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}
                 for _ in range(steps)]
    return initial, gradients


@pytest.mark.parametrize("kind", ["adam", "adamw"])
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_optimizer_trajectory_matches_torch(kind, dtype, data):
    """After every one of K steps the parameters, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)
    equal torch's: t incremented before use, bias corrections, eps after the square root, L2 decay in the
    gradient for Adam and decoupled decay for AdamW."""
    hyper = data.draw(optimizer_settings(), label="hyper-parameters")
    initial, gradients = data.draw(gradient_sequences(dtype), label="parameters and gradients")
    originals = [{k: v.copy() for k, v in g.items()} for g in gradients]
    for comparisons in optimizer_trajectories(kind, initial, gradients, **hyper):
        for comparison in comparisons:
            problem = comparison.problem(TOLERANCES[np.dtype(dtype)])
            assert problem is None, problem
    for given_grads, original in zip(gradients, originals, strict=True):
        for k in original:
            np.testing.assert_array_equal(given_grads[k], original[k], err_msg="the optimizer modified a gradient")

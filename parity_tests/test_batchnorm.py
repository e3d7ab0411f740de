"""BatchNorm2d: scratch vs ``nn.BatchNorm2d`` over several training steps (running statistics included),
then in evaluation mode; and vs finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from simplecnn import properties as prop
from torch_impl.mirror import torch_twin

from .parity import DTYPES, assert_parity, random_upstream


@pytest.mark.parametrize("dtype", DTYPES)
@given(st.tuples(prop.batchnorm_configs(), prop.batchnorm_steps))
def test_batchnorm2d_training_steps_then_eval_match_torch(dtype, example):
    """Each training step: output, dL/dx, dL/dgamma, dL/dbeta, and the running statistics afterwards
    (running_var unbiased, num_batches_tracked, momentum None = cumulative average) equal torch's.
    Then evaluation mode, which uses those running statistics, on a batch of one and a full batch; without
    running statistics (track_running_stats=False) evaluation uses the batch's own. The state-dict keys
    are torch's for every option (affine, bias, track_running_stats)."""
    prop.batchnorm2d_training_steps_then_eval_match_torch(example, dtype)


@given(st.tuples(prop.batchnorm_configs(), st.booleans()))
def test_batchnorm2d_matches_finite_differences(example):
    """dL/dx (with the two correction terms from the batch statistics in training), dL/dgamma and
    dL/dbeta equal central differences, in training and in evaluation mode."""
    prop.batchnorm2d_matches_finite_differences(example)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm2d_without_running_stats_uses_batch_statistics_in_eval(dtype):
    """track_running_stats=False: no buffers, and eval mode normalizes with the batch's own statistics,
    so every channel of the output has mean 0 and variance 1 (affine=False), exactly as in training."""
    rng = np.random.default_rng(3)
    layer = scratch.BatchNorm2d(3, 1e-5, 0.1, False, False, dtype=dtype).eval()
    assert layer.state_dict() == {} and layer.running_mean is None and layer.num_batches_tracked is None
    x = (5.0 + 3.0 * rng.standard_normal((4, 3, 3, 3))).astype(dtype)
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-4)
    layer.backward(random_upstream(rng, x.shape, dtype))
    assert_parity(layer, torch_twin(layer), x, random_upstream(rng, x.shape, dtype))

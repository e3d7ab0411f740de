"""BatchNorm2d: scratch vs ``nn.BatchNorm2d`` over several training steps (running statistics included),
then in evaluation mode; and vs finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from torch_impl.mirror import torch_twin

from .parity import assert_matches_numerical, assert_parity, random_upstream

DTYPES = [np.float64, np.float32]


@st.composite
def batchnorm_configs(draw):
    """Shapes with at least 2 values per channel (training needs them), PyTorch's momentum, None (the
    cumulative average), or any other in [0, 1], two eps values, and every combination of affine,
    bias and track_running_stats."""
    batch, height, width = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if batch * height * width < 2:
        batch = 2
    config = dict(shape=(batch, draw(st.integers(1, 4)), height, width),
                  momentum=draw(st.one_of(st.just(0.1), st.none(), st.floats(0.0, 1.0))),
                  eps=draw(st.sampled_from([1e-5, 1e-3])), affine=draw(st.booleans()),
                  track_running_stats=draw(st.booleans()), bias=draw(st.booleans()),
                  # an input that is not already normalized: its own mean and spread
                  loc=draw(st.floats(-2.0, 2.0)), spread=draw(st.floats(0.5, 3.0)))
    return config, draw(st.integers(0, 2**32 - 1))


def make_batchnorm(config, dtype, rng):
    """A layer with random gamma/beta (gamma = 1, beta = 0 would hide a mix-up between them)."""
    layer = scratch.BatchNorm2d(config["shape"][1], config["eps"], config["momentum"], config["affine"],
                                config["track_running_stats"], bias=config["bias"], dtype=dtype)
    if layer.weight is not None:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.num_features) * rng.choice([-1, 1], layer.num_features)
    if layer.bias is not None:
        layer.bias.data[...] = rng.standard_normal(layer.num_features)
    return layer


def batch(config, dtype, rng, shape=None, training=True):
    """An input with the config's mean and spread.

    float32 training batches are redrawn until every channel is well-conditioned (max|x| <= 30 std):
    normalizing cancels in x - mean, so float32's forward error is ~3e-7 * max|x| / std on both sides
    (measured: 3.6e-6 for ratios up to 100, 5e-5 beyond, e.g. two nearly equal values in a channel).
    float64 keeps those cases (error ~1e-14).
    """
    shape = shape or config["shape"]
    while True:
        x = (config["loc"] + config["spread"] * rng.standard_normal(shape)).astype(dtype)
        if dtype == np.float64 or not training:
            return x
        if np.all(np.abs(x).max(axis=(0, 2, 3)) <= 30 * x.std(axis=(0, 2, 3), dtype=np.float64)):
            return x


@pytest.mark.parametrize("dtype", DTYPES)
@given(batchnorm_configs(), st.integers(1, 4))
def test_batchnorm2d_training_steps_then_eval_match_torch(dtype, config_and_seed, steps):
    """Each training step: output, dL/dx, dL/dgamma, dL/dbeta, and the running statistics afterwards
    (running_var unbiased, num_batches_tracked, momentum None = cumulative average) equal torch's.
    Then evaluation mode, which uses those running statistics, on a batch of one and a full batch; without
    running statistics (track_running_stats=False) evaluation uses the batch's own, so the batch of one
    must have two values per channel. The state-dict keys are torch's for every option."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, dtype, rng)
    twin = torch_twin(layer)
    assert list(layer.state_dict()) == list(twin.state_dict())
    for _ in range(steps):
        assert_parity(layer, twin, batch(config, dtype, rng), random_upstream(rng, config["shape"], dtype))
    layer.eval()
    twin.eval()
    for shape in [(1, *config["shape"][1:]), config["shape"]]:
        if not layer.track_running_stats and np.prod(shape) // shape[1] < 2:
            continue
        assert_parity(layer, twin, batch(config, dtype, rng, shape, training=not layer.track_running_stats),
                      random_upstream(rng, shape, dtype))
    assert layer.num_batches_tracked == (steps if layer.track_running_stats else None)


@given(batchnorm_configs(), st.booleans())
def test_batchnorm2d_matches_finite_differences(config_and_seed, training):
    """dL/dx (with the two correction terms from the batch statistics in training), dL/dgamma and
    dL/dbeta equal central differences, in training and in evaluation mode."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, np.float64, rng)
    if not training and layer.track_running_stats:
        layer.running_mean[...] = rng.standard_normal(layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2.0, layer.num_features)
    if not training:
        layer.eval()
    assert_matches_numerical(layer, batch(config, np.float64, rng),
                             random_upstream(rng, config["shape"], np.float64))


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

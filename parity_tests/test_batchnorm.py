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
    cumulative average), or any other in [0, 1], and two eps values."""
    batch, height, width = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if batch * height * width < 2:
        batch = 2
    config = dict(shape=(batch, draw(st.integers(1, 4)), height, width),
                  momentum=draw(st.one_of(st.just(0.1), st.none(), st.floats(0.0, 1.0))),
                  eps=draw(st.sampled_from([1e-5, 1e-3])),
                  # an input that is not already normalized: its own mean and spread
                  loc=draw(st.floats(-2.0, 2.0)), spread=draw(st.floats(0.5, 3.0)))
    return config, draw(st.integers(0, 2**32 - 1))


def make_batchnorm(config, dtype, rng):
    """A layer with random gamma/beta (gamma = 1, beta = 0 would hide a mix-up between them)."""
    layer = scratch.BatchNorm2d(config["shape"][1], eps=config["eps"], momentum=config["momentum"], dtype=dtype)
    layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.num_features) * rng.choice([-1, 1], layer.num_features)
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
    Then evaluation mode, which uses those running statistics, on a batch of one and a full batch."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, dtype, rng)
    twin = torch_twin(layer)
    for _ in range(steps):
        assert_parity(layer, twin, batch(config, dtype, rng), random_upstream(rng, config["shape"], dtype))
    layer.eval()
    twin.eval()
    for shape in [(1, *config["shape"][1:]), config["shape"]]:
        assert_parity(layer, twin, batch(config, dtype, rng, shape, training=False),
                      random_upstream(rng, shape, dtype))
    assert layer.num_batches_tracked == steps


@given(batchnorm_configs(), st.booleans())
def test_batchnorm2d_matches_finite_differences(config_and_seed, training):
    """dL/dx (with the two correction terms from the batch statistics in training), dL/dgamma and
    dL/dbeta equal central differences, in training and in evaluation mode."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, np.float64, rng)
    if not training:
        layer.running_mean[...] = rng.standard_normal(layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2.0, layer.num_features)
        layer.eval()
    assert_matches_numerical(layer, batch(config, np.float64, rng),
                             random_upstream(rng, config["shape"], np.float64))

"""Writing a result over memory its owner gives up (docs/05-batch-normalization.md, "Memory") changes no
number: batch-norm's x_hat over its input and dx over x_hat, dropout's dx over its mask."""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from scratch.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from scratch.dropout import dropout_backward, dropout_forward
from scratch.model import training_steps


def _input(batch_last: bool, rng: np.random.Generator) -> np.ndarray:
    """(4, 3, 5, 6) float32, NCHW or batch last in memory, with a mean far from 0 (as a convolution's)."""
    if batch_last:
        return (2.0 + rng.standard_normal((3, 5, 6, 4), dtype=np.float32)).transpose(3, 0, 1, 2)
    return 2.0 + rng.standard_normal((4, 3, 5, 6), dtype=np.float32)


@pytest.mark.parametrize("batch_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_in_place_changes_no_bit(batch_last, training):
    rng = np.random.default_rng(0)
    x = _input(batch_last, rng)
    gamma, beta = rng.uniform(0.5, 2, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for in_place in (False, True):
        x_in, stats = x.copy(order="K"), [np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32)]
        y, cache = batchnorm2d_forward(x_in, gamma, beta, *stats, training, 0.1, 1e-5, overwrite_x=in_place)
        assert np.shares_memory(cache[0], x_in) == in_place          # x_hat where x was, only when asked
        x_hat = cache[0].copy()
        dx, dgamma, dbeta = batchnorm2d_backward(g, cache, overwrite_x_hat=in_place)
        assert np.shares_memory(dx, cache[0]) == in_place
        assert scratch.module.is_batch_last(dx) == batch_last
        results.append((y, x_hat, *stats, dx, dgamma, dbeta))
    for plain, in_place in zip(*results, strict=True):
        np.testing.assert_array_equal(in_place, plain, strict=True)


def test_batchnorm_keeps_a_callers_input_unless_told_and_a_read_only_one_always():
    rng = np.random.default_rng(1)
    x = _input(True, rng)
    kept = x.copy(order="K")                                        # batch last too: the same sums
    layer = scratch.BatchNorm2d(3)
    y = layer.forward(x)
    np.testing.assert_array_equal(x, kept)                          # the default: x is left alone
    x.flags.writeable = False
    np.testing.assert_array_equal(layer.forward(x, overwrite_input=True), y)   # read-only: a new x_hat
    writable = kept.copy(order="K")
    np.testing.assert_array_equal(layer.forward(writable, overwrite_input=True), y)
    assert not np.array_equal(writable, kept)                       # told, and writable: x_hat is there now


def test_dropout_backward_over_its_mask_changes_no_bit_and_keeps_the_gradients_dtype():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    keep = rng.random(x.shape) < 0.6
    g = rng.standard_normal(x.shape).astype(np.float32)
    plain = dropout_backward(g, dropout_forward(x, keep, 0.4)[1])
    mask = dropout_forward(x, keep, 0.4)[1]
    in_place = dropout_backward(g, mask, overwrite_mask=True)
    assert in_place is mask
    np.testing.assert_array_equal(in_place, plain, strict=True)
    g64 = g.astype(np.float64)                                      # another dtype: a new array of its own
    assert dropout_backward(g64, dropout_forward(x, keep, 0.4)[1], overwrite_mask=True).dtype == np.float64


def test_simplecnn_runs_batch_norm_in_place_after_each_convolution_only():
    keywords = {name: kw for name, _, kw in training_steps(scratch.SimpleCNN().layers) if kw}
    assert keywords == {"batch1": {"overwrite_input": True}, "relu1+max1": {"floor": 0.0},
                        "batch2": {"overwrite_input": True}, "relu2+max2": {"floor": 0.0}}


def test_a_convolution_with_a_forward_of_its_own_keeps_its_output():
    """A Conv2d subclass that overrides forward (as the exercises' learner layers do) may keep the array it
    returns: the batch-norm after it gets a copy of its own, not the right to write over it."""
    class KeepsItsOutput(scratch.Conv2d):
        def forward(self, x):
            self.kept = super().forward(x)
            return self.kept

    conv = KeepsItsOutput(3, 4, 3, dtype=np.float64)
    model = scratch.Sequential({"conv": conv, "bn": scratch.BatchNorm2d(4, dtype=np.float64)})
    assert [kw for _, _, kw in training_steps(model.layers)] == [{}, {}]
    model(np.random.default_rng(3).standard_normal((2, 3, 6, 6)))
    assert not np.allclose(conv.kept.mean(axis=(0, 2, 3)), 0)     # still the convolution's output, not x_hat

"""Dropout: scratch vs ``nn.Dropout`` with the very mask torch drew, the drop rate, eval mode, and
finite differences. The properties are defined in :mod:`simplecnn.properties` (shared with the
exercise grader)."""

import numpy as np
import pytest
from hypothesis import given

import scratch
from simplecnn import properties as prop

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.dropout_examples)
def test_dropout_matches_torch_given_torchs_mask(dtype, example):
    """Run torch's dropout, read its mask off its output (``out != 0``), give scratch that mask: outputs
    (scale 1/(1-p) included) and dL/dx (the same mask applied in backward) are equal."""
    prop.dropout_matches_torch_given_torchs_mask(example, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(prop.dropout_examples)
def test_dropout_in_eval_mode_is_the_identity_like_torch(dtype, example):
    """In evaluation mode both pass x and dL/dy through unchanged."""
    prop.dropout_in_eval_mode_is_the_identity(example, dtype)


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


def test_a_mask_keeps_a_unit_exactly_when_its_32_bit_number_reaches_the_threshold():
    """``sample_mask`` draws one 32-bit integer per unit, the halves of the generator's 64-bit outputs in
    order, and keeps ``u >= round(p * 2^32)``: an odd count uses half of the last output; p = 0 keeps every
    unit, p = 1 drops every one (2^32 is above every 32-bit integer)."""
    for p in (0.0, 0.45, 1.0):
        mask = scratch.Dropout(p, rng=np.random.default_rng(5)).sample_mask((7, 3))
        numbers = np.random.default_rng(5).bit_generator.random_raw(11).view(np.uint32)[:21].reshape(7, 3)
        np.testing.assert_array_equal(mask, numbers >= round(p * 2 ** 32))
    assert scratch.Dropout(0.0).sample_mask((1000,)).all()
    assert not scratch.Dropout(1.0).sample_mask((1000,)).any()
    rng, expected = np.random.default_rng(5), np.random.default_rng(5)
    scratch.Dropout(0.5, rng=rng).sample_mask((7, 3))
    expected.bit_generator.random_raw(11)                  # 21 units: 11 outputs
    assert rng.bit_generator.state == expected.bit_generator.state


def test_masks_are_those_of_float32_uniforms_but_for_numbers_next_to_the_threshold():
    """NumPy's float32 uniforms are the top 24 bits of the same 32-bit halves, ``(u >> 8) / 2^24``, so
    ``u >= round(p * 2^32)`` keeps the units ``rng.random(dtype=np.float32) >= p`` keeps, except where ``u``
    lies within 2^8 of the threshold: a generator's dropout masks are the ones it drew before masks were
    drawn from the integers (docs/06-dropout.md)."""
    for p in (0.35, 0.45, 0.5):
        shape = (200, 1000)
        mask = scratch.Dropout(p, rng=np.random.default_rng(9)).sample_mask(shape)
        floats = np.random.default_rng(9).random(shape, dtype=np.float32) >= p
        numbers = np.random.default_rng(9).bit_generator.random_raw(100_000).view(np.uint32).reshape(shape)
        near = np.abs(numbers.astype(np.int64) - round(p * 2 ** 32)) < 2 ** 8
        assert (mask == floats)[~near].all()


@given(prop.dropout_numerical_examples)
def test_dropout_matches_finite_differences(example):
    """With a fixed mask dropout is linear: its gradient is mask / (1 - p), as central differences show."""
    prop.dropout_matches_finite_differences(example)

"""The checks and strategies the parity tests share: parity with PyTorch, agreement with finite
differences, random upstream gradients, inputs with and without kinks.

They are defined once, in :mod:`simplecnn.properties` (installed, so that ``simplecnn exercise`` grades
a learner's backward pass with the same checks); this module re-exports them for the parity tests.
"""

from simplecnn.properties import (
    DTYPES,
    NUMERICAL_RTOL,
    assert_close,
    assert_matches_numerical,
    assert_parity,
    away_from_zero,
    input_with_zeros,
    no_float_warnings,
    random_upstream,
    seeds,
    shapes,
)


def whole_network_examples(max_examples: int) -> int:
    """Examples of the whole-network property for a profile of ``max_examples`` per property: one example
    is a few training steps of the real network (~0.5 s), so a twentieth of the count, at least 2."""
    return max(2, max_examples // 20)


__all__ = ["DTYPES", "NUMERICAL_RTOL", "assert_close", "assert_matches_numerical", "assert_parity",
           "away_from_zero", "input_with_zeros", "no_float_warnings", "random_upstream", "seeds", "shapes",
           "whole_network_examples"]

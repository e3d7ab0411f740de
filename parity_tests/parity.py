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

__all__ = ["DTYPES", "NUMERICAL_RTOL", "assert_close", "assert_matches_numerical", "assert_parity",
           "away_from_zero", "input_with_zeros", "no_float_warnings", "random_upstream", "seeds", "shapes"]

"""The two checks every layer test uses: parity with PyTorch, and agreement with finite differences.

They are defined once, in :mod:`simplecnn.properties` (installed, so that ``simplecnn exercise`` grades
a learner's backward pass with the same checks); this module re-exports them for the parity tests.
"""

from simplecnn.properties import (
    NUMERICAL_RTOL,
    assert_close,
    assert_matches_numerical,
    assert_parity,
    random_upstream,
)

__all__ = ["NUMERICAL_RTOL", "assert_close", "assert_matches_numerical", "assert_parity", "random_upstream"]

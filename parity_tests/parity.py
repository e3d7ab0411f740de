"""The two checks every layer test uses: parity with PyTorch, and agreement with finite differences.

:func:`assert_parity` is the one parity helper (tinygrad's ``helper_test_op`` idea): run the scratch
layer and its torch twin on the same input and the same random upstream gradient, then compare the
forward output, the input gradient and every parameter gradient (and buffers), each against the
tolerance of its kind (:data:`torch_impl.mirror.TOLERANCES`), and check that nothing the caller handed
in was modified.

:func:`assert_matches_numerical` is the oracle that owes nothing to PyTorch: central differences of
``sum(layer(x) * G)`` with respect to the input and every parameter, in float64.
"""

from __future__ import annotations

import numpy as np

from scratch.module import Layer
from scratch.numerical import numerical_gradient
from torch_impl.mirror import TOLERANCES, run_layer_pair


def random_upstream(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """A random upstream gradient dL/dy. Never ones: with ``L = sum(y)`` batch-norm's true input gradient
    is exactly zero and a test would compare two rounding noises."""
    return rng.standard_normal(shape).astype(dtype)


def _snapshot(layer: Layer, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    copies = {name: np.array(a, copy=True) for name, a in arrays.items()}
    copies.update({f"parameter {k}": p.data.copy() for k, p in layer.parameters().items()})
    return copies


def _assert_unchanged(before: dict[str, np.ndarray], layer: Layer, arrays: dict[str, np.ndarray]) -> None:
    after = {**arrays, **{f"parameter {k}": p.data for k, p in layer.parameters().items()}}
    for name, original in before.items():
        assert np.array_equal(after[name], original, equal_nan=True), f"the layer modified its {name}"


def assert_parity(layer: Layer, torch_module, x: np.ndarray, upstream: np.ndarray, **forward_kwargs) -> None:
    """Scratch ``layer`` and ``torch_module`` agree on output, input gradient, parameter gradients, buffers.

    Checked in that order (the first disagreement is the one reported), with the forward tolerance for
    values and the backward tolerance for gradients, for ``x``'s dtype. ``forward_kwargs`` (a dropout
    mask) go to the scratch layer. Also fails if ``x``, ``upstream``, the layer's parameters or anything
    in ``forward_kwargs`` were modified.
    """
    handed_in = {"input": x, "upstream gradient": upstream, **forward_kwargs}
    before = _snapshot(layer, handed_in)
    comparisons = run_layer_pair(layer, torch_module, x, upstream, **forward_kwargs)
    tolerance = TOLERANCES[np.dtype(x.dtype)]
    for comparison in comparisons:
        problem = comparison.problem(tolerance)
        assert problem is None, f"{layer!r}: {problem}"
    _assert_unchanged(before, layer, handed_in)


def assert_close(ours: np.ndarray, reference: np.ndarray, rtol: float, scale: float = 0.0, what: str = "") -> None:
    """``max|ours - reference| <= rtol * max(max|reference|, scale)``: the norm-wise relative error used
    everywhere in this suite (``scale`` is a floor for values whose true size is zero)."""
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != {reference.shape}"
    error = float(np.max(np.abs(ours - reference))) if ours.size else 0.0
    magnitude = max(float(np.max(np.abs(reference))) if reference.size else 0.0, scale)
    assert error <= rtol * magnitude, f"{what}: max error {error:.3g} > {rtol:g} * {magnitude:.3g}"


# Central differences in float64 with h = 1e-6 have a truncation error ~ h^2 * f''' and a rounding
# error ~ 1e-16 * |f| / h ~ 1e-10 |f|: about 1e-9 relative for these well-scaled small problems. 1e-6
# leaves room and still catches any real mistake (wrong sign, index or term is an O(1) error).
NUMERICAL_RTOL = 1e-6


def assert_matches_numerical(layer: Layer, x: np.ndarray, upstream: np.ndarray, **forward_kwargs) -> None:
    """The layer's analytic input and parameter gradients equal central differences of ``sum(y * G)``.

    ``G = upstream`` is random, so every output element is weighted differently (with ``G = 1``
    batch-norm's input gradient would be zero and prove nothing). float64 only. A layer returning
    ``(output, indices)`` is differentiated through its output.
    """
    assert x.dtype == np.float64 and upstream.dtype == np.float64
    x = x.copy()  # perturbed in place by numerical_gradient

    def scalarized() -> float:
        y = layer.forward(x, **forward_kwargs)
        return float(np.sum((y[0] if isinstance(y, tuple) else y) * upstream))

    layer.forward(x, **forward_kwargs)
    analytic_dx = layer.backward(upstream)
    analytic = {name: p.grad.copy() for name, p in layer.parameters().items()}
    scale = float(np.max(np.abs(upstream)))
    assert_close(analytic_dx, numerical_gradient(scalarized, x), NUMERICAL_RTOL, scale, f"{layer!r} grad input")
    for name, param in layer.parameters().items():
        assert_close(analytic[name], numerical_gradient(scalarized, param.data), NUMERICAL_RTOL, scale,
                     f"{layer!r} grad {name}")

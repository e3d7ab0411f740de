"""The parity properties: one definition of each, used by the parity suite and by ``simplecnn exercise``.

A property is a hypothesis strategy (what to generate) plus a check (what must hold for a generated
example). The parity tests in ``parity_tests/`` run each check on the reference layers of ``scratch/``;
the exercise grader (:mod:`simplecnn.exercise`) runs the very same checks on the same layers with a
learner's backward function plugged in. What the layers are is an :class:`Implementation`: the layer
classes (and loss function, optimizer class) a check builds. :data:`REFERENCE` is scratch's own.

The two checks every layer property uses live here too:

* :func:`assert_parity` (tinygrad's ``helper_test_op`` idea): run the layer and its torch twin on the
  same input and the same random upstream gradient, compare the output, the input gradient, every
  parameter gradient and every buffer, each against the tolerance of its kind
  (:data:`torch_impl.mirror.TOLERANCES`), and check that nothing handed in was modified;
* :func:`assert_matches_numerical`: central differences of ``sum(layer(x) * G)`` with respect to the
  input and every parameter, in float64, an oracle that owes nothing to PyTorch.

Every check raises ``AssertionError`` with a message that names the value that disagrees and where.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

import scratch
from scratch.conv import PADDING_MODES, conv_output_size, same_padding
from scratch.module import Layer
from scratch.numerical import numerical_gradient
from scratch.pool import pool_output_size
from torch_impl.mirror import (
    TOLERANCES,
    CrossEntropyLayer,
    LossLayer,
    optimizer_trajectories,
    run_layer_pair,
    to_numpy,
    to_torch,
    torch_twin,
)

DTYPES = [np.float64, np.float32]
seeds = st.integers(0, 2**32 - 1)
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def input_with_zeros(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Normal values, a quarter of them exactly 0: where ReLU, LeakyReLU, L1 and the hinge have kinks."""
    x = rng.standard_normal(shape)
    return np.where(rng.random(shape) < 0.25, 0.0, x).astype(dtype)


def away_from_zero(rng: np.random.Generator, shape) -> np.ndarray:
    """Normal float64 values with |x| >= 0.1, far more than a finite-difference step: no kink is crossed."""
    x = rng.standard_normal(shape)
    return x + np.where(x >= 0, 0.1, -0.1)


@contextlib.contextmanager
def no_float_warnings():
    """Any NumPy overflow, invalid operation or division by zero, and any warning, is an error inside."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield
pairs = st.tuples


# --- the two checks ---------------------------------------------------------------------------------

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
    handed_in = {"input": x, "upstream gradient": upstream, **forward_kwargs, **getattr(layer, "handed_in", {})}
    before = _snapshot(layer, handed_in)
    comparisons = run_layer_pair(layer, torch_module, x, upstream, **forward_kwargs)
    tolerance = TOLERANCES[np.dtype(x.dtype)]
    for comparison in comparisons:
        problem = comparison.problem(tolerance)
        assert problem is None, f"{layer!r}: {problem}"
    _assert_unchanged(before, layer, handed_in)


def assert_close(ours: Any, reference: np.ndarray, rtol: float, scale: float = 0.0, what: str = "") -> None:
    """``max|ours - reference| <= rtol * max(max|reference|, scale)``: the norm-wise relative error used
    everywhere in this suite (``scale`` is a floor for values whose true size is zero). The message
    names the worst index and both values there."""
    ours = np.asarray(ours)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != expected {reference.shape}"
    assert np.isfinite(ours).all(), f"{what}: not finite"
    error = float(np.max(np.abs(ours - reference))) if ours.size else 0.0
    magnitude = max(float(np.max(np.abs(reference))) if reference.size else 0.0, scale)
    if not error <= rtol * magnitude:
        worst = np.unravel_index(np.argmax(np.abs(ours - reference)), ours.shape)
        raise AssertionError(f"{what}: max error {error:.3g} > {rtol:g} * {magnitude:.3g} "
                             f"(worst at {tuple(int(i) for i in worst)}: got {float(ours[worst])!r}, "
                             f"expected {float(reference[worst])!r})")


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
    analytic = {name: None if p.grad is None else p.grad.copy() for name, p in layer.parameters().items()}
    scale = float(np.max(np.abs(upstream)))
    assert_close(analytic_dx, numerical_gradient(scalarized, x), NUMERICAL_RTOL, scale, f"{layer!r} grad input")
    for name, param in layer.parameters().items():
        assert analytic[name] is not None, f"{layer!r} grad {name}: no gradient was computed"
        assert_close(analytic[name], numerical_gradient(scalarized, param.data), NUMERICAL_RTOL, scale,
                     f"{layer!r} grad {name}")


# --- what the properties build ----------------------------------------------------------------------

@dataclass(frozen=True)
class Implementation:
    """The components a property builds. The parity suite checks :data:`REFERENCE`; the grader swaps in
    layer subclasses (or a loss function) whose backward is a learner's."""

    linear: type[scratch.Linear] = scratch.Linear
    relu: type[scratch.ReLU] = scratch.ReLU
    dropout: type[scratch.Dropout] = scratch.Dropout
    maxpool2d: type[scratch.MaxPool2d] = scratch.MaxPool2d
    conv2d: type[scratch.Conv2d] = scratch.Conv2d
    batchnorm2d: type[scratch.BatchNorm2d] = scratch.BatchNorm2d
    cross_entropy: Callable[..., tuple[float, np.ndarray]] = scratch.cross_entropy
    adam: type[scratch.Adam] = scratch.Adam
    adamw: type[scratch.AdamW] = scratch.AdamW
    sigmoid: type[scratch.Sigmoid] = scratch.Sigmoid
    tanh: type[scratch.Tanh] = scratch.Tanh
    leaky_relu: type[scratch.LeakyReLU] = scratch.LeakyReLU
    softmax: type[scratch.Softmax] = scratch.Softmax
    log_softmax: type[scratch.LogSoftmax] = scratch.LogSoftmax
    avgpool2d: type[scratch.AvgPool2d] = scratch.AvgPool2d
    cross_entropy_loss: type[scratch.CrossEntropyLoss] = scratch.CrossEntropyLoss
    mse: type[scratch.MSELoss] = scratch.MSELoss
    l1: type[scratch.L1Loss] = scratch.L1Loss
    mean_bias_error: type[scratch.MeanBiasError] = scratch.MeanBiasError
    multi_margin: type[scratch.MultiMarginLoss] = scratch.MultiMarginLoss
    sgd: type[scratch.SGD] = scratch.SGD
    adagrad: type[scratch.Adagrad] = scratch.Adagrad
    rmsprop: type[scratch.RMSprop] = scratch.RMSprop


REFERENCE = Implementation()


# --- Linear, ReLU, Flatten --------------------------------------------------------------------------

@st.composite
def linear_configs(draw):
    """in/out features, with or without bias, and inputs (N, in) or with extra leading axes (N, ..., in)."""
    in_features, out_features = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    leading = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))   # (): one unbatched (in,)
    return in_features, out_features, draw(st.booleans()), leading, draw(seeds)


def make_linear(config, dtype, impl: Implementation = REFERENCE):
    in_features, out_features, bias, leading, seed = config
    rng = np.random.default_rng(seed)
    layer = impl.linear(in_features, out_features, bias=bias, rng=rng, dtype=dtype)
    x = rng.standard_normal((*leading, in_features)).astype(dtype)
    return layer, x, random_upstream(rng, (*leading, out_features), dtype)


def linear_matches_torch(config, dtype, impl: Implementation = REFERENCE) -> None:
    """y = x W^T + b, dL/dx, dL/dW, dL/db equal nn.Linear's."""
    layer, x, upstream = make_linear(config, dtype, impl)
    assert_parity(layer, torch_twin(layer), x, upstream)


def linear_matches_finite_differences(config, impl: Implementation = REFERENCE) -> None:
    """The analytic gradients of the linear layer equal central differences."""
    assert_matches_numerical(*make_linear(config, np.float64, impl))


relu_examples = st.tuples(shapes, seeds)


def relu_matches_torch(example, dtype, impl: Implementation = REFERENCE) -> None:
    """max(x, 0) and dL/dx = dL/dy * [x > 0] equal nn.ReLU's, exact zeros in the input included."""
    shape, seed = example
    rng = np.random.default_rng(seed)
    layer = impl.relu()
    assert_parity(layer, torch_twin(layer), input_with_zeros(rng, shape, dtype), random_upstream(rng, shape, dtype))


def relu_matches_finite_differences(example, impl: Implementation = REFERENCE) -> None:
    """Away from 0 (|x| >= 0.1, far more than the finite-difference step) ReLU's gradient is exact."""
    shape, seed = example
    rng = np.random.default_rng(seed)
    assert_matches_numerical(impl.relu(), away_from_zero(rng, shape), random_upstream(rng, shape, np.float64))


flatten_examples = st.tuples(st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple), seeds)


def flatten_matches_torch(example, dtype) -> None:
    """(N, C, H, W) -> (N, C*H*W) in PyTorch's (channel, height, width) order, and back in backward."""
    shape, seed = example
    rng = np.random.default_rng(seed)
    layer = scratch.Flatten()
    flat_shape = (shape[0], int(np.prod(shape[1:])))
    assert_parity(layer, torch_twin(layer), rng.standard_normal(shape).astype(dtype),
                  random_upstream(rng, flat_shape, dtype))


def flatten_matches_finite_differences(example) -> None:
    """Flatten's backward is the inverse reshape: central differences agree."""
    shape, seed = example
    rng = np.random.default_rng(seed)
    upstream = random_upstream(rng, (shape[0], int(np.prod(shape[1:]))), np.float64)
    assert_matches_numerical(scratch.Flatten(), rng.standard_normal(shape), upstream)


# --- Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax ------------------------------------------------

ELEMENTWISE = ("sigmoid", "tanh", "leaky_relu")
leaky_slopes = st.sampled_from([0.01, 0.2, -0.5, 0.0])


@st.composite
def elementwise_activations(draw, kinds=ELEMENTWISE, slopes=leaky_slopes):
    """``(kind, negative_slope)``: Sigmoid, Tanh or LeakyReLU (slope from the guide's 0.01, 0.2, a negative
    one or 0, as torch allows; None for the others)."""
    kind = draw(st.sampled_from(kinds))
    return kind, draw(slopes) if kind == "leaky_relu" else None


def elementwise_examples(kinds=ELEMENTWISE, slopes=leaky_slopes):
    """``((kind, negative_slope), shape, seed)``."""
    return st.tuples(elementwise_activations(kinds, slopes), shapes, seeds)


def make_elementwise(activation, impl: Implementation = REFERENCE) -> Layer:
    kind, slope = activation
    return impl.leaky_relu(slope) if kind == "leaky_relu" else getattr(impl, kind)()


def extreme_input(rng, shape, dtype, magnitude):
    """Entries +-``magnitude`` or 0 plus a normal perturbation: exp of any of them overflows."""
    return (rng.choice([-magnitude, 0.0, magnitude], size=shape) + rng.standard_normal(shape)).astype(dtype)


def elementwise_activation_matches_torch(example, dtype, impl: Implementation = REFERENCE) -> None:
    """y and dL/dx equal torch's, inputs exactly 0 included: LeakyReLU's slope there is negative_slope
    (torch's kernel tests x > 0); sigmoid'(0) = 1/4, tanh'(0) = 1."""
    activation, shape, seed = example
    rng = np.random.default_rng(seed)
    layer = make_elementwise(activation, impl)
    assert_parity(layer, torch_twin(layer), input_with_zeros(rng, shape, dtype), random_upstream(rng, shape, dtype))


def elementwise_activation_matches_finite_differences(example, impl: Implementation = REFERENCE) -> None:
    """dL/dx = dL/dy * sigma(1 - sigma), * (1 - tanh^2), * (1 or slope): equal to central differences
    (away from LeakyReLU's kink at 0)."""
    activation, shape, seed = example
    rng = np.random.default_rng(seed)
    assert_matches_numerical(make_elementwise(activation, impl), away_from_zero(rng, shape),
                             random_upstream(rng, shape, np.float64))


def elementwise_activation_of_1000_is_finite_and_matches_torch(example, dtype,
                                                              impl: Implementation = REFERENCE) -> None:
    """sigmoid and tanh of +-1000 (exp(1000) overflows in both precisions): finite values and gradients,
    no NumPy overflow warning, equal to torch's."""
    activation, shape, seed = example
    rng = np.random.default_rng(seed)
    layer = make_elementwise(activation, impl)
    with no_float_warnings():
        assert_parity(layer, torch_twin(layer), extreme_input(rng, shape, dtype, 1000.0),
                      random_upstream(rng, shape, dtype))


@st.composite
def softmax_problems(draw, kinds=("softmax", "log_softmax")):
    """``(kind, dim, shape, seed)``: Softmax or LogSoftmax over a ``dim`` of a 1- to 4-D shape (negative
    dims included)."""
    shape = draw(shapes)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return draw(st.sampled_from(kinds)), dim, shape, draw(seeds)


def softmax_matches_torch(problem, dtype, impl: Implementation = REFERENCE) -> None:
    """softmax / log-softmax along any dim, and dL/dx = y (g - sum(g y)) / g - softmax sum(g), equal torch's."""
    kind, dim, shape, seed = problem
    rng = np.random.default_rng(seed)
    layer = getattr(impl, kind)(dim)
    x = (rng.uniform(0.1, 5) * rng.standard_normal(shape)).astype(dtype)
    assert_parity(layer, torch_twin(layer), x, random_upstream(rng, shape, dtype))


def softmax_matches_finite_differences(problem, impl: Implementation = REFERENCE) -> None:
    """dL/dx of softmax / log-softmax equals central differences."""
    kind, dim, shape, seed = problem
    rng = np.random.default_rng(seed)
    assert_matches_numerical(getattr(impl, kind)(dim), 3 * rng.standard_normal(shape),
                             random_upstream(rng, shape, np.float64))


def softmax_of_1e4_is_finite_and_matches_torch(problem, dtype, impl: Implementation = REFERENCE) -> None:
    """Slices holding +-1e4: the max is subtracted before exp, so values and gradients stay finite with no
    overflow or division by zero warning, and equal torch's."""
    kind, dim, shape, seed = problem
    rng = np.random.default_rng(seed)
    layer = getattr(impl, kind)(dim)
    with no_float_warnings():
        assert_parity(layer, torch_twin(layer), extreme_input(rng, shape, dtype, 1e4),
                      random_upstream(rng, shape, dtype))


# --- Dropout ----------------------------------------------------------------------------------------

drop_probabilities = st.one_of(st.sampled_from([0.0, 0.35, 0.45, 0.5, 1.0]), st.floats(0.0, 0.95))
dropout_shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)
dropout_examples = st.tuples(drop_probabilities, dropout_shapes, seeds)
dropout_numerical_examples = st.tuples(st.floats(0.0, 0.9), dropout_shapes, seeds)


def torch_dropout_with_seed(p: float, seed: int):
    """nn.Dropout(p) that draws the same mask on every call (the manual seed is reset first)."""
    dropout = torch.nn.Dropout(p)

    def run(x):
        torch.manual_seed(seed)
        return dropout(x)

    return run


def input_without_zeros(rng, shape, dtype):
    """Standard normal values pushed away from 0, so that ``output != 0`` is exactly the keep-mask."""
    x = rng.standard_normal(shape)
    return (x + np.where(x >= 0, 0.1, -0.1)).astype(dtype)


def dropout_matches_torch_given_torchs_mask(example, dtype, impl: Implementation = REFERENCE) -> None:
    """Run torch's dropout, read its mask off its output (``out != 0``), give scratch that mask: outputs
    (scale 1/(1-p) included) and dL/dx (the same mask applied in backward) are equal."""
    p, shape, seed = example
    rng = np.random.default_rng(seed)
    x = input_without_zeros(rng, shape, dtype)
    torch_dropout = torch_dropout_with_seed(p, seed)
    keep_mask = (torch_dropout(to_torch(x)) != 0).numpy()
    assert_parity(impl.dropout(p), torch_dropout, x, random_upstream(rng, shape, dtype), mask=keep_mask)


def dropout_in_eval_mode_is_the_identity(example, dtype, impl: Implementation = REFERENCE) -> None:
    """In evaluation mode both pass x and dL/dy through unchanged."""
    p, shape, seed = example
    rng = np.random.default_rng(seed)
    torch_dropout = torch.nn.Dropout(p).eval()
    assert_parity(impl.dropout(p).eval(), torch_dropout, rng.standard_normal(shape).astype(dtype),
                  random_upstream(rng, shape, dtype))


def dropout_matches_finite_differences(example, impl: Implementation = REFERENCE) -> None:
    """With a fixed mask dropout is linear: its gradient is mask / (1 - p), as central differences show."""
    p, shape, seed = example
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) >= p
    assert_matches_numerical(impl.dropout(p), rng.standard_normal(shape), random_upstream(rng, shape, np.float64),
                             mask=mask)


# --- Conv2d -----------------------------------------------------------------------------------------

@st.composite
def conv_configs(draw, max_channels=4, max_extra_size=6):
    """A Conv2d torch accepts and an input shape that fits it: non-square kernels, strides, padding
    (pairs, "same", "valid"), dilation, groups (depthwise and one channel per group included), every
    padding_mode, batched or unbatched inputs."""
    kernel = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(pairs(st.integers(1, 2), st.integers(1, 2)))
    padding = draw(st.one_of(pairs(st.integers(0, 2), st.integers(0, 2)), st.sampled_from(["same", "valid"])))
    stride = (1, 1) if padding == "same" else draw(pairs(st.integers(1, 3), st.integers(1, 3)))
    pads = conv_layer_pads(padding, kernel, dilation)
    # The smallest input the (dilated) kernel fits in, given the padding, and larger than every pad (so
    # that reflect and circular padding are defined), plus something; sometimes wide, so that scratch's
    # two im2col layouts (batch-last for short output rows, per-image for rows of 16 or more, see
    # scratch/conv.py) are both exercised.
    extra_h = draw(st.integers(0, max_extra_size))
    extra_w = draw(st.one_of(st.integers(0, max_extra_size), st.integers(16, 20)))
    hw = [max(1, d * (k - 1) + 1 - before - after, before + 1, after + 1) + extra
          for k, d, before, after, extra in zip(kernel, dilation, pads[::2], pads[1::2], (extra_h, extra_w),
                                                strict=True)]
    groups = draw(st.integers(1, 3))
    config = dict(batch=draw(st.one_of(st.none(), st.integers(1, 3))),   # None: one unbatched image
                  in_channels=groups * draw(st.integers(1, max(1, max_channels // groups))),
                  out_channels=groups * draw(st.integers(1, max(1, max_channels // groups))),
                  hw=tuple(hw), kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias=draw(st.booleans()), padding_mode=draw(st.sampled_from(PADDING_MODES)))
    return config, draw(seeds)


def conv_layer_pads(padding, kernel, dilation) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for a Conv2d ``padding`` argument (torch's "same" rule included)."""
    if padding == "same":
        return same_padding(kernel, dilation)
    if padding == "valid":
        return (0, 0, 0, 0)
    return (padding[0], padding[0], padding[1], padding[1])


def make_conv(config, dtype, rng, impl: Implementation = REFERENCE):
    layer = impl.conv2d(config["in_channels"], config["out_channels"], config["kernel_size"],
                        config["stride"], config["padding"], config["dilation"], config["groups"],
                        config["bias"], config["padding_mode"], rng=rng, dtype=dtype)
    batch = () if config["batch"] is None else (config["batch"],)
    x = rng.standard_normal((*batch, config["in_channels"], *config["hw"])).astype(dtype)
    pads = conv_layer_pads(config["padding"], config["kernel_size"], config["dilation"])
    out_hw = [conv_output_size(s + before + after, k, st_, 0, d) for s, k, st_, d, before, after in
              zip(config["hw"], config["kernel_size"], config["stride"], config["dilation"], pads[::2], pads[1::2],
                  strict=True)]
    upstream = random_upstream(rng, (*batch, config["out_channels"], *out_hw), dtype)
    return layer, x, upstream


def conv2d_matches_torch(config_and_seed, dtype, impl: Implementation = REFERENCE) -> None:
    """Output, dL/dx, dL/dweight and dL/dbias equal nn.Conv2d's for any kernel/stride/padding/dilation,
    groups and padding_mode, batched or not."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, dtype, np.random.default_rng(seed), impl)
    assert_parity(layer, torch_twin(layer), x, upstream)


def conv2d_matches_finite_differences(config_and_seed, impl: Implementation = REFERENCE) -> None:
    """The analytic gradients equal central differences (an oracle independent of PyTorch)."""
    config, seed = config_and_seed
    layer, x, upstream = make_conv(config, np.float64, np.random.default_rng(seed), impl)
    assert_matches_numerical(layer, x, upstream)


# --- MaxPool2d --------------------------------------------------------------------------------------

def every_window_sees_input(size, kernel, stride, padding, dilation, ceil_mode) -> bool:
    """Along one axis: every window covers at least one input position (not only padding)."""
    windows = range(pool_output_size(size, kernel, stride, padding, dilation, ceil_mode))
    return all(any(0 <= i * stride + u * dilation - padding < size for u in range(kernel)) for i in windows)


@st.composite
def pool_configs(draw, overlapping: bool = False, max_dilation: int = 2):
    """A MaxPool2d PyTorch accepts, including stride < kernel (overlapping windows), padding, dilation,
    ceil mode and return_indices, and an input shape it fits, batched or unbatched. ``overlapping``: only
    configurations whose windows overlap along at least one axis. ``max_dilation=1``: no dilation (the
    window geometry of average pooling, which has none)."""
    kernel = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    stride = draw(pairs(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(pairs(st.integers(1, max_dilation), st.integers(1, max_dilation)))
    if overlapping:
        assume(any(s < d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation, strict=True)))
    # PyTorch: padding <= kernel // 2 and <= half the effective (dilated) kernel.
    padding = tuple(draw(st.integers(0, min(k // 2, (d * (k - 1) + 1) // 2)))
                    for k, d in zip(kernel, dilation, strict=True))
    hw = tuple(max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 5))
               for k, p, d in zip(kernel, padding, dilation, strict=True))
    ceil_mode = draw(st.booleans())
    # Leave out windows made only of padding (possible with dilation or ceil mode): PyTorch 2.13 returns
    # -inf there with an index outside the input, and its backward then writes out of bounds (a crash).
    assume(all(every_window_sees_input(*axis, ceil_mode)
               for axis in zip(hw, kernel, stride, padding, dilation, strict=True)))
    config = dict(batch=draw(st.one_of(st.none(), st.integers(1, 2))),   # None: one unbatched image
                  channels=draw(st.integers(1, 3)), hw=hw, kernel_size=kernel, stride=stride, padding=padding,
                  dilation=dilation, return_indices=draw(st.booleans()), ceil_mode=ceil_mode)
    return config, draw(seeds)


def make_pool(config, impl: Implementation = REFERENCE):
    return impl.maxpool2d(config["kernel_size"], config["stride"], config["padding"], config["dilation"],
                          config["return_indices"], config["ceil_mode"])


def pool_output_shape(config):
    sizes = [pool_output_size(s, k, st_, p, d, config["ceil_mode"]) for s, k, st_, p, d in
             zip(config["hw"], config["kernel_size"], config["stride"], config["padding"], config["dilation"],
                 strict=True)]
    return (*pool_input_shape(config)[:-2], *sizes)


def pool_input_shape(config):
    """(N, C, H, W), or (C, H, W) for an unbatched config."""
    return (*(() if config["batch"] is None else (config["batch"],)), config["channels"], *config["hw"])


def distinct_input(config, dtype, rng):
    """Every value different (a shuffled ramp), so each window has exactly one maximum; the values are
    1/size apart, far more than a finite-difference step."""
    shape = pool_input_shape(config)
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(dtype)


def tied_input(config, dtype, rng, levels):
    """Integer values from a tiny range: most windows hold several equal maxima (``levels=1``: constant)."""
    shape = pool_input_shape(config)
    return rng.integers(0, levels, size=shape).astype(dtype)


tie_levels = st.integers(1, 3)


def maxpool2d_matches_torch(config_and_seed, dtype, impl: Implementation = REFERENCE) -> None:
    """Output, dL/dx (and the indices) equal nn.MaxPool2d's; overlapping windows accumulate, padding never
    wins."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_pool(config, impl)
    assert_parity(layer, torch_twin(layer), distinct_input(config, dtype, rng),
                  random_upstream(rng, pool_output_shape(config), dtype))


def maxpool2d_ties_go_where_torch_sends_them(example, dtype, impl: Implementation = REFERENCE) -> None:
    """With tied maxima the whole window gradient goes to the first maximum in scan order, as in torch.

    The gradients are random, so sending it to another tied position, or splitting it, shows up.
    """
    (config, seed), levels = example
    rng = np.random.default_rng(seed)
    layer = make_pool(config, impl)
    assert_parity(layer, torch_twin(layer), tied_input(config, dtype, rng, levels),
                  random_upstream(rng, pool_output_shape(config), dtype))


def maxpool2d_matches_finite_differences(config_and_seed, impl: Implementation = REFERENCE) -> None:
    """With distinct values the max is locally the identity on its winner: central differences agree."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    assert_matches_numerical(make_pool(config, impl), distinct_input(config, np.float64, rng),
                             random_upstream(rng, pool_output_shape(config), np.float64))


# --- AvgPool2d --------------------------------------------------------------------------------------

@st.composite
def avg_pool_configs(draw, count_include_pad=None, divisor_override=None):
    """An AvgPool2d PyTorch accepts (no dilation): padding counted in the divisor or not, a divisor_override
    (None most of the time), with the geometry of :func:`pool_configs`. ``count_include_pad``,
    ``divisor_override``: strategies narrowing those choices (the grader's first checks)."""
    config, seed = draw(pool_configs(max_dilation=1))
    count_include_pad = count_include_pad if count_include_pad is not None else st.booleans()
    divisor_override = divisor_override if divisor_override is not None else st.one_of(
        st.none(), st.none(), st.integers(1, 7))
    config = dict(config, count_include_pad=draw(count_include_pad), divisor_override=draw(divisor_override))
    return config, seed


def make_avg_pool(config, impl: Implementation = REFERENCE):
    return impl.avgpool2d(config["kernel_size"], config["stride"], config["padding"], config["ceil_mode"],
                          config["count_include_pad"], config["divisor_override"])


def avgpool2d_matches_torch(config_and_seed, dtype, impl: Implementation = REFERENCE) -> None:
    """Output and dL/dx equal nn.AvgPool2d's: the divisor counts padding or not (count_include_pad), a
    ceil-mode window past the padding divides by what it covers up to the padding's end, divisor_override
    replaces the divisor, overlapping windows add their shares."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_avg_pool(config, impl)
    x = rng.standard_normal(pool_input_shape(config)).astype(dtype)   # batched or unbatched
    assert_parity(layer, torch_twin(layer), x, random_upstream(rng, pool_output_shape(config), dtype))


def avgpool2d_matches_finite_differences(config_and_seed, impl: Implementation = REFERENCE) -> None:
    """Average pooling is linear: its gradient is exact, and central differences agree."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(pool_input_shape(config))
    assert_matches_numerical(make_avg_pool(config, impl), x, random_upstream(rng, pool_output_shape(config),
                                                                             np.float64))


# --- BatchNorm2d ------------------------------------------------------------------------------------

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
    return config, draw(seeds)


def make_batchnorm(config, dtype, rng, impl: Implementation = REFERENCE):
    """A layer with random gamma/beta (gamma = 1, beta = 0 would hide a mix-up between them)."""
    layer = impl.batchnorm2d(config["shape"][1], config["eps"], config["momentum"], config["affine"],
                             config["track_running_stats"], bias=config["bias"], dtype=dtype)
    if layer.weight is not None:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.num_features) * rng.choice([-1, 1], layer.num_features)
    if layer.bias is not None:
        layer.bias.data[...] = rng.standard_normal(layer.num_features)
    return layer


def batchnorm_input(config, dtype, rng, shape=None, training=True):
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


batchnorm_steps = st.integers(1, 4)


def batchnorm2d_training_steps_then_eval_match_torch(example, dtype, impl: Implementation = REFERENCE) -> None:
    """Each training step: output, dL/dx, dL/dgamma, dL/dbeta, and the running statistics afterwards
    (running_var unbiased, num_batches_tracked, momentum None = cumulative average) equal torch's.
    Then evaluation mode, which uses those running statistics, on a batch of one and a full batch, and
    under ``no_grad`` (scratch's folded fast path); without running statistics (track_running_stats=False)
    evaluation uses the batch's own, so the batch of one must have two values per channel. The state-dict
    keys are torch's for every option."""
    (config, seed), steps = example
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, dtype, rng, impl)
    twin = torch_twin(layer)
    assert list(layer.state_dict()) == list(twin.state_dict())
    for _ in range(steps):
        assert_parity(layer, twin, batchnorm_input(config, dtype, rng), random_upstream(rng, config["shape"], dtype))
    layer.eval()
    twin.eval()
    for shape in [(1, *config["shape"][1:]), config["shape"]]:
        if not layer.track_running_stats and np.prod(shape) // shape[1] < 2:
            continue
        assert_parity(layer, twin, batchnorm_input(config, dtype, rng, shape, training=not layer.track_running_stats),
                      random_upstream(rng, shape, dtype))
    if layer.track_running_stats:   # evaluation under no_grad: the folded affine map, no cache
        x = batchnorm_input(config, dtype, rng, config["shape"], training=False)
        with scratch.no_grad():
            ours = layer(x)
        with torch.no_grad():
            theirs = to_numpy(twin(to_torch(x)))
        assert_close(ours, theirs, TOLERANCES[np.dtype(dtype)].forward, what="no_grad eval output")
    assert layer.num_batches_tracked == (steps if layer.track_running_stats else None)


def batchnorm2d_matches_finite_differences(example, impl: Implementation = REFERENCE) -> None:
    """dL/dx (with the two correction terms from the batch statistics in training), dL/dgamma and
    dL/dbeta equal central differences, in training (``training`` true) or evaluation mode."""
    (config, seed), training = example
    rng = np.random.default_rng(seed)
    layer = make_batchnorm(config, np.float64, rng, impl)
    if not training and layer.running_mean is not None and layer.running_var is not None:
        layer.running_mean[...] = rng.standard_normal(layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2.0, layer.num_features)
    if not training:
        layer.eval()
    assert_matches_numerical(layer, batchnorm_input(config, np.float64, rng),
                             random_upstream(rng, config["shape"], np.float64))


# --- Cross-entropy ----------------------------------------------------------------------------------

@st.composite
def cross_entropy_problems(draw, extreme=False):
    """Logits (N, K) and targets. ``extreme``: logits of +-1e4 (and 0) that overflow a naive softmax."""
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(seeds))
    if extreme:
        logits = rng.choice([-1e4, 0.0, 1e4], size=(n, k)) + rng.standard_normal((n, k))
    else:
        logits = draw(st.floats(0.1, 10.0)) * rng.standard_normal((n, k))
    targets = rng.integers(0, k, size=n)
    upstream = rng.standard_normal()  # a random scalar dL/d(loss)
    return logits, targets, draw(st.sampled_from(["mean", "sum"])), upstream


def cross_entropy_matches_torch(problem, dtype, impl: Implementation = REFERENCE) -> None:
    """The loss and dL/dlogits = (softmax - onehot) / N (or without / N for "sum") equal torch's; with
    extreme logits, log-sum-exp keeps both finite."""
    logits, targets, reduction, upstream = problem
    loss = CrossEntropyLayer(targets, reduction, impl.cross_entropy)
    assert_parity(loss, loss.torch_twin(), logits.astype(dtype), np.array(upstream, dtype=dtype))


def cross_entropy_matches_finite_differences(problem, impl: Implementation = REFERENCE) -> None:
    """dL/dlogits equals central differences of the loss."""
    logits, targets, reduction, upstream = problem
    assert_matches_numerical(CrossEntropyLayer(targets, reduction, impl.cross_entropy), logits, np.array(upstream))


# --- The loss classes -------------------------------------------------------------------------------

LOSS_KINDS = ("cross_entropy", "mse", "l1", "mean_bias_error", "multi_margin")
reductions = st.sampled_from(["mean", "sum", "none"])


@st.composite
def loss_configs(draw, kind, kinks=True, **narrow):
    """One loss problem of ``kind``, as the options and a seed; :func:`build_loss` makes the arrays.

    ``kinks``: element-wise targets equal to the input in places (L1's kink), hinge scores exactly on the
    margin (z = 0). Without: every point is a differentiable one, for finite differences. ``narrow``:
    strategies replacing the default choice of an option (``reduction``, ``weighted``, ``p``, ``margin``,
    ``unbatched``; the grader's first checks).
    """
    def pick(key, default):
        return draw(narrow.get(key, default))

    config = dict(kind=kind, reduction=pick("reduction", reductions), seed=draw(seeds), kinks=kinks)
    if kind in ("cross_entropy", "multi_margin"):
        config.update(n=draw(st.integers(1, 5)), classes=draw(st.integers(1, 6)),
                      weighted=pick("weighted", st.booleans()))
    if kind == "cross_entropy":
        classes = config["classes"]
        probabilities = draw(st.booleans())
        # extra=None: one unbatched sample, logits (C,)
        extra = draw(st.one_of(st.none(), st.lists(st.integers(1, 3), max_size=2).map(tuple)))
        config.update(extra=extra, probabilities=probabilities,
                      # torch allows a real class as ignore_index (not with probabilities, nor would one class do)
                      ignore_index=draw(st.sampled_from([-100, 0] if classes > 1 and not probabilities else [-100])),
                      label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 0.45, 1.0])),
                      scale=draw(st.floats(0.1, 8.0)))
    elif kind == "multi_margin":
        config.update(p=pick("p", st.sampled_from([1, 2])),
                      margin=pick("margin", st.sampled_from([0.5, 1.0, 2.0, 0.0])),
                      # None: scores (N, C); () or (1,): one unbatched sample (C,) with a target of that shape
                      unbatched=pick("unbatched", st.sampled_from([None, None, (), (1,)])))
    else:
        config.update(shape=draw(shapes))
    return config


def build_loss(config, dtype, impl: Implementation = REFERENCE):
    """``(LossLayer, input, upstream)`` for ``config`` in ``dtype``; the upstream gradient is a random scalar,
    or random per element for ``reduction="none"``."""
    rng = np.random.default_rng(config["seed"])
    kind, reduction = config["kind"], config["reduction"]
    target: np.ndarray
    loss_fn: Any
    if kind in ("cross_entropy", "multi_margin"):
        n, classes = config["n"], config["classes"]
        weight = rng.uniform(0.2, 3.0, classes).astype(dtype) if config["weighted"] else None
    if kind == "cross_entropy":
        unbatched = config["extra"] is None
        value_shape = () if unbatched else (n, *config["extra"])
        x = config["scale"] * rng.standard_normal((classes,) if unbatched else (n, classes, *config["extra"]))
        if config["probabilities"]:
            target = np.moveaxis(rng.dirichlet(np.ones(classes), size=value_shape), -1, 0 if unbatched else 1)
            target = target.astype(dtype)
        else:
            target = rng.integers(0, classes, size=value_shape)
            target[rng.random(target.shape) < 0.2] = config["ignore_index"]
            # "mean" over no sample at all is 0/0 (NaN, tested on its own): keep one sample.
            if (target == config["ignore_index"]).all():
                target[np.unravel_index(0, target.shape)] = 1 if config["ignore_index"] == 0 else 0
        loss_fn = impl.cross_entropy_loss(weight, config["ignore_index"], reduction, config["label_smoothing"])
    elif kind == "multi_margin":
        unbatched = config["unbatched"]
        value_shape = (n,) if unbatched is None else unbatched
        scores_shape = (n, classes) if unbatched is None else (classes,)
        target = rng.integers(0, classes, size=value_shape)
        if config["kinks"]:   # half-integers: many scores exactly margin below the target's (z = 0)
            x = rng.integers(-4, 5, size=scores_shape) / 2
        else:
            x = rng.standard_normal(scores_shape)
        loss_fn = impl.multi_margin(config["p"], config["margin"], weight, reduction)
    else:
        shape = config["shape"]
        x = rng.standard_normal(shape)
        if config["kinks"]:   # a quarter of the targets equal the input exactly: L1's kink
            target = np.where(rng.random(shape) < 0.25, x, rng.standard_normal(shape))
        else:
            target = x + away_from_zero(rng, shape)
        target = target.astype(dtype)
        loss_fn = getattr(impl, kind)(reduction)
        value_shape = shape
    upstream = random_upstream(rng, value_shape if reduction == "none" else (), dtype)
    return LossLayer(loss_fn, target), x.astype(dtype), upstream


def loss_matches_torch(config, dtype, impl: Implementation = REFERENCE) -> None:
    """Value and dL/dinput equal torch's (MeanBiasError: autograd of (input - target) reduced), every
    reduction, batched and unbatched (C,) inputs, kinks included: L1's gradient at input == target is
    sign(0) = 0, the hinge's at z = 0 is 0; neither the input, the target nor the weight is modified."""
    layer, x, upstream = build_loss(config, dtype, impl)
    assert_parity(layer, layer.torch_twin(), x, upstream)


def loss_matches_finite_differences(config, impl: Implementation = REFERENCE) -> None:
    """dL/dinput equals central differences of the loss (away from the kinks)."""
    assert_matches_numerical(*build_loss(config, np.float64, impl))


# --- The optimizers ---------------------------------------------------------------------------------

weight_decays = st.sampled_from([0.0, 1e-2, 0.3])
epsilons = st.integers(-8, -1).map(lambda e: 10.0 ** e)   # up to 0.1, so where eps is added matters


@st.composite
def optimizer_hyper(draw, kind="adam", **narrow):
    """Hyper-parameters of ``kind``, every option exercised: for Adam/AdamW lr, betas, eps, weight decay,
    amsgrad; SGD momentum (0 or not), dampening (non-zero makes torch's first-step rule buf = g visible),
    nesterov; Adagrad lr_decay and initial_accumulator_value; RMSprop alpha, momentum, centered.
    ``narrow``: strategies replacing the default choice of an option (the grader's first checks)."""
    def pick(key, default):
        return draw(narrow.get(key, default))

    lr = draw(st.floats(1e-4, 0.1))
    if kind in ("adam", "adamw"):
        return dict(lr=lr, betas=(draw(st.sampled_from([0.0, 0.5, 0.9])), draw(st.sampled_from([0.9, 0.99, 0.999]))),
                    eps=draw(epsilons), weight_decay=pick("weight_decay", weight_decays),
                    amsgrad=pick("amsgrad", st.booleans()))
    if kind == "sgd":
        momentum = pick("momentum", st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and pick("nesterov", st.booleans())
        dampening = 0.0 if nesterov else pick("dampening", st.sampled_from([0.0, 0.3]))
        return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=pick("weight_decay", weight_decays),
                    nesterov=nesterov)
    if kind == "adagrad":
        return dict(lr=lr, lr_decay=pick("lr_decay", st.sampled_from([0.0, 0.1])),
                    weight_decay=pick("weight_decay", weight_decays),
                    initial_accumulator_value=pick("initial_accumulator_value", st.sampled_from([0.0, 0.5])),
                    eps=draw(epsilons))
    assert kind == "rmsprop", kind
    return dict(lr=lr, alpha=draw(st.sampled_from([0.5, 0.9, 0.99])), eps=draw(epsilons),
                weight_decay=pick("weight_decay", weight_decays),
                momentum=pick("momentum", st.sampled_from([0.0, 0.5, 0.9])), centered=pick("centered", st.booleans()))


def optimizer_examples(kind="adam", steps=None, **narrow):
    """``(hyper-parameters, steps, seed)``: :func:`optimizer_hyper`, a number of steps (1 to 6, or the
    strategy ``steps``) and a seed for the parameters and gradients (see :func:`gradient_sequence`)."""
    return st.tuples(optimizer_hyper(kind, **narrow), steps if steps is not None else st.integers(1, 6), seeds)


def gradient_sequence(steps: int, seed: int, dtype):
    """Initial parameters of a few shapes and ``steps`` random gradients with varying scale (a shrinking
    gradient makes amsgrad's max differ from v)."""
    rng = np.random.default_rng(seed)
    shapes = {"weight": (3, 4), "bias": (3,)}
    initial = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    gradients = [{k: (10.0 ** rng.uniform(-3, 1) * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}
                 for _ in range(steps)]
    return initial, gradients


def optimizer_trajectory_matches_torch(example, dtype, impl: Implementation = REFERENCE, kind: str = "adam") -> None:
    """After every one of K steps the parameters and every state tensor torch keeps (and the step count)
    equal torch's. Adam: exp_avg, exp_avg_sq, max_exp_avg_sq; t incremented before use, bias corrections,
    eps after the square root, L2 decay in the gradient (Adam) or decoupled (AdamW). SGD: momentum_buffer,
    started as the first gradient, dampening, the nesterov look-ahead. Adagrad: sum, lr_decay.
    RMSprop: square_avg, grad_avg (centered), momentum_buffer. The gradients handed in are not modified."""
    hyper, steps, seed = example
    initial, gradients = gradient_sequence(steps, seed, dtype)
    originals = [{k: v.copy() for k, v in g.items()} for g in gradients]
    for comparisons in optimizer_trajectories(kind, initial, gradients, ours_cls=getattr(impl, kind), **hyper):
        for comparison in comparisons:
            problem = comparison.problem(TOLERANCES[np.dtype(dtype)])
            assert problem is None, problem
    for given_grads, original in zip(gradients, originals, strict=True):
        for k in original:
            assert np.array_equal(given_grads[k], original[k]), "the optimizer modified a gradient"

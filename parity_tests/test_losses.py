"""The loss classes: CrossEntropyLoss (weight, ignore_index, label_smoothing, class-probability targets),
MSELoss, L1Loss, MultiMarginLoss vs their ``torch.nn`` twins, MeanBiasError vs autograd of ``input - target``
reduced the same way; every reduction, random upstream gradients, the kinks at exactly zero, and finite
differences. (The function ``scratch.cross_entropy`` has its own tests in test_loss.py.)"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scratch
from simplecnn import properties as prop

from .parity import DTYPES


@pytest.mark.parametrize("kind", prop.LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_loss_matches_torch(kind, dtype, data):
    """Value and dL/dinput equal torch's (MeanBiasError: autograd of (input - target) reduced), every
    reduction, batched and unbatched (C,) inputs, kinks included: L1's gradient at input == target is
    sign(0) = 0, the hinge's at z = 0 is 0; neither the input, the target nor the weight is modified."""
    prop.loss_matches_torch(data.draw(prop.loss_configs(kind), label="config"), dtype)


@given(st.sampled_from(prop.LOSS_KINDS).flatmap(lambda kind: prop.loss_configs(kind, kinks=False)))
def test_loss_matches_finite_differences(config):
    """dL/dinput equals central differences of the loss (away from the kinks)."""
    prop.loss_matches_finite_differences(config)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_of_only_ignored_targets_is_nan_with_zero_gradient_as_in_torch(dtype, label_smoothing):
    """"mean" over no sample is 0/0: NaN, and no logit gets a gradient."""
    logits = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    target = np.full(3, -100)
    loss_fn = scratch.CrossEntropyLoss(label_smoothing=label_smoothing)
    value = loss_fn(logits, target)
    logits_t = torch.tensor(logits, requires_grad=True)
    value_t = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)(logits_t, torch.tensor(target))
    value_t.backward()
    assert np.isnan(value) and torch.isnan(value_t)
    np.testing.assert_array_equal(loss_fn.backward(), logits_t.grad.numpy())


def test_multi_margin_is_the_guides_hinge_divided_by_the_number_of_classes():
    """The guide's multi-class SVM loss, sum_{j != y} max(0, x_j - x_y + 1), is torch's (and ours) times C."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 7)), rng.integers(0, 7, 5)
    margins = np.maximum(0, x - x[np.arange(5), y][:, None] + 1)
    margins[np.arange(5), y] = 0
    guide = margins.sum(axis=1)
    np.testing.assert_allclose(scratch.MultiMarginLoss(reduction="none")(x, y) * 7, guide, rtol=1e-14)


def test_mean_bias_error_has_no_minimum():
    """Gradient descent on the signed mean error never stops: each step lowers it by the same amount
    (lr, since its gradient is 1/N everywhere), so predictions run off to -infinity."""
    rng = np.random.default_rng(2)
    x, target = rng.standard_normal(8), rng.standard_normal(8)
    loss_fn, lr, values = scratch.MeanBiasError(), 2.0, []
    for _ in range(5):
        values.append(loss_fn(x, target))
        x = x - lr * loss_fn.backward()
    np.testing.assert_allclose(np.diff(values), -lr / 8, rtol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: scratch.MSELoss("avg"), "reduction"),
    (lambda: scratch.CrossEntropyLoss(label_smoothing=1.5), "label_smoothing"),
    (lambda: scratch.CrossEntropyLoss(ignore_index=0.5), "ignore_index"),
    (lambda: scratch.CrossEntropyLoss(weight=np.ones((2, 2))), "weight"),
    (lambda: scratch.CrossEntropyLoss(weight=np.ones(3))(np.zeros((2, 4)), np.zeros(2, dtype=int)), "weight has 3"),
    (lambda: scratch.CrossEntropyLoss()(np.zeros((2, 4)), np.array([0, 4])), "target 4 is not a class index"),
    (lambda: scratch.CrossEntropyLoss()(np.zeros((2, 4)), np.zeros((2, 3))), "class-probability targets"),
    (lambda: scratch.CrossEntropyLoss(ignore_index=1)(np.zeros((2, 4)), np.zeros((2, 4))), "ignore_index"),
    (lambda: scratch.CrossEntropyLoss()(np.zeros(()), np.zeros((), dtype=int)), r"\(N, C\)"),
    (lambda: scratch.CrossEntropyLoss()(np.zeros(4), np.zeros(1, dtype=int)), r"shape \(\)"),
    (lambda: scratch.MultiMarginLoss()(np.zeros(4), np.zeros(2, dtype=int)), r"shape \(\) or \(1,\)"),
    (lambda: scratch.MultiMarginLoss()(np.zeros((2, 3, 4)), np.zeros(2, dtype=int)), r"\(N, C\) or \(C,\)"),
    (lambda: scratch.MultiMarginLoss(p=3), "p must be 1 or 2"),
    (lambda: scratch.MultiMarginLoss(margin=float("inf")), "margin"),
    (lambda: scratch.MultiMarginLoss()(np.zeros((2, 3)), np.array([0, -1])), "target -1"),
    (lambda: scratch.L1Loss()(np.zeros(3), np.zeros(4)), "target must be an array of the input's shape"),
    (lambda: scratch.MSELoss()(np.zeros(3, dtype=np.float32), np.zeros(3)), "dtype"),
    (lambda: scratch.MeanBiasError()(np.zeros(3, dtype=int), np.zeros(3, dtype=int)), "float32 or float64"),
])
def test_bad_arguments_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_backward_checks_grad_output_and_needs_a_forward():
    loss_fn = scratch.L1Loss(reduction="none")
    with pytest.raises(RuntimeError, match="without a forward"):
        loss_fn.backward()
    loss_fn(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="grad_output must have the shape"):
        loss_fn.backward(1.0)
    loss_fn = scratch.L1Loss()
    loss_fn(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="grad_output must be a scalar"):
        loss_fn.backward(np.ones(3))

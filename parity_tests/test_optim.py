"""The optimizers: K-step trajectories of scratch's Adam, AdamW, SGD, Adagrad and RMSprop vs ``torch.optim``
on the same gradients (every state tensor compared after every step), state_dict round trips, zero_grad."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.module import StateDictError
from simplecnn import properties as prop
from torch_impl.mirror import OPTIMIZERS

from .parity import DTYPES


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_optimizer_trajectory_matches_torch(kind, dtype, data):
    """After every one of K steps the parameters and every state tensor torch keeps (and the step count)
    equal torch's; see :func:`simplecnn.properties.optimizer_trajectory_matches_torch`."""
    prop.optimizer_trajectory_matches_torch(data.draw(prop.optimizer_examples(kind), label="example"), dtype,
                                            kind=kind)


NEW_OPTIMIZERS = ["sgd", "adagrad", "rmsprop"]


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@given(data=st.data())
def test_state_dict_resumes_the_same_trajectory(kind, data):
    """Stop after k steps, load the state dict into a fresh optimizer over copies of the parameters, go on:
    the parameters end exactly where an uninterrupted run ends (every piece of state is in the dict)."""
    hyper, steps, seed = data.draw(prop.optimizer_examples(kind), label="example")
    initial, gradients = prop.gradient_sequence(steps, seed, np.float64)
    stop = data.draw(st.integers(0, len(gradients)), label="stop after")
    make = OPTIMIZERS[kind][0]

    def run(params, optimizer, steps):
        for grads in steps:
            for k, p in params.items():
                p.grad = grads[k].copy()
            optimizer.step()

    straight = {k: scratch.Parameter(v.copy()) for k, v in initial.items()}
    run(straight, make(straight, **hyper), gradients)
    first = {k: scratch.Parameter(v.copy()) for k, v in initial.items()}
    optimizer = make(first, **hyper)
    run(first, optimizer, gradients[:stop])
    state = optimizer.state_dict()
    resumed = {k: scratch.Parameter(p.data.copy()) for k, p in first.items()}
    fresh = make(resumed, **hyper)
    fresh.load_state_dict(state)
    run(resumed, fresh, gradients[stop:])
    for k in initial:
        np.testing.assert_array_equal(resumed[k].data, straight[k].data, err_msg=k)


@pytest.mark.parametrize("make, keys", [
    (lambda p: scratch.SGD(p, momentum=0.9), ["step", "momentum_buffer.weight"]),
    (lambda p: scratch.SGD(p), ["step"]),
    (lambda p: scratch.Adagrad(p), ["step", "sum.weight"]),
    (lambda p: scratch.RMSprop(p), ["step", "square_avg.weight"]),
    (lambda p: scratch.RMSprop(p, momentum=0.5, centered=True),
     ["step", "square_avg.weight", "momentum_buffer.weight", "grad_avg.weight"]),
])
def test_state_dict_keys_are_torchs_state_names_and_are_checked(make, keys):
    optimizer = make({"weight": scratch.Parameter(np.zeros((2, 3)))})
    state = optimizer.state_dict()
    assert list(state) == keys
    assert state["step"].dtype == np.int64 and state["step"].shape == ()
    wrong = {**state, "unexpected.weight": np.zeros(1)}
    for key in keys[1:]:
        wrong[key] = np.zeros((3, 2))
    with pytest.raises(StateDictError) as error:
        optimizer.load_state_dict(wrong)
    assert "unexpected key 'unexpected.weight'" in str(error.value)
    for key in keys[1:]:
        assert f"{key!r}: expected shape (2, 3)" in str(error.value)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_zero_grad_forgets_the_gradients_and_step_skips_them(kind):
    params = {"weight": scratch.Parameter(np.ones(3)), "bias": scratch.Parameter(np.ones(2))}
    optimizer = OPTIMIZERS[kind][0](params, lr=0.1)
    params["weight"].grad, params["bias"].grad = np.ones(3), np.ones(2)
    optimizer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(params["weight"].grad, 0)
    optimizer.zero_grad()
    assert params["weight"].grad is None and params["bias"].grad is None
    optimizer.step()                       # nothing to do: a parameter without a gradient is left alone
    np.testing.assert_array_equal(params["weight"].data, 1)


@pytest.mark.parametrize("make, message", [
    (lambda p: scratch.SGD(p, lr=-1), "lr"),
    (lambda p: scratch.SGD(p, momentum=-0.5), "momentum"),
    (lambda p: scratch.SGD(p, nesterov=True), "nesterov"),
    (lambda p: scratch.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda p: scratch.SGD(p, weight_decay=-1), "weight_decay"),
    (lambda p: scratch.Adagrad(p, lr_decay=-1), "lr_decay"),
    (lambda p: scratch.Adagrad(p, initial_accumulator_value=-1), "initial_accumulator_value"),
    (lambda p: scratch.Adagrad(p, eps=float("nan")), "eps"),
    (lambda p: scratch.RMSprop(p, alpha=-0.1), "alpha"),
    (lambda p: scratch.RMSprop(p, momentum="0.9"), "momentum"),
])
def test_bad_hyper_parameters_name_the_option(make, message):
    with pytest.raises(ValueError, match=message):
        make({"weight": scratch.Parameter(np.zeros(2))})

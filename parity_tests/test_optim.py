"""The optimizers: K-step trajectories of scratch's Adam, AdamW, SGD, Adagrad and RMSprop vs ``torch.optim``
on the same gradients (every state tensor compared after every step), state_dict round trips, zero_grad."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratch
from scratch.module import StateDictError
from torch_impl.mirror import OPTIMIZERS, TOLERANCES, optimizer_trajectories

from .parity import DTYPES

weight_decays = st.sampled_from([0.0, 1e-2, 0.3])
epsilons = st.integers(-8, -1).map(lambda e: 10.0 ** e)   # up to 0.1, so where eps is added matters


@st.composite
def optimizer_settings(draw, kind="adam"):
    """Hyper-parameters of ``kind``, every option exercised: for Adam/AdamW lr, betas, eps, weight decay,
    amsgrad; SGD momentum (0 or not), dampening (non-zero makes torch's first-step rule buf = g visible),
    nesterov; Adagrad lr_decay and initial_accumulator_value; RMSprop alpha, momentum, centered."""
    lr = draw(st.floats(1e-4, 0.1))
    if kind in ("adam", "adamw"):
        return dict(lr=lr, betas=(draw(st.sampled_from([0.0, 0.5, 0.9])), draw(st.sampled_from([0.9, 0.99, 0.999]))),
                    eps=draw(epsilons), weight_decay=draw(weight_decays), amsgrad=draw(st.booleans()))
    if kind == "sgd":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.3]))
        return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=draw(weight_decays), nesterov=nesterov)
    if kind == "adagrad":
        return dict(lr=lr, lr_decay=draw(st.sampled_from([0.0, 0.1])), weight_decay=draw(weight_decays),
                    initial_accumulator_value=draw(st.sampled_from([0.0, 0.5])), eps=draw(epsilons))
    assert kind == "rmsprop"
    return dict(lr=lr, alpha=draw(st.sampled_from([0.5, 0.9, 0.99])), eps=draw(epsilons),
                weight_decay=draw(weight_decays), momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
                centered=draw(st.booleans()))


@st.composite
def gradient_sequences(draw, dtype):
    """Initial parameters of a few shapes and K steps of random gradients with varying scale (a shrinking
    gradient makes amsgrad's max differ from v)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = {"weight": (3, 4), "bias": (3,)}
    steps = draw(st.integers(1, 6))
    initial = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    gradients = [{k: (10.0 ** rng.uniform(-3, 1) * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}
                 for _ in range(steps)]
    return initial, gradients


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_optimizer_trajectory_matches_torch(kind, dtype, data):
    """After every one of K steps the parameters and every state tensor torch keeps (and the step count)
    equal torch's. Adam: exp_avg, exp_avg_sq, max_exp_avg_sq; t incremented before use, bias corrections,
    eps after the square root, L2 decay in the gradient (Adam) or decoupled (AdamW). SGD: momentum_buffer,
    started as the first gradient, dampening, the nesterov look-ahead. Adagrad: sum, lr_decay.
    RMSprop: square_avg, grad_avg (centered), momentum_buffer."""
    hyper = data.draw(optimizer_settings(kind), label="hyper-parameters")
    initial, gradients = data.draw(gradient_sequences(dtype), label="parameters and gradients")
    originals = [{k: v.copy() for k, v in g.items()} for g in gradients]
    for comparisons in optimizer_trajectories(kind, initial, gradients, **hyper):
        for comparison in comparisons:
            problem = comparison.problem(TOLERANCES[np.dtype(dtype)])
            assert problem is None, problem
    for given_grads, original in zip(gradients, originals, strict=True):
        for k in original:
            np.testing.assert_array_equal(given_grads[k], original[k], err_msg="the optimizer modified a gradient")


NEW_OPTIMIZERS = ["sgd", "adagrad", "rmsprop"]


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@given(data=st.data())
def test_state_dict_resumes_the_same_trajectory(kind, data):
    """Stop after k steps, load the state dict into a fresh optimizer over copies of the parameters, go on:
    the parameters end exactly where an uninterrupted run ends (every piece of state is in the dict)."""
    hyper = data.draw(optimizer_settings(kind), label="hyper-parameters")
    initial, gradients = data.draw(gradient_sequences(np.float64), label="parameters and gradients")
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

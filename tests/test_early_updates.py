"""Optimizer.start_update and model.backward(grad, optimizer): the updates started during the backward
pass are exactly those of backward then step (docs/09-adam.md, "Speed"), and an open step is never
half-used by zero_grad or a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from scratch import parallel

OPTIMIZERS = [(scratch.Adam, {}), (scratch.Adam, {"amsgrad": True, "weight_decay": 0.1}), (scratch.AdamW, {}),
              (scratch.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}), (scratch.Adagrad, {"lr_decay": 0.1}),
              (scratch.RMSprop, {"momentum": 0.5, "centered": True})]


def _train(optimizer, options, overlapped: bool, steps: int = 3):
    """``steps`` training steps of a small-batch SimpleCNN; its state and the optimizer's afterwards."""
    rng = np.random.default_rng(0)
    model = scratch.SimpleCNN(seed=2)
    opt = optimizer(model.parameters(), **options)
    for _ in range(steps):
        x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
        opt.zero_grad()
        _, grad = scratch.cross_entropy(model(x), rng.integers(0, 10, 4))
        if overlapped:
            model.backward(grad, opt)
        else:
            model.backward(grad)
        opt.step()
    return model.state_dict(), opt.state_dict()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer, options", OPTIMIZERS)
def test_updates_started_in_backward_are_those_of_step(optimizer, options, threads):
    saved = parallel.workers()
    parallel.set_workers(threads)
    try:
        (model_a, opt_a), (model_b, opt_b) = (_train(optimizer, options, overlapped) for overlapped in (False, True))
    finally:
        parallel.set_workers(saved)
    for plain, overlapped in ((model_a, model_b), (opt_a, opt_b)):
        assert plain.keys() == overlapped.keys()
        for key in plain:
            np.testing.assert_array_equal(plain[key], overlapped[key], strict=True, err_msg=key)


def test_backward_starts_every_layer_but_the_first_with_parameters(monkeypatch):
    """The updates start layer by layer in backward order, as each layer's gradients become final; conv1's
    (the first layer, after which only step() is left) is left to step()."""
    model = scratch.SimpleCNN(seed=1)
    opt = scratch.Adam(model.parameters())
    started: list[list[str]] = []
    real_start = opt.start_update
    monkeypatch.setattr(opt, "start_update", lambda names: (started.append(list(names)), real_start(names)))
    x = np.zeros((2, 1, 28, 28), np.float32)
    _, grad = scratch.cross_entropy(model(x), np.array([1, 2]))
    model.backward(grad, opt)
    assert started == [["fc2.weight", "fc2.bias"], ["fc1.weight", "fc1.bias"], ["batch2.weight", "batch2.bias"],
                       ["conv2.weight", "conv2.bias"], ["batch1.weight", "batch1.bias"]]
    opt.step()
    assert opt.step_count == 1


def test_a_parameter_started_early_is_updated_once():
    param, reference = (scratch.Parameter(np.array([1.0, -2.0])) for _ in range(2))
    for p in (param, reference):
        p.grad = np.array([0.5, 0.25])
    opt, ref_opt = scratch.Adam({"w": param}, lr=0.1), scratch.Adam({"w": reference}, lr=0.1)
    opt.start_update(["w"])
    opt.start_update(["w"])            # a second start of the same parameter adds nothing
    opt.step()
    ref_opt.step()
    np.testing.assert_array_equal(param.data, reference.data, strict=True)
    assert opt.step_count == ref_opt.step_count == 1


def test_an_unknown_parameter_is_named_and_opens_no_step():
    opt = scratch.Adam({"w": scratch.Parameter(np.ones(2))})
    with pytest.raises(KeyError, match="no parameter named fc9.weight"):
        opt.start_update(["w", "fc9.weight"])
    opt.zero_grad()                      # no step was left open
    assert opt.step_count == 0


@pytest.mark.parametrize("call", ["zero_grad", "state_dict", "load_state_dict"])
def test_an_open_step_must_be_finished_first(call):
    """Between start_update and step(), zeroing the gradients or saving the state would mix two steps."""
    param = scratch.Parameter(np.ones(3))
    param.grad = np.ones(3)
    opt = scratch.Adam({"w": param})
    state = opt.state_dict()
    opt.start_update(["w"])
    args = (state,) if call == "load_state_dict" else ()
    with pytest.raises(RuntimeError, match=r"call step\(\) first"):
        getattr(opt, call)(*args)
    opt.step()
    getattr(opt, call)(*args)


def test_an_error_in_an_update_started_early_comes_out_of_step_and_ends_it():
    param = scratch.Parameter(np.ones(3))
    param.grad = np.ones(4)              # wrong shape: the update fails on the other core
    opt = scratch.SGD({"w": param}, lr=0.1)
    opt.start_update(["w"])
    with pytest.raises(ValueError):
        opt.step()
    param.grad = np.ones(3)
    opt.zero_grad(set_to_none=False)     # the step is over: nothing is left open
    opt.step()
    assert opt.step_count == 2

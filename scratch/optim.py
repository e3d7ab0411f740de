"""Adam and AdamW (PyTorch's ``torch.optim.Adam`` / ``AdamW``), step by step.

Notation (docs/09-adam.md), for one parameter ``theta`` with gradient ``g`` at step ``t = 1, 2, ...``::

    g      = g + weight_decay * theta            (Adam only: L2 penalty folded into the gradient)
    theta  = theta * (1 - lr * weight_decay)     (AdamW only: decoupled decay, applied to theta)
    m      = m + (1 - beta1) * (g - m)           first moment   (= beta1 m + (1 - beta1) g)
    nu     = beta2 * nu + (1 - beta2) * g^2      second moment  (``v`` in the code)
    nu_max = max(nu_max, nu)                     (amsgrad only; then nu_max replaces nu below)
    m_hat  = m / (1 - beta1^t)                   bias corrections: m and nu start at zero
    theta  = theta - lr * m_hat / (sqrt(nu / (1 - beta2^t)) + eps)

``t`` is incremented *before* it is used, so the first step already divides by ``1 - beta1^1`` and
``1 - beta2^1``, and
``eps`` is added *after* the square root. Each line is written in the order and form PyTorch's
single-tensor implementation uses (``lerp`` for m, the step size ``lr / (1 - beta1^t)``), so that
float64 trajectories agree to the last bits.

Speed: every line of the update is one pass over the parameter, done in place or into one
preallocated scratch array per parameter (``out=``), so a step allocates no temporary arrays. Each row
of a parameter is updated on its own, so a large parameter's rows are split between the cores
(scratch/parallel.py); the numbers are the same for any number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import Future, wait
from functools import partial

import numpy as np

from . import parallel
from .module import Parameter, check_state_dict


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, scratch: np.ndarray | None = None) -> None:
    """``start += weight * (end - start)`` in place, rounded as ``torch.lerp`` rounds it.

    PyTorch interpolates from the nearer end: ``start + w (end - start)`` for ``w < 0.5``, else
    ``end - (end - start)(1 - w)``. Same value, different rounding: with ``beta1 = 0`` (``w = 1``) the
    second form returns ``end`` exactly, the first one can lose every digit when ``start`` is much larger.
    """
    w = start.dtype.type(weight)
    diff = np.subtract(end, start, out=scratch)        # end - start (into ``scratch`` when given)
    if w < 0.5:
        start += np.multiply(w, diff, out=diff)
    else:
        np.subtract(end, np.multiply(diff, 1 - w, out=diff), out=start)


class Optimizer:
    """What every optimizer here shares: the named parameters, ``zero_grad``, and a step that can start early.

    A step is one call of ``_update_parameter(name)`` for every parameter with a gradient, after
    ``_begin_step()`` has counted the step (``step_count``) and set what all parameters share (Adam's bias
    corrections). :meth:`step` runs it. :meth:`start_update` runs part of it ahead, on another core, for
    parameters whose gradients are already final; :meth:`step` then updates the others and waits for those.

    Chapter: docs/09-adam.md.
    """

    params: dict[str, Parameter]
    step_count: int
    weight_decay: float
    _step_open = False   # a step has begun (start_update) and step() has not finished it yet

    def step(self) -> None:
        """One update of every parameter from its ``grad`` (parameters without a gradient are skipped).
        Parameters that :meth:`start_update` started are not updated again: this waits for them."""
        self._open_step()
        try:
            for name, param in self.params.items():
                if param.grad is not None and name not in self._started_names:
                    self._update_parameter(name)
        finally:
            self._close_step()

    def start_update(self, names: Iterable[str]) -> None:
        """Start this step's update of the parameters ``names`` on another core and return at once; the
        next :meth:`step` updates the other parameters, waits for these, and ends the step.

        For parameters whose gradients are final: ``model.backward(grad, optimizer)`` (scratch/model.py)
        calls it for each layer as soon as that layer's backward pass is done, so that the update of the
        last layers runs while the backward pass goes on through the first ones. The updates are the ones
        :meth:`step` would make, so the numbers are the same. Between this and :meth:`step`, the gradients
        of ``names`` must not change; ``zero_grad`` and the state dict refuse to run (call :meth:`step` first).

        Chapter: docs/09-adam.md.
        """
        names = list(names)
        unknown = [name for name in names if name not in self.params]
        if unknown:
            raise KeyError(f"{type(self).__name__}.start_update: no parameter named {', '.join(unknown)}")
        self._open_step()
        names = [name for name in names if self.params[name].grad is not None and name not in self._started_names]

        def update() -> None:
            for name in names:
                self._update_parameter(name)

        if names:
            self._started_names.update(names)
            self._started.append(parallel.in_background(update))

    def _open_step(self) -> None:
        if not self._step_open:
            self._started: list[Future] = []
            self._started_names: set[str] = set()
            self.step_count += 1
            self._begin_step()
            self._step_open = True

    def _close_step(self) -> None:
        """Wait for the updates :meth:`start_update` started (raising the first error) and end the step."""
        started, self._started, self._started_names = self._started, [], set()
        self._step_open = False
        wait(started)
        for future in started:
            future.result()

    def _require_no_open_step(self, what: str) -> None:
        if self._step_open:
            raise RuntimeError(f"{type(self).__name__}.{what}: a step was started (start_update) and not "
                               f"finished: call step() first")

    def _begin_step(self) -> None:
        """What every parameter's update of this step shares (``step_count`` is already this step's)."""

    def _weight_and_gradient(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(theta, g)`` of parameter ``name``, with the L2 penalty folded into the gradient as torch's SGD,
        Adagrad and RMSprop do: ``g = g + weight_decay * theta`` (a new array; ``grad`` is left as it is)."""
        param = self.params[name]
        assert param.grad is not None
        if self.weight_decay:
            return param.data, param.grad + self.weight_decay * param.data
        return param.data, param.grad

    def _update_parameter(self, name: str) -> None:
        """This step's update of parameter ``name`` (which has a gradient), in place."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients, like ``torch.optim.Optimizer.zero_grad``: ``None`` (the default; ``step``
        then skips the parameter) or zeros in place."""
        self._require_no_open_step("zero_grad")
        for param in self.params.values():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    def _check_hyper(self, **values: float) -> None:
        """Each named hyper-parameter must be a number >= 0 (PyTorch's checks, with the option named)."""
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not value >= 0.0:
                raise ValueError(f"{type(self).__name__}: invalid {name} {value!r} (must be a number >= 0)")


class Adam(Optimizer):
    """Adam over a dict of named :class:`Parameter` (``model.parameters()``), updated in place. (docs/09-adam.md)"""

    decoupled_weight_decay = False

    def __init__(self, params: dict[str, Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        if not lr >= 0.0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if not eps >= 0.0 or not weight_decay >= 0.0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0, "
                             f"got {eps} and {weight_decay}")
        self.params = dict(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.weight_decay, self.amsgrad = float(weight_decay), bool(amsgrad)
        self.step_count = 0
        self.exp_avg = {k: np.zeros_like(p.data) for k, p in self.params.items()}
        self.exp_avg_sq = {k: np.zeros_like(p.data) for k, p in self.params.items()}
        self.max_exp_avg_sq = {k: np.zeros_like(p.data) for k, p in self.params.items()} if amsgrad else {}
        self._scratch = {k: np.empty_like(p.data) for k, p in self.params.items()}  # work space, not state

    def _begin_step(self) -> None:
        beta1, beta2 = self.betas
        t = self.step_count
        self._step_size = self.lr / (1 - beta1 ** t)
        self._bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)

    def _update_parameter(self, name: str) -> None:
        param = self.params[name]
        update = partial(self._update_rows, name)
        if param.data.ndim == 0:
            update(Ellipsis)
        else:                                        # rows split between the cores (scratch/parallel.py)
            parallel.run(update, len(param.data), 8 * param.data.size)

    def _update_rows(self, name: str, rows) -> None:
        """The update of parameter ``name``'s ``rows`` (a slice, or ``...`` for all of it)."""
        beta1, beta2 = self.betas
        step_size, bias_correction2_sqrt = self._step_size, self._bias_correction2_sqrt
        param = self.params[name]
        assert param.grad is not None
        theta, grad = param.data[rows], param.grad[rows]
        if self.weight_decay:
            if self.decoupled_weight_decay:
                theta *= 1 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * theta
        m, v, tmp = self.exp_avg[name][rows], self.exp_avg_sq[name][rows], self._scratch[name][rows]
        _lerp_(m, grad, 1 - beta1, tmp)            # m + (1 - beta1) * (grad - m)
        v *= beta2
        v += np.multiply(np.multiply(1 - beta2, grad, out=tmp), grad, out=tmp)  # (1-b2) g g
        if self.amsgrad:
            v_max = self.max_exp_avg_sq[name][rows]
            np.maximum(v_max, v, out=v_max)
            v = v_max
        denom = np.sqrt(v, out=tmp)                  # sqrt(v) / sqrt(1 - b2^t) + eps
        denom /= bias_correction2_sqrt
        denom += self.eps
        theta -= np.multiply(step_size, np.divide(m, denom, out=tmp), out=tmp)  # step * m / denom

    def state_dict(self) -> dict[str, np.ndarray]:
        """Moments and step count as flat arrays (``exp_avg.<param>``, ...), for checkpoints."""
        self._require_no_open_step("state_dict")
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        for prefix, moments in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq),
                                ("max_exp_avg_sq", self.max_exp_avg_sq)):
            state.update({f"{prefix}.{k}": v.copy() for k, v in moments.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load moments and step, after checking every key and shape (all problems reported at once)."""
        self._require_no_open_step("load_state_dict")
        expected = {k: np.shape(v) for k, v in self.state_dict().items()}
        check_state_dict(expected, state, type(self).__name__)
        self.step_count = int(state["step"])
        for prefix, moments in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq),
                                ("max_exp_avg_sq", self.max_exp_avg_sq)):
            for k in moments:
                moments[k][...] = state[f"{prefix}.{k}"]


class AdamW(Adam):
    """Adam with decoupled weight decay: ``theta *= 1 - lr * weight_decay`` before the Adam step.

    Chapter: docs/09-adam.md.
    """

    decoupled_weight_decay = True

    def __init__(self, params: dict[str, Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


# --- the gradient-descent family of the guide (docs/14-optimizers.md) ----------------------------------

def _state_arrays(optimizer, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The flat state dict: ``"step"`` then ``"<torch state name>.<param>"`` for every per-parameter array."""
    optimizer._require_no_open_step("state_dict")
    state = {"step": np.array(optimizer.step_count, dtype=np.int64)}
    for prefix in names:
        state.update({f"{prefix}.{k}": v.copy() for k, v in getattr(optimizer, prefix).items()})
    return state


def _load_state_arrays(optimizer, names: tuple[str, ...], state: dict[str, np.ndarray]) -> None:
    optimizer._require_no_open_step("load_state_dict")
    expected = {k: np.shape(v) for k, v in _state_arrays(optimizer, names).items()}
    check_state_dict(expected, state, type(optimizer).__name__)
    optimizer.step_count = int(state["step"])
    for prefix in names:
        for k, array in getattr(optimizer, prefix).items():
            array[...] = state[f"{prefix}.{k}"]


class SGD(Optimizer):
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)``::

        g     = g + weight_decay * theta
        phi   = g                                       (first step: the buffer starts as the gradient)
        phi   = momentum * phi + (1 - dampening) * g    (later steps)
        g     = g + momentum * phi  (nesterov)   or   g = phi  (classical momentum)
        theta = theta - lr * g

    ``phi`` is ``momentum_buffer``, ``momentum`` the docs' rho and ``dampening`` their zeta.

    With ``momentum = 0`` this is plain gradient descent ``theta -= lr * g``; whether it is batch,
    stochastic or mini-batch gradient descent depends only on how many samples ``g`` was averaged over.

    Chapter: docs/14-optimizers.md.
    """

    def __init__(self, params: dict[str, Parameter], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        self._check_hyper(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if isinstance(dampening, bool) or not isinstance(dampening, (int, float, np.floating, np.integer)):
            raise ValueError(f"SGD: invalid dampening {dampening!r} (must be a number)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: nesterov momentum requires momentum > 0 and dampening = 0, got momentum "
                             f"{momentum} and dampening {dampening}")
        self.params = dict(params)
        self.lr, self.momentum, self.dampening = float(lr), float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        self.step_count = 0
        self.momentum_buffer = {k: np.zeros_like(p.data) for k, p in self.params.items()} if momentum else {}
        # Which buffers hold a value: torch creates a buffer on the parameter's first step with a gradient.
        self._buffer_started = dict.fromkeys(self.momentum_buffer, False)

    def _update_parameter(self, name: str) -> None:
        theta, grad = self._weight_and_gradient(name)
        if self.momentum:
            buf = self.momentum_buffer[name]
            if not self._buffer_started[name]:
                buf[...] = grad                           # torch: buf = grad.clone()
                self._buffer_started[name] = True
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        theta -= self.lr * grad

    def state_dict(self) -> dict[str, np.ndarray]:
        """``step`` and ``momentum_buffer.<param>`` (the latter only when ``momentum != 0``)."""
        return _state_arrays(self, ("momentum_buffer",))

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load after checking every key and shape. Buffers count as started once ``step > 0`` (a parameter
        that had no gradient on the first steps is the one case this cannot tell apart)."""
        _load_state_arrays(self, ("momentum_buffer",), state)
        self._buffer_started = dict.fromkeys(self.momentum_buffer, self.step_count > 0)


class Adagrad(Optimizer):
    """``torch.optim.Adagrad(params, lr=0.01, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10)``, at step ``t = 1, 2, ...``::

        g     = g + weight_decay * theta
        clr   = lr / (1 + (t - 1) * lr_decay)
        sum   = sum + g^2                           (starts at initial_accumulator_value; the docs' Sigma)
        theta = theta - clr * g / (sqrt(sum) + eps)

    Chapter: docs/14-optimizers.md.
    """

    def __init__(self, params: dict[str, Parameter], lr: float = 0.01, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        self._check_hyper(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                          initial_accumulator_value=initial_accumulator_value, eps=eps)
        self.params = dict(params)
        self.lr, self.lr_decay, self.weight_decay, self.eps = float(lr), float(lr_decay), float(weight_decay), \
            float(eps)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.step_count = 0
        self.sum = {k: np.full_like(p.data, initial_accumulator_value) for k, p in self.params.items()}

    def _begin_step(self) -> None:
        self._clr = self.lr / (1 + (self.step_count - 1) * self.lr_decay)

    def _update_parameter(self, name: str) -> None:
        theta, grad = self._weight_and_gradient(name)
        accumulated = self.sum[name]
        accumulated += grad * grad
        std = np.sqrt(accumulated)
        std += self.eps
        theta -= self._clr * (grad / std)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``step`` and ``sum.<param>``."""
        return _state_arrays(self, ("sum",))

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        _load_state_arrays(self, ("sum",), state)


class RMSprop(Optimizer):
    """``torch.optim.RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False)``::

        g     = g + weight_decay * theta
        nu    = alpha * nu + (1 - alpha) * g^2      square_avg (``v`` in the code)
        m     = m + (1 - alpha) * (g - m)            grad_avg (centered only)
        avg   = sqrt(nu - m^2) + eps  (centered)  or  sqrt(nu) + eps
        phi   = momentum * phi + g / avg             momentum_buffer (momentum > 0 only)
        theta = theta - lr * phi   (momentum > 0)  or  theta - lr * g / avg

    Chapter: docs/14-optimizers.md.
    """

    def __init__(self, params: dict[str, Parameter], lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        self._check_hyper(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        self.params = dict(params)
        self.lr, self.alpha, self.eps = float(lr), float(alpha), float(eps)
        self.weight_decay, self.momentum, self.centered = float(weight_decay), float(momentum), bool(centered)
        self.step_count = 0
        self.square_avg = {k: np.zeros_like(p.data) for k, p in self.params.items()}
        self.momentum_buffer = {k: np.zeros_like(p.data) for k, p in self.params.items()} if momentum > 0 else {}
        self.grad_avg = {k: np.zeros_like(p.data) for k, p in self.params.items()} if centered else {}

    _STATE = ("square_avg", "momentum_buffer", "grad_avg")

    def _update_parameter(self, name: str) -> None:
        theta, grad = self._weight_and_gradient(name)
        alpha = self.alpha
        v = self.square_avg[name]
        v *= alpha
        v += (1 - alpha) * (grad * grad)
        if self.centered:
            m = self.grad_avg[name]
            _lerp_(m, grad, 1 - alpha)
            avg = np.sqrt(v - m * m)
        else:
            avg = np.sqrt(v)
        avg += self.eps
        if self.momentum > 0:
            buf = self.momentum_buffer[name]
            buf *= self.momentum
            buf += grad / avg
            theta -= self.lr * buf
        else:
            theta -= self.lr * (grad / avg)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``step``, ``square_avg.<param>``, ``momentum_buffer.<param>`` (momentum > 0), ``grad_avg.<param>``
        (centered)."""
        return _state_arrays(self, self._STATE)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        _load_state_arrays(self, self._STATE, state)

"""Adam and AdamW (PyTorch's ``torch.optim.Adam`` / ``AdamW``), step by step.

Notation (docs/09-adam.md), for one parameter ``theta`` with gradient ``g`` at step ``t = 1, 2, ...``::

    g      = g + weight_decay * theta            (Adam only: L2 penalty folded into the gradient)
    theta  = theta * (1 - lr * weight_decay)     (AdamW only: decoupled decay, applied to theta)
    m      = m + (1 - beta1) * (g - m)           first moment   (= beta1 m + (1 - beta1) g)
    v      = beta2 * v + (1 - beta2) * g^2       second moment
    v_max  = max(v_max, v)                       (amsgrad only; then v_max replaces v below)
    m_hat  = m / (1 - beta1^t)                   bias corrections: m and v start at zero
    theta  = theta - lr * m_hat / (sqrt(v / (1 - beta2^t)) + eps)

``t`` is incremented *before* it is used, so the first step already divides by ``1 - beta^1``, and
``eps`` is added *after* the square root. Each line is written in the order and form PyTorch's
single-tensor implementation uses (``lerp`` for m, the step size ``lr / (1 - beta1^t)``), so that
float64 trajectories agree to the last bits.

Speed: every line of the update is one pass over the parameter, done in place or into one
preallocated scratch array per parameter (``out=``), so a step allocates no temporary arrays.
"""

from __future__ import annotations

import math

import numpy as np

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


class Adam:
    """Adam over a dict of named :class:`Parameter` (``model.parameters()``), updated in place."""

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

    def step(self) -> None:
        """One update of every parameter from its ``grad`` (parameters without a gradient are skipped)."""
        beta1, beta2 = self.betas
        self.step_count += 1
        t = self.step_count
        step_size = self.lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        for name, param in self.params.items():
            if param.grad is None:
                continue
            theta, grad = param.data, param.grad
            if self.weight_decay:
                if self.decoupled_weight_decay:
                    theta *= 1 - self.lr * self.weight_decay
                else:
                    grad = grad + self.weight_decay * theta
            m, v, tmp = self.exp_avg[name], self.exp_avg_sq[name], self._scratch[name]
            _lerp_(m, grad, 1 - beta1, tmp)            # m + (1 - beta1) * (grad - m)
            v *= beta2
            v += np.multiply(np.multiply(1 - beta2, grad, out=tmp), grad, out=tmp)  # (1-b2) g g
            if self.amsgrad:
                np.maximum(self.max_exp_avg_sq[name], v, out=self.max_exp_avg_sq[name])
                v = self.max_exp_avg_sq[name]
            denom = np.sqrt(v, out=tmp)                  # sqrt(v) / sqrt(1 - b2^t) + eps
            denom /= bias_correction2_sqrt
            denom += self.eps
            theta -= np.multiply(step_size, np.divide(m, denom, out=tmp), out=tmp)  # step * m / denom

    def state_dict(self) -> dict[str, np.ndarray]:
        """Moments and step count as flat arrays (``exp_avg.<param>``, ...), for checkpoints."""
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        for prefix, moments in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq),
                                ("max_exp_avg_sq", self.max_exp_avg_sq)):
            state.update({f"{prefix}.{k}": v.copy() for k, v in moments.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load moments and step, after checking every key and shape (all problems reported at once)."""
        expected = {k: np.shape(v) for k, v in self.state_dict().items()}
        check_state_dict(expected, state, type(self).__name__)
        self.step_count = int(state["step"])
        for prefix, moments in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq),
                                ("max_exp_avg_sq", self.max_exp_avg_sq)):
            for k in moments:
                moments[k][...] = state[f"{prefix}.{k}"]


class AdamW(Adam):
    """Adam with decoupled weight decay: ``theta *= 1 - lr * weight_decay`` before the Adam step."""

    decoupled_weight_decay = True

    def __init__(self, params: dict[str, Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

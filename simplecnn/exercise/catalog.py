"""The exercises: what each asks, which shared properties grade it, and the known mistakes.

An :class:`Exercise` names the function the learner writes, the docs chapter that derives it, the file
``start`` writes, and its checks: :class:`Check` objects that run a property of
:mod:`simplecnn.properties` (the very ones the parity suite runs) on an
:class:`~simplecnn.properties.Implementation` whose layer calls the learner's function. The checks are
listed in the order they run: finite differences first, then PyTorch, then the semantic corners.

A :class:`Mistake` is a known wrong variant of the learner's function: when the learner's function
returns what a mistake returns on the minimal failing example, the report gives the mistake's hint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import scratch
from simplecnn import properties as prop

from . import NAMES, solutions

FINITE_DIFFERENCES, TORCH, CORNER = "finite differences", "PyTorch", "corner"


@dataclass(frozen=True)
class Check:
    """One property run on the learner's implementation (``dtype`` float64 where the property takes one)."""

    stage: str                                   # FINITE_DIFFERENCES, TORCH or CORNER
    title: str
    strategy: st.SearchStrategy
    run: Callable[[Any, prop.Implementation], None]
    labels: tuple[str, ...] = ()                 # names of the example's parts, for the report


_SEEDED_CONFIG = ("config", "seed")
#: What the parts of each property's example are (the seed draws the values: x, W, dL/dy, ...).
_LABELS: dict[Callable[..., None], tuple[str, ...]] = {
    prop.linear_matches_finite_differences: ("in_features", "out_features", "bias", "leading shape", "seed"),
    prop.linear_matches_torch: ("in_features", "out_features", "bias", "leading shape", "seed"),
    prop.relu_matches_finite_differences: ("shape", "seed"),
    prop.relu_matches_torch: ("shape", "seed"),
    prop.cross_entropy_matches_finite_differences: ("logits", "targets", "reduction", "dL/dloss"),
    prop.cross_entropy_matches_torch: ("logits", "targets", "reduction", "dL/dloss"),
    prop.dropout_matches_finite_differences: ("p", "shape", "seed"),
    prop.dropout_matches_torch_given_torchs_mask: ("p", "shape", "seed"),
    prop.dropout_in_eval_mode_is_the_identity: ("p", "shape", "seed"),
    prop.maxpool2d_matches_finite_differences: _SEEDED_CONFIG,
    prop.maxpool2d_matches_torch: _SEEDED_CONFIG,
    prop.maxpool2d_ties_go_where_torch_sends_them: ("(config, seed)", "levels of the tied values"),
    prop.conv2d_matches_finite_differences: _SEEDED_CONFIG,
    prop.conv2d_matches_torch: _SEEDED_CONFIG,
    prop.batchnorm2d_matches_finite_differences: ("(config, seed)", "training"),
    prop.batchnorm2d_training_steps_then_eval_match_torch: ("(config, seed)", "training steps"),
    prop.optimizer_trajectory_matches_torch: ("hyper-parameters", "steps", "seed"),
    prop.elementwise_activation_matches_finite_differences: ("(activation, negative_slope)", "shape", "seed"),
    prop.elementwise_activation_matches_torch: ("(activation, negative_slope)", "shape", "seed"),
    prop.elementwise_activation_of_1000_is_finite_and_matches_torch: ("(activation, negative_slope)", "shape",
                                                                      "seed"),
    prop.softmax_matches_finite_differences: ("activation", "dim", "shape", "seed"),
    prop.softmax_matches_torch: ("activation", "dim", "shape", "seed"),
    prop.softmax_of_1e4_is_finite_and_matches_torch: ("activation", "dim", "shape", "seed"),
    prop.avgpool2d_matches_finite_differences: _SEEDED_CONFIG,
    prop.avgpool2d_matches_torch: _SEEDED_CONFIG,
    prop.loss_matches_finite_differences: (),     # a dict of the options and the seed
    prop.loss_matches_torch: (),
}


def _plain(strategy, **defaults):
    """``strategy`` of ``(config, seed)`` narrowed to the options an exercise covers: every key of
    ``defaults`` that the shared config draws (new torch options, e.g. Conv2d ``groups``) is set to its
    default, so that the exercise's forward pass and its hints stay right when the properties grow.
    (Mapped, not filtered: with several options drawn, a filter would reject most examples.) A batch of
    ``None`` (an unbatched input) becomes a batch of one."""

    def narrow(config_and_seed):
        config, seed = config_and_seed
        plain = dict(config, **{k: v for k, v in defaults.items() if k in config})
        if "batch" in plain and plain["batch"] is None:
            plain["batch"] = 1
        return plain, seed

    return strategy.map(narrow)


def _symmetric_padding(config_and_seed):
    """A Conv2d config's ``padding="same"``/``"valid"`` as the pair an exercise's forward takes: "same"
    becomes its larger side on both sides (the input still fits the kernel)."""
    config, seed = config_and_seed
    if isinstance(config["padding"], str):
        _, bottom, _, right = prop.conv_layer_pads(config["padding"], config["kernel_size"], config["dilation"])
        config = dict(config, padding=(bottom, right))
    return config, seed


def _conv_configs(**kwargs):
    return _plain(prop.conv_configs(**kwargs), groups=1, padding_mode="zeros").map(_symmetric_padding)


def _pool_configs(**kwargs):
    return _plain(prop.pool_configs(**kwargs), return_indices=False)


def _batchnorm_configs():
    return _plain(prop.batchnorm_configs(), affine=True, track_running_stats=True, bias=True)


def _fd(title: str, strategy, prop_fn) -> Check:
    return Check(FINITE_DIFFERENCES, title, strategy, lambda ex, impl: prop_fn(ex, impl=impl), _LABELS[prop_fn])


def _torch(title: str, strategy, prop_fn, stage: str = TORCH) -> Check:
    return Check(stage, title, strategy, lambda ex, impl: prop_fn(ex, np.float64, impl=impl), _LABELS[prop_fn])


@dataclass(frozen=True)
class Mistake:
    """A known wrong version of the learner's function, and what to tell a learner who made it."""

    function: Callable[..., Any]
    hint: str


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    chapter: str                      # docs/NN-....md
    function: str                     # the function the learner writes
    signature: str                    # its parameters, as written in the file
    task: str                         # the exercise file's explanation (shapes, notation, hints)
    given: tuple[Callable[..., Any], ...]   # forward passes copied into the file (from solutions)
    imports: str                      # the file's import lines
    reference: Callable[..., Any]     # the reference implementation of ``function``
    reference_location: str           # where it lives, for ``solution``
    build: Callable[[Callable[..., Any], Any], prop.Implementation]   # (learner fn, learner module) -> impl
    checks: tuple[Check, ...]
    mistakes: tuple[Mistake, ...]
    timing_inputs: Callable[[], tuple[Any, ...]]   # realistic arguments for ``function``
    vectorization: str               # docs section to point a slow learner at

    def template(self) -> str:
        """The text of ``exercises/<name>.py``."""
        given = "\n\n".join(inspect.getsource(f) for f in self.given)
        parts = [f'"""Exercise {self.name}: {self.title}.\n\nRead {self.chapter} first.\n\n{self.task.strip()}\n\n'
                 f'Check your work with:   simplecnn exercise check {self.name}\n"""\n',
                 "from __future__ import annotations\n", self.imports.strip() + "\n"]
        if given:
            parts.append("\n# --- given: the forward pass (read it; do not change it) ----------------------\n\n"
                         + given)
        parts.append(f"\n# --- your code ----------------------------------------------------------------\n\n"
                     f"def {self.function}({self.signature}):\n"
                     f'    """Write me: see the top of the file."""\n'
                     f'    raise NotImplementedError("{self.function} is not written yet")\n')
        return "\n".join(parts)


# --- the learner's function inside the layers the properties build ----------------------------------

def _linear(fn, module) -> prop.Implementation:
    class LearnerLinear(scratch.Linear):
        def backward(self, grad_out):
            dx, self.weight.grad, dbias = fn(grad_out, self._take_cache())
            if self.bias is not None:
                self.bias.grad = dbias
            return dx

    return prop.Implementation(linear=LearnerLinear)


def _relu(fn, module) -> prop.Implementation:
    class LearnerReLU(scratch.ReLU):
        def forward(self, x):
            y, cache = module.relu_forward(x)
            self._keep(cache)
            return y

        def backward(self, grad_out):
            return fn(grad_out, self._take_cache())

    return prop.Implementation(relu=LearnerReLU)


def _dropout(fn, module) -> prop.Implementation:
    class LearnerDropout(scratch.Dropout):
        def forward(self, x, mask=None):
            if not self.training:                    # evaluation: the identity, nothing to write
                self._keep(("eval", None))
                return x
            y, cache = module.dropout_forward(x, self.sample_mask(x.shape) if mask is None else mask, self.p)
            self._keep(("train", cache))
            return y

        def backward(self, grad_out):
            mode, cache = self._take_cache()
            return grad_out if mode == "eval" else fn(grad_out, cache)

    return prop.Implementation(dropout=LearnerDropout)


def _maxpool(fn, module) -> prop.Implementation:
    class LearnerMaxPool2d(scratch.MaxPool2d):
        backward_function = staticmethod(fn)    # the layer's backward calls it with the function's cache

    return prop.Implementation(maxpool2d=LearnerMaxPool2d)


def _conv(which: str):
    """Conv2d whose ``which`` gradient ("bias", "weight", "input") is the learner's, the others scratch's."""

    def build(fn, module) -> prop.Implementation:
        class LearnerConv2d(scratch.Conv2d):
            def forward(self, x):
                bias = self.bias.data if self.bias is not None else None
                y, learner_cache = module.conv2d_forward(x.copy(), self.weight.data.copy(), bias, self.stride,
                                                         self.padding, self.dilation)
                self._keep(learner_cache)
                return y

            def backward(self, grad_out):
                cache = self._take_cache()
                x, weight = cache[0], cache[1]
                bias = self.bias.data if self.bias is not None else None
                _, ref_cache = scratch.conv2d_forward(x, weight, bias, self.stride, self.padding, self.dilation)
                dx, dweight, dbias = scratch.conv2d_backward(grad_out, ref_cache)
                if which == "input":
                    dx = fn(grad_out, cache)
                elif which == "weight":
                    dweight = fn(grad_out, cache)
                elif bias is not None:
                    dbias = fn(grad_out, cache)
                self.weight.grad = dweight
                if self.bias is not None:
                    self.bias.grad = dbias
                return dx

        return prop.Implementation(conv2d=LearnerConv2d)

    return build


def _batchnorm(training: bool):
    """BatchNorm2d whose backward in training (or in evaluation) mode is the learner's."""

    def build(fn, module) -> prop.Implementation:
        class LearnerBatchNorm2d(scratch.BatchNorm2d):
            def backward(self, grad_out):
                cache = self._take_cache()
                backward = fn if cache[3] == training else scratch.batchnorm2d_backward
                dx, self.weight.grad, self.bias.grad = backward(grad_out, cache)
                return dx

        return prop.Implementation(batchnorm2d=LearnerBatchNorm2d)

    return build


def _cross_entropy(fn, module) -> prop.Implementation:
    def loss_and_gradient(logits, targets, reduction="mean"):
        loss, cache = module.cross_entropy_forward(logits, targets, reduction)
        return loss, fn(cache)

    return prop.Implementation(cross_entropy=loss_and_gradient)


def _adam(fn, module) -> prop.Implementation:
    class LearnerAdam(scratch.Adam):
        def _update_parameter(self, name):          # step() calls it for every parameter with a gradient
            param = self.params[name]
            fn(param.data, param.grad, self.exp_avg[name], self.exp_avg_sq[name], self.step_count,
               self.lr, self.betas, self.eps, self.weight_decay)

    return prop.Implementation(adam=LearnerAdam)


# --- the guide's other components (docs/11-14) --------------------------------------------------------

def _backward_only(field: str, base: type):
    """``base`` (a scratch layer) whose backward is the learner's function on scratch's own cache (the
    exercise file's given forward pass is scratch's)."""

    def build(fn, module) -> prop.Implementation:
        learner = type(f"Learner{base.__name__}", (base,),
                       {"backward": lambda self, grad_out: fn(grad_out, self._take_cache())})
        return prop.Implementation(**{field: learner})

    return build


def _avgpool(fn, module) -> prop.Implementation:
    class LearnerAvgPool2d(scratch.AvgPool2d):
        def backward(self, grad_out):
            cache, unbatched = self._take_cache()   # the layer's cache: the function's, and the unbatched flag
            dx = fn(grad_out[None] if unbatched else grad_out, cache)
            return dx[0] if unbatched else dx

    return prop.Implementation(avgpool2d=LearnerAvgPool2d)


def _leaky_relu(fn, module) -> prop.Implementation:
    class LearnerLeakyReLU(scratch.LeakyReLU):
        def forward(self, x):
            y, cache = module.leaky_relu_forward(x, self.negative_slope)
            self._keep(cache)
            return y

        def backward(self, grad_out):
            return fn(grad_out, self._take_cache())

    return prop.Implementation(leaky_relu=LearnerLeakyReLU)


def _elementwise_loss(kind: str):
    """MSELoss, L1Loss or MeanBiasError whose forward is the exercise file's and backward the learner's."""

    def build(fn, module) -> prop.Implementation:
        forward = getattr(module, f"{kind}_forward")
        base: type[Any] = getattr(prop.REFERENCE, kind)

        class LearnerLoss(base):
            def forward(self, input, target):
                self._check_same_shape(input, target)
                value, self._learner_cache = forward(input, target, self.reduction)
                return value

            def backward(self, grad_output=1.0):
                return fn(np.asarray(grad_output, dtype=self._learner_cache[0].dtype), self._learner_cache)

        return prop.Implementation(**{kind: LearnerLoss})

    return build


def _multi_margin(fn, module) -> prop.Implementation:
    class LearnerMultiMarginLoss(scratch.MultiMarginLoss):
        """One unbatched sample (C,) is handed to the learner's functions as a batch of one."""

        def forward(self, input, target):
            self._check_input(input)
            self._unbatched = input.ndim == 1
            if self._unbatched:
                self._target_shape, input, target = target.shape, input[None], target.reshape(1)
            value, self._learner_cache = module.multi_margin_forward(input, target, self.p, self.margin,
                                                                     self.weight, self.reduction)
            if self._unbatched and self.reduction == "none":
                value = value.reshape(self._target_shape)
            return value

        def backward(self, grad_output=1.0):
            g = np.asarray(grad_output, dtype=self._learner_cache[0].dtype)
            if self._unbatched and self.reduction == "none":
                g = g.reshape(1)
            dx = fn(g, self._learner_cache)
            return dx[0] if self._unbatched else dx

    return prop.Implementation(multi_margin=LearnerMultiMarginLoss)


def _sgd(fn, module) -> prop.Implementation:
    class LearnerSGD(scratch.SGD):
        def _update_parameter(self, name):
            param = self.params[name]
            fn(param.data, param.grad, self.momentum_buffer.get(name), self.step_count, self.lr,
               self.momentum, self.dampening, self.weight_decay, self.nesterov)

    return prop.Implementation(sgd=LearnerSGD)


def _adagrad(fn, module) -> prop.Implementation:
    class LearnerAdagrad(scratch.Adagrad):
        def _update_parameter(self, name):
            param = self.params[name]
            fn(param.data, param.grad, self.sum[name], self.step_count, self.lr, self.lr_decay,
               self.weight_decay, self.eps)

    return prop.Implementation(adagrad=LearnerAdagrad)


def _rmsprop(fn, module) -> prop.Implementation:
    class LearnerRMSprop(scratch.RMSprop):
        def _update_parameter(self, name):
            param = self.params[name]
            fn(param.data, param.grad, self.square_avg[name], self.grad_avg.get(name),
               self.momentum_buffer.get(name), self.lr, self.alpha, self.eps, self.weight_decay,
               self.momentum, self.centered)

    return prop.Implementation(rmsprop=LearnerRMSprop)


# --- known mistakes -----------------------------------------------------------------------------------

def _linear_transposed_weight(grad_out, cache):
    dx, dweight, dbias = scratch.linear_backward(grad_out, cache)
    return dx, dweight.T, dbias


def _linear_bias_mean(grad_out, cache):
    dx, dweight, dbias = scratch.linear_backward(grad_out, cache)
    return dx, dweight, None if dbias is None else grad_out.reshape(-1, dweight.shape[0]).mean(axis=0)


def _relu_at_zero(grad_out, x):
    return grad_out * (x >= 0)


def _relu_no_upstream(grad_out, x):
    return (x > 0).astype(grad_out.dtype)


def _dropout_no_scale(grad_out, cache):
    return grad_out * cache[0]


def _dropout_divides_by_p(grad_out, cache):
    keep_mask, p = cache
    return grad_out * keep_mask / p


def _dropout_nan_at_p_one(grad_out, cache):
    keep_mask, p = cache
    with np.errstate(divide="ignore", invalid="ignore"):
        return grad_out * keep_mask / grad_out.dtype.type(1 - p)


def _maxpool_every_tied_max(grad_out, cache):
    candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation = cache
    is_max = candidates == y                            # every tied maximum, not only the first
    return _route(grad_out, is_max, padded_shape, input_shape, kernel, stride, padding, dilation)


def _maxpool_split_between_ties(grad_out, cache):
    candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation = cache
    is_max = (candidates == y).astype(grad_out.dtype)
    is_max /= np.maximum(is_max.sum(axis=0), 1)
    return _route(grad_out, is_max, padded_shape, input_shape, kernel, stride, padding, dilation)


def _maxpool_overwrites_overlaps(grad_out, cache):
    candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation = cache
    from scratch.pool import _keep_first

    return _route(grad_out, _keep_first(candidates == y), padded_shape, input_shape, kernel, stride, padding,
                  dilation, add=False)


def _route(grad_out, weights, padded_shape, input_shape, kernel, stride, padding, dilation, add=True):
    """Send each window's gradient to its entries, weighted by ``weights`` (kh*kw, N, C, Ho, Wo)."""
    from scratch.pool import _window_entry

    dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
    for k in range(weights.shape[0]):
        target = _window_entry(dx_pad, k, kernel, stride, dilation, grad_out.shape[2:])
        if add:
            target += grad_out * weights[k]
        else:
            np.copyto(target, grad_out * weights[k], where=weights[k] != 0)
    (ph, pw), (h, w) = padding, input_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def _conv_bias_mean(grad_out, cache):
    return grad_out.mean(axis=(0, 2, 3))


def _conv_bias_batch_only(grad_out, cache):
    return grad_out.sum(axis=0)


def _conv_weight_flipped(grad_out, cache):
    return solutions.conv2d_weight_grad(grad_out, cache)[:, :, ::-1, ::-1]


def _conv_weight_transposed(grad_out, cache):
    return solutions.conv2d_weight_grad(grad_out, cache).transpose(1, 0, 2, 3)


def _conv_weight_first_image(grad_out, cache):
    x, *rest = cache
    return solutions.conv2d_weight_grad(grad_out[:1], (x[:1], *rest))


def _conv_input_not_cropped(grad_out, cache):
    x, weight, stride, padding, dilation = cache
    (ph, pw), (h, w) = padding, x.shape[2:]
    dcols = np.ascontiguousarray(np.tensordot(weight, grad_out, axes=([0], [1])).transpose(3, 0, 1, 2, 4, 5))
    from scratch.conv import col2im

    return col2im(dcols, (x.shape[0], x.shape[1], h + 2 * ph, w + 2 * pw), stride, dilation)


def _conv_input_flipped_kernel(grad_out, cache):
    x, weight, *rest = cache
    return solutions.conv2d_input_grad(grad_out, (x, weight[:, :, ::-1, ::-1], *rest))


def _ce_missing_mean(cache):
    log_p, targets, _ = cache
    return solutions.cross_entropy_backward((log_p, targets, "sum"))


def _ce_divides_sum(cache):
    log_p, targets, _ = cache
    return solutions.cross_entropy_backward((log_p, targets, "mean"))


def _ce_no_onehot(cache):
    log_p, targets, reduction = cache
    grad = np.exp(log_p)
    return grad / grad.dtype.type(len(targets)) if reduction == "mean" else grad


def _bn_train_without_mean_term(grad_out, cache):
    x_hat, inv_std, gamma, _ = cache
    dx, dgamma, dbeta = solutions.batchnorm2d_train_backward(grad_out, cache)
    m = grad_out.size // grad_out.shape[1]
    dx = dx + (gamma * inv_std * dbeta / m).reshape(1, -1, 1, 1)
    return dx, dgamma, dbeta


def _bn_train_without_variance_term(grad_out, cache):
    x_hat, inv_std, gamma, _ = cache
    dx, dgamma, dbeta = solutions.batchnorm2d_train_backward(grad_out, cache)
    m = grad_out.size // grad_out.shape[1]
    dx = dx + (gamma * inv_std * dgamma / m).reshape(1, -1, 1, 1) * x_hat
    return dx, dgamma, dbeta


def _bn_eval_formula(grad_out, cache):
    return solutions.batchnorm2d_eval_backward(grad_out, cache)


def _bn_train_formula(grad_out, cache):
    return solutions.batchnorm2d_train_backward(grad_out, cache)


def _bn_without_gamma(grad_out, cache):
    x_hat, inv_std, gamma, training = cache
    return solutions.batchnorm2d_eval_backward(grad_out, (x_hat, inv_std, np.ones_like(gamma), training))


def _adam_variant(bias_correction=True, eps_inside=False, decay="l2", in_place=True):
    def update(theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
        if not in_place:
            return
        beta1, beta2 = betas
        if weight_decay and decay == "l2":
            grad = grad + weight_decay * theta
        if weight_decay and decay == "decoupled":
            theta *= 1 - lr * weight_decay
        exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
        exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        c1, c2 = (1 - beta1 ** step, 1 - beta2 ** step) if bias_correction else (1.0, 1.0)
        denominator = np.sqrt(exp_avg_sq / c2 + eps) if eps_inside else np.sqrt(exp_avg_sq / c2) + eps
        theta -= lr * (exp_avg / c1) / denominator

    return update


def _sigmoid_derivative_is_y(grad_out, y):
    return grad_out * y


def _sigmoid_no_upstream(grad_out, y):
    return y * (1 - y)


def _tanh_without_square(grad_out, y):
    return grad_out * (1 - y)


def _tanh_of_the_output(grad_out, y):
    return grad_out * (1 - np.tanh(y) ** 2)


def _leaky_slope_at_zero(grad_out, cache):
    x, negative_slope = cache
    return np.where(x >= 0, grad_out, grad_out * grad_out.dtype.type(negative_slope))


def _leaky_is_relu(grad_out, cache):
    x, _ = cache
    return grad_out * (x > 0)


def _softmax_without_sum(grad_out, cache):
    y, _ = cache
    return grad_out * y


def _softmax_elementwise(grad_out, cache):
    y, _ = cache
    return grad_out * y * (1 - y)


def _softmax_last_axis(grad_out, cache):
    y, _ = cache
    return scratch.softmax_backward(grad_out, (y, -1))


def _log_softmax_without_sum(grad_out, cache):
    y, _ = cache
    return grad_out - np.exp(y) * grad_out


def _log_softmax_without_exp(grad_out, cache):
    y, dim = cache
    return grad_out - y * grad_out.sum(axis=dim, keepdims=True)


def _avgpool_variant(divide_by_kernel=False, add=True):
    def backward(grad_out, cache):
        divisor, padded_shape, input_shape, kernel, stride, (ph, pw) = cache
        share = grad_out / (kernel[0] * kernel[1]) if divide_by_kernel else grad_out / divisor
        dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
        from scratch.pool import _window_entry

        for k in range(kernel[0] * kernel[1]):
            entry = _window_entry(dx_pad, k, kernel, stride, (1, 1), grad_out.shape[2:])
            if add:
                entry += share
            else:
                entry[...] = share
        h, w = input_shape[2:]
        return dx_pad[:, :, ph:ph + h, pw:pw + w]

    return backward


def _loss_without_mean(reference):
    def backward(grad_output, cache):
        input, target, reduction = cache
        return reference(grad_output, (input, target, "sum"))

    return backward


def _mse_without_2(grad_output, cache):
    return solutions.mse_backward(grad_output, cache) / 2


def _l1_sign_of_zero(grad_output, cache):
    input, target, reduction = cache
    grad = np.where(input - target >= 0, 1.0, -1.0).astype(input.dtype) * grad_output
    return grad / input.size if reduction == "mean" else grad


def _mbe_is_l1(grad_output, cache):
    return solutions.l1_backward(grad_output, cache)


def _hinge_without_1_over_c(grad_output, cache):
    z, target, p, weight, reduction = cache
    return solutions.multi_margin_backward(grad_output, cache) * z.dtype.type(z.shape[1])


def _hinge_at_zero(grad_output, cache):
    z, target, p, weight, reduction = cache
    return solutions.multi_margin_backward(grad_output, (np.where(z == 0, 1e-300, z), target, p, weight, reduction))


def _hinge_without_target_column(grad_output, cache):
    z, target, *_ = cache
    dx = solutions.multi_margin_backward(grad_output, cache)
    dx[np.arange(len(target)), target] = 0
    return dx


def _hinge_p_ignored(grad_output, cache):
    z, target, p, weight, reduction = cache
    return solutions.multi_margin_backward(grad_output, (z, target, 1, weight, reduction))


def _sgd_variant(nesterov_term=True, first_step_is_grad=True, decay=True):
    def update(theta, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
        if weight_decay and decay:
            grad = grad + weight_decay * theta
        if momentum:
            if step == 1 and first_step_is_grad:
                momentum_buffer[...] = grad
            else:
                momentum_buffer[...] = momentum * momentum_buffer + (1 - dampening) * grad
            grad = grad + momentum * momentum_buffer if nesterov and nesterov_term else momentum_buffer
        theta -= lr * grad

    return update


def _adagrad_variant(eps_inside=False, lr_decay_step="t-1", decay=True):
    def update(theta, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
        if weight_decay and decay:
            grad = grad + weight_decay * theta
        t = {"t-1": step - 1, "t": step, "none": 0}[lr_decay_step]
        clr = lr / (1 + t * lr_decay)
        state_sum += grad * grad
        theta -= clr * grad / (np.sqrt(state_sum + eps) if eps_inside else np.sqrt(state_sum) + eps)

    return update


def _rmsprop_variant(centered_term=True, eps_inside=False, buffer_normalized=True):
    def update(theta, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
               centered):
        if weight_decay:
            grad = grad + weight_decay * theta
        square_avg[...] = alpha * square_avg + (1 - alpha) * grad * grad
        variance = square_avg
        if centered:
            grad_avg += (1 - alpha) * (grad - grad_avg)
            if centered_term:
                variance = square_avg - grad_avg * grad_avg
        avg = np.sqrt(variance + eps) if eps_inside else np.sqrt(variance) + eps
        if momentum > 0:
            momentum_buffer[...] = momentum * momentum_buffer + (grad / avg if buffer_normalized else grad)
            theta -= lr * (momentum_buffer if buffer_normalized else momentum_buffer / avg)
        else:
            theta -= lr * grad / avg

    return update


# --- realistic inputs for timing (SimpleCNN's shapes, batch 64, float32) ------------------------------

def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _timing_linear():
    rng = _rng()
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(64, 1024), (512, 1024), (512,)])
    _, cache = scratch.linear_forward(x, w, b)
    return rng.standard_normal((64, 512)).astype(np.float32), cache


def _timing_relu():
    rng = _rng()
    _, cache = solutions.relu_forward(rng.standard_normal((64, 32, 24, 24)).astype(np.float32))
    return rng.standard_normal((64, 32, 24, 24)).astype(np.float32), cache


def _timing_dropout():
    rng = _rng()
    x = rng.standard_normal((64, 32, 12, 12)).astype(np.float32)
    _, cache = solutions.dropout_forward(x, rng.random(x.shape) >= 0.45, 0.45)
    return rng.standard_normal(x.shape).astype(np.float32), cache


def _timing_cross_entropy():
    rng = _rng()
    _, cache = solutions.cross_entropy_forward(rng.standard_normal((64, 10)).astype(np.float32),
                                               rng.integers(0, 10, 64))
    return (cache,)


def _timing_maxpool():
    rng = _rng()
    _, cache = scratch.maxpool2d_forward(rng.standard_normal((64, 32, 24, 24)).astype(np.float32), (2, 2), (2, 2))
    return rng.standard_normal((64, 32, 12, 12)).astype(np.float32), cache


def _timing_conv():
    rng = _rng()
    x = rng.standard_normal((64, 32, 12, 12)).astype(np.float32)
    w = (0.05 * rng.standard_normal((64, 32, 5, 5))).astype(np.float32)
    _, cache = solutions.conv2d_forward(x, w, None)
    return rng.standard_normal((64, 64, 8, 8)).astype(np.float32), cache


def _timing_batchnorm(training: bool):
    def inputs():
        rng = _rng()
        layer = scratch.BatchNorm2d(32).train(training)
        x = rng.standard_normal((64, 32, 24, 24)).astype(np.float32)
        _, cache = scratch.batchnorm2d_forward(x, layer.weight.data, layer.bias.data, layer.running_mean,
                                               layer.running_var, training, 0.1, 1e-5)
        return rng.standard_normal(x.shape).astype(np.float32), cache

    return inputs


def _timing_adam():
    rng = _rng()
    shape = (512, 1024)
    theta, grad = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    return theta, grad, np.zeros(shape, np.float32), np.zeros(shape, np.float32), 1, 1e-3, (0.9, 0.999), 1e-8, 0.0


def _timing_activation(forward, **kwargs):
    def inputs():
        rng = _rng()
        _, cache = forward(rng.standard_normal((64, 32, 24, 24)).astype(np.float32), **kwargs)
        return rng.standard_normal((64, 32, 24, 24)).astype(np.float32), cache

    return inputs


def _timing_avgpool():
    rng = _rng()
    _, cache = scratch.avgpool2d_forward(rng.standard_normal((64, 32, 24, 24)).astype(np.float32), (2, 2), (2, 2))
    return rng.standard_normal((64, 32, 12, 12)).astype(np.float32), cache


def _timing_loss(forward, reduction="mean"):
    def inputs():
        rng = _rng()
        x, t = (rng.standard_normal((64, 10)).astype(np.float32) for _ in range(2))
        _, cache = forward(x, t, reduction)
        return np.array(1.0, np.float32), cache

    return inputs


def _timing_multi_margin():
    rng = _rng()
    _, cache = solutions.multi_margin_forward(rng.standard_normal((64, 10)).astype(np.float32),
                                              rng.integers(0, 10, 64))
    return np.array(1.0, np.float32), cache


def _timing_optimizer(kind: str):
    def inputs():
        rng = _rng()
        shape = (512, 1024)
        theta, grad = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
        state = np.zeros(shape, np.float32)
        if kind == "sgd":
            return theta, grad, state, 1, 1e-3, 0.9, 0.0, 0.0, True
        if kind == "adagrad":
            return theta, grad, state, 1, 1e-2, 0.0, 0.0, 1e-10
        return (theta, grad, state, np.zeros(shape, np.float32), np.zeros(shape, np.float32), 1e-2, 0.99, 1e-8,
                0.0, 0.9, True)

    return inputs


# --- the exercises ------------------------------------------------------------------------------------

_NP = "import numpy as np\n"
_CONV_TASK = """
Forward (given below): x (N, C, H, W), weight w (O, C, kh, kw), bias b (O,) or None, stride s,
padding p, dilation d (pairs); y (N, O, Ho, Wo), xp = x zero-padded by p:
    y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * xp[n, c, s_h i + d_h u, s_w j + d_w v]
    cache = (x, w, stride, padding, dilation)

Conv2d's three gradients are three exercises, in this order: conv2d_bias, conv2d_weight, conv2d_input
(the grader uses the reference for the two you are not writing).

"""
_CONV_IMPORTS = _NP + "\nfrom scratch.conv import conv2d_forward as _conv2d_forward_fast\n" \
    "from scratch.conv import col2im, im2col  # helpers you may use (docs/03-convolution.md)\n"
_BN_TASK = """
Forward (given below, scratch.batchnorm.batchnorm2d_forward): x (N, C, H, W); statistics per channel over
its m = N*H*W values; gamma = weight (C,), beta = bias (C,):
    x_hat = (x - mu) * inv_std,   inv_std = 1 / sqrt(var + eps),   y = gamma * x_hat + beta
    cache = (x_hat, inv_std, gamma, training)     x_hat (N, C, H, W); inv_std, gamma (C,)
In training mu and var are the batch's (biased) statistics; in evaluation the running ones.

"""
_BN_IMPORTS = _NP + "\nfrom scratch import parallel  # splits the work between the cores: see scratch/parallel.py\n" \
    "from scratch.batchnorm import _channel, channel_sums, channel_total, row_dots  # used by forward\n" \
    "from scratch.batchnorm import constant_planes, walk  # used by forward\n" \
    "from scratch.batchnorm import channel_dots, row_sums  # helpers you may use\n" \
    "from scratch.module import empty_laid_out_as, is_batch_last, laid_out_as  # layouts: see scratch/module.py\n"
_POOL_IMPORTS = _NP + "\nfrom scratch import parallel  # splits the work between the cores: see scratch/parallel.py\n" \
    "from scratch.pool import Pair, _max_windows, pool_output_size  # used by the forward pass\n" \
    "from scratch.pool import _part  # used by the forward pass\n" \
    "from scratch.pool import _inside_input, _keep_first, _window_entry, _winners  # helpers you may use\n" \
    "from scratch.module import empty_laid_out_as, is_batch_last, laid_out_as, memory_order  # layouts\n"


def _optimizer(title: str, kind: str, stage: str = TORCH, steps=None, **narrow) -> Check:
    """A trajectory check of the ``kind`` optimizer on hyper-parameters narrowed by ``narrow``."""
    return Check(stage, title, prop.optimizer_examples(kind, steps, **narrow),
                 lambda ex, impl: prop.optimizer_trajectory_matches_torch(ex, np.float64, impl=impl, kind=kind),
                 _LABELS[prop.optimizer_trajectory_matches_torch])


def _loss_exercise(kind: str, title: str, what: str, formula: str, forward, backward, location: str,
                   checks: tuple[Check, ...], mistakes: tuple[Mistake, ...]) -> Exercise:
    """An element-wise loss (MSE, L1, mean bias error): the forward pass given, its backward to write."""
    function = f"{kind}_backward"
    return Exercise(
        name=kind, title=title, chapter="docs/13-losses.md", function=function, signature="grad_output, cache",
        task=f"""
Forward (given below; {what}): input x and target t of the same shape (any shape, N = x.size elements):
    {formula} per element,   L = mean of l (1/N sum), sum of l, or l itself (reduction "none")
    cache = (input, target, reduction)

Write {function}(grad_output, cache) -> dL/dx (x's shape and dtype). grad_output, the gradient
of what the loss returned, is a scalar (0-d array) for "mean" and "sum", an array of x's shape for "none".
""",
        given=(solutions.reduce_losses, forward), imports=_NP, reference=backward,
        reference_location=f"{location}; simplecnn/exercise/solutions.py `{function}`",
        build=_elementwise_loss(kind), checks=checks, mistakes=mistakes, timing_inputs=_timing_loss(forward),
        vectorization="docs/13-losses.md")


def _exercise_list() -> tuple[Exercise, ...]:
    return (
        Exercise(
            name="linear", title="the backward pass of a linear layer", chapter="docs/07-linear-and-relu.md",
            function="linear_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.linear.linear_forward):  y = x @ W.T + b
    x: (N, in)  (or (N, ..., in): the extra leading axes are part of the batch)
    W: (out, in)   b: (out,) or None   y: (N, out)   cache = (x, W, has_bias)

Write linear_backward(grad_out, cache) -> (dx, dW, db), with grad_out = g = dL/dy (y's shape):
    dx = dL/dx (x's shape),  dW = dL/dW ((out, in)),  db = dL/db ((out,), or None without bias)

Hints: write y[n, o] = sum_i x[n, i] W[o, i] + b[o] and differentiate one entry; every gradient has the
shape of its variable; for inputs (N, ..., in), reshape g and x to 2-D first.
""",
            given=(scratch.linear_forward,), imports=_NP,
            reference=scratch.linear_backward, reference_location="scratch/linear.py `linear_backward`",
            build=_linear,
            checks=(_fd("dx, dW, db match central differences", prop.linear_configs(),
                        prop.linear_matches_finite_differences),
                    _torch("output, dx, dW, db match nn.Linear (with and without bias, extra leading axes)",
                           prop.linear_configs(), prop.linear_matches_torch)),
            mistakes=(Mistake(_linear_transposed_weight,
                              "a transposed weight gradient: dL/dW = g^T x has W's shape (out, in); x^T g is "
                              "its transpose"),
                      Mistake(_linear_bias_mean,
                              "dL/db is the SUM of g over the batch (every row adds b), not the mean")),
            timing_inputs=_timing_linear, vectorization="docs/07-linear-and-relu.md"),
        Exercise(
            name="relu", title="the backward pass of ReLU", chapter="docs/07-linear-and-relu.md",
            function="relu_backward", signature="grad_out, cache",
            task="""
Forward (given below): y = max(x, 0), any shape; cache = x.

Write relu_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape).

Hints: dy/dx is 1 where x > 0 and 0 where x < 0. At exactly x = 0 PyTorch takes the derivative as 0,
and the checks feed inputs with exact zeros.
""",
            given=(solutions.relu_forward,), imports=_NP, reference=solutions.relu_backward,
            reference_location="scratch/activations.py `relu_backward` (there the cache is the mask x > 0); "
                               "simplecnn/exercise/solutions.py `relu_backward`",
            build=_relu,
            checks=(_fd("dx matches central differences (away from 0)", prop.relu_examples,
                        prop.relu_matches_finite_differences),
                    _torch("output and dx match nn.ReLU, exact zeros in the input included", prop.relu_examples,
                           prop.relu_matches_torch)),
            mistakes=(Mistake(_relu_at_zero,
                              "at exactly x = 0 PyTorch's ReLU derivative is 0: use x > 0, not x >= 0"),
                      Mistake(_relu_no_upstream, "dL/dx = dL/dy * [x > 0]: multiply the mask by grad_out")),
            timing_inputs=_timing_relu, vectorization="docs/07-linear-and-relu.md"),
        Exercise(
            name="cross_entropy", title="the gradient of softmax cross-entropy",
            chapter="docs/08-softmax-cross-entropy.md", function="cross_entropy_backward", signature="cache",
            task="""
Forward (given below): logits z (N, K), integer targets t (N,), reduction "mean" or "sum":
    log_p = z - logsumexp(z)  (row by row)     L = -(1/N) sum_n log_p[n, t_n]   ("sum": no 1/N)
    cache = (log_p, t, reduction)

Write cross_entropy_backward(cache) -> dL/dz, shape (N, K), log_p's dtype.

Hints: derive dL/dz[n, k] for one row first (the chapter does it two ways), then the batch.
exp(log_p) is the softmax; exponentiating the raw logits would overflow at 1e4.
""",
            given=(solutions.cross_entropy_forward,),
            imports=_NP + "\nfrom scratch.loss import cross_entropy, log_softmax\n",
            reference=solutions.cross_entropy_backward,
            reference_location="scratch/loss.py `cross_entropy`; simplecnn/exercise/solutions.py "
                               "`cross_entropy_backward`",
            build=_cross_entropy,
            checks=(_fd("dL/dz matches central differences", prop.cross_entropy_problems(),
                        prop.cross_entropy_matches_finite_differences),
                    _torch("loss and dL/dz match F.cross_entropy (mean and sum)", prop.cross_entropy_problems(),
                           prop.cross_entropy_matches_torch),
                    _torch("extreme logits (+-1e4): finite, and equal to torch's",
                           prop.cross_entropy_problems(extreme=True), prop.cross_entropy_matches_torch,
                           stage=CORNER)),
            mistakes=(Mistake(_ce_missing_mean, "the 1/N is missing: with reduction='mean' the loss averages "
                                                "over the batch, and so does its gradient"),
                      Mistake(_ce_divides_sum, "reduction='sum' has no 1/N: divide by N only for 'mean'"),
                      Mistake(_ce_no_onehot, "dL/dz = softmax(z) - onehot(t): the one-hot target is missing")),
            timing_inputs=_timing_cross_entropy, vectorization="docs/08-softmax-cross-entropy.md"),
        Exercise(
            name="dropout", title="the backward pass of inverted dropout", chapter="docs/06-dropout.md",
            function="dropout_backward", signature="grad_out, cache",
            task="""
Forward in training (given below): p is the probability of DROPPING a unit, keep_mask is boolean
(True = kept), x any shape:
    y = x * keep_mask / (1 - p)          (p = 1: everything dropped, y = 0)
    cache = (keep_mask, p)
Evaluation mode is the identity; the layer handles it without calling your function.

Write dropout_backward(grad_out, cache) -> dx (x's shape, grad_out's dtype).
""",
            given=(solutions.dropout_forward,), imports=_NP, reference=solutions.dropout_backward,
            reference_location="scratch/dropout.py `dropout_backward`; simplecnn/exercise/solutions.py "
                               "`dropout_backward`",
            build=_dropout,
            checks=(_fd("dx matches central differences (fixed mask)", prop.dropout_numerical_examples,
                        prop.dropout_matches_finite_differences),
                    _torch("output and dx match nn.Dropout given torch's own mask",
                           prop.dropout_examples, prop.dropout_matches_torch_given_torchs_mask),
                    _torch("p = 0 (nothing dropped) and p = 1 (everything dropped), like torch",
                           st.tuples(st.sampled_from([0.0, 1.0]), prop.dropout_shapes, prop.seeds),
                           prop.dropout_matches_torch_given_torchs_mask, stage=CORNER),
                    _torch("evaluation mode: the identity, like torch", prop.dropout_examples,
                           prop.dropout_in_eval_mode_is_the_identity, stage=CORNER)),
            mistakes=(Mistake(_dropout_no_scale, "dropout without the 1/(1-p) scale: the forward pass scales "
                                                 "the kept units, so the backward pass must too"),
                      Mistake(_dropout_divides_by_p, "p is the DROP probability: scale by 1/(1-p), not 1/p"),
                      Mistake(_dropout_nan_at_p_one, "p = 1 drops everything: the gradient is 0, but 1/(1-p) "
                                                     "is a division by zero (NaN); treat p = 1 apart")),
            timing_inputs=_timing_dropout, vectorization="docs/06-dropout.md"),
        Exercise(
            name="maxpool", title="the backward pass of max-pooling", chapter="docs/04-max-pooling.md",
            function="maxpool2d_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.pool.maxpool2d_forward): x (N, C, H, W), kernel (kh, kw), stride, padding
(-inf), dilation (pairs); window (i, j) holds xp[n, c, s_h i + d_h u, s_w j + d_w v] for the kernel
offsets (u, v), scanned row by row (k = u * kw + v); y (N, C, Ho, Wo) is each window's max.
    cache = (candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation)
    candidates: (kh*kw, N, C, Ho, Wo), entry k of every window

Write maxpool2d_backward(grad_out, cache) -> dx (input_shape).

Hints: each window's gradient goes to the entry that won; where several entries tie for the max,
PyTorch sends all of it to the FIRST in scan order. Windows overlap when stride < kernel: their
gradients add up. Padding cells never win. _window_entry(dx_pad, k, ...) is a view of entry k of
every window (write into it); _keep_first(mask) keeps the first True along axis 0.
""",
            given=(scratch.maxpool2d_forward,), imports=_POOL_IMPORTS, reference=scratch.maxpool2d_backward,
            reference_location="scratch/pool.py `maxpool2d_backward` (loops: scratch/naive.py "
                               "`maxpool2d_backward_naive`)",
            build=_maxpool,
            checks=(_fd("dx matches central differences (distinct values)", _pool_configs(),
                        prop.maxpool2d_matches_finite_differences),
                    _torch("output and dx match nn.MaxPool2d (distinct values, padding, dilation, ceil mode)",
                           _pool_configs(), prop.maxpool2d_matches_torch),
                    _torch("tied maxima: the gradient goes where torch sends it",
                           st.tuples(_pool_configs(), prop.tie_levels),
                           prop.maxpool2d_ties_go_where_torch_sends_them, stage=CORNER),
                    _torch("overlapping windows (stride < kernel) add up", _pool_configs(overlapping=True),
                           prop.maxpool2d_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_maxpool_every_tied_max,
                              "the gradient went to every tied maximum: PyTorch sends a window's whole "
                              "gradient to its FIRST maximum in scan order (docs/04-max-pooling.md, 'Ties')"),
                      Mistake(_maxpool_split_between_ties,
                              "the gradient was split between tied maxima: PyTorch sends all of it to the "
                              "first maximum in scan order"),
                      Mistake(_maxpool_overwrites_overlaps,
                              "overlapping windows (stride < kernel) must ADD their gradients into a shared "
                              "pixel, not overwrite each other")),
            timing_inputs=_timing_maxpool,
            vectorization="docs/04-max-pooling.md#the-vectorization-one-strided-slice-per-kernel-offset"),
        Exercise(
            name="conv2d_bias", title="convolution, step 1: the bias gradient", chapter="docs/03-convolution.md",
            function="conv2d_bias_grad", signature="grad_out, cache",
            task=_CONV_TASK + """\
Write conv2d_bias_grad(grad_out, cache) -> dL/db, shape (O,), with grad_out = g = dL/dy.

Hint: b[o] is added to every output position of channel o, in every image.
""",
            given=(solutions.conv2d_forward,), imports=_CONV_IMPORTS, reference=solutions.conv2d_bias_grad,
            reference_location="scratch/conv.py `conv2d_backward` (`dbias`); simplecnn/exercise/solutions.py "
                               "`conv2d_bias_grad`",
            build=_conv("bias"),
            checks=(_fd("dL/db matches central differences", _conv_configs(max_channels=2, max_extra_size=3),
                        prop.conv2d_matches_finite_differences),
                    _torch("dL/db matches nn.Conv2d (strides, padding, dilation)", _conv_configs(),
                           prop.conv2d_matches_torch)),
            mistakes=(Mistake(_conv_bias_mean, "dL/db is the SUM of g over n, i and j, not the mean"),
                      Mistake(_conv_bias_batch_only, "sum g over the output positions (i, j) too, not only "
                                                     "over the batch: dL/db has shape (O,)")),
            timing_inputs=_timing_conv, vectorization="docs/03-convolution.md"),
        Exercise(
            name="conv2d_weight", title="convolution, step 2: the weight gradient", chapter="docs/03-convolution.md",
            function="conv2d_weight_grad", signature="grad_out, cache",
            task=_CONV_TASK + """\
Write conv2d_weight_grad(grad_out, cache) -> dL/dw, shape (O, C, kh, kw).

Hints: differentiate y[n, o, i, j] with respect to w[o, c, u, v]: a correlation of the padded input
with g (the chapter's 'The weight'). Loops over (u, v) only are fast; im2col(x_pad, (kh, kw),
stride, dilation, (Ho, Wo)) gives every receptive field at once, (N, C, kh, kw, Ho, Wo).
""",
            given=(solutions.conv2d_forward,), imports=_CONV_IMPORTS, reference=solutions.conv2d_weight_grad,
            reference_location="scratch/conv.py `conv2d_backward` (`dweight`); simplecnn/exercise/solutions.py "
                               "`conv2d_weight_grad`",
            build=_conv("weight"),
            checks=(_fd("dL/dw matches central differences", _conv_configs(max_channels=2, max_extra_size=3),
                        prop.conv2d_matches_finite_differences),
                    _torch("dL/dw matches nn.Conv2d (strides, padding, dilation)", _conv_configs(),
                           prop.conv2d_matches_torch)),
            mistakes=(Mistake(_conv_weight_flipped, "the kernel is flipped: Conv2d is a cross-correlation, "
                                                    "dL/dw[o, c, u, v] pairs g[n, o, i, j] with "
                                                    "xp[n, c, s i + d u, s j + d v], no flip"),
                      Mistake(_conv_weight_transposed, "a transposed weight gradient: dL/dw has w's shape "
                                                       "(O, C, kh, kw), not (C, O, kh, kw)"),
                      Mistake(_conv_weight_first_image, "sum over every image of the batch, not only the first")),
            timing_inputs=_timing_conv,
            vectorization="docs/03-convolution.md#the-vectorization-im2col-and-col2im-as-its-adjoint"),
        Exercise(
            name="conv2d_input", title="convolution, step 3: the input gradient", chapter="docs/03-convolution.md",
            function="conv2d_input_grad", signature="grad_out, cache",
            task=_CONV_TASK + """\
Write conv2d_input_grad(grad_out, cache) -> dL/dx, x's shape (N, C, H, W).

Hints: every x pixel was read by every window that covers it: add g[n, o, i, j] * w[o, c, u, v] into
xp[n, c, s i + d u, s j + d v] (overlapping windows add up), then crop the padding away. col2im is
im2col's adjoint: it does that addition for all patches at once.
""",
            given=(solutions.conv2d_forward,), imports=_CONV_IMPORTS, reference=solutions.conv2d_input_grad,
            reference_location="scratch/conv.py `conv2d_backward` (`dx`, through `col2im`); "
                               "simplecnn/exercise/solutions.py `conv2d_input_grad`",
            build=_conv("input"),
            checks=(_fd("dL/dx matches central differences", _conv_configs(max_channels=2, max_extra_size=3),
                        prop.conv2d_matches_finite_differences),
                    _torch("dL/dx matches nn.Conv2d (strides, padding, dilation)", _conv_configs(),
                           prop.conv2d_matches_torch)),
            mistakes=(Mistake(_conv_input_not_cropped, "crop the padding: dL/dx has x's shape, the padded "
                                                       "border gets no gradient"),
                      Mistake(_conv_input_flipped_kernel, "the kernel is flipped the wrong way: scattering "
                                                          "g * w back needs no flip (the flip appears only when "
                                                          "it is written as a full convolution)")),
            timing_inputs=_timing_conv,
            vectorization="docs/03-convolution.md#the-vectorization-im2col-and-col2im-as-its-adjoint"),
        Exercise(
            name="batchnorm_eval", title="batch normalization in evaluation mode",
            chapter="docs/05-batch-normalization.md", function="batchnorm2d_eval_backward",
            signature="grad_out, cache",
            task=_BN_TASK + """\
Write batchnorm2d_eval_backward(grad_out, cache) -> (dx, dgamma, dbeta) for EVALUATION mode
(cache's training is False): mu and var are the running statistics, constants.
Shapes: dx like x; dgamma, dbeta (C,). Keep grad_out's dtype.
""",
            given=(scratch.batchnorm2d_forward,), imports=_BN_IMPORTS, reference=solutions.batchnorm2d_eval_backward,
            reference_location="scratch/batchnorm.py `batchnorm2d_backward` (the `else` branch); "
                               "simplecnn/exercise/solutions.py `batchnorm2d_eval_backward`",
            build=_batchnorm(training=False),
            checks=(_fd("dx, dgamma, dbeta match central differences (evaluation mode)",
                        st.tuples(_batchnorm_configs(), st.just(False)),
                        prop.batchnorm2d_matches_finite_differences),
                    _torch("evaluation after training steps matches nn.BatchNorm2d",
                           st.tuples(_batchnorm_configs(), prop.batchnorm_steps),
                           prop.batchnorm2d_training_steps_then_eval_match_torch)),
            mistakes=(Mistake(_bn_train_formula, "in evaluation mode mu and var are the running statistics, "
                                                 "constants: dL/dx = gamma * inv_std * g, no correction terms"),
                      Mistake(_bn_without_gamma, "y = gamma * x_hat + beta: dL/dx carries the factor gamma")),
            timing_inputs=_timing_batchnorm(False), vectorization="docs/05-batch-normalization.md"),
        Exercise(
            name="batchnorm_train", title="batch normalization in training mode",
            chapter="docs/05-batch-normalization.md", function="batchnorm2d_train_backward",
            signature="grad_out, cache",
            task=_BN_TASK + """\
Write batchnorm2d_train_backward(grad_out, cache) -> (dx, dgamma, dbeta) for TRAINING mode
(cache's training is True): every x of a channel moves that channel's mu and var.
Shapes: dx like x; dgamma, dbeta (C,). Keep grad_out's dtype.

Hints: go through mu and var (the chapter's 'Through mu and sigma^2'); the result has two correction
terms, each a per-channel mean over (n, h, w).
""",
            given=(scratch.batchnorm2d_forward,), imports=_BN_IMPORTS, reference=solutions.batchnorm2d_train_backward,
            reference_location="scratch/batchnorm.py `batchnorm2d_backward`; simplecnn/exercise/solutions.py "
                               "`batchnorm2d_train_backward`",
            build=_batchnorm(training=True),
            checks=(_fd("dx, dgamma, dbeta match central differences (training mode)",
                        st.tuples(_batchnorm_configs(), st.just(True)),
                        prop.batchnorm2d_matches_finite_differences),
                    _torch("training steps match nn.BatchNorm2d (outputs, gradients, running statistics)",
                           st.tuples(_batchnorm_configs(), prop.batchnorm_steps),
                           prop.batchnorm2d_training_steps_then_eval_match_torch)),
            mistakes=(Mistake(_bn_train_without_mean_term,
                              "batch-norm without its mean term: mu depends on x, which subtracts mean(g) "
                              "(dL/dx = gamma inv_std (g - mean(g) - x_hat mean(g x_hat)))"),
                      Mistake(_bn_train_without_variance_term,
                              "the variance term is missing: var depends on x too, which subtracts "
                              "x_hat * mean(g * x_hat)"),
                      Mistake(_bn_eval_formula, "in training mu and var depend on x: the evaluation formula "
                                                "gamma * inv_std * g misses both correction terms")),
            timing_inputs=_timing_batchnorm(True), vectorization="docs/05-batch-normalization.md"),
        Exercise(
            name="adam", title="one Adam step", chapter="docs/09-adam.md",
            function="adam_update",
            signature="theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay",
            task="""
Write adam_update(theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay): one step of
torch.optim.Adam for one parameter, updating theta, exp_avg (m) and exp_avg_sq (v) IN PLACE
(theta -= ..., exp_avg[...] = ...); returns nothing. step = t, already incremented (1 at the first
step); betas = (beta1, beta2); weight_decay is L2, added to the gradient. Do not modify grad.

Hints: m and v start at zero, which is what the bias corrections 1 - beta^t undo; eps is added after
the square root.
""",
            given=(), imports=_NP, reference=solutions.adam_update,
            reference_location="scratch/optim.py `Adam.step`; simplecnn/exercise/solutions.py `adam_update`",
            build=_adam,
            checks=(_torch("one step without weight decay matches torch.optim.Adam",
                           prop.optimizer_examples(steps=st.just(1), weight_decay=st.just(0.0), amsgrad=st.just(False)),
                           prop.optimizer_trajectory_matches_torch),
                    _torch("several steps without weight decay match torch.optim.Adam",
                           prop.optimizer_examples(weight_decay=st.just(0.0), amsgrad=st.just(False)),
                           prop.optimizer_trajectory_matches_torch),
                    _torch("weight decay (L2 in the gradient) and large eps match torch.optim.Adam",
                           prop.optimizer_examples(amsgrad=st.just(False)),
                           prop.optimizer_trajectory_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_adam_variant(in_place=False), "nothing changed: update theta, exp_avg and "
                                                             "exp_avg_sq in place (theta -= ..., exp_avg[...] = ...)"),
                      Mistake(_adam_variant(bias_correction=False), "the bias correction is missing: divide m "
                                                                     "by 1 - beta1^t and v by 1 - beta2^t"),
                      Mistake(_adam_variant(eps_inside=True), "eps goes after the square root: "
                                                              "sqrt(v_hat) + eps, not sqrt(v_hat + eps)"),
                      Mistake(_adam_variant(decay="none"), "weight_decay is missing: Adam adds "
                                                           "weight_decay * theta to the gradient"),
                      Mistake(_adam_variant(decay="decoupled"), "that is AdamW's decoupled decay; Adam's "
                                                                "weight_decay is L2, added to the gradient")),
            timing_inputs=_timing_adam, vectorization="docs/09-adam.md"),
        Exercise(
            name="sigmoid", title="the backward pass of the sigmoid", chapter="docs/11-activations.md",
            function="sigmoid_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.activations.sigmoid_forward): y = 1 / (1 + exp(-x)), any shape, computed
without overflow; cache = y (the OUTPUT).

Write sigmoid_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape).

Hints: differentiate sigma(x) and write the result with sigma itself (the chapter's 'Sigmoid'); then
nothing needs recomputing, and inputs of +-1000 cannot overflow.
""",
            given=(scratch.sigmoid_forward,), imports=_NP, reference=scratch.sigmoid_backward,
            reference_location="scratch/activations.py `sigmoid_backward`",
            build=_backward_only("sigmoid", scratch.Sigmoid),
            checks=(_fd("dx matches central differences", prop.elementwise_examples(("sigmoid",)),
                        prop.elementwise_activation_matches_finite_differences),
                    _torch("output and dx match nn.Sigmoid (x = 0 included)", prop.elementwise_examples(("sigmoid",)),
                           prop.elementwise_activation_matches_torch),
                    _torch("inputs of +-1000: finite, and equal to torch's", prop.elementwise_examples(("sigmoid",)),
                           prop.elementwise_activation_of_1000_is_finite_and_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_sigmoid_derivative_is_y, "the derivative of sigma is sigma * (1 - sigma), "
                                                        "not sigma: dL/dx = g * y * (1 - y)"),
                      Mistake(_sigmoid_no_upstream, "multiply the local derivative y * (1 - y) by grad_out")),
            timing_inputs=_timing_activation(scratch.sigmoid_forward), vectorization="docs/11-activations.md"),
        Exercise(
            name="tanh", title="the backward pass of tanh", chapter="docs/11-activations.md",
            function="tanh_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.activations.tanh_forward): y = tanh(x), any shape; cache = y (the OUTPUT).

Write tanh_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape).

Hint: write tanh'(x) with tanh(x) itself (the chapter's 'Tanh').
""",
            given=(scratch.tanh_forward,), imports=_NP, reference=scratch.tanh_backward,
            reference_location="scratch/activations.py `tanh_backward`",
            build=_backward_only("tanh", scratch.Tanh),
            checks=(_fd("dx matches central differences", prop.elementwise_examples(("tanh",)),
                        prop.elementwise_activation_matches_finite_differences),
                    _torch("output and dx match nn.Tanh (x = 0 included)", prop.elementwise_examples(("tanh",)),
                           prop.elementwise_activation_matches_torch),
                    _torch("inputs of +-1000: finite, and equal to torch's", prop.elementwise_examples(("tanh",)),
                           prop.elementwise_activation_of_1000_is_finite_and_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_tanh_without_square, "tanh'(x) = 1 - tanh(x)^2: the square is missing"),
                      Mistake(_tanh_of_the_output, "the cache is y = tanh(x) already: 1 - y^2, not "
                                                   "1 - tanh(y)^2")),
            timing_inputs=_timing_activation(scratch.tanh_forward), vectorization="docs/11-activations.md"),
        Exercise(
            name="leaky_relu", title="the backward pass of Leaky ReLU", chapter="docs/11-activations.md",
            function="leaky_relu_backward", signature="grad_out, cache",
            task="""
Forward (given below): y = x where x > 0, else negative_slope * x, any shape;
cache = (x, negative_slope). negative_slope may be 0 or negative (torch allows both).

Write leaky_relu_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape, its dtype).

Hint: at exactly x = 0 PyTorch takes the slope as negative_slope (its kernel tests x > 0), and the
checks feed inputs with exact zeros.
""",
            given=(solutions.leaky_relu_forward,), imports=_NP, reference=solutions.leaky_relu_backward,
            reference_location="scratch/activations.py `leaky_relu_backward` (there the cache is the slope); "
                               "simplecnn/exercise/solutions.py `leaky_relu_backward`",
            build=_leaky_relu,
            checks=(_fd("dx matches central differences (away from 0)", prop.elementwise_examples(("leaky_relu",)),
                        prop.elementwise_activation_matches_finite_differences),
                    _torch("output and dx match nn.LeakyReLU, exact zeros in the input included",
                           prop.elementwise_examples(("leaky_relu",)), prop.elementwise_activation_matches_torch)),
            mistakes=(Mistake(_leaky_slope_at_zero, "at exactly x = 0 PyTorch's slope is negative_slope: "
                                                    "test x > 0, not x >= 0"),
                      Mistake(_leaky_is_relu, "that is ReLU's gradient: where x <= 0 Leaky ReLU passes "
                                              "negative_slope * g, not 0")),
            timing_inputs=_timing_activation(solutions.leaky_relu_forward, negative_slope=0.01),
            vectorization="docs/11-activations.md"),
        Exercise(
            name="softmax", title="the backward pass of softmax", chapter="docs/11-activations.md",
            function="softmax_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.activations.softmax_forward): y = exp(x) / sum(exp(x)) along the axis dim
(any shape, dim may be negative); cache = (y, dim).

Write softmax_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape).

Hints: every y_j depends on every x_i of its slice: dy_j/dx_i = y_j ([i == j] - y_i). Multiply by g
without building the Jacobian: one sum along dim per slice.
""",
            given=(scratch.softmax_forward,), imports=_NP, reference=scratch.softmax_backward,
            reference_location="scratch/activations.py `softmax_backward`",
            build=_backward_only("softmax", scratch.Softmax),
            checks=(_fd("dx matches central differences (any dim)", prop.softmax_problems(("softmax",)),
                        prop.softmax_matches_finite_differences),
                    _torch("output and dx match nn.Softmax", prop.softmax_problems(("softmax",)),
                           prop.softmax_matches_torch),
                    _torch("slices holding +-1e4: finite, and equal to torch's", prop.softmax_problems(("softmax",)),
                           prop.softmax_of_1e4_is_finite_and_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_softmax_without_sum, "softmax without its sum term: every y_j depends on every "
                                                    "x_i, dL/dx = y * (g - sum(g * y)) along dim"),
                      Mistake(_softmax_elementwise, "softmax is not element-wise: y (1 - y) is only the Jacobian's "
                                                    "diagonal; dL/dx = y * (g - sum(g * y)) along dim"),
                      Mistake(_softmax_last_axis, "sum along dim (cache[1]), not along the last axis")),
            timing_inputs=_timing_activation(scratch.softmax_forward, dim=1), vectorization="docs/11-activations.md"),
        Exercise(
            name="log_softmax", title="the backward pass of log-softmax", chapter="docs/11-activations.md",
            function="log_softmax_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.activations.log_softmax_forward): y = x - log(sum(exp(x))) along the axis
dim (log-sum-exp, stable); cache = (y, dim), y the LOG-probabilities.

Write log_softmax_backward(grad_out, cache) -> dx, with grad_out = g = dL/dy (x's shape).

Hint: dy_j/dx_i = [i == j] - softmax_i, and softmax = exp(y).
""",
            given=(scratch.log_softmax_forward,), imports=_NP, reference=scratch.log_softmax_backward,
            reference_location="scratch/activations.py `log_softmax_backward`",
            build=_backward_only("log_softmax", scratch.LogSoftmax),
            checks=(_fd("dx matches central differences (any dim)", prop.softmax_problems(("log_softmax",)),
                        prop.softmax_matches_finite_differences),
                    _torch("output and dx match nn.LogSoftmax", prop.softmax_problems(("log_softmax",)),
                           prop.softmax_matches_torch),
                    _torch("slices holding +-1e4: finite, and equal to torch's",
                           prop.softmax_problems(("log_softmax",)), prop.softmax_of_1e4_is_finite_and_matches_torch,
                           stage=CORNER)),
            mistakes=(Mistake(_log_softmax_without_sum, "every y_j depends on every x_i: dL/dx = g - softmax * "
                                                        "sum(g) with the sum along dim, not g - softmax * g"),
                      Mistake(_log_softmax_without_exp, "y is the LOG-softmax: the softmax in dL/dx = g - softmax * "
                                                        "sum(g) is exp(y)")),
            timing_inputs=_timing_activation(scratch.log_softmax_forward, dim=1),
            vectorization="docs/11-activations.md"),
        Exercise(
            name="avgpool", title="the backward pass of average pooling", chapter="docs/12-average-pooling.md",
            function="avgpool2d_backward", signature="grad_out, cache",
            task="""
Forward (given below, scratch.pool.avgpool2d_forward): x (N, C, H, W), kernel (kh, kw), stride, padding
(pairs, zeros), ceil_mode, count_include_pad, divisor_override; window (i, j) holds
xp[n, c, s_h i + u, s_w j + v] (k = u * kw + v); y (N, C, Ho, Wo) = sum(window) / divisor[i, j].
    cache = (divisor, padded_shape, input_shape, kernel, stride, padding)     divisor: (Ho, Wo)

Write avgpool2d_backward(grad_out, cache) -> dx (input_shape).

Hints: each window hands every entry the same share g / divisor of its gradient; windows overlap when
stride < kernel (their shares add up); shares that land on padding are dropped. The divisor is not
always kh * kw: count_include_pad=False, ceil mode and divisor_override change it.
_window_entry(dx_pad, k, kernel, stride, (1, 1), (Ho, Wo)) is a view of entry k of every window.
""",
            given=(scratch.avgpool2d_forward,), imports=_NP + "\nfrom scratch.pool import Pair, avgpool_divisors, "
                                                        "pool_output_size  # used by the forward pass\n"
                                                        "from scratch.pool import _window_entry  # you may use it\n"
                                                        "from scratch.module import empty_laid_out_as  # memory "
                                                        "layouts: scratch/module.py\n",
            reference=scratch.avgpool2d_backward,
            reference_location="scratch/pool.py `avgpool2d_backward` (loops: scratch/naive.py "
                               "`avgpool2d_backward_naive`)",
            build=_avgpool,
            checks=(_fd("dx matches central differences (padding counted in the divisor)",
                        prop.avg_pool_configs(count_include_pad=st.just(True), divisor_override=st.none()),
                        prop.avgpool2d_matches_finite_differences),
                    _torch("output and dx match nn.AvgPool2d (padding, overlap, ceil mode, divisor_override)",
                           prop.avg_pool_configs(), prop.avgpool2d_matches_torch),
                    _torch("padding not counted (count_include_pad=False), like torch",
                           prop.avg_pool_configs(count_include_pad=st.just(False), divisor_override=st.none()),
                           prop.avgpool2d_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_avgpool_variant(divide_by_kernel=True),
                              "divide by each window's own divisor (cache[0]), not kh * kw: with "
                              "count_include_pad=False, ceil mode or divisor_override they differ"),
                      Mistake(_avgpool_variant(add=False), "overlapping windows (stride < kernel) must ADD their "
                                                           "shares into a shared pixel, not overwrite each other")),
            timing_inputs=_timing_avgpool,
            vectorization="docs/12-average-pooling.md#vectorization"),
        _loss_exercise("mse", "the gradient of the mean squared error", "torch's nn.MSELoss",
                       "l = (x - t)^2", solutions.mse_forward, solutions.mse_backward,
                       "scratch/loss.py `MSELoss`",
                       checks=(_fd("dL/dx matches central differences", prop.loss_configs("mse", kinks=False),
                                   prop.loss_matches_finite_differences),
                               _torch("value and dL/dx match nn.MSELoss (every reduction)", prop.loss_configs("mse"),
                                      prop.loss_matches_torch)),
                       mistakes=(Mistake(_mse_without_2, "d/dx (x - t)^2 = 2 (x - t): the factor 2 is missing"),
                                 Mistake(_loss_without_mean(solutions.mse_backward),
                                         "the 1/N is missing: reduction='mean' averages over the N elements, and "
                                         "so does its gradient"))),
        _loss_exercise("l1", "the gradient of the mean absolute error (L1)", "torch's nn.L1Loss",
                       "l = |x - t|", solutions.l1_forward, solutions.l1_backward, "scratch/loss.py `L1Loss`",
                       checks=(_fd("dL/dx matches central differences (x != t)", prop.loss_configs("l1", kinks=False),
                                   prop.loss_matches_finite_differences),
                               _torch("value and dL/dx match nn.L1Loss (every reduction)",
                                      prop.loss_configs("l1", kinks=False), prop.loss_matches_torch),
                               _torch("x == t exactly: the gradient is sign(0) = 0, like torch",
                                      prop.loss_configs("l1"), prop.loss_matches_torch, stage=CORNER)),
                       mistakes=(Mistake(_l1_sign_of_zero, "at x == t PyTorch's gradient is sign(0) = 0 (a "
                                                           "subgradient): use np.sign, not x - t >= 0"),
                                 Mistake(_loss_without_mean(solutions.l1_backward),
                                         "the 1/N is missing: reduction='mean' averages over the N elements, and "
                                         "so does its gradient"))),
        _loss_exercise("mean_bias_error", "the gradient of the mean bias error", "the guide's; torch has none",
                       "l = x - t (signed)", solutions.mean_bias_error_forward, solutions.mean_bias_error_backward,
                       "scratch/loss.py `MeanBiasError`",
                       checks=(_fd("dL/dx matches central differences",
                                   prop.loss_configs("mean_bias_error", kinks=False),
                                   prop.loss_matches_finite_differences),
                               _torch("value and dL/dx match autograd of (x - t) reduced (every reduction)",
                                      prop.loss_configs("mean_bias_error"), prop.loss_matches_torch)),
                       mistakes=(Mistake(_mbe_is_l1, "the error is signed, not absolute: dl/dx = 1 everywhere, "
                                                     "not sign(x - t)"),
                                 Mistake(_loss_without_mean(solutions.mean_bias_error_backward),
                                         "the 1/N is missing: reduction='mean' averages over the N elements, and "
                                         "so does its gradient"))),
        Exercise(
            name="multi_margin", title="the gradient of the multi-class hinge loss", chapter="docs/13-losses.md",
            function="multi_margin_backward", signature="grad_output, cache",
            task="""
Forward (given below, torch's nn.MultiMarginLoss): scores x (N, C), target classes t (N,) (an unbatched
sample (C,) arrives as a batch of one), p 1 or 2, margin, class weight w (C,) or None (w = 1):
    z[n, j] = margin - x[n, t_n] + x[n, j]
    l[n] = w[t_n] / C * sum_{j != t_n} max(0, z[n, j])^p        (PyTorch divides by C)
    L = mean or sum of l over n, or l itself ("none")
    cache = (z, target, p, weight, reduction)     z (N, C), z[n, t_n] = margin (not in the sum)

Write multi_margin_backward(grad_output, cache) -> dL/dx, shape (N, C), z's dtype; grad_output is a
scalar (0-d array) for "mean" and "sum", an (N,) array for "none".

Hints: x[n, t_n] appears in every term of l[n] with a minus sign; at exactly z = 0 PyTorch takes
the hinge's gradient as 0 (it tests z > 0), and the checks use scores on the margin.
""",
            given=(solutions.reduce_losses, solutions.multi_margin_forward), imports=_NP,
            reference=solutions.multi_margin_backward,
            reference_location="scratch/loss.py `MultiMarginLoss`; simplecnn/exercise/solutions.py "
                               "`multi_margin_backward`",
            build=_multi_margin,
            checks=(_fd("dL/dx matches central differences (p = 1, no weight)",
                        prop.loss_configs("multi_margin", kinks=False, p=st.just(1), weighted=st.just(False),
                                          unbatched=st.none()),
                        prop.loss_matches_finite_differences),
                    _torch("value and dL/dx match nn.MultiMarginLoss (p, margin, weight, every reduction)",
                           prop.loss_configs("multi_margin", kinks=False), prop.loss_matches_torch),
                    _torch("scores exactly on the margin (z = 0): gradient 0 there, like torch",
                           prop.loss_configs("multi_margin"), prop.loss_matches_torch, stage=CORNER)),
            mistakes=(Mistake(_hinge_without_1_over_c, "PyTorch's hinge divides by the number of classes C: "
                                                       "l[n] = w[t_n] / C * sum ... (docs/13-losses.md)"),
                      Mistake(_hinge_without_target_column, "x[n, t_n] is in every term with a minus sign: "
                                                            "dL/dx[n, t_n] = -(sum of the row's other gradients)"),
                      Mistake(_hinge_at_zero, "at exactly z = 0 PyTorch's hinge gradient is 0: test z > 0, "
                                              "not z >= 0"),
                      Mistake(_hinge_p_ignored, "p = 2 squares the hinge: its gradient is 2 max(0, z), not 1")),
            timing_inputs=_timing_multi_margin, vectorization="docs/13-losses.md"),
        Exercise(
            name="sgd_momentum", title="one SGD step with momentum (and Nesterov)", chapter="docs/14-optimizers.md",
            function="sgd_update",
            signature="theta, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov",
            task="""
Write sgd_update(theta, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
one step of torch.optim.SGD for one parameter, updating theta and momentum_buffer (b) IN PLACE
(theta -= ..., momentum_buffer[...] = ...); returns nothing. momentum_buffer is None when momentum = 0.
step = t, already incremented (1 at the first step); weight_decay is L2, added to the gradient; with
nesterov the update looks ahead along the buffer. Do not modify grad.

Hints: torch starts the buffer as the gradient itself at the first step (no dampening then); the
chapter's 'Momentum' and 'Nesterov momentum' give the order of the updates.
""",
            given=(), imports=_NP, reference=solutions.sgd_update,
            reference_location="scratch/optim.py `SGD.step`; simplecnn/exercise/solutions.py `sgd_update`",
            build=_sgd,
            checks=(_optimizer("one step of plain SGD matches torch.optim.SGD", "sgd", steps=st.just(1),
                               momentum=st.just(0.0), weight_decay=st.just(0.0)),
                    _optimizer("several steps with momentum match torch.optim.SGD", "sgd",
                               momentum=st.sampled_from([0.5, 0.9]), nesterov=st.just(False),
                               dampening=st.just(0.0), weight_decay=st.just(0.0)),
                    _optimizer("Nesterov momentum matches torch.optim.SGD", "sgd", stage=CORNER,
                               momentum=st.sampled_from([0.5, 0.9]), nesterov=st.just(True),
                               weight_decay=st.just(0.0)),
                    _optimizer("dampening (not on the first step) matches torch.optim.SGD", "sgd", stage=CORNER,
                               momentum=st.sampled_from([0.5, 0.9]), nesterov=st.just(False),
                               dampening=st.just(0.3), weight_decay=st.just(0.0)),
                    _optimizer("weight decay (L2 in the gradient) matches torch.optim.SGD", "sgd", stage=CORNER)),
            mistakes=(Mistake(_sgd_variant(nesterov_term=False), "the Nesterov term is missing: with nesterov the "
                                                                 "step uses g + momentum * b, not b"),
                      Mistake(_sgd_variant(first_step_is_grad=False), "at the first step torch sets the buffer to "
                                                                      "the gradient itself, without dampening"),
                      Mistake(_sgd_variant(decay=False), "weight_decay is missing: SGD adds weight_decay * theta "
                                                         "to the gradient")),
            timing_inputs=_timing_optimizer("sgd"), vectorization="docs/14-optimizers.md"),
        Exercise(
            name="adagrad", title="one Adagrad step", chapter="docs/14-optimizers.md",
            function="adagrad_update", signature="theta, grad, state_sum, step, lr, lr_decay, weight_decay, eps",
            task="""
Write adagrad_update(theta, grad, state_sum, step, lr, lr_decay, weight_decay, eps): one step of
torch.optim.Adagrad for one parameter, updating theta and state_sum (the running sum of squared
gradients, started at initial_accumulator_value) IN PLACE; returns nothing. step = t, already
incremented (1 at the first step); weight_decay is L2, added to the gradient. Do not modify grad.

Hints: the learning rate decays as lr / (1 + (t - 1) * lr_decay); eps is added after the square root.
""",
            given=(), imports=_NP, reference=solutions.adagrad_update,
            reference_location="scratch/optim.py `Adagrad.step`; simplecnn/exercise/solutions.py `adagrad_update`",
            build=_adagrad,
            checks=(_optimizer("one step matches torch.optim.Adagrad", "adagrad", steps=st.just(1),
                               lr_decay=st.just(0.0), weight_decay=st.just(0.0)),
                    _optimizer("several steps with lr_decay match torch.optim.Adagrad", "adagrad",
                               weight_decay=st.just(0.0), initial_accumulator_value=st.just(0.0)),
                    _optimizer("initial_accumulator_value and weight decay match torch.optim.Adagrad", "adagrad",
                               stage=CORNER)),
            mistakes=(Mistake(_adagrad_variant(eps_inside=True), "eps goes after the square root: "
                                                                  "sqrt(sum) + eps, not sqrt(sum + eps)"),
                      Mistake(_adagrad_variant(lr_decay_step="t"), "the decay counts from the first step: "
                                                                  "lr / (1 + (t - 1) * lr_decay)"),
                      Mistake(_adagrad_variant(lr_decay_step="none"), "lr_decay is missing: the learning rate is "
                                                                     "lr / (1 + (t - 1) * lr_decay)"),
                      Mistake(_adagrad_variant(decay=False), "weight_decay is missing: Adagrad adds "
                                                             "weight_decay * theta to the gradient")),
            timing_inputs=_timing_optimizer("adagrad"), vectorization="docs/14-optimizers.md"),
        Exercise(
            name="rmsprop", title="one RMSprop step", chapter="docs/14-optimizers.md",
            function="rmsprop_update",
            signature="theta, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum, "
                      "centered",
            task="""
Write rmsprop_update(theta, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
momentum, centered): one step of torch.optim.RMSprop for one parameter, updating theta and the state
arrays IN PLACE; returns nothing. square_avg (v) starts at 0; grad_avg (m, the running mean of the
gradient) is None unless centered; momentum_buffer (b) is None unless momentum > 0. weight_decay is L2,
added to the gradient. Do not modify grad.

Hints: centered RMSprop divides by the running standard deviation, sqrt(v - m^2), not sqrt(v); eps is
added after the square root; with momentum, the buffer accumulates the normalized step g / avg.
""",
            given=(), imports=_NP, reference=solutions.rmsprop_update,
            reference_location="scratch/optim.py `RMSprop.step`; simplecnn/exercise/solutions.py `rmsprop_update`",
            build=_rmsprop,
            checks=(_optimizer("several steps match torch.optim.RMSprop", "rmsprop", momentum=st.just(0.0),
                               centered=st.just(False), weight_decay=st.just(0.0)),
                    _optimizer("momentum matches torch.optim.RMSprop", "rmsprop", centered=st.just(False),
                               weight_decay=st.just(0.0)),
                    _optimizer("centered RMSprop matches torch.optim.RMSprop", "rmsprop", stage=CORNER,
                               centered=st.just(True), weight_decay=st.just(0.0)),
                    _optimizer("weight decay (L2 in the gradient) matches torch.optim.RMSprop", "rmsprop",
                               stage=CORNER)),
            mistakes=(Mistake(_rmsprop_variant(centered_term=False), "the centered term is missing: centered "
                                                                     "RMSprop divides by sqrt(v - m^2)"),
                      Mistake(_rmsprop_variant(eps_inside=True), "eps goes after the square root: "
                                                                 "sqrt(v) + eps, not sqrt(v + eps)"),
                      Mistake(_rmsprop_variant(buffer_normalized=False), "the momentum buffer accumulates the "
                                                                         "normalized step g / avg, not g")),
            timing_inputs=_timing_optimizer("rmsprop"), vectorization="docs/14-optimizers.md"),
    )


EXERCISES: tuple[Exercise, ...] = _exercise_list()
BY_NAME = {exercise.name: exercise for exercise in EXERCISES}
assert tuple(BY_NAME) == NAMES, "simplecnn.exercise.NAMES lists the exercises in catalog order"

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
        def backward(self, grad_out):
            cache, unbatched = self._take_cache()   # the layer's cache: the function's, and the unbatched flag
            dx = fn(grad_out[None] if unbatched else grad_out, cache)
            return dx[0] if unbatched else dx

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
        def step(self):
            self.step_count += 1
            for name, param in self.params.items():
                if param.grad is not None:
                    fn(param.data, param.grad, self.exp_avg[name], self.exp_avg_sq[name], self.step_count,
                       self.lr, self.betas, self.eps, self.weight_decay)

    return prop.Implementation(adam=LearnerAdam)


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
_BN_IMPORTS = _NP + "\nfrom scratch.batchnorm import _channel, channel_sums  # used by the forward pass\n"
_POOL_IMPORTS = _NP + "\nfrom scratch.pool import pool_output_size  # used by the forward pass\n" \
    "from scratch.pool import _inside_input, _keep_first, _window_entry, _winners  # helpers you may use\n"


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
    )


EXERCISES: tuple[Exercise, ...] = _exercise_list()
BY_NAME = {exercise.name: exercise for exercise in EXERCISES}
assert tuple(BY_NAME) == NAMES, "simplecnn.exercise.NAMES lists the exercises in catalog order"

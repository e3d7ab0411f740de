"""Run a scratch layer and its PyTorch twin on the same numbers, and measure how far apart they are.

Shared by the parity tests (``parity_tests/``) and ``simplecnn gradcheck``, so that both judge with the
same comparisons and the same tolerances. ``torch_impl`` may import ``scratch``; ``scratch`` never
imports torch.

The pieces:

* :func:`torch_twin` builds the ``torch.nn`` module equivalent to a scratch layer, parameters and
  buffers copied.
* :func:`run_layer_pair` runs one forward and one backward pass on both sides from the same input and
  the same upstream gradient ``dL/dy``, and returns a list of :class:`Comparison` in the order they should
  be checked: the output, the input gradient, every parameter gradient, then every buffer.
* :class:`LossLayer` turns a scratch loss (``CrossEntropyLoss``, ``MSELoss``, ...) into a layer of its
  input, and :func:`torch_loss` builds its torch twin.
* :func:`optimizer_trajectories` and :func:`simplecnn_training_comparisons` do the same for the
  optimizers (:data:`OPTIMIZERS`) and for the whole network.
* :class:`Comparison` holds one pair of arrays and measures their distance against :data:`TOLERANCES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import scratch
from scratch.module import Layer, Parameter

from .model import SimpleCNN as TorchSimpleCNN
from .train import fixed_dropout_masks

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed relative error (see :attr:`Comparison.rel_error`) for each kind of value."""

    forward: float   # outputs, losses, running statistics, parameters after optimizer steps
    backward: float  # gradients


# Why these numbers. The relative error is measured norm-wise: max|ours - theirs| / max|theirs|, with a
# floor where the true value can be zero (see Comparison.scale). Both sides compute the same formulas in a
# different order (im2col + one GEMM here, blocked kernels there), so they differ by rounding: about
# eps * sqrt(terms summed) * (condition of the operation), eps = 1.1e-16 (float64), 6e-8 (float32).
# Measured over three `thorough` runs (~1000 examples per property): float64 forward <= 2e-14, gradients
# <= 1e-14; float32 forward <= 3e-6, gradients <= 8e-6 (the worst are batch-norm, where x - mean cancels,
# and the whole network). The tolerances leave a margin of 10-1000x over that, and any real mistake is
# far above them: a sign, a missing term, a wrong index are O(1) errors, a missing bias correction O(lr).
TOLERANCES = {
    np.dtype(np.float64): Tolerance(forward=1e-12, backward=1e-11),
    np.dtype(np.float32): Tolerance(forward=3e-5, backward=1e-4),
}


def to_torch(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A torch copy of ``a`` (same dtype, same values; never shares memory with ``a``)."""
    t = torch.tensor(np.array(a, copy=True))
    return t.requires_grad_(requires_grad)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


@dataclass
class Comparison:
    """One value computed by both implementations.

    ``kind`` chooses the tolerance (``"forward"`` or ``"backward"``). ``scale`` is a floor under the
    magnitude the error is measured against, for values whose size says nothing about their rounding
    error. The main case: a gradient whose true value is zero (a convolution bias feeding batch-norm, or
    batch-norm's input gradient with two values per channel) comes out of both implementations as
    rounding noise of the size eps * (the terms that cancelled); compared relatively, two noises would
    disagree at random, so such a value is measured against the terms it was summed from (the upstream
    gradient, or the layer's other gradients). Every floor in this module says why it is what it is.
    """

    name: str
    ours: Any     # a NumPy array (or anything np.array takes): stored as an ndarray copy
    theirs: Any   # a NumPy array or a torch tensor: stored as an ndarray copy
    kind: str = "backward"
    scale: float = 0.0

    def __post_init__(self):
        # Copies: an optimizer goes on updating its parameters in place after they were recorded.
        self.ours = np.array(self.ours, copy=True)
        self.theirs = to_numpy(self.theirs) if isinstance(self.theirs, torch.Tensor) else np.array(self.theirs)

    @property
    def abs_error(self) -> float:
        """``max |ours - theirs|`` (infinite when the shapes differ; NaN anywhere makes it NaN)."""
        if self.ours.shape != self.theirs.shape:
            return float("inf")
        if self.ours.size == 0:
            return 0.0
        diff = self.ours.astype(np.float64) - self.theirs.astype(np.float64)
        return float(np.max(np.abs(diff)))

    @property
    def rel_error(self) -> float:
        """``abs_error / max(max |theirs|, scale)``: a norm-wise relative error (0 when both agree exactly)."""
        error = self.abs_error
        if error == 0.0:
            return 0.0
        magnitude = max(float(np.max(np.abs(self.theirs))) if self.theirs.size else 0.0, self.scale)
        return error / magnitude if magnitude > 0 else float("inf")

    def problem(self, tolerance: Tolerance) -> str | None:
        """Why the two values disagree, or ``None`` when they agree within ``tolerance``."""
        if self.ours.shape != self.theirs.shape:
            return f"{self.name}: shape {self.ours.shape} != torch's {self.theirs.shape}"
        if self.ours.dtype != self.theirs.dtype:
            return f"{self.name}: dtype {self.ours.dtype} != torch's {self.theirs.dtype}"
        if self.ours.dtype.kind != "f":                      # integers (num_batches_tracked): exact
            if not np.array_equal(self.ours, self.theirs):
                return f"{self.name}: {self.ours} != torch's {self.theirs}"
            return None
        if not np.isfinite(self.ours).all():
            return f"{self.name}: not finite"
        allowed = getattr(tolerance, self.kind)
        if not self.rel_error <= allowed:
            worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(self.ours - self.theirs)),
                                                           self.ours.shape))
            return (f"{self.name} ({self.kind}): relative error {self.rel_error:.3g} > {allowed:g} "
                    f"(abs {self.abs_error:.3g}; worst at {worst}: ours {float(self.ours[worst])!r}, "
                    f"torch {float(self.theirs[worst])!r})")
        return None


# --- building the twins -----------------------------------------------------------------------------

def torch_twin(layer: Layer) -> nn.Module:
    """The ``torch.nn`` module computing what ``layer`` computes, with copies of its parameters/buffers."""
    module: nn.Module
    if isinstance(layer, scratch.Conv2d):
        module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                           layer.padding, layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
        dtype = layer.weight.data.dtype
    elif isinstance(layer, scratch.Linear):
        module = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        dtype = layer.weight.data.dtype
    elif isinstance(layer, scratch.BatchNorm2d):
        module = nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine,
                                layer.track_running_stats, bias=layer.bias is not None)
        dtype = layer.dtype
    elif isinstance(layer, scratch.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                            layer.return_indices, layer.ceil_mode)
    elif isinstance(layer, scratch.AvgPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                            layer.count_include_pad, layer.divisor_override)
    elif isinstance(layer, scratch.ReLU):
        return nn.ReLU()
    elif isinstance(layer, scratch.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    elif isinstance(layer, scratch.Sigmoid):
        return nn.Sigmoid()
    elif isinstance(layer, scratch.Tanh):
        return nn.Tanh()
    elif isinstance(layer, scratch.Softmax):
        return nn.Softmax(layer.dim)
    elif isinstance(layer, scratch.LogSoftmax):
        return nn.LogSoftmax(layer.dim)
    elif isinstance(layer, scratch.Flatten):
        return nn.Flatten()
    else:
        raise TypeError(f"no torch twin for {type(layer).__name__}")
    module = module.to(TORCH_DTYPES[np.dtype(dtype)])
    module.load_state_dict({k: torch.tensor(np.array(v)) for k, v in layer.state_dict().items()})
    module.train(layer.training)
    return module


def torch_simplecnn(model: scratch.SimpleCNN) -> TorchSimpleCNN:
    """``torch_impl.SimpleCNN`` holding ``model``'s weights and buffers (same keys, same dtype)."""
    twin = TorchSimpleCNN(model.num_classes, model.activation, model.pool).to(TORCH_DTYPES[model.dtype])
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    twin.train(model.training)
    return twin


def torch_loss(loss_fn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The ``torch.nn`` loss equal to the scratch loss object ``loss_fn`` (``MeanBiasError``, which torch
    lacks, as autograd of ``input - target`` reduced the same way)."""
    weight = getattr(loss_fn, "weight", None)
    weight_t = None if weight is None else torch.tensor(np.array(weight, copy=True))
    if isinstance(loss_fn, scratch.CrossEntropyLoss):
        return nn.CrossEntropyLoss(weight_t, ignore_index=loss_fn.ignore_index, reduction=loss_fn.reduction,
                                   label_smoothing=loss_fn.label_smoothing)
    if isinstance(loss_fn, scratch.MultiMarginLoss):
        return nn.MultiMarginLoss(loss_fn.p, loss_fn.margin, weight_t, reduction=loss_fn.reduction)
    if isinstance(loss_fn, scratch.MSELoss):
        return nn.MSELoss(reduction=loss_fn.reduction)
    if isinstance(loss_fn, scratch.L1Loss):
        return nn.L1Loss(reduction=loss_fn.reduction)
    if isinstance(loss_fn, scratch.MeanBiasError):
        reduction = loss_fn.reduction

        def mean_bias_error(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            diff = input - target
            return diff.mean() if reduction == "mean" else diff.sum() if reduction == "sum" else diff

        return mean_bias_error
    raise TypeError(f"no torch twin for {type(loss_fn).__name__}")


class LossLayer(Layer):
    """A scratch loss seen as a layer of its input, so the parity helpers can run it.

    ``loss_fn(input, target)`` with ``target`` fixed; the output is the loss as an array (0-d for "mean"
    and "sum"); backward hands the upstream gradient to ``loss_fn.backward`` as its ``grad_output``.
    """

    def __init__(self, loss_fn, target: np.ndarray):
        super().__init__()
        self.loss_fn, self.target = loss_fn, target
        self.name = type(loss_fn).__name__

    def extra_repr(self) -> str:
        return self.loss_fn.extra_repr()

    @property
    def handed_in(self) -> dict[str, np.ndarray]:
        """Arrays the loss holds that it must not modify (checked by ``parity.assert_parity``)."""
        weight = getattr(self.loss_fn, "weight", None)
        return {"target": self.target, **({} if weight is None else {"weight": weight})}

    @property
    def output_scale(self) -> float:
        """Floor for the loss value's relative error: the size of the terms it was summed from.

        Cross-entropy: 1 nat per sample (times the largest class weight). A confident right answer has a
        loss like 4e-4 = log(1.0004), and log of a float32 sum near 1 is only good to ~1e-7 absolute
        (measured: 4e-4 off by 2.4e-7 in float32, in torch as here); relative to the loss itself that is
        6e-4. Mean bias error: the sum of |input - target| (reduced like the loss), since the signed
        terms cancel and the rounding of a sum is relative to the sum of its terms' magnitudes. The
        other losses add non-negative terms: no floor needed.
        """
        reduction = self.loss_fn.reduction
        if isinstance(self.loss_fn, scratch.CrossEntropyLoss):
            weight = self.loss_fn.weight
            logits = self._input if self._input is not None else np.zeros((1, 1))
            samples = logits.size // logits.shape[1 if logits.ndim > 1 else 0]
            per_sample = 1.0 if weight is None else max(1.0, float(np.max(weight)))
            return per_sample * (samples if reduction == "sum" else 1.0)
        if isinstance(self.loss_fn, scratch.MeanBiasError) and self._input is not None:
            terms = np.abs(self._input.astype(np.float64) - self.target)
            return float(terms.mean() if reduction == "mean" else terms.sum() if reduction == "sum" else 0.0)
        return 0.0

    _input: np.ndarray | None = None

    def forward(self, input: np.ndarray) -> np.ndarray:
        self._input = input
        return np.asarray(self.loss_fn(input, self.target), dtype=input.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self.loss_fn.backward(grad_out)

    def torch_twin(self) -> Callable[[torch.Tensor], torch.Tensor]:
        loss = torch_loss(self.loss_fn)
        target = torch.tensor(np.array(self.target, copy=True))
        return lambda input: loss(input, target)


class CrossEntropyLayer(LossLayer):
    """The function ``scratch.cross_entropy`` (not the class), or another with its signature (a
    learner's, in ``simplecnn exercise``), as a layer of the logits.

    Its output is the loss as a 0-d array; backward multiplies the loss gradient by the upstream scalar.
    """

    def __init__(self, targets: np.ndarray, reduction: str = "mean",
                 function: Callable = scratch.cross_entropy):
        super().__init__(scratch.CrossEntropyLoss(reduction=reduction), targets)
        self.targets, self.reduction, self.function = targets, reduction, function
        self.name = "cross_entropy"

    def forward(self, logits: np.ndarray) -> np.ndarray:
        self._input = logits
        loss, self._grad = self.function(logits, self.targets, self.reduction)
        return np.array(loss, dtype=logits.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._grad


# --- running both ----------------------------------------------------------------------------------

def _batchnorm_output_scale(layer: scratch.BatchNorm2d, x: np.ndarray) -> float:
    """Floor for batch-norm's output error: the size of the terms ``gamma (x - mean) / std + beta`` is
    computed from. Where they cancel, the output is far smaller than its rounding error: measured, a
    float32 eval-mode output of 1.2e-4 from terms ~0.5 came out 2e-8 apart in torch and here (one
    rounding of the terms, yet 1.7e-4 relative to the output itself)."""
    x64 = x.astype(np.float64)
    if layer.training or layer.running_mean is None or layer.running_var is None:
        mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    else:
        mean, var = layer.running_mean.astype(np.float64), layer.running_var.astype(np.float64)
    gamma = np.abs(layer.weight.data) if layer.weight is not None else np.ones_like(mean)
    beta = np.abs(layer.bias.data) if layer.bias is not None else np.zeros_like(mean)
    c = (1, -1, 1, 1)
    terms = (gamma.reshape(c) * (np.abs(x64) + np.abs(mean).reshape(c)) / np.sqrt(var + layer.eps).reshape(c)
             + beta.reshape(c))
    return float(terms.max()) if terms.size else 0.0


def run_layer_pair(layer: Layer, module: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray,
                   upstream: np.ndarray, **forward_kwargs) -> list[Comparison]:
    """Forward ``x`` and back-propagate ``upstream`` (= dL/dy) through both; the values to compare, in order.

    ``forward_kwargs`` go to the scratch layer only (a dropout mask). Parameter gradients and buffers are
    matched by name: scratch uses PyTorch's (``weight``, ``bias``, ``running_var``, ...). A layer that
    returns ``(output, indices)`` (``MaxPool2d(return_indices=True)``) has its indices compared exactly;
    ``upstream`` is the gradient of the output.
    """
    output_scale = getattr(layer, "output_scale", 0.0)
    if isinstance(layer, scratch.BatchNorm2d):
        output_scale = _batchnorm_output_scale(layer, x)   # before forward updates the running statistics
    y = layer.forward(x, **forward_kwargs)
    dx = layer.backward(upstream)

    if isinstance(module, nn.Module):
        module.zero_grad()  # torch adds into .grad; scratch overwrites it (one step, one gradient)
    x_t = to_torch(x, requires_grad=True)
    y_t = module(x_t)
    extras: list[Comparison] = []
    if isinstance(y, tuple):
        (y, indices), (y_t, indices_t) = y, y_t
        extras.append(Comparison("indices", indices, indices_t, "forward"))
    y_t.backward(to_torch(upstream))

    # The floor for gradients: an entry of the upstream gradient, the size of the terms they are built from.
    grad_scale = float(np.max(np.abs(upstream))) if upstream.size else 0.0
    comparisons = [Comparison("output", y, y_t, "forward", output_scale),
                   Comparison("grad input", dx, x_t.grad, "backward", grad_scale), *extras]
    torch_params = dict(module.named_parameters()) if isinstance(module, nn.Module) else {}
    torch_buffers = dict(module.named_buffers()) if isinstance(module, nn.Module) else {}
    for name, param in layer.parameters().items():
        comparisons.append(Comparison(f"grad {name}", param.grad, torch_params[name].grad, "backward",
                                      grad_scale))
    # Buffers share one scale, the largest among them: a running mean averages batch means that can
    # cancel (measured: 0.0016 from terms ~0.5, off by 4e-8 in float32); its error is rounding of those
    # terms, of the size of the data, and running_var measures that size.
    float_buffers = [b for b in torch_buffers.values() if b.is_floating_point()]
    buffer_scale = max((float(b.abs().max()) for b in float_buffers), default=0.0)
    for name, buffer in layer.buffers().items():
        comparisons.append(Comparison(name, buffer, torch_buffers[name], "forward", buffer_scale))
    return comparisons


OPTIMIZERS = {"adam": (scratch.Adam, torch.optim.Adam), "adamw": (scratch.AdamW, torch.optim.AdamW),
              "sgd": (scratch.SGD, torch.optim.SGD), "adagrad": (scratch.Adagrad, torch.optim.Adagrad),
              "rmsprop": (scratch.RMSprop, torch.optim.RMSprop)}


def optimizer_trajectories(kind: str, initial: dict[str, np.ndarray], gradients: list[dict[str, np.ndarray]],
                           ours_cls: type | None = None, **hyper) -> list[list[Comparison]]:
    """Step scratch's and torch's ``kind`` optimizer (a key of :data:`OPTIMIZERS`) with the same gradients.

    ``hyper`` (lr, betas, momentum, ...) goes to both. Returns, for every step, the parameters and every
    state tensor after it: each tensor of torch's ``optimizer.state[param]`` against ours under the same
    name in our flat ``state_dict()`` (``"<name>.<param>"``), the step count against ``"step"``. A state
    tensor one side has and the other lacks is a comparison that fails (an empty array against it).
    ``ours_cls`` replaces scratch's class (the exercise grader passes one whose update is a learner's).
    """
    ours_cls = ours_cls or OPTIMIZERS[kind][0]
    theirs_cls = OPTIMIZERS[kind][1]
    ours = {k: Parameter(v.copy()) for k, v in initial.items()}
    theirs = {k: nn.Parameter(to_torch(v)) for k, v in initial.items()}
    ours_opt, theirs_opt = ours_cls(ours, **hyper), theirs_cls(list(theirs.values()), **hyper)
    missing = np.empty(0)
    steps = []
    for step, grads in enumerate(gradients, start=1):
        for k in initial:
            ours[k].grad = grads[k].copy()
            theirs[k].grad = to_torch(grads[k])
        ours_opt.step()
        theirs_opt.step()
        ours_state = ours_opt.state_dict()
        ours_by_param: dict[str, dict[str, np.ndarray]] = {k: {} for k in initial}
        for key, value in ours_state.items():
            if key != "step":
                state_name, _, param_name = key.partition(".")
                ours_by_param[param_name][state_name] = value
        comparisons = []
        for k in initial:
            comparisons.append(Comparison(f"step {step} {k}", ours[k].data, theirs[k], "forward"))
            state = {m: v for m, v in theirs_opt.state[theirs[k]].items() if v is not None}
            if "step" in state:
                comparisons.append(Comparison(f"step {step} {k}.step", ours_state["step"],
                                              np.array(int(state.pop("step")), dtype=np.int64), "forward"))
            for m in sorted(set(state) | set(ours_by_param[k])):
                comparisons.append(Comparison(f"step {step} {k}.{m}", ours_by_param[k].get(m, missing),
                                              state[m] if m in state else missing, "forward"))
        steps.append(comparisons)
    return steps


def _computed(grad, name: str):
    """``grad``, which a backward pass must have filled in (a clear error, not a None further down)."""
    if grad is None:
        raise RuntimeError(f"no gradient was computed for {name}")
    return grad


def _layer_of(key: str) -> str:
    return key.split(".")[0]


def _layer_scales(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """The largest magnitude among each layer's tensors (``conv1.weight.grad`` and ``conv1.bias.grad``)."""
    scales: dict[str, float] = {}
    for key, t in tensors.items():
        if t.is_floating_point():
            scales[_layer_of(key)] = max(scales.get(_layer_of(key), 0.0), float(t.abs().max()))
    return scales


def simplecnn_training_comparisons(dtype=np.float64, seed: int = 0, batch_size: int = 4,
                                   steps: int = 2, lr: float = 1e-3) -> list[Comparison]:
    """Train the scratch SimpleCNN and its torch twin side by side; everything that must agree.

    Both start from the same weights (copied through the state dict), see the same batches and the same
    dropout masks, and take ``steps`` Adam steps. Compared at every step: the loss, the gradient of every
    parameter, then every parameter and buffer after the step; finally the eval-mode logits (running
    statistics, no dropout) of a fresh batch.

    Gradients are compared with one scale per layer (the largest magnitude among the layer's gradients).
    conv1.bias and conv2.bias feed batch-norm: adding a constant to every pre-normalization value of a
    channel changes nothing after normalization, so their true gradient is exactly zero and both sides
    return rounding noise (measured: float64 ~1e-17, float32 ~1e-8, beside weight gradients ~1e-1). That
    noise is compared against the size of the terms it came from, the layer's other gradients.

    Once compared, our gradients are handed to torch's optimizer too, so both Adams step on identical
    inputs. Stepping each on its own gradients would compare Adam's amplification of rounding instead:
    its first step is ``lr * g / (|g| + eps)`` per element, which multiplies the last-bit difference of an
    element with ``|g|`` near ``eps`` by up to ``1 / (4 eps)``. Measured that way: float64 weights apart by
    ~1e-12 relative, float32 by ~2e-4 (conv biases, whose gradient is pure noise, by O(lr) with a random
    sign), with nothing wrong on either side. The optimizer itself is checked step by step in the parity
    suite; here the weights after each step, and every loss and gradient of the following steps computed
    from them, must agree as tightly as single layers do.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    ours = scratch.SimpleCNN(seed=seed, dtype=dtype)
    theirs = torch_simplecnn(ours)
    ours_opt = scratch.Adam(ours.parameters(), lr=lr)
    theirs_opt = torch.optim.Adam(theirs.parameters(), lr=lr)
    torch_params = dict(theirs.named_parameters())
    comparisons = []
    for step in range(1, steps + 1):
        images = rng.normal(size=(batch_size, 1, 28, 28)).astype(dtype)
        labels = rng.integers(0, 10, size=batch_size)
        masks = ours.sample_dropout_masks(batch_size)

        loss, grad_logits = scratch.cross_entropy(ours.forward(images, dropout_masks=masks), labels)
        ours.backward(grad_logits)

        theirs_opt.zero_grad()
        with fixed_dropout_masks(theirs, {k: torch.from_numpy(m) for k, m in masks.items()}):
            loss_t = F.cross_entropy(theirs(to_torch(images)), torch.tensor(labels))
        loss_t.backward()

        comparisons.append(Comparison(f"step {step} loss", np.array(loss, dtype=dtype), loss_t, "forward"))
        grads = {k: _computed(p.grad, k) for k, p in ours.parameters().items()}
        grad_scale = _layer_scales({k: _computed(p.grad, k) for k, p in torch_params.items()})
        comparisons += [Comparison(f"step {step} grad {k}", g, torch_params[k].grad, "backward",
                                   grad_scale[_layer_of(k)]) for k, g in grads.items()]
        # Both optimizers step on the same (our, just checked) gradients; see the docstring.
        for k, g in grads.items():
            torch_params[k].grad = to_torch(g)
        ours_opt.step()
        theirs_opt.step()
        torch_state = theirs.state_dict()
        comparisons += [Comparison(f"step {step} {k}", v, torch_state[k], "forward")
                        for k, v in ours.state_dict().items()]

    images = rng.normal(size=(batch_size, 1, 28, 28)).astype(dtype)
    ours.eval()
    theirs.eval()
    with torch.no_grad(), scratch.no_grad():     # scratch's evaluation fast paths (no caches kept)
        comparisons.append(Comparison("eval logits", ours.forward(images), theirs(to_torch(images)), "forward"))
    return comparisons

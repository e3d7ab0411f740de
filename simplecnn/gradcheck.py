"""``simplecnn gradcheck``: every scratch component against PyTorch autograd, one table row each.

Each component runs on random inputs with a random upstream gradient through both implementations
(:mod:`torch_impl.mirror`, the same machinery as the parity suite), and every value that must agree is
compared: outputs, input and parameter gradients, buffers, optimizer trajectories, and a few training
steps of the whole network. A row's errors are the worst over its values: ``max abs error`` is
``max |ours - torch|``, ``max rel error`` that divided by the value's magnitude. The row is ok when every
value is within the tolerance of its kind for the dtype (``torch_impl.mirror.TOLERANCES``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

import scratch
from torch_impl.mirror import (
    TOLERANCES,
    Comparison,
    CrossEntropyLayer,
    LossLayer,
    optimizer_trajectories,
    run_layer_pair,
    simplecnn_training_comparisons,
    to_torch,
    torch_twin,
)


def _layer_check(make_layer: Callable[[np.dtype], scratch.Layer], input_shape, values: str = "normal",
                 steps: int = 1):
    """A component that runs ``make_layer(dtype)`` and its torch twin ``steps`` times on fresh inputs."""

    def check(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
        layer = make_layer(dtype)
        module = torch_twin(layer)
        comparisons = []
        for _ in range(steps):
            if values == "distinct":    # a shuffled ramp: one maximum per pooling window
                size = int(np.prod(input_shape))
                x = rng.permutation(size).reshape(input_shape) / size
            elif values == "tied":      # integers 0..2: windows with several equal maxima
                x = rng.integers(0, 3, size=input_shape)
            elif values == "with zeros":  # a quarter exactly 0, where (Leaky)ReLU has its kink
                x = np.where(rng.random(input_shape) < 0.25, 0.0, rng.standard_normal(input_shape))
            elif values == "extreme":     # +-1e3 / +-1e4 and 0, plus noise: exp of them overflows
                x = rng.choice([-1e4, -1e3, 0.0, 1e3, 1e4], size=input_shape) + rng.standard_normal(input_shape)
            else:
                x = rng.standard_normal(input_shape)
            x = x.astype(dtype)
            y = layer.forward(x)
            if isinstance(y, tuple):    # (output, indices): the gradient is the output's
                y = y[0]
            upstream = rng.standard_normal(y.shape).astype(dtype)
            comparisons += run_layer_pair(layer, module, x, upstream)
        return comparisons

    return check


def _batchnorm(training: bool, **options):
    """Three training steps, then (``training=False``) one in eval mode. ``options`` (affine, bias,
    track_running_stats) go to both layers."""

    def check(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
        layer = scratch.BatchNorm2d(3, dtype=dtype, **options)
        if layer.weight is not None:
            layer.weight.data[...] = rng.uniform(0.5, 2.0, 3)
        if layer.bias is not None:
            layer.bias.data[...] = rng.standard_normal(3)
        module = torch_twin(layer)
        comparisons = []
        for _ in range(3):   # three training steps: running statistics and num_batches_tracked move
            x = (1.5 + 2.0 * rng.standard_normal((4, 3, 5, 5))).astype(dtype)
            comparisons += run_layer_pair(layer, module, x, rng.standard_normal(x.shape).astype(dtype))
        if training:
            return comparisons
        layer.eval()
        module.eval()
        x = (1.5 + 2.0 * rng.standard_normal((4, 3, 5, 5))).astype(dtype)
        return run_layer_pair(layer, module, x, rng.standard_normal(x.shape).astype(dtype))

    return check


def _dropout(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
    """torch draws the mask (seeded); read it off its output and hand it to scratch."""
    p, seed = 0.45, int(rng.integers(2**31))
    x = rng.standard_normal((4, 3, 5, 5))
    x = (x + np.where(x >= 0, 0.1, -0.1)).astype(dtype)   # no zeros: output != 0 is exactly the mask
    dropout = torch.nn.Dropout(p)

    def torch_dropout(t):
        torch.manual_seed(seed)
        return dropout(t)

    mask = (torch_dropout(to_torch(x)) != 0).numpy()
    return run_layer_pair(scratch.Dropout(p), torch_dropout, x, rng.standard_normal(x.shape).astype(dtype),
                          mask=mask)


def _cross_entropy(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
    comparisons = []
    for reduction in ("mean", "sum"):
        logits = (3 * rng.standard_normal((6, 10))).astype(dtype)
        loss = CrossEntropyLayer(rng.integers(0, 10, size=6), reduction)
        comparisons += run_layer_pair(loss, loss.torch_twin(), logits, np.array(rng.standard_normal(), dtype=dtype))
    return comparisons


def _loss(make_loss: Callable[[str, np.dtype, np.random.Generator], tuple]):
    """A loss class in each reduction: ``make_loss(reduction, dtype, rng) -> (loss_fn, input, target)``."""

    def check(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
        comparisons = []
        for reduction in ("mean", "sum", "none"):
            loss_fn, x, target = make_loss(reduction, dtype, rng)
            layer = LossLayer(loss_fn, target)
            value = layer.forward(x)
            upstream = rng.standard_normal(value.shape).astype(dtype)
            comparisons += run_layer_pair(layer, layer.torch_twin(), x, upstream)
        return comparisons

    return check


def _cross_entropy_loss(probabilities: bool = False):
    def make(reduction: str, dtype: np.dtype, rng: np.random.Generator):
        logits = (3 * rng.standard_normal((6, 5))).astype(dtype)
        weight = rng.uniform(0.5, 2.0, 5).astype(dtype)
        if probabilities:
            target = rng.dirichlet(np.ones(5), size=6).astype(dtype)
        else:
            target = rng.integers(0, 5, size=6)
            target[1] = -100
        return scratch.CrossEntropyLoss(weight, reduction=reduction, label_smoothing=0.1), logits, target

    return make


def _elementwise_loss(loss_cls):
    def make(reduction: str, dtype: np.dtype, rng: np.random.Generator):
        x = rng.standard_normal((4, 3, 2))
        target = np.where(rng.random(x.shape) < 0.25, x, rng.standard_normal(x.shape))  # some exact ties
        return loss_cls(reduction), x.astype(dtype), target.astype(dtype)

    return make


def _multi_margin(p: int):
    def make(reduction: str, dtype: np.dtype, rng: np.random.Generator):
        x = rng.integers(-4, 5, size=(6, 5)) / 2        # half-integers: some scores exactly on the margin
        weight = rng.uniform(0.5, 2.0, 5).astype(dtype)
        return scratch.MultiMarginLoss(p, 1.0, weight, reduction), x.astype(dtype), rng.integers(0, 5, size=6)

    return make


def _optimizer(kind: str, **hyper):
    def check(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
        shapes = {"weight": (4, 5), "bias": (4,)}
        initial = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        gradients = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(5)]
        return [c for step in optimizer_trajectories(kind, initial, gradients, **hyper) for c in step]

    return check


def _simplecnn(dtype: np.dtype, rng: np.random.Generator) -> list[Comparison]:
    return simplecnn_training_comparisons(dtype, seed=int(rng.integers(2**31)), batch_size=4, steps=2)


COMPONENTS: dict[str, Callable[[np.dtype, np.random.Generator], list[Comparison]]] = {
    # 19-wide output rows: scratch's per-image im2col layout; the strided case below has short rows and
    # uses the batch-last one (scratch/conv.py).
    "conv2d": _layer_check(lambda dt: scratch.Conv2d(3, 4, (3, 2), rng=np.random.default_rng(1), dtype=dt),
                           (2, 3, 6, 20)),
    # strides, paddings and dilations all different, so that no mix-up between them goes unnoticed
    "conv2d (strided, padded, dilated)": _layer_check(
        lambda dt: scratch.Conv2d(3, 4, (3, 2), stride=(2, 3), padding=(1, 2), dilation=(1, 2),
                                  rng=np.random.default_rng(2), dtype=dt),
        (2, 3, 9, 10)),
    # the options torch.nn.Conv2d has beyond SimpleCNN's: "same" padding with an even (dilated) kernel
    # (the extra cell after), groups with a padding mode each, depthwise, and an unbatched (C, H, W) input
    "conv2d (padding same, even kernel)": _layer_check(
        lambda dt: scratch.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2), rng=np.random.default_rng(4),
                                  dtype=dt),
        (2, 3, 7, 9)),
    "conv2d (groups 3, reflect)": _layer_check(
        lambda dt: scratch.Conv2d(6, 9, 3, padding=(2, 1), groups=3, padding_mode="reflect",
                                  rng=np.random.default_rng(5), dtype=dt),
        (2, 6, 6, 7)),
    "conv2d (depthwise, replicate, strided)": _layer_check(
        lambda dt: scratch.Conv2d(4, 8, (2, 3), 2, 2, groups=4, padding_mode="replicate",
                                  rng=np.random.default_rng(6), dtype=dt),
        (2, 4, 7, 6)),
    "conv2d (circular, unbatched)": _layer_check(
        lambda dt: scratch.Conv2d(3, 4, 3, padding=(1, 2), padding_mode="circular", rng=np.random.default_rng(7),
                                  dtype=dt),
        (3, 7, 9)),
    "maxpool2d": _layer_check(lambda dt: scratch.MaxPool2d(2), (2, 3, 8, 8), "distinct"),
    "maxpool2d (overlapping, padding 1)": _layer_check(lambda dt: scratch.MaxPool2d(3, stride=2, padding=1),
                                                       (2, 3, 9, 8), "distinct"),
    "maxpool2d (tied maxima)": _layer_check(lambda dt: scratch.MaxPool2d(3, stride=1), (2, 3, 7, 7), "tied"),
    "maxpool2d (return_indices, unbatched)": _layer_check(
        lambda dt: scratch.MaxPool2d(3, 2, 1, return_indices=True), (3, 9, 8), "distinct"),
    "batchnorm2d (train)": _batchnorm(training=True),
    "batchnorm2d (eval)": _batchnorm(training=False),
    "batchnorm2d (affine=False, eval)": _batchnorm(training=False, affine=False),
    "batchnorm2d (bias=False, eval)": _batchnorm(training=False, bias=False),
    "batchnorm2d (track_running_stats=False, eval)": _batchnorm(training=False, track_running_stats=False),
    "dropout": _dropout,
    "linear": _layer_check(lambda dt: scratch.Linear(12, 5, rng=np.random.default_rng(3), dtype=dt), (6, 12)),
    "linear (unbatched)": _layer_check(
        lambda dt: scratch.Linear(12, 5, rng=np.random.default_rng(8), dtype=dt), (12,)),
    "relu (unbatched)": _layer_check(lambda dt: scratch.ReLU(), (3, 5, 5), "with zeros"),
    "relu": _layer_check(lambda dt: scratch.ReLU(), (4, 3, 5, 5), "with zeros"),
    "flatten": _layer_check(lambda dt: scratch.Flatten(), (4, 3, 5, 5)),
    "leaky_relu": _layer_check(lambda dt: scratch.LeakyReLU(), (4, 3, 5, 5), "with zeros"),
    "sigmoid": _layer_check(lambda dt: scratch.Sigmoid(), (4, 3, 5, 5)),
    "sigmoid (inputs up to +-1e4)": _layer_check(lambda dt: scratch.Sigmoid(), (4, 3, 5, 5), "extreme"),
    "tanh": _layer_check(lambda dt: scratch.Tanh(), (4, 3, 5, 5)),
    "tanh (inputs up to +-1e4)": _layer_check(lambda dt: scratch.Tanh(), (4, 3, 5, 5), "extreme"),
    "softmax (dim 1)": _layer_check(lambda dt: scratch.Softmax(1), (4, 10)),
    "softmax (dim -1, inputs up to +-1e4)": _layer_check(lambda dt: scratch.Softmax(-1), (2, 3, 10), "extreme"),
    "log_softmax (dim 1)": _layer_check(lambda dt: scratch.LogSoftmax(1), (4, 10)),
    "log_softmax (dim 0, inputs up to +-1e4)": _layer_check(lambda dt: scratch.LogSoftmax(0), (6, 4), "extreme"),
    "avgpool2d": _layer_check(lambda dt: scratch.AvgPool2d(2), (2, 3, 8, 8)),
    "avgpool2d (overlapping, padding counted)": _layer_check(lambda dt: scratch.AvgPool2d(3, 2, 1), (2, 3, 9, 8)),
    "avgpool2d (padding not counted, ceil mode)": _layer_check(
        lambda dt: scratch.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 9)),
    "avgpool2d (divisor_override 5, ceil mode)": _layer_check(
        lambda dt: scratch.AvgPool2d((3, 2), (2, 3), (1, 1), ceil_mode=True, divisor_override=5), (2, 3, 8, 9)),
    "cross_entropy": _cross_entropy,
    "CrossEntropyLoss (weight, ignore_index, label_smoothing)": _loss(_cross_entropy_loss()),
    "CrossEntropyLoss (class probabilities)": _loss(_cross_entropy_loss(probabilities=True)),
    "MSELoss": _loss(_elementwise_loss(scratch.MSELoss)),
    "L1Loss (some input == target)": _loss(_elementwise_loss(scratch.L1Loss)),
    "MeanBiasError (vs autograd)": _loss(_elementwise_loss(scratch.MeanBiasError)),
    "MultiMarginLoss (p=1, weight, z = 0)": _loss(_multi_margin(1)),
    "MultiMarginLoss (p=2, weight, z = 0)": _loss(_multi_margin(2)),
    "adam": _optimizer("adam", lr=1e-2),
    "adam (weight decay, amsgrad)": _optimizer("adam", lr=1e-2, weight_decay=0.1, amsgrad=True),
    "adamw": _optimizer("adamw", lr=1e-2, weight_decay=0.1),
    "sgd": _optimizer("sgd", lr=1e-1),
    "sgd (momentum, dampening, weight decay)": _optimizer("sgd", lr=1e-1, momentum=0.9, dampening=0.3,
                                                          weight_decay=0.1),
    "sgd (nesterov)": _optimizer("sgd", lr=1e-1, momentum=0.9, nesterov=True),
    "adagrad": _optimizer("adagrad", lr=1e-1),
    "adagrad (lr_decay, weight decay, initial accumulator)": _optimizer(
        "adagrad", lr=1e-1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
    "rmsprop": _optimizer("rmsprop", lr=1e-2),
    "rmsprop (centered, momentum, weight decay)": _optimizer("rmsprop", lr=1e-2, momentum=0.9, centered=True,
                                                             weight_decay=0.1),
    "simplecnn (2 training steps, then eval)": _simplecnn,
}


def run(dtype: str = "float64", seed: int = 0) -> int:
    """Check every component in ``dtype`` ("float64" or "float32"); print the table. 0 if all ok, else 1."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"gradcheck: dtype must be 'float32' or 'float64', got {dtype!r}")
    np_dtype = np.dtype(dtype)
    tolerance = TOLERANCES[np_dtype]
    rng = np.random.default_rng(seed)
    width = max(map(len, COMPONENTS))
    print(f"gradcheck: scratch vs torch {torch.__version__} autograd, {dtype}, seed {seed}; tolerances "
          f"(max rel error): forward {tolerance.forward:g}, gradients {tolerance.backward:g}")
    print(f"{'component':<{width}} | {'max abs error':>13} | {'max rel error':>13} | ok")
    print(f"{'-' * width}-|-{'-' * 13}-|-{'-' * 13}-|---")
    failures = []
    for name, check in COMPONENTS.items():
        try:
            with warnings.catch_warnings():   # torch's note that "same" with an even kernel copies the input
                warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
                comparisons = check(np_dtype, rng)
        except Exception as error:  # a crash is a failed check, reported in the table like any other
            failures.append(f"{name}: {type(error).__name__}: {error}")
            print(f"{name:<{width}} | {'-':>13} | {'-':>13} | FAILED")
            continue
        problems = [p for p in (c.problem(tolerance) for c in comparisons) if p is not None]
        failures += [f"{name}: {p}" for p in problems]
        abs_error = max(c.abs_error for c in comparisons)
        rel_error = max(c.rel_error for c in comparisons)
        print(f"{name:<{width}} | {abs_error:>13.3g} | {rel_error:>13.3g} | {'FAILED' if problems else 'ok'}")
    if failures:
        print(f"\n{len(failures)} value(s) disagree:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print(f"\nall {len(COMPONENTS)} components agree with torch")
    return 0

"""The SimpleCNN network, assembled from the scratch layers.

    x (N, 1, 28, 28)
    conv1 5x5, 1->32     -> (N, 32, 24, 24)
    batch1, relu         -> (N, 32, 24, 24)
    max1 2x2             -> (N, 32, 12, 12)
    dropout1 p=0.45
    conv2 5x5, 32->64    -> (N, 64, 8, 8)
    batch2, relu         -> (N, 64, 8, 8)
    max2 2x2             -> (N, 64, 4, 4)
    dropout2 p=0.35
    flatten              -> (N, 1024)
    fc1, relu            -> (N, 512)
    fc2                  -> (N, 10) logits

The forward pass runs the layers in order; the backward pass runs them in reverse, each turning
dL/d(its output) into dL/d(its input) and storing its parameter gradients on the way (the chain rule,
one layer at a time). The layer names are the attribute names of the PyTorch model, so the state dict
keys (``conv1.weight``, ``batch1.running_mean``, ...) are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from . import parallel
from .activations import Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout
from .inference import inference_forward, is_relu_maxpool
from .linear import Linear
from .memory import EVAL_BATCH_SIZE
from .module import Layer, Parameter, check_state_dict, grad_enabled, no_grad, require_float_dtype
from .pool import AvgPool2d, MaxPool2d

#: The guide's choices for the network's nonlinearity and pooling (``SimpleCNN(activation=, pool=)``); the
#: first of each is the guide's network. None of them has parameters, so the state dict never changes.
ACTIVATIONS: dict[str, Callable[..., Layer]] = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}
POOLS: dict[str, Callable[..., Layer]] = {"max": MaxPool2d, "avg": AvgPool2d}


def check_choice(option: str, value: str, choices) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming the option and the choices.

    Chapter: docs/01-overview.md.
    """
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def relus_before_maxpools(layers: dict[str, Layer]) -> dict[str, str]:
    """``{relu name: max-pool name}`` for every ``ReLU`` directly followed by a ``MaxPool2d``: the pairs
    that :meth:`Sequential.forward` runs as one step, ``max_pool(x, floor=0)``.

    Chapter: docs/01-overview.md.
    """
    names = list(layers)
    return {relu: pool for relu, pool in zip(names, names[1:], strict=False)
            if is_relu_maxpool(layers[relu], layers[pool])}


def training_steps(layers: dict[str, Layer]) -> list[tuple[str, Layer, dict[str, object]]]:
    """``(name, layer, keywords)`` in the order :meth:`Sequential.forward` runs them with gradients on, each
    with the keyword arguments its ``forward`` gets there:

    * each ReLU of :func:`relus_before_maxpools` is left out and its max-pool runs with ``floor=0``, under
      the name ``relu1+max1``;
    * a ``BatchNorm2d`` right after a ``Conv2d`` runs with ``overwrite_input=True``: the convolution's
      output is a new array that no cache and no caller holds (:func:`returns_a_new_array`; not so for the
      exercises' learner layers, whose forward is their own), so batch-norm keeps ``x_hat`` in its memory
      (docs/05-batch-normalization.md, "Memory");
    * every other layer runs as it is (no keywords).

    Backward runs them in reverse.

    Chapter: docs/01-overview.md.
    """
    merged = relus_before_maxpools(layers)
    relu_before = {pool: relu for relu, pool in merged.items()}
    steps: list[tuple[str, Layer, dict[str, object]]] = []
    previous: Layer | None = None
    for name, layer in layers.items():
        if name in merged:
            continue
        if name in relu_before:
            steps.append((f"{relu_before[name]}+{name}", layer, {"floor": 0.0}))
        elif isinstance(layer, BatchNorm2d) and returns_a_new_array(previous):
            steps.append((name, layer, {"overwrite_input": True}))
        else:
            steps.append((name, layer, {}))
        previous = layer
    return steps


def returns_a_new_array(layer: Layer | None) -> bool:
    """Whether ``layer``'s forward output is a new array that neither its cache nor anything else holds:
    scratch's own ``Conv2d.forward`` (a product's result; its cache keeps the patch matrix), not a subclass
    with a forward of its own.

    Chapter: docs/01-overview.md.
    """
    return isinstance(layer, Conv2d) and type(layer).forward is Conv2d.forward


class StartsUpdates(Protocol):
    """An optimizer that can start a parameter's update before ``step()`` (every one in scratch/optim.py).

    Chapter: docs/09-adam.md.
    """

    params: Mapping[str, Parameter]

    def start_update(self, names: Iterable[str]) -> None: ...


class Sequential:
    """Named layers run in order. Parameters and state are keyed ``<layer name>.<parameter name>``.

    One merge, in training as in evaluation: a ``ReLU`` followed by a ``MaxPool2d`` runs as the max-pool
    alone, with every window's maximum started at 0 (``max(relu(window)) = max(0, window)``;
    :meth:`MaxPool2d.forward` with ``floor=0``). The ReLU's two passes over the (four times larger)
    input, forward and backward, are skipped; the outputs and gradients are those of the two layers,
    bit for bit (for a finite upstream gradient). The skipped ReLU keeps no cache.

    And one reuse of memory: a batch-norm layer right after a convolution keeps its ``x_hat`` in the
    convolution's output, which nothing else reads (:func:`training_steps`).

    Chapter: docs/01-overview.md.
    """

    def __init__(self, layers: dict[str, Layer]):
        self.layers = dict(layers)
        for name, layer in self.layers.items():
            layer.name = name  # error messages then name the layer as the model does
        self.training = True

    def forward(self, x: np.ndarray, dropout_masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Run every layer. ``dropout_masks`` maps a dropout layer's name to the keep-mask it must use.

        Under :func:`no_grad` (and without masks) the layers run as :func:`inference_forward`'s merged
        steps: the same output in fewer passes over memory (scratch/inference.py)."""
        if not grad_enabled() and not dropout_masks:
            return inference_forward(self.layers, x)
        masks = dropout_masks or {}
        for name, layer, keywords in training_steps(self.layers):
            if isinstance(layer, Dropout) and name in masks:
                x = layer.forward(x, masks[name])
            else:
                x = layer.forward(x, **keywords)   # training_steps says which
        return x

    __call__ = forward

    def backward(self, grad_out: np.ndarray, optimizer: StartsUpdates | None = None) -> np.ndarray | None:
        """Back-propagate ``dL/d(output)`` through every layer in reverse; fills each ``Parameter.grad``.

        With an ``optimizer`` (any of scratch/optim.py), each layer's parameters are handed to
        ``optimizer.start_update`` as soon as the layer's backward pass has filled their gradients: their
        update runs on another core while the layers below go on, and the caller's ``optimizer.step()``
        finishes the step (docs/09-adam.md, "Speed"). The first layer with parameters is left to ``step()``:
        no backward pass is left to overlap with. The same updates as ``backward`` then ``step``."""
        grad: np.ndarray | None = grad_out
        steps = list(reversed(training_steps(self.layers)))        # a merged ReLU is its max-pool's
        started_early = [layer for _, layer, _ in steps if layer.parameters()][:-1]   # all but the first
        for _, layer, _ in steps:
            if grad is None:
                raise RuntimeError(f"{layer.name}: the layer after it computed no input gradient")
            grad = layer.backward(grad)
            if optimizer is not None and layer in started_early:
                names = [f"{layer.name}.{key}" for key in layer.parameters()]
                optimizer.start_update([name for name in names if name in optimizer.params])
        return grad

    def parameters(self) -> dict[str, Parameter]:
        return {f"{name}.{key}": p for name, layer in self.layers.items()
                for key, p in layer.parameters().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{name}.{key}": v for name, layer in self.layers.items()
                for key, v in layer.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load every array, after checking all keys and shapes; all problems are reported at once."""
        expected = {k: v.shape for k, v in self.state_dict().items()}
        check_state_dict(expected, state, type(self).__name__)
        for name, layer in self.layers.items():
            prefix = f"{name}."
            layer.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def __getattr__(self, name: str) -> Layer:
        layers = self.__dict__.get("layers", {})
        if name in layers:
            return layers[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or layer {name!r}")

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"{type(self).__name__}(\n{inner}\n)"


class PendingMasks(Mapping):
    """Dropout masks being drawn on another core (:func:`parallel.in_background`): ``masks[name]`` waits
    for the draw, ``name in masks`` does not.

    Chapter: docs/06-dropout.md.
    """

    def __init__(self, draw: Future, names: tuple[str, ...]):
        self._draw, self._names = draw, names

    def __getitem__(self, name: str) -> np.ndarray:
        return self._draw.result()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class SimpleCNN(Sequential):
    """The project's network. ``seed`` fixes the initial weights and the dropout masks.

    ``activation`` (relu, leaky_relu, tanh, sigmoid) replaces the three ReLUs and ``pool`` (max, avg)
    the two 2x2 poolings; the defaults are the guide's network. The layers keep their names (``relu1``,
    ``max1``, ...) whatever they compute, so the state dict keys never change.

    Initialization draws from one NumPy generator and dropout from a second one, both derived from
    ``seed``, so resuming a run only needs the dropout generator's state. A training forward draws both
    dropout masks on another core while the first layers run (the same draws the layers would make;
    docs/06-dropout.md).

    Chapter: docs/01-overview.md.
    """

    input_shape = (1, 28, 28)
    dropout_names = ("dropout1", "dropout2")

    def __init__(self, num_classes: int = 10, *, activation: str = "relu", pool: str = "max",
                 seed: int | None = None, dtype=np.float32):
        self.dtype = require_float_dtype(dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"SimpleCNN: num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.pool = check_choice("pool", pool, POOLS)
        act, pool_layer = ACTIVATIONS[activation], POOLS[pool]
        init_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        init_rng = np.random.default_rng(init_seed)
        self.dropout_rng = np.random.default_rng(dropout_seed)
        super().__init__({
            "conv1": Conv2d(1, 32, 5, rng=init_rng, dtype=dtype, need_input_grad=False),
            "batch1": BatchNorm2d(32, dtype=dtype),
            "relu1": act(),
            "max1": pool_layer(2, 2),
            "dropout1": Dropout(0.45, rng=self.dropout_rng),
            "conv2": Conv2d(32, 64, 5, rng=init_rng, dtype=dtype),
            "batch2": BatchNorm2d(64, dtype=dtype),
            "relu2": act(),
            "max2": pool_layer(2, 2),
            "dropout2": Dropout(0.35, rng=self.dropout_rng),
            "flatten": Flatten(),
            "fc1": Linear(1024, 512, rng=init_rng, dtype=dtype),
            "relu3": act(),
            "fc2": Linear(512, self.num_classes, rng=init_rng, dtype=dtype),
        })

    def forward(self, x: np.ndarray, dropout_masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"SimpleCNN: expected images of shape (N, 1, 28, 28), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        dropouts = [self.layers[name] for name in self.dropout_names]
        if dropout_masks is None and grad_enabled() and all(
                isinstance(layer, Dropout) and layer.training and layer.p > 0 for layer in dropouts):
            return self._forward_drawing_masks_meanwhile(x)
        return super().forward(x, dropout_masks)

    def _forward_drawing_masks_meanwhile(self, x: np.ndarray) -> np.ndarray:
        """A training forward whose dropout masks are drawn on another core while conv1 and batch1 run.
        They are the draws the two dropout layers would make themselves, in the same order, from the same
        generator (:meth:`sample_dropout_masks`), so the step is bit-identical; drawing 360,000 random
        32-bit numbers takes about 0.3 ms that the other core has partly spare during conv1 (docs/06-dropout.md). A
        forward that fails leaves the generator as it found it."""
        generators = [layer.rng for layer in self.layers.values() if isinstance(layer, Dropout)]
        states = [rng.bit_generator.state for rng in generators]
        draw = parallel.in_background(lambda: self.sample_dropout_masks(len(x)))
        try:
            return super().forward(x, PendingMasks(draw, self.dropout_names))
        except BaseException:
            draw.exception()                  # wait for the draw, then undo it
            for rng, state in zip(generators, states, strict=True):
                rng.bit_generator.state = state
            raise

    __call__ = forward

    def sample_dropout_masks(self, batch_size: int) -> dict[str, np.ndarray]:
        """Fresh keep-masks for both dropout layers, drawn from the model's dropout generator: handed to
        ``forward(x, dropout_masks=...)`` here and to the PyTorch twin, so that both drop the same units.
        Both convolutions compute batch last (scratch/conv.py) and the layers after them keep that layout,
        so the dropout layers see batch-last inputs: the masks are drawn batch last, as the layers would
        draw them themselves."""
        shapes = {"dropout1": (batch_size, 32, 12, 12), "dropout2": (batch_size, 64, 4, 4)}
        masks = {}
        for name, shape in shapes.items():
            layer = self.layers[name]
            assert isinstance(layer, Dropout)
            masks[name] = layer.sample_mask(shape, batch_last=True)
        return masks

    def predict_logits(self, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
        """Eval-mode logits for many images, in batches of ``batch_size`` (:data:`~scratch.memory.EVAL_BATCH_SIZE`:
        arrays under glibc's 32 MiB mmap threshold), keeping no backward caches."""
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return np.concatenate([self.forward(images[i:i + batch_size])
                                       for i in range(0, len(images), batch_size)])
        finally:
            self.train(was_training)

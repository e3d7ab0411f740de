"""The shape every scratch layer shares: parameters, gradients, buffers, a train/eval switch.

A layer here is a small object with

* parameters, each a :class:`Parameter` holding ``data`` and the ``grad`` that ``backward`` fills in,
  stored under PyTorch's names (``weight``, ``bias``);
* buffers: arrays that are state but not learned (batch-norm's ``running_mean``, ...);
* ``forward(x)``, which computes the output and caches what the backward pass needs;
* ``backward(grad_out)``, which takes dL/d(output), stores dL/d(parameter) in each ``Parameter.grad``
  and returns dL/d(input).

Unlike PyTorch, ``backward`` *overwrites* ``grad`` rather than adding to it: one forward, one backward,
one optimizer step. That keeps the training loop free of ``zero_grad`` bookkeeping.
"""

from __future__ import annotations

import contextlib

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

_grad_enabled = True


def grad_enabled() -> bool:
    """Whether forward passes keep the caches a backward pass needs (see :func:`no_grad`).

    Chapter: docs/02-layer-anatomy.md.
    """
    return _grad_enabled


@contextlib.contextmanager
def no_grad():
    """Like ``torch.no_grad()``: forward passes inside keep no backward caches (evaluation, inference).

    Chapter: docs/02-layer-anatomy.md.
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Parameter:
    """A learnable array and the gradient of the loss with respect to it (``None`` before backward).

    Chapter: docs/02-layer-anatomy.md.
    """

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: parameter/buffer bookkeeping and the training switch. Subclasses add the math.

    Chapter: docs/02-layer-anatomy.md.
    """

    #: Names of the array attributes that are state but not parameters (saved in the state dict).
    buffer_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.training = True
        self.name = type(self).__name__
        self._cache = None  # what the last forward kept for backward (None: nothing pending)

    # --- the two methods every layer implements ---------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        """dL/d(input); ``None`` only for a layer told that its input needs no gradient (the first one)."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _keep(self, cache):
        """Store ``cache`` for backward. Under :func:`no_grad` nothing is stored, and a cache still
        waiting for its backward pass is left alone (as PyTorch keeps a graph built before)."""
        if _grad_enabled:
            self._cache = cache

    def _take_cache(self):
        """The cache of the last forward, handed to backward exactly once."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{self.name}: backward called without a forward pass to differentiate "
                               "(forward passes under no_grad() keep nothing to differentiate)")
        self._cache = None
        return cache

    # --- bookkeeping -------------------------------------------------------------------------------
    def parameters(self) -> dict[str, Parameter]:
        """The layer's parameters by name, in the order they were created (as PyTorch registers them)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, Parameter)}

    def buffers(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.buffer_names}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters then buffers, keyed like ``torch.nn.Module.state_dict()`` (copies)."""
        state = {k: p.data.copy() for k, p in self.parameters().items()}
        state.update({k: np.array(v, copy=True) for k, v in self.buffers().items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays in place (an optimizer holding these parameters keeps working)."""
        for key, param in self.parameters().items():
            param.data[...] = state[key]
        for key in self.buffer_names:
            getattr(self, key)[...] = state[key]

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def __repr__(self) -> str:
        return f"{self.name}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""


def check_input(layer: Layer, x: np.ndarray, ndim: int, layout: str, dtype: np.dtype | None = None,
                channels: int | None = None, channel_axis: int = 1) -> None:
    """Raise a ``ValueError`` naming ``layer`` when ``x`` is not what it can take.

    ``layout`` names the expected axes (``"(N, C, H, W)"``) for the message. ``dtype`` is the layer's
    parameter dtype: inputs must match it, as in PyTorch, so that float32 and float64 never mix silently.

    Chapter: docs/02-layer-anatomy.md.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{layer.name}: expected a NumPy array {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{layer.name}: expected a {ndim}-D input {layout}, got shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{layer.name}: expected a float32 or float64 input, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{layer.name}: expected dtype {np.dtype(dtype)} (the layer's parameters), "
                         f"got {x.dtype}")
    if channels is not None and x.shape[channel_axis] != channels:
        raise ValueError(f"{layer.name}: expected {channels} channels on axis {channel_axis} "
                         f"{layout}, got shape {x.shape}")


def check_image_input(layer: Layer, x: np.ndarray, dtype: np.dtype | None = None,
                      channels: int | None = None) -> tuple[np.ndarray, bool]:
    """Check an image input, batched (N, C, H, W) or, as torch takes it, one unbatched (C, H, W).

    Returns ``(x4, unbatched)``: the input as (N, C, H, W) (a view with N = 1 when unbatched) and whether
    the caller must drop that axis again from its output and from the gradient it returns.

    Chapter: docs/02-layer-anatomy.md.
    """
    if isinstance(x, np.ndarray) and x.ndim == 3:
        check_input(layer, x, 3, "(C, H, W)", dtype, channels, channel_axis=0)
        return x[None], True
    check_input(layer, x, 4, "(N, C, H, W) or unbatched (C, H, W)", dtype, channels)
    return x, False


def per_channel(v: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """(C,) -> (1, C, H, W) for images of ``shape`` (N, C, H, W): each channel's value repeated over its
    plane, to broadcast against the whole batch. Without ``shape``: (1, C, 1, 1).

    Both broadcast to the same result, but against (1, C, 1, 1) NumPy's inner loop runs over one plane
    (H*W numbers) at a time, and against (1, C, H, W) over a whole image. Measured on batch-norm 1's
    input ((64, 32, 24, 24), float32): ``x - mu`` 0.39 ms with (1, C, 1, 1), 0.20 ms with (1, C, H, W).
    Batch-norm's per-channel constants and a convolution's bias use it.

    Chapter: docs/05-batch-normalization.md.
    """
    if shape is None:
        return v.reshape(1, -1, 1, 1)
    c, h, w = shape[1:]
    return np.repeat(v, h * w).reshape(1, c, h, w)


def is_batch_last(a: np.ndarray) -> bool:
    """Whether the (N, C, H, W) array ``a`` is laid out *batch last* in memory, as a (C, H, W, N) array.

    A convolution that computes batch last returns its output that way (scratch/conv.py): an (N, C, H, W)
    view whose indexing means what it always means, and whose memory holds each channel's values as one
    run, the N images' values of a pixel side by side. Batch-norm, max-pool and dropout keep that layout
    (their outputs and input gradients are laid out as their inputs), so that the next convolution finds
    its input batch last without a transpose, and the max-pool's windows are slices of runs of N numbers.

    Chapter: docs/03-convolution.md.
    """
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(1, 2, 3, 0).flags.c_contiguous


def empty_laid_out_as(like: np.ndarray, shape: tuple[int, ...] | None = None, dtype=None) -> np.ndarray:
    """A new (..., N, C, H, W) array of ``shape`` (``like``'s by default) whose last four axes are laid out
    as ``like`` is: batch last (:func:`is_batch_last`) or NCHW. Leading axes, if any, are outermost (max-pool
    keeps the kh*kw entries of its windows as (kh*kw, N, C, Ho, Wo), each entry laid out as the input).

    Chapter: docs/03-convolution.md.
    """
    shape = like.shape if shape is None else shape
    dtype = like.dtype if dtype is None else dtype
    if not is_batch_last(like):
        return np.empty(shape, dtype)
    *lead, n, c, h, w = shape
    k = len(lead)
    return np.empty((*lead, c, h, w, n), dtype).transpose(*range(k), k + 3, k, k + 1, k + 2)


def memory_order(a: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """``a`` with its axes in the order in which ``like``'s memory holds them (``like`` defaults to ``a``):
    ``a`` itself for NCHW, the (C, H, W, N) view for batch last. An elementwise pass cuts axis 0 of that
    view between the cores, so that every part is a block of whole runs: images for NCHW, channels for
    batch last. A per-channel constant of shape (1, C, 1, 1) becomes (C, 1, 1, 1) alongside.

    Chapter: docs/03-convolution.md.
    """
    like = a if like is None else like
    return a.transpose(1, 2, 3, 0) if a.ndim == 4 and is_batch_last(like) else a


def laid_out_as(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``a`` with ``like``'s memory layout: ``a`` itself where it has it, else a copy that does. (A gradient
    that comes back NCHW to a layer whose cache is batch last, or the other way round.)

    Chapter: docs/03-convolution.md.
    """
    has_layout = is_batch_last(a) if is_batch_last(like) else a.flags.c_contiguous
    if has_layout:
        return a
    out = empty_laid_out_as(like, a.shape, a.dtype)
    out[...] = a
    return out


def as_pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``; anything else is an error naming ``what``.

    Chapter: docs/02-layer-anatomy.md.
    """
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def require_float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype, if it is float32 or float64 (else ValueError) (docs/02-layer-anatomy.md)."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class StateDictError(ValueError):
    """A state dict that does not fit its model or optimizer: every missing, unexpected or mis-shaped
    key at once.

    Chapter: docs/02-layer-anatomy.md.
    """


def check_state_dict(expected_shapes: dict[str, tuple[int, ...]], state: dict, owner: str) -> None:
    """Raise :class:`StateDictError` listing every missing, unexpected and mis-shaped key of ``state``
    (``owner`` names the model or optimizer it was meant for).

    Chapter: docs/02-layer-anatomy.md.
    """
    problems = [f"missing key {k!r}" for k in expected_shapes if k not in state]
    problems += [f"unexpected key {k!r}" for k in state if k not in expected_shapes]
    problems += [f"{k!r}: expected shape {shape}, got {np.shape(state[k])}"
                 for k, shape in expected_shapes.items() if k in state and np.shape(state[k]) != shape]
    if problems:
        raise StateDictError(f"state dict does not fit {owner}: " + "; ".join(problems))

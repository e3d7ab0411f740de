"""See the backward pass: for one test image, each layer's output beside dL/d(that output).

``simplecnn evaluate --plots --image INDEX`` runs one image through the network in eval mode (running
statistics, no dropout), takes the cross-entropy against the image's true label, and runs the backward
pass. Each layer's output (the forward pass) and the gradient the backward pass hands that layer
(``grad_out``, i.e. dL/d(output)) are captured and drawn side by side (docs/01-overview.md explains what
to look for).

* :func:`numpy_trace` runs the scratch layers one by one, exactly as ``Sequential.forward`` and
  ``Sequential.backward`` do, and keeps a copy of what passes between them: the values shown are the
  NumPy implementation's own. Training is untouched (nothing here runs during training).
* :func:`torch_trace` puts forward hooks on the torch model's layers and ``retain_grad`` on their
  outputs; a step with no module of its own (``F.relu``, ``torch.flatten``) is read as the input of the
  module after it.
* :func:`plot_backprop` draws a :class:`Trace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKPROP_FILE = "backprop.png"
#: Channels drawn per convolutional layer (the figure says how many there are).
SHOWN_CHANNELS = 8


@dataclass
class LayerTrace:
    """One layer's output for one image and dL/d(that output), batch axis dropped."""

    name: str
    output: np.ndarray
    grad: np.ndarray


@dataclass
class Trace:
    """What one forward and one backward pass through the network left behind, for one image."""

    layers: list[LayerTrace]
    loss: float
    predicted: int
    label: int


def _check_one_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, C, H, W), got {getattr(image, 'shape', type(image))}")


def numpy_trace(model: Any, image: np.ndarray, label: int) -> Trace:
    """The scratch model's own forward outputs and backward ``grad_out`` for each layer, in eval mode.

    ``model`` is a ``scratch.SimpleCNN`` (any ``Sequential``); ``image`` is ``(1, 1, 28, 28)``, normalized.
    The loop is ``Sequential.forward`` then ``Sequential.backward`` with a copy kept at each step.
    """
    from scratch.loss import CrossEntropyLoss

    _check_one_image(image)
    was_training = model.training
    model.eval()
    outputs: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}
    try:
        x = image.astype(model.dtype)
        for name, layer in model.layers.items():
            x = layer.forward(x)
            outputs[name] = x.copy()
        loss_fn = CrossEntropyLoss()
        loss = loss_fn(x, np.array([label], dtype=np.int64))
        grad: np.ndarray | None = loss_fn.backward()
        for name, layer in reversed(model.layers.items()):
            assert grad is not None, f"{name}: the layer after it computed no input gradient"
            grads[name] = grad.copy()
            grad = layer.backward(grad)  # conv1 computes no input gradient: None at the very end
    finally:
        model.train(was_training)
    layers = [LayerTrace(name, outputs[name][0], grads[name][0]) for name in model.layers]
    return Trace(layers, float(loss), int(np.argmax(x[0])), int(label))


def torch_trace(model: Any, image: np.ndarray, label: int, names: Sequence[str], device: Any = "cpu") -> Trace:
    """The same capture for a ``torch_impl.SimpleCNN``, through forward hooks and ``retain_grad``.

    ``names`` are the scratch model's layer names in order (``conv1``, ``batch1``, ``relu1``, ...). A name
    that is a module of ``model`` shows that module's output; any other name (a functional step such as
    ``F.relu`` or ``torch.flatten``) shows the input of the next module in ``names`` (the logits when none
    follows), which is that step's output.
    """
    import torch
    import torch.nn.functional as F

    _check_one_image(image)
    modules = dict(model.named_children())
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def capture(module, args, output):
            for tensor in (args[0], output):
                if tensor.requires_grad:
                    tensor.retain_grad()
            inputs[name], outputs[name] = args[0], output
        return capture

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    was_training = model.training
    try:
        model.eval()
        dtype = next(model.parameters()).dtype
        with torch.enable_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(image)).to(device=device, dtype=dtype))
            loss = F.cross_entropy(logits, torch.tensor([label], device=device))
            logits.retain_grad()
            loss.backward()
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    def tensor_for(index: int) -> torch.Tensor:
        name = names[index]
        if name in outputs:
            return outputs[name]
        following = [n for n in names[index + 1:] if n in inputs]
        return inputs[following[0]] if following else logits

    layers = []
    for index, name in enumerate(names):
        tensor = tensor_for(index)
        if tensor.grad is None:
            raise RuntimeError(f"{name}: the backward pass left no gradient for this layer's output")
        layers.append(LayerTrace(name, tensor.detach().cpu().numpy()[0].copy(),
                                 tensor.grad.detach().cpu().numpy()[0].copy()))
    return Trace(layers, float(loss.item()), int(logits[0].argmax().item()), int(label))


def backend_trace(backend: Any, image: np.ndarray, label: int) -> Trace:
    """:func:`numpy_trace` or :func:`torch_trace` for a ``simplecnn.backends`` backend."""
    if backend.impl == "numpy":
        return numpy_trace(backend.model, image, label)
    import scratch

    names = list(scratch.SimpleCNN(seed=0).layers)  # the scratch layer names, for the same rows
    return torch_trace(backend.model, image, label, names, backend.device)


def _unchanged(trace: Trace) -> list[str]:
    """Layers whose output and gradient are their input's, reshaped at most (eval-mode dropout, flatten)."""
    same = []
    for before, after in zip(trace.layers, trace.layers[1:], strict=False):
        if (before.output.size == after.output.size and np.array_equal(before.output.ravel(), after.output.ravel())
                and np.array_equal(before.grad.ravel(), after.grad.ravel())):
            same.append(after.name)
    return same


def plot_backprop(trace: Trace, image: np.ndarray, path: str | Path, title: str = "") -> None:
    """One tall figure: per row, a layer's first channels (left) and dL/d(them) (right, diverging at 0).

    Rows whose output only repeats the row above (dropout in eval mode, flatten) are left out and named
    under the title. Vector layers (fc1, fc2) are drawn as bars, one per unit.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.gridspec import GridSpec

    from .plots import _pyplot, _save

    plt = _pyplot()
    skipped = _unchanged(trace)
    rows = [layer for layer in trace.layers if layer.name not in skipped]
    k = SHOWN_CHANNELS
    fig = plt.figure(figsize=(2 * k * 0.95 + 1.5, 1.15 * (len(rows) + 1) + 1.2))
    grid = GridSpec(len(rows) + 1, 2 * k + 1, figure=fig, width_ratios=[1] * k + [0.35] + [1] * k,
                    hspace=0.55, wspace=0.08, top=0.96, bottom=0.03)
    heading = (f"predicted {trace.predicted}, true {trace.label}, loss {trace.loss:.4f}"
               + (f"   ({title})" if title else ""))
    fig.suptitle(heading, fontsize=13, y=0.995)

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(image.reshape(image.shape[-2:]), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel("input", rotation=0, ha="right", va="center")
    note = fig.add_subplot(grid[0, 1:])
    note.axis("off")
    lines = [f"left: the layer's output (forward pass), first {k} channels of each, viridis, row's own range",
             "right: dL/d(that output) as the backward pass hands it to the layer; red > 0 > blue, white = 0",
             "eval mode: batch-norm uses its running statistics, dropout is the identity"]
    if skipped:
        lines.append(f"not shown (output = the row above's, reshaped at most): {', '.join(skipped)}")
    note.text(0.0, 0.5, "\n".join(lines), va="center", fontsize=9.5)

    for r, layer in enumerate(rows, start=1):
        bound = float(np.max(np.abs(layer.grad))) or 1.0
        shape = "x".join(str(d) for d in layer.output.shape)
        label = f"{layer.name}\n{shape}"
        if layer.output.ndim == 3:
            shown = min(k, layer.output.shape[0])
            low, high = float(layer.output[:shown].min()), float(layer.output[:shown].max())
            for c in range(shown):
                a = fig.add_subplot(grid[r, c])
                a.imshow(layer.output[c], cmap="viridis", vmin=low, vmax=high)
                g = fig.add_subplot(grid[r, k + 1 + c])
                g.imshow(layer.grad[c], cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
                for axis in (a, g):
                    axis.set_xticks([])
                    axis.set_yticks([])
                if c == 0:
                    a.set_ylabel(label, rotation=0, ha="right", va="center")
                    a.set_title(f"[{low:.2g}, {high:.2g}]", fontsize=7, loc="left")
                    g.set_title(f"±{bound:.2g}", fontsize=7, loc="left")
        else:
            units = np.arange(layer.output.size)
            a = fig.add_subplot(grid[r, :k])
            a.bar(units, layer.output, width=1.0, color="tab:green")
            g = fig.add_subplot(grid[r, k + 1:])
            g.bar(units, layer.grad, width=1.0, color=np.where(layer.grad >= 0, "tab:red", "tab:blue"))
            g.set_ylim(-bound * 1.1, bound * 1.1)
            for axis in (a, g):
                axis.axhline(0.0, color="black", linewidth=0.5)
                axis.tick_params(labelsize=7)
                axis.set_xlim(-0.5, layer.output.size - 0.5)
                if layer.output.size <= 10:
                    axis.set_xticks(units)
            a.set_ylabel(label, rotation=0, ha="right", va="center")
    _save(fig, Path(path))

"""See the backward pass: each layer's output for one test image and dL/d(that output), per implementation.

The loss is the cross-entropy of the image's logits against its true label. The network is in eval mode
(running batch-norm statistics, dropout the identity) but a backward pass still runs, exactly the one
training runs. The NumPy side records its own values: the output each scratch layer's ``forward`` returns
and the ``grad_out`` its ``backward`` receives (the layers are run one by one here, so training is
untouched). The torch side records the same with forward hooks and ``register_full_backward_hook``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The layers both implementations have as modules (torch applies ReLU and flatten functionally).
SHOWN_LAYERS = ("conv1", "batch1", "max1", "dropout1", "conv2", "batch2", "max2", "dropout2", "fc1", "fc2")
MAX_CHANNELS = 8  # feature maps shown per layer
#: The files :func:`plot_backward_trace` writes, one per layer (checked up front by ``evaluate --plots``).
BACKPROP_FILES = tuple(f"backprop_{i:02d}_{name}.png" for i, name in enumerate(SHOWN_LAYERS, start=1))


@dataclass
class BackwardTrace:
    """Per layer name: its output (forward) and dL/d(output) (backward), for one image (batch of 1)."""

    outputs: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    loss: float
    predicted: int
    label: int


def trace_numpy(model, image: np.ndarray, label: int) -> BackwardTrace:
    """Run scratch ``model`` (a ``scratch.Sequential``) in eval mode on ``image`` (1, 1, 28, 28) and back."""
    from scratch.loss import cross_entropy

    was_training = model.training
    model.eval()
    try:
        outputs: dict[str, np.ndarray] = {}
        x = image
        for name, layer in model.layers.items():
            x = layer.forward(x)
            outputs[name] = x.copy()
        loss, grad = cross_entropy(x, np.array([label]))
        grads: dict[str, np.ndarray] = {}
        for name, layer in reversed(model.layers.items()):
            grads[name] = grad.copy()           # the grad_out this layer's backward receives
            grad = layer.backward(grad)
    finally:
        model.train(was_training)
    keep = [n for n in SHOWN_LAYERS if n in outputs]
    return BackwardTrace({n: outputs[n] for n in keep}, {n: grads[n] for n in keep}, loss,
                         int(np.argmax(x)), label)


def trace_torch(model, image: np.ndarray, label: int) -> BackwardTrace:
    """The same for a ``torch_impl.SimpleCNN``, via forward hooks and full backward hooks."""
    import torch
    import torch.nn.functional as F

    outputs: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}
    handles = []
    for name in SHOWN_LAYERS:
        module = getattr(model, name)

        def save_output(_m, _inp, out, name=name):
            outputs[name] = out.detach().cpu().numpy().copy()

        def save_grad(_m, _gin, gout, name=name):
            grads[name] = gout[0].detach().cpu().numpy().copy()

        handles += [module.register_forward_hook(save_output), module.register_full_backward_hook(save_grad)]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.tensor(image, dtype=param.dtype, device=param.device, requires_grad=True)
        logits = model(x)
        loss = F.cross_entropy(logits, torch.tensor([label], device=param.device))
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return BackwardTrace(outputs, grads, float(loss.item()), int(logits.argmax().item()), label)


def _maps(a: np.ndarray) -> np.ndarray:
    """(channels, H, W) to draw: conv maps as they are, a vector as one row image."""
    a = a[0]
    return a[:MAX_CHANNELS] if a.ndim == 3 else a.reshape(1, 1, -1)


def plot_backward_trace(trace: BackwardTrace, out: Path, image_index: int, impl: str) -> list[Path]:
    """One PNG per layer, ``backprop_01_conv1.png`` ...: forward maps (top row) beside gradients (bottom)."""
    from .plots import _pyplot

    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(trace.outputs, start=1):
        y, g = _maps(trace.outputs[name]), _maps(trace.grads[name])
        n = y.shape[0]
        fig, axes = plt.subplots(2, n, figsize=(max(1.6 * n, 6), 3.6), squeeze=False)
        glim = float(np.abs(g).max()) or 1.0
        for k in range(n):
            axes[0, k].imshow(y[k], cmap="viridis", aspect="auto")
            im = axes[1, k].imshow(g[k], cmap="RdBu_r", vmin=-glim, vmax=glim, aspect="auto")
            axes[0, k].set_title(f"ch {k}" if y.shape[0] > 1 else "", fontsize=8)
            for ax in (axes[0, k], axes[1, k]):
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_ylabel("output", fontsize=8)
        axes[1, 0].set_ylabel("dL/d output", fontsize=8)
        fig.subplots_adjust(top=0.8)
        fig.colorbar(im, ax=list(axes[1]), shrink=0.8)
        total = trace.outputs[name].shape[1]
        shown = f"first {n} of {total} channels" if trace.outputs[name].ndim == 4 else f"{total} units"
        fig.suptitle(f"{name} ({impl}), test image {image_index}: predicted {trace.predicted}, "
                     f"true {trace.label}, loss {trace.loss:.4g}\n{shown}; gradient colour centred at 0",
                     fontsize=9)
        path = out / f"backprop_{i:02d}_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def check_image_index(index: int, count: int) -> str | None:
    """Why ``--image index`` is unusable for a test set of ``count`` images, or ``None``."""
    if not 0 <= index < count:
        return f"--image {index}: the test set has {count} images, so INDEX must be in 0..{count - 1}"
    return None


def plot_backward_pass(backend, images: np.ndarray, labels: np.ndarray, index: int, out: Path) -> list[Path]:
    """``evaluate --plots``: trace test image ``index`` through ``backend``'s model and draw every layer."""
    image = np.ascontiguousarray(images[index:index + 1])
    trace = (trace_numpy if backend.impl == "numpy" else trace_torch)(backend.model, image, int(labels[index]))
    return plot_backward_trace(trace, out, index, backend.impl)

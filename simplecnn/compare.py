"""``simplecnn compare``: the NumPy and the PyTorch network trained side by side, step by step.

Both start from the same weights (the NumPy model's initialization, copied through the state dict),
see the same batches and apply the same dropout masks (drawn once, by the NumPy model, and handed to
both). Any difference between them is then rounding: after each step we record the largest relative
difference between their weights, which shows how float32 rounding makes the two drift apart while
float64 stays near machine precision.

What "near" means, measured (batch 64, 282 steps): the gradients of the two sides agree to ~1e-14
relative in float64, but Adam's update ``lr * g / (|g| + eps)`` has slope up to ``lr / eps = 1e5`` for a
gradient element smaller than ``eps``. A few elements of fc1.weight have |g| ~ 1e-9, so a 2e-16
difference in them becomes a 2e-11 difference in the weight: ~4e-10 relative after the first step,
staying below 1e-9 afterwards. In float32 the same amplification starts from ~1e-9 gradient
differences; the networks then take different ReLU and max-pool decisions and drift apart for real
(~0.5 relative after 282 steps), while training equally well.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratch.data import epoch_batches, load_mnist, split_mnist

from .backends import NumpyBackend, TorchBackend, default_lr

#: What ``compare`` writes into its folder.
COMPARE_FILES = ("compare.json", "compare_losses.png", "compare_drift.png")


@dataclass
class CompareConfig:
    epochs: int = 1
    batch_size: int = 64
    lr: float | None = None  # None: the optimizer's default learning rate
    val_split: float = 0.1
    seed: int = 0
    data_dir: str | None = None
    out: str = "runs/compare"
    train_limit: int | None = None
    dtype: str = "float32"
    dataset: str = "mnist"
    optimizer: str = "adam"
    activation: str = "relu"
    pool: str = "max"


#: conv1.bias and conv2.bias feed batch-norm, which subtracts each channel's mean: their true gradient
#: is exactly zero, and what either implementation computes for it is rounding noise (~1e-17 in
#: float64). Adam divides by sqrt(v) + eps, so it turns that noise into steps of up to ``lr`` that
#: differ between the two sides. These biases, and the running means that absorb them, drift apart
#: without changing what the network computes in training mode, so drift is reported with and
#: without them.
BN_ABSORBED = ("conv1.bias", "conv2.bias", "batch1.running_mean", "batch2.running_mean")


def weight_drift(a: dict[str, np.ndarray], b: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> float:
    """``max over tensors of max|a - b| / max|b|``: the largest relative difference of any weight."""
    drift = 0.0
    for key, ref in b.items():
        if ref.dtype.kind != "f" or key in skip:
            continue
        scale = float(np.abs(ref).max()) or 1.0
        drift = max(drift, float(np.abs(a[key].astype(np.float64) - ref).max()) / scale)
    return drift


def compare(config: CompareConfig, log=print) -> dict:
    dtype = np.dtype(config.dtype)
    if config.lr is None:
        config.lr = default_lr(config.optimizer)
    mnist = load_mnist(config.data_dir, dataset=config.dataset)
    choices: dict[str, Any] = {"num_classes": mnist.num_classes, "activation": config.activation,
                               "pool": config.pool, "optimizer": config.optimizer}
    numpy_side = NumpyBackend(config.seed, dtype, config.lr, **choices)
    torch_side = TorchBackend(config.seed, dtype, config.lr, device="cpu", **choices)
    torch_side.load_model_state(numpy_side.model_state())
    torch_side.load_optimizer_state(numpy_side.optimizer_state())
    data = split_mnist(mnist, config.val_split, config.seed, config.train_limit, dtype)
    model = numpy_side.model
    history: dict[str, dict[str, list[float]]] = {
        impl: {"step_losses": [], "val_losses": [], "val_accuracies": []} for impl in ("numpy", "torch")}
    drift, drift_without_absorbed = [], []
    steps_per_epoch = 0
    for epoch in range(1, config.epochs + 1):
        batches = epoch_batches(len(data.train_x), config.batch_size, config.seed, epoch)
        steps_per_epoch = len(batches)
        from .run import _progress_bar

        bar = _progress_bar(len(batches), 0, f"compare epoch {epoch}/{config.epochs}")
        for idx in batches:
            bar.update(1)
            x, y = data.train_x[idx], data.train_y[idx]
            masks = model.sample_dropout_masks(len(idx))
            history["numpy"]["step_losses"].append(numpy_side.train_step(x, y, masks))
            history["torch"]["step_losses"].append(torch_side.train_step(x, y, masks))
            numpy_state, torch_state = numpy_side.model_state(), torch_side.model_state()
            drift.append(weight_drift(numpy_state, torch_state))
            drift_without_absorbed.append(weight_drift(numpy_state, torch_state, skip=BN_ABSORBED))
        bar.close()
        for impl, side in (("numpy", numpy_side), ("torch", torch_side)):
            val_loss, val_acc, _ = side.evaluate(data.val_x, data.val_y)
            history[impl]["val_losses"].append(val_loss)
            history[impl]["val_accuracies"].append(val_acc)
        log(f"Epoch {epoch}/{config.epochs}: val loss numpy {history['numpy']['val_losses'][-1]:.6f} / "
            f"torch {history['torch']['val_losses'][-1]:.6f}, largest relative weight difference "
            f"{drift[-1]:.3e} ({drift_without_absorbed[-1]:.3e} without the biases batch-norm absorbs) "
            f"after {len(drift)} steps")
    result = {"config": asdict(config), "numpy": history["numpy"], "torch": history["torch"],
              "steps_per_epoch": steps_per_epoch, "drift": drift, "max_drift": max(drift, default=0.0),
              "bn_absorbed": list(BN_ABSORBED), "drift_without_bn_absorbed": drift_without_absorbed,
              "max_drift_without_bn_absorbed": max(drift_without_absorbed, default=0.0)}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    from .plots import plot_compare_losses, plot_drift

    plot_compare_losses(result, out / "compare_losses.png")
    plot_drift(drift, drift_without_absorbed, out / "compare_drift.png", config.dtype)
    log(f"Largest relative weight difference over {len(drift)} steps ({config.dtype}): "
        f"{result['max_drift']:.3e}, {result['max_drift_without_bn_absorbed']:.3e} without "
        f"{', '.join(BN_ABSORBED)}. Wrote compare.json, compare_losses.png, compare_drift.png to {out}")
    return result

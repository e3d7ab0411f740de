"""The measurements docs/04 and docs/05 quote, reproducible (on real MNIST, so not part of the tests).

    python benchmarks/docs_measurements.py                # initial weights only (a few seconds)
    python benchmarks/docs_measurements.py --steps 150    # also after 50 and 150 Adam steps (~2 min)

Printed:
* docs/05, "Precision": the relative error (max over channels) of batch1's float32 batch mean, summed
  one value at a time, by NumPy, by torch and by ``channel_sums``; and how far the float32 network's
  gradients then are from the float64 network's (the largest norm-wise relative difference over the
  parameters, the two zero-gradient biases left out).
* docs/04, "Ties": how much sending each window's gradient to *every* tied maximum, instead of the first
  one, changes conv1's weight gradient (float64, max-norm, the same batch and dropout masks).

The data: the first 64 training images of MNIST in ``--data`` (default ``$SIMPLECNN_DATA``), seed 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

import scratch.batchnorm as batchnorm
import scratch.pool as pool
from scratch.data import default_data_dir, load_mnist, normalize
from scratch.loss import CrossEntropyLoss
from scratch.model import SimpleCNN
from scratch.optim import Adam

Backward = Callable[[np.ndarray, tuple], np.ndarray]
ZERO_GRADIENT_BIASES = ("conv1.bias", "conv2.bias")   # feed batch-norm: their true gradient is 0


def running_float32_sums(a: np.ndarray) -> np.ndarray:
    """Per-channel sums of ``a`` (N, C, H, W), added one value at a time into a float32 running sum."""
    c = a.shape[1]
    return np.cumsum(np.moveaxis(a, 1, 0).reshape(c, -1), axis=1, dtype=np.float32)[:, -1]


def numpy_float32_sums(a: np.ndarray) -> np.ndarray:
    return a.sum(axis=(0, 2, 3))


def every_tied_maximum(grad_out: np.ndarray, cache: tuple) -> np.ndarray:
    """The classic mistake: each window's gradient goes to every entry equal to its max."""
    candidates, y, padded_shape, input_shape, kernel, stride, (ph, pw), dilation = cache
    dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
    for k in range(kernel[0] * kernel[1]):
        pool._window_entry(dx_pad, k, kernel, stride, dilation, grad_out.shape[2:])[...] += (
            grad_out * (candidates[k] == y))
    h, w = input_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def gradients(net: SimpleCNN, x: np.ndarray, targets: np.ndarray, masks: dict[str, np.ndarray],
              max_backward: Backward = pool.maxpool2d_backward) -> dict[str, np.ndarray]:
    original = pool.MaxPool2d.backward_function            # what MaxPool2d.backward calls
    pool.MaxPool2d.backward_function = staticmethod(max_backward)
    try:
        net.train()
        loss = CrossEntropyLoss()
        loss.forward(net(x.astype(net.dtype), dropout_masks=masks), targets)
        net.backward(loss.backward())
    finally:
        pool.MaxPool2d.backward_function = staticmethod(original)
    return {name: p.grad.astype(np.float64) for name, p in net.parameters().items() if p.grad is not None}


def worst_rel_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])))
               for k in b if not k.endswith(ZERO_GRADIENT_BIASES))


def batch_statistics(x: np.ndarray, targets: np.ndarray) -> None:
    net = SimpleCNN(seed=0, dtype=np.float32)
    h = net.conv1(x.astype(np.float32))
    m = h.size // h.shape[1]
    exact = h.astype(np.float64).sum(axis=(0, 2, 3)) / m
    masks = SimpleCNN(seed=0).sample_dropout_masks(len(x))
    reference = gradients(SimpleCNN(seed=0, dtype=np.float64), x, targets, masks)
    print(f"docs/05: batch1's float32 batch mean, m = {m} values per channel")
    ways = {"float32 running sum": running_float32_sums, "NumPy x.sum(axis=(0, 2, 3))": numpy_float32_sums,
            "channel_sums": batchnorm.channel_sums}
    original = batchnorm.channel_sums
    for name, sums in ways.items():
        mean = sums(batchnorm.walk(h)) / m      # the layer's view of its input (batch last: rows of W*N)
        batchnorm.channel_sums = sums
        try:
            network = worst_rel_difference(gradients(SimpleCNN(seed=0, dtype=np.float32), x, targets, masks),
                                           reference)
        finally:
            batchnorm.channel_sums = original
        print(f"  {name:30s} mean {np.max(np.abs(mean - exact)) / np.max(np.abs(exact)):.2g}"
              f"   float32 network gradients vs float64 {network:.2g}")
    torch_mean = torch.from_numpy(h).mean(dim=(0, 2, 3)).numpy()
    print(f"  {'torch.mean':30s} mean {np.max(np.abs(torch_mean - exact)) / np.max(np.abs(exact)):.2g}")


def tie_effect(net: SimpleCNN, x: np.ndarray, targets: np.ndarray) -> float:
    masks = net.sample_dropout_masks(len(x))
    first = gradients(net, x, targets, masks)["conv1.weight"]
    every = gradients(net, x, targets, masks, every_tied_maximum)["conv1.weight"]
    return float(np.max(np.abs(every - first)) / np.max(np.abs(first)))


def ties(images: np.ndarray, labels: np.ndarray, steps: int) -> None:
    x, targets = normalize(images[:64], np.float64), labels[:64].astype(np.int64)
    net = SimpleCNN(seed=0, dtype=np.float64)
    print("docs/04: conv1.weight gradient, every tied maximum vs the first: "
          f"initial weights {tie_effect(net, x, targets):.2f}")
    trained = SimpleCNN(seed=0, dtype=np.float32)
    adam, loss = Adam(trained.parameters(), lr=1e-3), CrossEntropyLoss()
    batches = normalize(images[:64 * steps], np.float32), labels[:64 * steps].astype(np.int64)
    for step in range(steps):
        rows = slice(64 * step, 64 * step + 64)
        trained.train()
        loss.forward(trained(batches[0][rows], dropout_masks=trained.sample_dropout_masks(64)), batches[1][rows])
        trained.backward(loss.backward())
        adam.step()
        if step + 1 in (50, 150) or step + 1 == steps:
            net.load_state_dict({k: v.astype(np.float64) for k, v in trained.state_dict().items()})
            print(f"  after {step + 1} Adam steps: {tie_effect(net, x, targets):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder holding MNIST/raw (default: $SIMPLECNN_DATA)")
    parser.add_argument("--steps", type=int, default=0, help="Adam steps for the trained-state tie measurement")
    args = parser.parse_args()
    mnist = load_mnist(args.data or default_data_dir(), download=False, progress=False)
    x, targets = normalize(mnist.train_images[:64], np.float64), mnist.train_labels[:64].astype(np.int64)
    batch_statistics(x, targets)
    ties(mnist.train_images, mnist.train_labels, args.steps)


if __name__ == "__main__":
    main()

"""The benchmark script runs and ends with its ratio line (behaviour only: no timing is asserted); the docs'
measurement script compares what it says it compares."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from scratch import MaxPool2d, SimpleCNN
from scratch.pool import maxpool2d_backward

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_step.py"


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_quick_benchmark_prints_the_ratio_last():
    result = run_benchmark("--steps", "3", "--warmup", "1", "--batch-size", "16", "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"numpy/torch train-step time ratio: \d+\.\d\d", lines[-1]), lines[-1]
    # The report names every step of the network in its per-layer breakdown (each ReLU before a max-pool
    # runs inside it, as in model(x)), plus the loss and Adam.
    for name in ("conv1", "batch1", "relu1\\+max1", "dropout1", "conv2", "relu2\\+max2", "fc1", "relu3", "fc2",
                 "loss", "adam"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.MULTILINE), name
    assert "evaluation" in result.stdout
    # NumPy's BLAS and, for OpenBLAS, its kernels and whichever of the settings that choose them instead of
    # the CPU this environment holds (the test's environment is the script's).
    blas = re.search(r"^numpy BLAS: (.*)$", result.stdout, re.MULTILINE)
    assert blas, result.stdout
    if " kernels" in blas.group(1):
        forced = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                  if os.environ.get(name)]
        assert all(setting in blas.group(1) for setting in forced), (forced, blas.group(1))
        assert ("OpenBLAS's choice for this CPU" in blas.group(1)) == (not forced), blas.group(1)
    # The distance to the hardware and the memory: measured in the same run, printed for both.
    assert re.search(r"^float32 matrix product on this machine: \d+\.\d GFLOP/s", result.stdout, re.MULTILINE)
    # Batch 16, by hand: conv1 2*16*32*24*24*25 = 14.7M (x2: no input gradient), conv2 2*16*64*8*8*32*25
    # = 104.9M (x3), fc1 2*16*512*1024 = 16.8M (x3), fc2 0.16M (x3): 395M per step, 137M per forward.
    assert "a train step is 0.39 GFLOP, an evaluation forward 0.14 GFLOP" in result.stdout
    assert re.search(r"^fraction of peak, train step: numpy \d+%, torch \d+%$", result.stdout, re.MULTILINE)
    assert re.search(r"^fraction of peak, evaluation: numpy \d+%, torch \d+%$", result.stdout, re.MULTILINE)
    assert re.search(r"^peak training memory .*: numpy \d+\.\d MiB, torch \d+\.\d MiB, ratio \d+\.\d\d$",
                     result.stdout, re.MULTILINE), result.stdout


def test_benchmark_rejects_a_bad_option():
    result = run_benchmark("--steps", "0")
    assert result.returncode != 0
    assert "--steps" in result.stderr


def load_docs_measurements():
    spec = importlib.util.spec_from_file_location("docs_measurements", ROOT / "benchmarks" / "docs_measurements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_measurements_swap_the_max_pool_backward_they_compare():
    """docs/04's tie measurement compares max-pool backward passes through MaxPool2d's hook: the "every tied
    maximum" backward must really run (on a blank-background batch, full of tied windows) and change conv1's
    gradient, and the layer's own backward must be back afterwards."""
    measurements = load_docs_measurements()
    rng = np.random.default_rng(0)
    x = np.zeros((8, 1, 28, 28))
    x[:, :, 8:20, 8:20] = rng.normal(size=(8, 1, 12, 12))          # a digit-like blob on a constant background
    targets = rng.integers(0, 10, size=8)
    net = SimpleCNN(seed=0, dtype=np.float64)
    masks = net.sample_dropout_masks(len(x))
    first = measurements.gradients(net, x, targets, masks)["conv1.weight"]
    every = measurements.gradients(net, x, targets, masks, measurements.every_tied_maximum)["conv1.weight"]
    assert np.max(np.abs(every - first)) > 1e-3 * np.max(np.abs(first))
    assert MaxPool2d.backward_function is maxpool2d_backward
    np.testing.assert_array_equal(measurements.gradients(net, x, targets, masks)["conv1.weight"], first)

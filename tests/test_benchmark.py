"""The benchmark script runs and ends with its ratio line (behaviour only: no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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

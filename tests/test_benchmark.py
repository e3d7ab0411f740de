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
    # The report names every layer of the network in its per-layer breakdown, plus the loss and Adam.
    for name in ("conv1", "batch1", "max1", "dropout1", "conv2", "fc1", "fc2", "loss", "adam"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.MULTILINE), name
    assert "evaluation" in result.stdout


def test_benchmark_rejects_a_bad_option():
    result = run_benchmark("--steps", "0")
    assert result.returncode != 0
    assert "--steps" in result.stderr

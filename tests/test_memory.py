"""scratch/memory.py: freed arrays stay in the process, so repeated steps stop paying page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Forty forward passes of batch-norm 1 (batch 64): each allocates two 4.7 MB arrays and frees them.
REPEATED_FORWARDS = """
import resource, numpy as np, scratch
from scratch.batchnorm import batchnorm2d_forward
x = np.random.default_rng(0).standard_normal((64, 32, 24, 24), dtype=np.float32)
ones, zeros = np.ones(32, np.float32), np.zeros(32, np.float32)
def forward():
    batchnorm2d_forward(x, ones, zeros, zeros.copy(), ones.copy(), True, 0.1, 1e-5)
for _ in range(5):
    forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    forward()
print(scratch.memory.kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


def run_python(code: str, keep_memory: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SIMPLECNN_KEEP_MEMORY"}
    if keep_memory is not None:
        env["SIMPLECNN_KEEP_MEMORY"] = keep_memory
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_importing_scratch_keeps_freed_memory_and_repeated_steps_stop_faulting():
    result = run_python(REPEATED_FORWARDS, keep_memory=None)
    assert result.returncode == 0, result.stderr
    kept, faults_per_forward = result.stdout.split()
    assert kept == "True"
    # Without it, this loop took ~750 page faults per forward pass on the machine it was written on
    # (both arrays on fresh pages every time); with it, the freed blocks are reused.
    assert float(faults_per_forward) < 20


def test_simplecnn_keep_memory_0_leaves_the_allocator_alone():
    result = run_python("import scratch; print(scratch.memory.kept)", keep_memory="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_bad_simplecnn_keep_memory_is_named():
    result = run_python("import scratch", keep_memory="yes")
    assert result.returncode != 0
    assert "SIMPLECNN_KEEP_MEMORY must be 0 or 1, got 'yes'" in result.stderr


# Evaluation of 512 images, five times over, after two untimed ones.
REPEATED_EVALUATIONS = """
import resource, numpy as np, scratch
model = scratch.SimpleCNN(seed=0)
x = np.random.default_rng(0).standard_normal((512, 1, 28, 28), dtype=np.float32)
for _ in range(2):
    model.predict_logits(x{batch})
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    model.predict_logits(x{batch})
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_evaluation_batches_stay_under_the_mmap_threshold_and_stop_faulting():
    """EVAL_BATCH_SIZE keeps conv1's output (the largest evaluation array) under glibc's 32 MiB ceiling, so
    the memory of one batch serves the next; one batch of 512 images (38 MiB) is mapped fresh every time."""
    from scratch.memory import EVAL_BATCH_SIZE, MMAP_THRESHOLD_MAX

    assert EVAL_BATCH_SIZE * 32 * 24 * 24 * 4 < MMAP_THRESHOLD_MAX
    default = run_python(REPEATED_EVALUATIONS.format(batch=""), keep_memory=None)
    whole = run_python(REPEATED_EVALUATIONS.format(batch=", batch_size=512"), keep_memory=None)
    assert default.returncode == 0 and whole.returncode == 0, default.stderr + whole.stderr
    default_faults, whole_faults = float(default.stdout), float(whole.stdout)
    # Measured: 0 against 530 (NumPy asks for huge pages for large arrays, so a fresh 38 MiB block costs a
    # few hundred faults rather than 9,400; each one zeroes up to 2 MiB).
    assert default_faults < 50, default_faults
    assert whole_faults > 200, whole_faults

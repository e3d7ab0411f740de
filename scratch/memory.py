"""Keeping freed memory in the process, so that every training step does not pay for fresh pages.

A training step allocates the same large arrays every time (a batch-norm layer's ``x_hat`` and output,
the patch matrices, the gradients) and frees them by the end of the step. glibc's ``malloc`` serves a
block above its *mmap threshold* (128 KiB at first, raised up to 32 MiB as large blocks are freed)
directly from the operating system and hands it back when it is freed, and it trims the top of its heap
whenever more than its *trim threshold* is free there. The next step's arrays then land on fresh pages,
and the first touch of each 4 KiB page is a page fault that the kernel answers with a zeroed page.

Measured on a 2-core AMD EPYC virtual machine: 1300-1600 page faults per SimpleCNN training step (batch
64), about 3 µs each. Batch-norm 1's forward pass alone took 4.0 ms with its 750 faults and 1.5 ms
without them; the whole step, numpy alone, 35.6 ms against 31.6 ms (medians of four runs each).

:func:`keep_freed_memory` sets both thresholds once (``mallopt(M_MMAP_THRESHOLD, 32 MiB)``,
``mallopt(M_TRIM_THRESHOLD, 1 GiB)``), so freed blocks stay in the process and the next step reuses
them: no page faults after the first step. This is what glibc's environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do, except that glibc reads those only when a
process starts. Importing ``scratch`` calls it unless ``SIMPLECNN_KEEP_MEMORY=0``. It changes no
number, only where the memory comes from; the price is that the process keeps the memory it has
freed until it exits (its peak stays resident). On a C library other than glibc nothing happens.

Chapter: docs/03-convolution.md (the "Memory" aside).
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1   # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024   # the largest value glibc accepts on 64-bit machines
TRIM_THRESHOLD = 1024 * 1024 * 1024

#: Images per forward pass when SimpleCNN evaluates many (``scratch.train.evaluate``,
#: ``SimpleCNN.predict_logits``): few enough that its largest evaluation array, conv1's output (N, 32, 24, 24)
#: in float32, stays under the 32 MiB mmap threshold, so that the memory of one batch is kept for the next:
#: 18 MiB at 256 images, 74 MiB at 1,000, which malloc maps fresh for every batch and hands back after it
#: (its pages faulted in and zeroed anew each time). Measured on the 10,000 test images (2-core AMD EPYC):
#: 0.58 to 0.64 s in batches of 128 to 500, 0.81 to 1.16 s in batches of 1,000.
EVAL_BATCH_SIZE = 256

#: Whether :func:`keep_freed_memory` has set glibc's thresholds in this process.
kept = False


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to keep freed blocks (module docstring). Returns whether it did: ``False``
    where there is no glibc ``mallopt`` to call.

    Chapter: docs/03-convolution.md.
    """
    global kept
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return kept


def keep_freed_memory_unless_disabled() -> bool:
    """:func:`keep_freed_memory`, unless the environment sets ``SIMPLECNN_KEEP_MEMORY=0`` (``1``, the
    default, keeps; any other value is an error).

    Chapter: docs/03-convolution.md.
    """
    value = os.environ.get("SIMPLECNN_KEEP_MEMORY", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"SIMPLECNN_KEEP_MEMORY must be 0 or 1, got {value!r}")
    return value == "1" and keep_freed_memory()

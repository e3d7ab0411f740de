"""Every core for the memory-bound passes: the images of a batch, split between threads.

A training step is two kinds of work. The matrix products (convolutions, linear layers) go to BLAS,
which already runs them on every core. Everything else (im2col and col2im, batch-norm's passes, ReLU,
max-pool, dropout's product, the optimizer's update) is a NumPy loop over an array, and NumPy runs
each such loop on *one* core. On a 2-core machine that leaves half the machine idle for about half
of the step.

NumPy releases Python's global interpreter lock inside its loops, so two Python threads that each
call NumPy on their own half of an array really do run at the same time. :func:`run` does exactly
that: it cuts ``range(length)`` (usually the images of the batch, axis 0) into one contiguous part
per worker and calls ``body(part)`` for every part at once, the calling thread taking the first::

    parallel.run(lambda part: np.maximum(x[part], 0, out=y[part]), len(x), x.size)

Rules that keep it exact and simple:

* A body writes only to its own part of the outputs, and computes for each element exactly what
  one thread would: the results are bit-identical for any number of workers. (A sum that runs
  *across* the parts, e.g. batch-norm's per-channel statistics, is finished by the caller after
  the parts are done, in a fixed order.)
* Bodies that call BLAS run through :func:`run_with_blas`, which sets BLAS to one thread while the parts
  run: each part's products then run on its own core, and BLAS's threads and scratch's never compete
  for one. (Products outside a body keep BLAS's own threads.)
* A call from inside a body runs serially (no thread waits for a thread of its own pool).
* Work of fewer than :data:`MIN_NUMBERS` numbers is not split: waking a thread and handing it a part
  costs 20 to 100 microseconds (more on a virtual machine, whose idle core must be woken too), and a
  pass over an array of a few hundred thousand numbers takes about as long. Measured on a 2-core AMD
  EPYC: batch-norm 2's forward and backward passes ((64, 64, 8, 8), 262,144 numbers) took 1.3 and 1.1 ms
  split in two and 0.39 and 0.35 ms in one thread, while batch-norm 1's ((64, 32, 24, 24), 1.2 million
  numbers) took 1.8 and 1.8 ms split against 2.7 and 2.0 ms in one thread.

Waiting: on a virtual machine, a sleeping thread is slow to wake. Its virtual core has halted, and only
the hypervisor can start it again. Measured in the training step on a 2-core AMD EPYC virtual machine, a
worker began its part 0.05 to 0.22 ms after :func:`run` handed it over, about 2 ms per step in all. So a
worker that finishes a part keeps looking for its next one for :data:`SPIN_SECONDS` (1 ms) before it goes
to sleep, and a caller that finishes its own part first looks for the workers' the same way, as OpenMP's
and OpenBLAS's threads do. Between two looks each offers its core to any other thread
(``os.sched_yield``), so BLAS's threads and the background updates lose little to it. Measured on the
training step alternating with torch (two runs of 60 blocks each): 25.4 and 24.5 ms with the executor that
slept at once, 23.9 and 23.5 ms with the look-first hand-off. The parts are computed as before: only when
a thread starts them changes.

BLAS threads: OpenBLAS (NumPy's BLAS in its wheels) has a process-wide thread count that
``openblas_set_num_threads`` sets; :func:`run_with_blas` sets it to 1 for the duration of a split run
and back afterwards (a lock and a count keep nested or concurrent runs right). Where no OpenBLAS is
found (NumPy built on another BLAS), it does not split: the body runs once, over everything, in the
calling thread, with BLAS's own threads. A product's rows are computed the same way whichever rows are
asked for, so the parts give the numbers of the whole (tests/test_parallel.py); an unsplit run of such a
body uses one BLAS thread as well, because OpenBLAS on several threads may round differently.

:func:`in_background` is the other use of a spare core: it starts one function on a thread of its own
and returns at once (SimpleCNN draws a step's dropout masks so while its first layers run).

``SIMPLECNN_THREADS`` (an integer >= 1) sets the number of workers; the default is the number of
cores this process may use. ``SIMPLECNN_THREADS=1`` runs everything in the calling thread.

Chapter: docs/03-convolution.md ("Speed: every core").
"""

from __future__ import annotations

import ctypes
import glob
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .module import is_batch_last, memory_order

#: Work (in numbers touched) below which :func:`run` does not split.
MIN_NUMBERS = 1 << 20

#: How long (seconds) a worker keeps looking for its next part after finishing one, and the caller for the
#: workers' parts after finishing its own, before going to sleep (module docstring, "Waiting").
SPIN_SECONDS = 1e-3


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # not on Linux
        return os.cpu_count() or 1


def workers_from_environment() -> int:
    """``SIMPLECNN_THREADS`` if set (a clear error if it is not a positive integer), else the core count.

    Chapter: docs/03-convolution.md.
    """
    value = os.environ.get("SIMPLECNN_THREADS", "").strip()
    if not value:
        return _available_cores()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"SIMPLECNN_THREADS must be a positive integer, got {value!r}")
    return count


_workers = workers_from_environment()
_parts_queue: queue.SimpleQueue | None = None          # parts handed to the worker threads
_part_threads: list[threading.Thread] = []
_part_finished = threading.Condition()                  # notified whenever a worker finishes a part
_background: ThreadPoolExecutor | None = None
_inside = threading.local()
_STOP = "stop"                                          # put in the queue: a worker thread ends
_yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


def workers() -> int:
    """The number of parts :func:`run` splits work into. (docs/03-convolution.md)"""
    return _workers


def set_workers(count: int) -> None:
    """Use ``count`` workers from now on (1: no threads). (docs/03-convolution.md)"""
    global _workers, _parts_queue, _background
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"parallel.set_workers: count must be a positive integer, got {count!r}")
    if _parts_queue is not None:
        for _ in _part_threads:
            _parts_queue.put(_STOP)
        for thread in _part_threads:
            thread.join()
        _part_threads.clear()
    if _background is not None:
        _background.shutdown(wait=True)
    _parts_queue = _background = None
    _workers = count


def parts(length: int, numbers: int) -> list[slice]:
    """``range(length)`` cut into contiguous, nearly equal slices, one per worker (one slice alone when
    the work, ``numbers`` numbers in all, is too small to be worth splitting).

    Chapter: docs/03-convolution.md.
    """
    worth_splitting = numbers >= MIN_NUMBERS and not getattr(_inside, "active", False)
    count = max(1, min(_workers, length)) if worth_splitting else 1
    bounds = [length * k // count for k in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def _run_inside(function: Callable[..., object], *args) -> object:
    """``function(*args)`` (a part of :func:`run`, or a function of :func:`in_background`), marked as
    running inside: a :func:`run` it calls stays in its thread."""
    _inside.active = True
    try:
        return function(*args)
    finally:
        _inside.active = False


class _Part:
    """A part of a :func:`run` handed to a worker thread, and what came of it."""

    __slots__ = ("body", "piece", "done", "error")

    def __init__(self, body: Callable[[slice], object], piece: slice):
        self.body, self.piece = body, piece
        self.done: bool = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _run_inside(self.body, self.piece)
        except BaseException as error:          # handed to the caller, which raises it
            self.error = error
        with _part_finished:
            self.done = True
            _part_finished.notify_all()


def _spin_for(poll: Callable[[], object]) -> object:
    """Call ``poll()`` again and again, offering the core to any other thread in between, for up to
    :data:`SPIN_SECONDS`: its first true result, or its last, false, one (module docstring, "Waiting")."""
    deadline = time.perf_counter() + SPIN_SECONDS
    while not (result := poll()) and time.perf_counter() < deadline:
        _yield_core()
    return result


def _serve(parts_queue: queue.SimpleQueue) -> None:
    """A worker thread: run the parts handed to it until told to stop; after each, it looks for the next
    one for a while before it sleeps."""

    def handed_part() -> object:
        try:
            return parts_queue.get_nowait()
        except queue.Empty:
            return None

    while True:
        part = _spin_for(handed_part) or parts_queue.get()     # looking for a while, then asleep
        if part is _STOP:
            return
        assert isinstance(part, _Part)
        part.run()


def _forget_threads_in_child() -> None:
    """After ``fork``: the child has none of its parent's threads, so it starts its own when it needs them."""
    global _parts_queue, _part_finished, _background
    _parts_queue, _background = None, None
    _part_threads.clear()
    _part_finished = threading.Condition()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)


def _worker_queue() -> queue.SimpleQueue:
    """The queue of parts, with its worker threads started (``workers() - 1`` of them) the first time."""
    global _parts_queue
    if _parts_queue is None:
        _parts_queue = queue.SimpleQueue()
        for k in range(_workers - 1):
            thread = threading.Thread(target=_serve, args=(_parts_queue,), name=f"simplecnn_{k}", daemon=True)
            thread.start()
            _part_threads.append(thread)
    return _parts_queue


def run(body: Callable[[slice], object], length: int, numbers: int) -> None:
    """Call ``body(part)`` for each part of :func:`parts` ``(length, numbers)``, all at once, and return
    when every part is done. An exception in any part is raised here; when several parts fail, the
    caller's own part's (the first) is the one raised.

    Chapter: docs/03-convolution.md.
    """
    pieces = parts(length, numbers)
    if len(pieces) == 1:
        body(pieces[0])
        return
    parts_queue = _worker_queue()
    handed = [_Part(body, piece) for piece in pieces[1:]]
    for part in handed:
        parts_queue.put(part)

    def all_done() -> bool:
        return all(part.done for part in handed)

    try:
        _run_inside(body, pieces[0])
    finally:                   # every part has finished before run returns or raises
        if not _spin_for(all_done):
            with _part_finished:
                _part_finished.wait_for(all_done)
    for part in handed:        # the caller's own error, if any, has been raised above: it comes first
        if part.error is not None:
            raise part.error


def _loaded_openblas_paths() -> list[str]:
    """Files of the OpenBLAS libraries this process has loaded (Linux), or that NumPy's wheel ships."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()]
    except OSError:
        pass
    numpy_dir = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*"):
        paths += glob.glob(os.path.join(numpy_dir, pattern))
    return list(dict.fromkeys(paths))


def _find_blas_thread_control() -> tuple[Callable[[int], None], Callable[[], int]] | None:
    """OpenBLAS's ``(set_num_threads, get_num_threads)``, under any of the names its builds export
    (NumPy's wheels prefix ``scipy_`` and suffix ``64_``), or ``None`` where there is none."""
    for path in _loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                try:
                    setter = getattr(library, f"{prefix}_set_num_threads{suffix}")
                    getter = getattr(library, f"{prefix}_get_num_threads{suffix}")
                except AttributeError:
                    continue
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                return setter, getter
    return None


_blas_threads = _find_blas_thread_control()
_blas_lock = threading.Lock()
_blas_single = {"depth": 0, "saved": 1}


def blas_threads_settable() -> bool:
    """Whether :func:`run_with_blas` can set BLAS to one thread here (an OpenBLAS was found).

    Chapter: docs/03-convolution.md.
    """
    return _blas_threads is not None


def _set_blas_single(single: bool) -> None:
    """Enter (``True``) or leave a stretch of one BLAS thread; the outermost one saves and restores."""
    assert _blas_threads is not None
    set_threads, get_threads = _blas_threads
    with _blas_lock:
        if single:
            if _blas_single["depth"] == 0:
                _blas_single["saved"] = get_threads()
                set_threads(1)
            _blas_single["depth"] += 1
        else:
            _blas_single["depth"] -= 1
            if _blas_single["depth"] == 0:
                set_threads(_blas_single["saved"])


def run_with_blas(body: Callable[[slice], object], length: int, numbers: int) -> None:
    """:func:`run` for a ``body`` that calls BLAS: while the parts run, BLAS uses one thread, so that each
    part's products run on that part's core (module docstring). Work that is not split runs in this
    thread, with one BLAS thread too: OpenBLAS does not always round a product the same way on several
    threads as on one (seen with its Haswell kernels on conv1's weight gradient, 64 products of
    (32, 576) by (576, 25): 44 of the 800 sums differed in the last bit), and a product must give the
    same numbers however many parts there are. A machine whose BLAS thread count cannot be set runs
    ``body`` over everything in this thread, BLAS keeping its own threads.

    Chapter: docs/03-convolution.md.
    """
    if _blas_threads is None:
        body(slice(0, length))
        return
    _set_blas_single(True)
    try:
        run(body, length, numbers)
    finally:
        _set_blas_single(False)


def split_call(function: Callable[..., object], *args, out: np.ndarray) -> np.ndarray:
    """``function(*args, out=out)`` computed in parts along axis 0, all at once, and ``out`` returned.

    Every array argument with at least ``out``'s number of dimensions and ``out``'s first axis is cut like
    ``out``; any other argument (a scalar, a per-channel constant of shape (1, C, 1, 1) or (1, C, H, W))
    goes whole to every part. So ``split_call(np.subtract, x, mu, out=x_hat)`` is
    ``np.subtract(x, mu, out=x_hat)`` on every core.
    ``function`` must act on each index of axis 0 on its own (a ufunc, or an ``np.einsum`` that keeps that
    axis), which is what makes the parts exact. An ``out`` that is batch last in memory (scratch/module.py)
    is cut by channels instead, every 4-D argument seen in the same axis order
    (:func:`~scratch.module.memory_order`), so that each part is a block of whole runs.

    Chapter: docs/03-convolution.md.
    """
    if out.ndim == 0:
        function(*args, out=out)
        return out
    whole = out
    if is_batch_last(out):                 # cut channels, whose runs hold all the images (scratch/module.py)
        args = tuple(memory_order(a, out) if isinstance(a, np.ndarray) else a for a in args)
        out = memory_order(out)
    length = out.shape[0]

    def is_cut(a) -> bool:
        return isinstance(a, np.ndarray) and a.ndim >= out.ndim and a.shape[0] == length

    def body(part: slice) -> None:
        function(*(a[part] if is_cut(a) else a for a in args), out=out[part])

    run(body, length, out.size + sum(a.size for a in args if is_cut(a)))
    return whole


def in_background(function: Callable[[], object]) -> Future:
    """Start ``function()`` on a thread of its own and return its ``Future`` at once; with one worker
    (``SIMPLECNN_THREADS=1``) it runs here, before this returns. For work that one core can do while
    the caller goes on: ``SimpleCNN`` draws a step's dropout masks so, while its first layers run
    (docs/06-dropout.md), and an optimizer updates the last layers' parameters so while the backward pass
    goes on (``Optimizer.start_update``, docs/09-adam.md). Functions started so run one after the other, in
    the order they were started. Like a part of :func:`run`, ``function`` must not run a large BLAS
    product, and a :func:`run` it calls stays in its thread.

    Chapter: docs/03-convolution.md.
    """
    global _background
    if _workers == 1:
        future: Future = Future()
        try:
            future.set_result(function())
        except BaseException as error:     # handed over through the future, as a thread would
            future.set_exception(error)
        return future
    if _background is None:
        _background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplecnn-background")
    return _background.submit(_run_inside, function)

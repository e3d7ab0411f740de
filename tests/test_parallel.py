"""scratch/parallel.py: the parts cover the work exactly, errors surface, and every threaded pass gives
bit-identical results for any number of workers (the module's promise, docs/03 "Speed: every core")."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import scratch
from scratch import parallel
from scratch.activations import relu_backward, relu_forward
from scratch.batchnorm import batchnorm2d_backward, batchnorm2d_forward, batchnorm2d_inference
from scratch.conv import conv2d_backward, conv2d_forward, input_gradient_by_input_rows
from scratch.dropout import dropout_backward, dropout_forward
from scratch.module import is_batch_last
from scratch.pool import maxpool2d_backward, maxpool2d_forward, maxpool2d_inference


@pytest.fixture
def workers():
    """Set the worker count (and split even the smallest work) for one test; restored afterwards."""
    saved_workers, saved_min = parallel.workers(), parallel.MIN_NUMBERS
    parallel.MIN_NUMBERS = 0

    def use(count: int) -> None:
        parallel.set_workers(count)

    yield use
    parallel.set_workers(saved_workers)
    parallel.MIN_NUMBERS = saved_min


def same_with_workers(workers, compute, counts=(1, 3)):
    """``compute()`` run with each worker count; asserts every array it returns is bit-identical."""
    results = []
    for count in counts:
        workers(count)
        out = compute()
        results.append([np.asarray(a) for a in (out if isinstance(out, tuple | list) else (out,))
                        if a is not None and not isinstance(a, tuple)])
    first = results[0]
    for other in results[1:]:
        assert len(other) == len(first)
        for a, b in zip(first, other, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b, strict=True)
    return results[0]


# --- the module itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 2, 5, 64])
def test_parts_cover_the_range_in_order(workers, length):
    workers(3)
    pieces = parallel.parts(length, numbers=10**9)
    assert len(pieces) == min(3, length)
    covered = [i for part in pieces for i in range(length)[part]]
    assert covered == list(range(length))
    assert max(p.stop - p.start for p in pieces) - min(p.stop - p.start for p in pieces) <= 1


def test_small_work_is_not_split(workers):
    workers(2)
    parallel.MIN_NUMBERS = 1000
    assert parallel.parts(64, numbers=999) == [slice(0, 64)]
    assert len(parallel.parts(64, numbers=1000)) == 2


def test_run_uses_other_threads_and_returns_when_all_parts_are_done(workers):
    workers(2)
    seen: dict[int, str] = {}

    def body(part: slice) -> None:
        seen[part.start] = threading.current_thread().name

    parallel.run(body, 10, 10**9)
    assert sorted(seen) == [0, 5]
    assert seen[0] == threading.current_thread().name      # the caller takes the first part
    assert seen[5].startswith("simplecnn")


def test_an_error_in_a_worker_reaches_the_caller(workers):
    workers(2)

    def body(part: slice) -> None:
        if part.start > 0:
            raise ValueError("boom in the second part")

    with pytest.raises(ValueError, match="boom in the second part"):
        parallel.run(body, 4, 10**9)


def test_the_callers_own_error_is_the_one_raised(workers):
    """Both parts fail: the first part's error (the caller's) is raised, after the other part has ended."""
    workers(2)
    finished = []

    def body(part: slice) -> None:
        if part.start > 0:
            finished.append(part.start)
            raise KeyError("second part")
        raise ValueError("first part")

    with pytest.raises(ValueError, match="first part"):
        parallel.run(body, 4, 10**9)
    assert finished == [2]


@pytest.mark.parametrize("spin_seconds", [0.0, 1e-3, 1.0])
def test_a_slow_worker_part_is_waited_for_spinning_or_asleep(workers, monkeypatch, spin_seconds):
    """The caller returns only once every part is done: whether the worker's part ends while the caller
    still looks for it (a long spin) or after it has gone to sleep (no spin, 1 ms), and whether the worker
    found its part looking (parts handed one right after another) or asleep."""
    monkeypatch.setattr(parallel, "SPIN_SECONDS", spin_seconds)
    workers(3)
    done: list[int] = []

    def body(part: slice) -> None:
        if part.start > 0:
            time.sleep(0.005 * part.start)             # the workers' parts end well after the caller's
        done.append(part.start)

    for _ in range(3):                                 # back to back: a worker may still be looking
        done.clear()
        parallel.run(body, 3, 10**9)
        assert sorted(done) == [0, 1, 2]
    time.sleep(2 * spin_seconds if spin_seconds < 1 else 0.01)   # asleep, or still looking
    done.clear()
    parallel.run(body, 3, 10**9)
    assert sorted(done) == [0, 1, 2]


def test_set_workers_stops_the_worker_threads(workers):
    workers(3)
    parallel.run(lambda part: None, 3, 10**9)
    started = [t for t in threading.enumerate() if t.name.startswith("simplecnn_")]
    assert len(started) == 2
    workers(1)
    assert not any(t.is_alive() for t in started)
    workers(2)
    seen: list[str] = []
    parallel.run(lambda part: seen.append(threading.current_thread().name), 2, 10**9)
    assert len(set(seen)) == 2                           # new threads, after the old ones were stopped


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_starts_its_own_worker_threads(workers):
    """A child forked after the threads started has none of them: its runs must not wait for them."""
    workers(2)
    parallel.run(lambda part: None, 2, 10**9)            # the parent's worker thread exists
    pid = os.fork()
    if pid == 0:                                         # the child: exit status 0 if its run completes
        code = 1
        try:
            out = np.zeros(4)
            parallel.run(lambda part: out.__setitem__(part, 1.0), 4, 10**9)
            code = 0 if out.sum() == 4 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's run never finished")
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_call_inside_a_body_runs_serially(workers):
    workers(2)
    inner_parts: list[int] = []

    def inner(part: slice) -> None:
        inner_parts.append(part.stop - part.start)

    parallel.run(lambda part: parallel.run(inner, 8, 10**9), 2, 10**9)
    assert sorted(inner_parts) == [8, 8]       # each outer part ran the inner work whole, in its own thread


@pytest.mark.parametrize("value, expected", [("3", 3), (" 1 ", 1)])
def test_workers_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("SIMPLECNN_THREADS", value)
    assert parallel.workers_from_environment() == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_named(monkeypatch, value):
    monkeypatch.setenv("SIMPLECNN_THREADS", value)
    with pytest.raises(ValueError, match="SIMPLECNN_THREADS must be a positive integer"):
        parallel.workers_from_environment()


def test_default_is_the_usable_cores(monkeypatch):
    monkeypatch.delenv("SIMPLECNN_THREADS", raising=False)
    assert parallel.workers_from_environment() >= 1


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_set_workers_rejects_non_positive_integers(count):
    with pytest.raises(ValueError, match="positive integer"):
        parallel.set_workers(count)


def test_split_call_cuts_only_the_arrays_that_line_up_with_out(workers):
    workers(3)
    x = np.arange(5 * 4, dtype=np.float64).reshape(5, 4)
    per_column = np.arange(4, dtype=np.float64).reshape(1, 4)      # broadcast: goes whole to every part
    out = parallel.split_call(np.add, x, per_column, out=np.empty_like(x))
    np.testing.assert_array_equal(out, x + per_column)


# --- every threaded pass: the same bits with 1 and 3 workers ---------------------------------------

RNG = np.random.default_rng(7)


def images(shape, dtype=np.float32, ties=False):
    x = RNG.standard_normal(shape).astype(dtype)
    return np.maximum(x, 0) if ties else x     # after ReLU, many tied zeros (as on MNIST)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_last, shape, stride, dilation, padding",
                         [(False, (5, 2, 9, 8), (1, 1), (1, 1), (1, 0)),
                          (True, (5, 3, 9, 8), (2, 1), (1, 2), (0, 1))])
def test_convolution(workers, dtype, batch_last, shape, stride, dilation, padding):
    x, w, b = images(shape, dtype), images((4, shape[1], 3, 3), dtype), images((4,), dtype)

    def compute():
        y, cache = conv2d_forward(x, w, b, stride, padding, dilation, batch_last=batch_last)
        dx, dw, db = conv2d_backward(np.ones_like(y) * np.linspace(-1, 1, y.size).reshape(y.shape), cache)
        return y, dx, dw, db

    same_with_workers(workers, compute)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride, dilation, out_hw, extra",
                         [((5, 5), (1, 1), (1, 1), (8, 8), 0), ((5, 4), (3, 2), (1, 2), (4, 1), 2),
                          ((2, 3), (2, 3), (2, 1), (5, 5), 1), ((1, 1), (1, 1), (1, 1), (1, 3), 0),
                          ((3, 3), (1, 1), (2, 1), (4, 4), 0), ((5, 2), (2, 1), (3, 1), (4, 3), 1)])
def test_input_gradient_by_input_rows(workers, dtype, kernel, stride, dilation, out_hw, extra):
    """One product per input row, over the (output row, kernel row) pairs that reach it (strides,
    dilations, pairs spaced by more than one row, rows nothing reaches): the same numbers for 1 to 5
    parts, and the sum the formula gives."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo), n, c, o = kernel, stride, dilation, out_hw, 3, 2, 4
    padded = (sh * (ho - 1) + dh * (kh - 1) + 1 + extra, sw * (wo - 1) + dw * (kw - 1) + 1 + extra)
    g, weight = images((o, ho, wo, n), dtype), images((o, c, kh, kw), dtype)     # g batch last
    dx = same_with_workers(workers, lambda: input_gradient_by_input_rows(g, weight, padded, stride, dilation),
                           counts=(1, 2, 3, 5))[0]
    assert is_batch_last(dx)
    expected = np.zeros((*padded, n, c))
    g_hwno = g.astype(np.float64).transpose(1, 2, 3, 0)
    for u in range(kh):
        for v in range(kw):
            rows, cols = slice(u * dh, u * dh + sh * (ho - 1) + 1, sh), slice(v * dw, v * dw + sw * (wo - 1) + 1, sw)
            expected[rows, cols] += g_hwno @ weight[:, :, u, v]
    np.testing.assert_allclose(dx, expected.transpose(2, 3, 0, 1), rtol=1e-5, atol=1e-5)


def test_run_with_blas_gives_blas_one_thread_while_the_parts_run(workers):
    """Split: BLAS's thread count is 1 inside the parts (nested runs too) and what it was afterwards,
    also after an error. Not split: the body runs once, on one BLAS thread as well (OpenBLAS may round a
    product differently on several), and BLAS has its threads back afterwards."""
    if not parallel.blas_threads_settable():
        pytest.skip("no OpenBLAS whose thread count can be set")
    get_threads = parallel._blas_threads[1]
    before = get_threads()
    seen: list[int] = []
    workers(2)
    parallel.run_with_blas(lambda part: seen.append(get_threads()), 4, 1 << 30)
    parallel.run_with_blas(lambda part: parallel.run_with_blas(lambda p: seen.append(get_threads()), 2, 1 << 30),
                           4, 1 << 30)
    assert seen == [1] * 4 and get_threads() == before
    with pytest.raises(ZeroDivisionError):
        parallel.run_with_blas(lambda part: 1 / 0, 4, 1 << 30)
    assert get_threads() == before
    workers(1)
    parts: list[slice] = []
    parallel.run_with_blas(lambda part: (parts.append(part), seen.append(get_threads())), 4, 1 << 30)
    assert parts == [slice(0, 4)] and seen[-1] == 1 and get_threads() == before


def test_run_with_blas_without_a_settable_blas_runs_everything_at_once(workers, monkeypatch):
    """Where BLAS's thread count cannot be set, splitting would run two multi-threaded BLAS calls at once:
    the body runs once, over everything."""
    workers(3)
    monkeypatch.setattr(parallel, "_blas_threads", None)
    parts: list[slice] = []
    parallel.run_with_blas(parts.append, 6, 1 << 30)
    assert parts == [slice(0, 6)]


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1))])
def test_max_pool_with_ties_nan_and_infinite_gradients(workers, kernel, stride, padding):
    x = images((5, 3, 8, 9), ties=True)
    x[1, 0, 2, 3] = np.nan
    grad = images((5, 3) + maxpool2d_forward(x, kernel, stride, padding)[0].shape[2:])
    grad_inf = grad.copy()
    grad_inf[3, 1, 0, 0] = np.inf

    def compute():
        y, cache = maxpool2d_forward(x, kernel, stride, padding)
        dx = maxpool2d_backward(grad, cache)
        _, cache = maxpool2d_forward(x, kernel, stride, padding)
        dx_inf = maxpool2d_backward(grad_inf, cache)
        return y, dx, dx_inf, maxpool2d_inference(x, kernel, stride, padding)

    same_with_workers(workers, compute)


def test_max_pool_of_batch_last_memory_splits_channels(workers):
    """An input that is batch last in memory is split by channels; the output is the same."""
    x_batch_last = np.ascontiguousarray(images((5, 3, 8, 9), ties=True).transpose(1, 2, 3, 0))
    x = x_batch_last.transpose(3, 0, 1, 2)                    # (N, C, H, W) view, N fastest in memory

    def compute():
        return maxpool2d_inference(x, (2, 2), (2, 2), (0, 0), floor=0.0)

    y = same_with_workers(workers, compute)[0]
    np.testing.assert_array_equal(y, maxpool2d_inference(np.ascontiguousarray(x), (2, 2), (2, 2), floor=0.0))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(workers, training):
    x, g = images((5, 3, 6, 7)), images((5, 3, 6, 7))
    gamma, beta = images((3,)), images((3,))

    def compute():
        running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
        y, cache = batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, 0.1, 1e-5)
        dx, dgamma, dbeta = batchnorm2d_backward(g, cache)
        fused = batchnorm2d_inference(x, gamma, beta, running_mean, running_var, 1e-5)
        return y, dx, dgamma, dbeta, running_mean, running_var, fused

    same_with_workers(workers, compute)


def test_relu_and_dropout(workers):
    x, g = images((7, 3, 5)), images((7, 3, 5))
    keep = RNG.random(x.shape) >= 0.4

    def compute():
        y, positive = relu_forward(x)
        dropped, scaled_mask = dropout_forward(x, keep, 0.4)
        return y, relu_backward(g, positive), dropped, dropout_backward(g, scaled_mask)

    same_with_workers(workers, compute)


@pytest.mark.parametrize("optimizer, options", [(scratch.Adam, {}),
                                                (scratch.Adam, {"amsgrad": True, "weight_decay": 0.1}),
                                                (scratch.AdamW, {})])
def test_adam_steps(workers, optimizer, options):
    start = {"w": images((7, 5), np.float64), "b": images((7,), np.float64), "s": np.array(0.5)}
    grads = [{k: images(np.shape(v), np.float64) for k, v in start.items()} for _ in range(3)]

    def compute():
        params = {k: scratch.Parameter(np.array(v, copy=True)) for k, v in start.items()}
        opt = optimizer(params, lr=0.01, **options)
        for step in grads:
            for k, p in params.items():
                p.grad = step[k]
            opt.step()
        return [p.data for p in params.values()] + list(opt.state_dict().values())

    same_with_workers(workers, compute)


def test_a_whole_training_step(workers):
    x, labels = images((6, 1, 28, 28)), RNG.integers(0, 10, 6)

    def compute():
        model = scratch.SimpleCNN(seed=3)
        opt = scratch.Adam(model.parameters())
        for _ in range(2):
            loss, grad = scratch.cross_entropy(model(x), labels)
            model.backward(grad)
            opt.step()
        return [loss] + list(model.state_dict().values())

    same_with_workers(workers, compute)


def test_in_background_runs_elsewhere_or_at_once_with_one_worker(workers):
    """With several workers the function runs on another thread; with one it has run when the Future
    comes back. Either way its result or its error comes through the Future."""
    for count, elsewhere in ((2, True), (1, False)):
        workers(count)
        ran_on = parallel.in_background(threading.get_ident)
        assert (ran_on.result() != threading.get_ident()) == elsewhere
        failed = parallel.in_background(lambda: 1 / 0)
        assert isinstance(failed.exception(), ZeroDivisionError)
    workers(1)
    assert parallel.in_background(lambda: 7).done()


def test_a_reduction_counts_its_input_as_work(workers, monkeypatch):
    """A per-row sum writes little but reads much: the input's size decides whether it is split."""
    workers(2)
    parallel.MIN_NUMBERS = 1000
    sizes: list[int] = []
    real_run = parallel.run
    monkeypatch.setattr(parallel, "run", lambda body, length, numbers: (sizes.append(numbers),
                                                                         real_run(body, length, numbers)))
    rows = np.ones((4, 3, 500), np.float32)
    sums = parallel.split_call(lambda a, out: np.einsum("ncp->nc", a, out=out), rows, out=np.empty((4, 3), np.float32))
    np.testing.assert_array_equal(sums, np.full((4, 3), 500, np.float32))
    assert sizes == [rows.size + sums.size] and len(parallel.parts(4, sizes[0])) == 2

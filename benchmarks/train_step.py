"""Speed of one training step (and one evaluation forward): scratch (NumPy) vs torch, same process.

    python benchmarks/train_step.py                      # batch 64, float32, all cores
    python benchmarks/train_step.py --steps 5 --warmup 2 # quick mode (CI: checks it runs, not speed)

Both networks start from the same weights (the scratch model's state dict loaded into torch) and see the
same batches. A train step is forward, cross-entropy, backward and an Adam step; the two
implementations *alternate* in short blocks (``--block``, 5 steps), so a slow-down caused by something
else on the machine hits both alike and the ratio of the medians stays meaningful on a busy machine.

Printed:
* median ms per train step for each implementation;
* the NumPy step layer by layer (forward and backward of every layer, the loss, Adam), measured in
  separate instrumented steps so the timers do not disturb the step timed above (each ReLU before a
  max-pool runs inside it, as in ``model(x)``; the dropout layers draw their own masks there, which
  ``model(x)`` draws on another core meanwhile, docs/06);
* the same for evaluation (``model.eval()`` under ``no_grad``: a forward with no backward caches, in the
  merged steps of scratch/inference.py);
* the machine's float32 matrix-product speed, measured in the same run (the median of repeated
  ``(1024, 1024) @ (1024, 1024)`` products on the same threads), and the fraction of it that each
  implementation's step reaches, counting the multiply-adds of the network's convolutions and linear
  layers (:func:`step_flops`): the distance to what the hardware can do;
* the peak memory of a training step for each implementation, measured in child processes of their own,
  the median of :data:`MEMORY_RUNS` (:func:`peak_step_memory`);
* last, exactly one line ``numpy/torch train-step time ratio: X.XX``.

Threads: ``--threads`` (default: every core) goes to ``torch.set_num_threads``, to scratch's own
worker threads (``SIMPLECNN_THREADS``, scratch/parallel.py) and, through the
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` environment variables, to NumPy's
BLAS. Those are read when NumPy loads its BLAS, so they are set before NumPy is imported; a value already
in the environment wins (and is reported).

Fairness of the alternation: after a matrix product, OpenBLAS's worker threads busy-wait ("spin") for
about 2^28 cycles (~0.1 s) before sleeping, so that the next product starts sooner. Alternating with
torch, that spinning thread would hold a core during torch's whole step and make torch ~2x slower on a
2-core machine. ``OPENBLAS_THREAD_TIMEOUT=4`` (the minimum: 2^4 cycles) makes them sleep at once; on its
own, NumPy's step is not measurably slower with it. The script sets it unless the environment already
does.

Memory: importing scratch tells glibc's allocator to keep freed blocks in the process
(scratch/memory.py), so that steps stop paying page faults for fresh pages. The setting is the
process's, so torch's steps here get it too. The two memory children run without it
(:func:`peak_step_memory`).

Blocks: torch's OpenMP threads spin the same way after each of its parallel operations, which is what
makes torch's own back-to-back operations fast. But the first NumPy step after a torch step then shares
its cores with a spinning thread. Measured on a 2-core AMD EPYC, that first step takes 33-36 ms against
30 ms for the NumPy steps that follow it, and an evaluation 12-16 ms against 9-10. Torch's first step
after a NumPy step is as fast as its others. Making torch's threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``)
would slow every torch step instead (24 to 28-32 ms there). So the two implementations alternate in
blocks, and the first step of each block, which pays for the other's threads, is not timed.
``--block 1`` alternates step by step and times every step, as earlier versions of this script did.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: What the environment may set to choose OpenBLAS's kernels instead of the CPU (:func:`blas_description`).
OPENBLAS_CPU_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (caches, allocator)")
    parser.add_argument("--block", type=int, default=5,
                        help="steps of one implementation in a row; the first of each block is not timed "
                             "(1: alternate step by step, all timed)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads and NumPy BLAS threads (default: the machine's cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "threads", "block"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


ARGS = parse_args()
for _var in BLAS_ENV:                      # before NumPy (and torch, which loads NumPy) is imported
    os.environ.setdefault(_var, str(ARGS.threads))
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # no spinning BLAS threads during torch's steps
os.environ.setdefault("SIMPLECNN_THREADS", str(ARGS.threads))   # scratch's own threads (scratch/parallel.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import scratch  # noqa: E402
from scratch.model import training_steps  # noqa: E402
from torch_impl import SimpleCNN as TorchCNN  # noqa: E402

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def make_batches(rng: np.random.Generator, count: int, batch_size: int):
    """MNIST-like random batches: ~80% background (0) like MNIST digits, the rest ink in [0, 1).

    The constant background matters: as on real MNIST, it makes tied maxima in max-pool windows common.
    """
    batches = []
    for _ in range(count):
        ink = rng.random((batch_size, 1, 28, 28), dtype=np.float32)
        images = np.where(rng.random(ink.shape) < 0.8, np.float32(0), ink)
        images = ((images - MNIST_MEAN) / MNIST_STD).astype(np.float32)
        labels = rng.integers(0, 10, batch_size)
        batches.append((images, labels, torch.from_numpy(images), torch.from_numpy(labels)))
    return batches


def ms(seconds: float) -> float:
    return seconds * 1e3


# --- whole steps -----------------------------------------------------------------------------------
def numpy_train_step(model, opt, x, y) -> None:
    logits = model(x)
    _, grad = scratch.cross_entropy(logits, y)
    model.backward(grad, opt)     # each layer's update starts once its gradients are final (scratch/train.py)
    opt.step()


def torch_train_step(model, opt, x, y) -> None:
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def numpy_eval(model, x) -> None:
    with scratch.no_grad():
        model(x)


def torch_eval(model, x) -> None:
    with torch.no_grad():
        model(x)


def timed_in_blocks(numpy_step, torch_step, batches, args) -> tuple[list[float], list[float]]:
    """Seconds per step of each implementation: ``args.warmup`` untimed steps each, then blocks of
    ``args.block`` steps of one implementation and then of the other, until each has ``args.steps``
    timed steps. The first step of every block is not timed (module docstring, "Blocks"), except with
    ``--block 1``, which alternates step by step and times every step.
    """
    clock = time.perf_counter
    for i in range(args.warmup):
        numpy_step(*batches[i % len(batches)])
        torch_step(*batches[i % len(batches)])
    times: tuple[list[float], list[float]] = ([], [])
    first_timed = 0 if args.block == 1 else 1
    i = 0
    while len(times[0]) < args.steps:
        for step, timed in zip((numpy_step, torch_step), times, strict=True):
            for j in range(args.block):
                t0 = clock()
                step(*batches[(i + j) % len(batches)])
                if j >= first_timed and len(timed) < args.steps:
                    timed.append(clock() - t0)
        i += args.block
    return times


# --- the NumPy step, layer by layer -----------------------------------------------------------------
def numpy_train_step_by_layer(model, opt, x, y, times: dict[str, list[float]]) -> None:
    """The step of :func:`numpy_train_step`, with a timer around every step's forward/backward. The Adam
    update runs after the whole backward pass here (``backward`` then ``step``), so that it is timed on its
    own; :func:`numpy_train_step` starts each layer's update during the backward pass."""
    clock = time.perf_counter
    steps = training_steps(model.layers)   # as model(x) runs them: relu1+max1 is one step
    for name, layer, keywords in steps:
        t0 = clock()
        x = layer.forward(x, **keywords)
        times[f"{name} fwd"].append(clock() - t0)
    t0 = clock()
    _, grad = scratch.cross_entropy(x, y)
    times["loss"].append(clock() - t0)
    for name, layer, _ in reversed(steps):
        t0 = clock()
        grad = layer.backward(grad)
        times[f"{name} bwd"].append(clock() - t0)
    t0 = clock()
    opt.step()
    times["adam"].append(clock() - t0)


def numpy_eval_by_layer(model, x, times: dict[str, list[float]]) -> None:
    """The evaluation forward step by step: the layers as ``model(x)`` runs them under ``no_grad``, each
    convolution merged with the batch-norm, ReLU and max-pool after it (scratch/inference.py)."""
    clock = time.perf_counter
    with scratch.no_grad():
        for name, step in scratch.inference_steps(model.layers):
            t0 = clock()
            x = step(x)
            times[f"{name} fwd"].append(clock() - t0)


def print_breakdown(title: str, names, times: dict[str, list[float]], with_backward: bool) -> None:
    median = {k: ms(statistics.median(v)) for k, v in times.items()}
    total = sum(median.values())
    print(f"\n{title} (median ms; sum of medians {total:.2f} ms)")
    header = f"  {'layer':<12} {'forward':>9}" + (f" {'backward':>9} {'total':>9}" if with_backward else "")
    print(header + f" {'share':>7}")
    for name in names:
        fwd = median[f"{name} fwd"]
        bwd = median.get(f"{name} bwd", 0.0) if with_backward else 0.0
        row = f"  {name:<12} {fwd:9.2f}" + (f" {bwd:9.2f} {fwd + bwd:9.2f}" if with_backward else "")
        print(row + f" {100 * (fwd + bwd) / total:6.1f}%")
    if "loss" in median:   # the loss runs between the forward and the backward passes
        print(f"  {'loss':<12} {median['loss']:9.2f} {'':>9} {median['loss']:9.2f} "
              f"{100 * median['loss'] / total:6.1f}%")
    if "adam" in median:
        print(f"  {'adam':<12} {'':>9} {'':>9} {median['adam']:9.2f} {100 * median['adam'] / total:6.1f}%")


# --- how far from the hardware ------------------------------------------------------------------------
def step_flops(model, batch_size: int) -> tuple[float, float]:
    """Floating-point operations of one training step and of one evaluation forward (multiply-adds x 2).

    Only the matrix products count (convolutions and linear layers; the elementwise layers are a few
    percent). Forward: ``2 N O C kh kw Ho Wo`` per convolution, ``2 N in out`` per linear layer. Backward:
    the weight gradient costs as much again, and so does the input gradient, except for the first layer,
    whose input gradient is never computed.
    """
    train = forward = 0.0
    x = np.zeros((batch_size, *model.input_shape), dtype=np.float32)
    first = True
    with scratch.no_grad():
        for layer in model.layers.values():
            y = layer.forward(x)
            if isinstance(layer, scratch.Conv2d):
                kh, kw = layer.kernel_size
                flops = 2.0 * y.size * layer.in_channels * kh * kw
            elif isinstance(layer, scratch.Linear):
                flops = 2.0 * y.size * layer.in_features
            else:
                flops = 0.0
            if flops:
                forward += flops
                train += flops * (2 if first else 3)
                first = False
            x = y
    return train, forward


def matmul_gflops(repeats: int = 7, n: int = 1024) -> float:
    """The machine's float32 matrix-product speed in GFLOP/s (median of ``repeats`` n x n products)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


_MEMORY_CHILD = r"""
import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[3])
import scratch
from torch_impl import SimpleCNN as TorchCNN


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))  # kB


impl, batch = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)


def train(n, steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n)
    if impl == "numpy":
        model = scratch.SimpleCNN(seed=0, dtype=np.float32)
        opt = scratch.Adam(model.parameters())
        for _ in range(steps):
            _, grad = scratch.cross_entropy(model(x), y)
            model.backward(grad)
            opt.step()
    else:
        model = TorchCNN()
        opt = torch.optim.Adam(model.parameters())
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(tx), ty).backward()
            opt.step()


train(2, 1)   # a tiny first run loads the code every step runs (kernels, libraries): that is not data
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")   # resets the peak (VmHWM) to the current resident size
before = status("VmRSS:")
train(batch, 3)
print(status("VmHWM:") - before)
"""


#: Child processes per implementation for the memory line: torch's peak varies from one to the next (from 32
#: to 53 MiB at batch 64 on a 2-core AMD EPYC, most between 36 and 42), NumPy's by a few tenths of a MiB.
MEMORY_RUNS = 3


def peak_step_memory(impl: str, batch_size: int) -> float | None:
    """Peak resident memory (MiB) that training needs: model, optimizer state and one step's arrays.

    Measured in a fresh child process (one thread), as the growth of its peak resident size (Linux's
    ``VmHWM``, reset first) from just before the model is built to the end of three training steps. A
    tiny run (batch 2) goes first, so that the code a step loads (libraries, kernels) is not counted
    as its data, and neither are the imports or the other implementation's arrays. ``None`` where
    ``/proc`` cannot say (not Linux).

    Both children run with the C library's default allocator (``SIMPLECNN_KEEP_MEMORY=0``): with freed
    blocks kept in the process (scratch/memory.py), memory that the tiny run freed is reused without
    growing the resident size, by how much depending on the order of allocations, and torch's measured
    growth then varied between 26 and 37 MiB from run to run. The default allocator measures what each
    step's arrays need.
    """
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "SIMPLECNN_KEEP_MEMORY": "0"}
    try:
        result = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, impl, str(batch_size), root],
                                capture_output=True, text=True, timeout=300, check=True, env=env)
        return int(result.stdout.split()[-1]) / 1024
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


def check_float32(model, x) -> None:
    """No silent float64 anywhere on the float32 path: every forward output and backward gradient."""
    bad = []
    for name, layer in model.layers.items():
        x = layer.forward(x)
        if x.dtype != np.float32:
            bad.append(f"{name} forward -> {x.dtype}")
    _, grad = scratch.cross_entropy(x, np.zeros(len(x), dtype=np.int64))
    for name, layer in reversed(model.layers.items()):
        grad = layer.backward(grad)
        if grad is not None and grad.dtype != np.float32:
            bad.append(f"{name} backward -> {grad.dtype}")
    bad += [f"{k}.grad -> {p.grad.dtype}" for k, p in model.parameters().items() if p.grad.dtype != np.float32]
    if bad:
        raise SystemExit("float32 path upcasts: " + ", ".join(bad))


def blas_description() -> str:
    """NumPy's BLAS library and version and, for OpenBLAS, the kernel set it runs: OpenBLAS picks one
    when it is loaded, from the CPU or from ``OPENBLAS_CORETYPE`` where the environment sets it (on an
    AVX-512 machine, ``Haswell`` kernels do half the multiply-adds per instruction that ``SkylakeX`` ones
    do). Some machines set ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` for every process, because older
    OpenBLAS builds computed wrong results or crashed on their CPU; both are named here when set. To see
    OpenBLAS's own choice, unset both for that one command:
    ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_step.py``."""
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        library = f"{info['name']} {info['version']}"
    except (KeyError, TypeError):
        library = "unknown"
    kernels = loaded_openblas_kernels()
    if kernels is None:
        return library
    forced = [f"{name}={os.environ[name]}" for name in OPENBLAS_CPU_ENV if os.environ.get(name)]
    return f"{library}, {kernels} kernels" + (f" ({', '.join(forced)} in the environment)"
                                              if forced else " (OpenBLAS's choice for this CPU)")


def loaded_openblas_kernels() -> str | None:
    """The kernel set of the OpenBLAS loaded in this process (``"Haswell"``, ``"SkylakeX"``, ...), or
    ``None`` where there is none or it does not say (another BLAS, no Linux ``/proc``)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return None
    for path in sorted(p for p in paths if "openblas" in Path(p).name.lower()):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("openblas_get_corename", "openblas_get_corename64_",
                       "scipy_openblas_get_corename", "scipy_openblas_get_corename64_"):
            corename = getattr(library, symbol, None)
            if corename is not None:
                corename.restype = ctypes.c_char_p
                name = corename()
                return name.decode() if name else None
    return None


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    batches = make_batches(rng, 8, args.batch_size)

    np_model = scratch.SimpleCNN(seed=args.seed, dtype=np.float32)
    t_model = TorchCNN()
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in np_model.state_dict().items()})
    np_opt = scratch.Adam(np_model.parameters())
    t_opt = torch.optim.Adam(t_model.parameters())
    check_float32(scratch.SimpleCNN(seed=args.seed, dtype=np.float32), batches[0][0])  # a spare model

    blas = {v: os.environ[v] for v in BLAS_ENV + ("OPENBLAS_THREAD_TIMEOUT",)}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}")
    print(f"numpy BLAS: {blas_description()}")
    print(f"threads: torch {torch.get_num_threads()}, numpy BLAS env {blas}, "
          f"scratch's elementwise passes {scratch.parallel.workers()}")
    print(f"batch {args.batch_size}, float32, {args.warmup} warm-up + {args.steps} timed steps each, "
          f"numpy and torch in alternating blocks of {args.block} steps"
          + (" (the first of each not timed)" if args.block > 1 else ""))

    # Train steps, in blocks of each implementation; then instrumented numpy steps for the breakdown.
    np_model.train(), t_model.train()
    np_times, t_times = timed_in_blocks(lambda x, y, tx, ty: numpy_train_step(np_model, np_opt, x, y),
                                        lambda x, y, tx, ty: torch_train_step(t_model, t_opt, tx, ty),
                                        batches, args)
    step_names = [name for name, _, _ in training_steps(np_model.layers)]
    by_layer: dict[str, list[float]] = {k: [] for k in
                                        [f"{n} {d}" for n in step_names for d in ("fwd", "bwd")]
                                        + ["loss", "adam"]}
    for i in range(args.steps):
        x, y, _, _ = batches[i % len(batches)]
        numpy_train_step_by_layer(np_model, np_opt, x, y, by_layer)

    # Evaluation: eval mode, no gradient bookkeeping.
    np_model.eval(), t_model.eval()
    np_eval, t_eval = timed_in_blocks(lambda x, y, tx, ty: numpy_eval(np_model, x),
                                      lambda x, y, tx, ty: torch_eval(t_model, tx), batches, args)
    eval_steps = [name for name, _ in scratch.inference_steps(np_model.layers)]
    eval_by_layer: dict[str, list[float]] = {f"{n} fwd": [] for n in eval_steps}
    for i in range(args.steps):
        numpy_eval_by_layer(np_model, batches[i % len(batches)][0], eval_by_layer)

    np_step, t_step = ms(statistics.median(np_times)), ms(statistics.median(t_times))
    np_ev, t_ev = ms(statistics.median(np_eval)), ms(statistics.median(t_eval))
    print(f"\ntrain step: numpy {np_step:.2f} ms, torch {t_step:.2f} ms (median)")
    print(f"evaluation: numpy {np_ev:.2f} ms, torch {t_ev:.2f} ms (median)")
    print_breakdown("numpy train step by layer", step_names, by_layer, with_backward=True)
    print_breakdown("numpy evaluation forward by step", eval_steps, eval_by_layer, with_backward=False)

    gflops = matmul_gflops()
    train_flops, eval_flops = step_flops(np_model, args.batch_size)
    print(f"\nfloat32 matrix product on this machine: {gflops:.1f} GFLOP/s ({args.threads} thread(s)); "
          f"a train step is {train_flops / 1e9:.2f} GFLOP, an evaluation forward {eval_flops / 1e9:.2f} GFLOP")
    for what, flops, np_t, t_t in (("train step", train_flops, np_step, t_step),
                                   ("evaluation", eval_flops, np_ev, t_ev)):
        print(f"fraction of peak, {what}: numpy {flops / (np_t / 1e3) / 1e9 / gflops:.0%}, "
              f"torch {flops / (t_t / 1e3) / 1e9 / gflops:.0%}")
    runs = {impl: [peak_step_memory(impl, args.batch_size) for _ in range(MEMORY_RUNS)] for impl in ("numpy", "torch")}
    if any(None in measured for measured in runs.values()):
        print("peak training memory: not measured (needs Linux's /proc)")
    else:
        memory = {impl: statistics.median(measured) for impl, measured in runs.items()}
        spread = ", ".join(f"{impl} {min(m):.1f} to {max(m):.1f}" for impl, m in runs.items())
        print(f"peak training memory (model, optimizer state, one step; median of {MEMORY_RUNS} runs, {spread}): "
              f"numpy {memory['numpy']:.1f} MiB, torch {memory['torch']:.1f} MiB, "
              f"ratio {memory['numpy'] / memory['torch']:.2f}")

    print(f"\nnumpy/torch evaluation time ratio: {np_ev / t_ev:.2f}")
    print(f"numpy/torch train-step time ratio: {np_step / t_step:.2f}")


if __name__ == "__main__":
    main()

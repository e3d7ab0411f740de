"""``simplecnn sweep``: the guide's choices side by side, one training run per combination.

Every run starts from the same initial weights (the first run's, copied through the state dict: no choice
adds or removes a parameter), sees the same batches in the same order and, in the NumPy implementation,
the same dropout masks; only the optimizer, the activation or the pooling differs. Each optimizer trains
with its own default learning rate (``backends.OPTIMIZERS``) unless ``--lr`` is given. The validation set
is evaluated a few times per epoch so that the curves show how fast each choice learns, not only where it
ends. A run whose loss becomes NaN or infinite is recorded as diverged and the sweep goes on.

Writes ``sweep.json`` and ``sweep.png`` (validation loss and validation accuracy, one curve per run) into
``--out`` and prints a table: run, learning rate, final train and validation loss, test accuracy, seconds.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scratch.data import epoch_batches, load_mnist, split_mnist
from scratch.train import NonFiniteLossError

from .backends import default_lr, make_backend


@dataclass
class SweepConfig:
    impl: str = "numpy"
    optimizers: list[str] = field(default_factory=lambda: ["adam"])
    activations: list[str] = field(default_factory=lambda: ["relu"])
    pools: list[str] = field(default_factory=lambda: ["max"])
    epochs: int = 2
    batch_size: int = 64
    lr: float | None = None  # None: each optimizer's default learning rate
    val_split: float = 0.1
    seed: int = 0
    data_dir: str | None = None
    out: str = "runs/sweep"
    train_limit: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    evals_per_epoch: int = 4
    dataset: str = "mnist"


#: What ``sweep`` writes into its ``--out`` folder (checked before any run starts).
SWEEP_FILES = ("sweep.json", "sweep.png")


def parse_choices(option: str, text: str, choices: Iterable[str]) -> list[str]:
    """``"adam,sgd"`` -> ``["adam", "sgd"]``; an empty item, an unknown value or a repeated one is a
    ``ValueError`` naming the option and the value."""
    allowed = tuple(choices)
    items = [item.strip() for item in text.split(",")]
    for item in items:
        if item not in allowed:
            shown = f"{item!r}" if item else "an empty item"
            raise ValueError(f"{option}: {shown} is not one of {', '.join(allowed)} (in {text!r})")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"{option}: {', '.join(repeated)} given more than once (in {text!r})")
    return items


@dataclass
class Run:
    name: str
    optimizer: str
    activation: str
    pool: str
    lr: float
    epochs_seen: list[float] = field(default_factory=list)  # x of each validation point, in epochs
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)  # mean batch loss of each epoch
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    seconds: float = 0.0
    diverged: str | None = None


def combinations(config: SweepConfig) -> list[Run]:
    """One run per (optimizer, activation, pool), named by the choices that vary across the sweep."""
    lists = {"optimizer": config.optimizers, "activation": config.activations, "pool": config.pools}
    varying = [k for k, values in lists.items() if len(values) > 1] or list(lists)
    runs = []
    for optimizer, activation, pool in itertools.product(*lists.values()):
        chosen = {"optimizer": optimizer, "activation": activation, "pool": pool}
        runs.append(Run("/".join(chosen[k] for k in varying), optimizer, activation, pool,
                        config.lr if config.lr is not None else default_lr(optimizer)))
    return runs


def _eval_points(n_batches: int, per_epoch: int) -> list[int]:
    """Batch counts after which the validation set is evaluated (the last is the end of the epoch)."""
    return sorted({max(1, round(n_batches * (i + 1) / per_epoch)) for i in range(per_epoch)})


def train_run(run: Run, config: SweepConfig, data, initial_state: dict[str, np.ndarray], log=print) -> None:
    """Train one combination from ``initial_state``; fills ``run`` in place."""
    backend = make_backend(config.impl, config.seed, np.dtype(config.dtype), run.lr, config.device,
                           num_classes=initial_state["fc2.weight"].shape[0],  # the data set's class count
                           activation=run.activation, pool=run.pool, optimizer=run.optimizer)
    backend.load_model_state(initial_state)
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            batches = epoch_batches(len(data.train_x), config.batch_size, config.seed, epoch)
            done, loss_sum = 0, 0.0
            for end in _eval_points(len(batches), config.evals_per_epoch):
                loss_sum += backend.train_epoch(data.train_x, data.train_y, batches[done:end], epoch,
                                                first_step=done + 1) * (end - done)
                done = end
                val_loss, val_acc, _ = backend.evaluate(data.val_x, data.val_y)
                run.epochs_seen.append(epoch - 1 + end / len(batches))
                run.val_losses.append(val_loss)
                run.val_accuracies.append(val_acc)
            run.train_losses.append(loss_sum / len(batches))
            log(f"{run.name}: epoch {epoch}/{config.epochs}, train loss {run.train_losses[-1]:.4f}, "
                f"val loss {run.val_losses[-1]:.4f}, val accuracy {run.val_accuracies[-1]:.2f}%")
        run.test_loss, run.test_accuracy, _ = backend.evaluate(data.test_x, data.test_y)
    except NonFiniteLossError as e:
        run.diverged = str(e)
        log(f"{run.name}: diverged ({e})")
    run.seconds = time.perf_counter() - start


def format_table(runs: Sequence[Run]) -> str:
    """run, learning rate, final train and validation loss, test accuracy, seconds: one row per run."""
    header = ("run", "lr", "train loss", "val loss", "test acc", "seconds")
    rows = [(r.name, f"{r.lr:g}", f"{r.train_losses[-1]:.4f}" if r.train_losses and not r.diverged else "diverged",
             f"{r.val_losses[-1]:.4f}" if r.val_losses and not r.diverged else "-",
             f"{r.test_accuracy:.2f}%" if not r.diverged else "-", f"{r.seconds:.1f}") for r in runs]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                       strict=True)))
             for row in (header, *rows)]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def plot_sweep(runs: Sequence[Run], path, title: str) -> None:
    """Validation loss (left) and validation accuracy (right) against epochs, one curve per run."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in runs:
        line, = ax_loss.plot(run.epochs_seen, run.val_losses, "o-", markersize=3, label=f"{run.name} (lr {run.lr:g})")
        ax_acc.plot(run.epochs_seen, run.val_accuracies, "o-", markersize=3, color=line.get_color())
    ax_loss.set_ylabel("validation loss (cross-entropy)")
    ax_acc.set_ylabel("validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def sweep(config: SweepConfig, log=print) -> dict:
    runs = combinations(config)
    mnist = load_mnist(config.data_dir, dataset=config.dataset)
    data = split_mnist(mnist, config.val_split, config.seed, config.train_limit, np.dtype(config.dtype))
    if len(data.train_x) < 2 or len(data.val_x) == 0:
        raise ValueError(f"a sweep needs at least 2 training and 1 validation image, got {len(data.train_x)} and "
                         f"{len(data.val_x)} (raise --train-limit or --val-split)")
    log(f"Sweep ({config.impl}): {len(runs)} run(s) of {config.epochs} epoch(s) on {len(data.train_x)} images, "
        "same initial weights and batches")
    first = runs[0]
    initial = make_backend(config.impl, config.seed, np.dtype(config.dtype), first.lr, config.device,
                           num_classes=mnist.num_classes, activation=first.activation, pool=first.pool,
                           optimizer=first.optimizer).model_state()
    for run in runs:
        train_run(run, config, data, initial, log)
    table = format_table(runs)
    log(table)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": asdict(config), "train_images": len(data.train_x), "runs": [asdict(r) for r in runs]}
    (out / SWEEP_FILES[0]).write_text(json.dumps(result, indent=2))
    plot_sweep(runs, out / SWEEP_FILES[1], f"SimpleCNN sweep ({config.impl}, {len(data.train_x)} training images)")
    log(f"Wrote sweep.json and sweep.png to {out}")
    return result

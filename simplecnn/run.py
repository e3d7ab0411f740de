"""A training run, the same for both implementations: epochs, validation, checkpoints, resume,
Ctrl-C, metrics and the final test evaluation.

The run checkpoints after every epoch (atomically, in ``--out``). A first Ctrl-C finishes the step
in flight, saves a checkpoint *inside* the epoch (the batch order of an epoch is a function of
``(seed, epoch)``, so a resumed run skips the batches already done) and exits; a second Ctrl-C
stops at once. For the NumPy implementation, resuming reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scratch.data import epoch_batches, load_mnist, split_mnist
from scratch.train import NonFiniteLossError

from .backends import default_lr, make_backend
from .checkpoint import MODEL_NAME, load_training_checkpoint, save_model, save_training_checkpoint


@dataclass
class TrainConfig:
    impl: str = "numpy"
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # None: the optimizer's default learning rate (backends.OPTIMIZERS)
    val_split: float = 0.1
    seed: int = 0
    data_dir: str | None = None
    out: str = "runs/latest"
    train_limit: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    optimizer: str = "adam"
    activation: str = "relu"
    pool: str = "max"


def network_choices(config) -> dict:
    """What rebuilds the network and its optimizer: ``make_backend``'s keywords, also recorded in model.npz."""
    return {"activation": config.activation, "pool": config.pool, "optimizer": config.optimizer}


@dataclass
class History:
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


@dataclass
class Progress:
    """Where a run stands: ``step`` batches of epoch ``epoch`` are done (0 = the epoch has not begun)."""

    epoch: int = 1
    step: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0  # time already spent in this epoch before an interruption


class Interrupted(Exception):
    """Raised between two steps after Ctrl-C, so the state saved is that of a whole step."""


class _CtrlC:
    """First SIGINT: ask the loop to stop after the current step. Second: stop at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing the current step and saving a checkpoint "
              "(press again to stop at once)", file=sys.stderr)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _progress_bar(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, unit="batch",
                disable=None, dynamic_ncols=True)


def train(config: TrainConfig, resume: str | None = None, log=print) -> dict:
    """Run (or continue) a training run; returns the metrics written to ``metrics.json``."""
    history, progress = History(), Progress()
    out = Path(config.out)
    if config.lr is None:
        config.lr = default_lr(config.optimizer)
    backend = make_backend(config.impl, config.seed, np.dtype(config.dtype), config.lr, config.device,
                           **network_choices(config))
    if resume is not None:
        model_state, optim_state, meta = load_training_checkpoint(resume)
        backend.load_model_state(model_state)
        backend.load_optimizer_state(optim_state)
        backend.set_rng_state(meta["rng"])
        history, progress = History(**meta["history"]), Progress(**meta["progress"])
        log(f"Resuming {config.impl} from epoch {progress.epoch}, step {progress.step} ({resume})")

    data = split_mnist(load_mnist(config.data_dir), config.val_split, config.seed, config.train_limit,
                       np.dtype(config.dtype))
    if len(data.train_x) < 2:
        raise ValueError(f"only {len(data.train_x)} training image(s) after the validation split")
    out.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        meta = {"config": asdict(config), "history": asdict(history), "progress": asdict(progress),
                "rng": backend.rng_state()}
        save_training_checkpoint(out, backend.model_state(), backend.optimizer_state(), meta)

    with _CtrlC() as ctrl_c:
        while progress.epoch <= config.epochs:
            epoch = progress.epoch
            batches = epoch_batches(len(data.train_x), config.batch_size, config.seed, epoch)
            start = time.perf_counter() - progress.seconds
            bar = _progress_bar(len(batches), progress.step, f"epoch {epoch}/{config.epochs}")

            def after_step(step: int, loss: float, progress: Progress = progress, bar=bar) -> None:
                progress.step += 1
                progress.loss_sum += loss
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if ctrl_c.requested:
                    raise Interrupted

            try:
                backend.train_epoch(data.train_x, data.train_y, batches[progress.step:], epoch, after_step,
                                    first_step=progress.step + 1)
            except Interrupted:
                bar.close()
                progress.seconds = time.perf_counter() - start
                checkpoint()
                log(f"Interrupted at epoch {epoch}, step {progress.step}/{len(batches)}. Checkpoint saved in "
                    f"{out}.\nResume with: simplecnn train --resume {out}")
                raise
            except NonFiniteLossError:
                bar.close()
                raise
            bar.close()
            train_loss = progress.loss_sum / max(progress.step, 1)
            val_loss, val_acc, _ = (backend.evaluate(data.val_x, data.val_y) if len(data.val_x)
                                    else (float("nan"), float("nan"), None))
            seconds = time.perf_counter() - start
            history.train_losses.append(train_loss)
            history.val_losses.append(val_loss)
            history.val_accuracies.append(val_acc)
            history.epoch_seconds.append(seconds)
            log(f"Epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                f"val accuracy {val_acc:.2f}%, {seconds:.1f}s")
            progress = Progress(epoch=epoch + 1)
            checkpoint()
            if ctrl_c.requested:
                log(f"Interrupted after epoch {epoch}. Checkpoint saved in {out}.\n"
                    f"Resume with: simplecnn train --resume {out}")
                raise Interrupted

    test_loss, test_acc, _ = backend.evaluate(data.test_x, data.test_y)
    log(f"Test Loss: {test_loss:.4f}, Test Accuracy: {test_acc:.2f}%")
    save_model(out / MODEL_NAME, backend.model_state(), {"num_classes": 10, **network_choices(config)})
    metrics = {"impl": config.impl, "epochs": config.epochs, **network_choices(config), "lr": config.lr,
               "train_losses": history.train_losses,
               "val_losses": history.val_losses, "val_accuracies": history.val_accuracies,
               "test_loss": test_loss, "test_accuracy": test_acc, "seconds": sum(history.epoch_seconds),
               "epoch_seconds": history.epoch_seconds, "config": asdict(config)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    from .plots import plot_losses

    plot_losses(history.train_losses, history.val_losses, out / "losses.png",
                title=f"SimpleCNN ({config.impl})")
    return metrics


def config_from_checkpoint(directory: str) -> TrainConfig:
    _, _, meta = load_training_checkpoint(directory)
    return TrainConfig(**meta["config"])

"""A training run, the same for both implementations: epochs, validation, checkpoints, resume,
Ctrl-C, metrics and the final test evaluation.

The run checkpoints after every epoch (atomically, in ``--out``). A first Ctrl-C finishes the step
in flight, saves a checkpoint *inside* the epoch (the batch order of an epoch is a function of
``(seed, epoch)``, so a resumed run skips the batches already done) and exits; a second Ctrl-C
stops at once. For the NumPy implementation, resuming reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scratch.data import MNIST, epoch_batches, load_mnist, split_mnist
from scratch.train import NonFiniteLossError
from scratch.train import epoch_line as _epoch_line
from scratch.train import progress_bar as _progress_bar

from .backends import default_lr, make_backend
from .checkpoint import MODEL_NAME, load_training_checkpoint, save_model, save_training_checkpoint, write_atomically
from .datasets import model_config


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
    dataset: str = "mnist"
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
    resume_changes: list[dict] = field(default_factory=list)  # options changed on --resume, and when


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


#: An epoch's training loss this many times chance level (ln 10, where an untrained network starts) or
#: this many times the first epoch's is divergence.
DIVERGENCE_FACTOR = 10.0


def _resume_hint(out: Path) -> str:
    return f"Resume with: simplecnn train --resume {shlex.quote(str(out))}"


def _divergence_warning(losses: list[float], lr: float) -> str | None:
    """One line when the training loss has grown far above where it started: a learning rate too large."""
    if not losses:
        return None
    if losses[-1] > DIVERGENCE_FACTOR * np.log(10) or losses[-1] > DIVERGENCE_FACTOR * losses[0]:
        first = f", epoch 1: {losses[0]:.4g}" if len(losses) > 1 else ""
        return (f"warning: the training loss is diverging (epoch {len(losses)}: {losses[-1]:.4g}; an untrained "
                f"network starts near ln 10 = 2.303{first}); --lr {lr:g} is probably too large (default 1e-3)")
    return None


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values]


def _write_outputs(out: Path, config: TrainConfig, history: History, model_state: dict,
                   test: tuple[float, float] | None, data: MNIST) -> dict:
    """model.npz, metrics.json (test results null until the test evaluation is done) and losses.png."""
    save_model(out / MODEL_NAME, model_state,
               {**model_config(data.dataset, data.num_classes, data.classes), **network_choices(config)})
    metrics = {"impl": config.impl, "dataset": config.dataset, "num_classes": data.num_classes,
               "epochs": config.epochs, **network_choices(config), "lr": config.lr,
               "train_losses": history.train_losses,
               "val_losses": _nan_to_none(history.val_losses),  # null: no validation (--val-split 0)
               "val_accuracies": _nan_to_none(history.val_accuracies),
               "test_loss": test[0] if test else None, "test_accuracy": test[1] if test else None,
               "seconds": sum(history.epoch_seconds), "epoch_seconds": history.epoch_seconds,
               "config": asdict(config), "resume_changes": history.resume_changes}
    text = json.dumps(metrics, indent=2)
    write_atomically(out / "metrics.json", lambda f: f.write(text.encode()))
    from .plots import plot_losses

    plot_losses(history.train_losses, history.val_losses, out / "losses.png", title=f"SimpleCNN ({config.impl})")
    return metrics


def train(config: TrainConfig, resume: str | None = None, log=print, changes: dict | None = None) -> dict:
    """Run (or continue) a training run; returns the metrics written to ``metrics.json``."""
    history, progress = History(), Progress()
    out = Path(config.out)
    if config.lr is None:
        config.lr = default_lr(config.optimizer)
    mnist = load_mnist(config.data_dir, dataset=config.dataset)
    backend = make_backend(config.impl, config.seed, np.dtype(config.dtype), config.lr, config.device,
                           num_classes=mnist.num_classes, **network_choices(config))
    if resume is not None:
        model_state, optim_state, meta = load_training_checkpoint(resume)
        backend.load_model_state(model_state)
        backend.load_optimizer_state(optim_state)
        backend.set_rng_state(meta["rng"])
        history, progress = History(**meta["history"]), Progress(**meta["progress"])
        if changes:
            history.resume_changes.append({"epoch": progress.epoch, "step": progress.step, **changes})
        if progress.epoch > config.epochs:
            log(f"All {config.epochs} epochs of the run in {resume} are done; only the test evaluation is left")
        else:
            log(f"Resuming {config.impl} from epoch {progress.epoch}, step {progress.step} ({resume})")

    data = split_mnist(mnist, config.val_split, config.seed, config.train_limit, np.dtype(config.dtype))
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
                    f"{out}.\n{_resume_hint(out)}")
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
            log(_epoch_line(epoch, config.epochs, train_loss, val_loss, val_acc, seconds))
            warning = _divergence_warning(history.train_losses, config.lr)
            if warning:
                log(warning)
            progress = Progress(epoch=epoch + 1)
            checkpoint()
            if ctrl_c.requested:
                log(f"Interrupted after epoch {epoch}. Checkpoint saved in {out}.\n{_resume_hint(out)}")
                raise Interrupted

    # The finished epochs' outputs first: a Ctrl-C during the test evaluation loses nothing.
    try:
        _write_outputs(out, config, history, backend.model_state(), None, mnist)
        test_loss, test_acc, _ = backend.evaluate(data.test_x, data.test_y)
    except KeyboardInterrupt:
        log(f"Interrupted during the test evaluation. The {config.epochs} epochs are saved in {out} "
            f"(checkpoint.npz, model.npz, metrics.json without test results, losses.png).\n{_resume_hint(out)} "
            "(only the test evaluation is left)")
        raise Interrupted from None
    log(f"Test Loss: {test_loss:.4f}, Test Accuracy: {test_acc:.2f}%")
    metrics = _write_outputs(out, config, history, backend.model_state(), (test_loss, test_acc), mnist)
    log(f"Wrote model.npz, metrics.json, losses.png and checkpoint.npz to {out}")
    return metrics


def config_from_checkpoint(directory: str) -> TrainConfig:
    _, _, meta = load_training_checkpoint(directory)
    return TrainConfig(**meta["config"])

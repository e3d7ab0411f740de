"""Training on real MNIST (a few thousand images): both implementations learn, their checkpoints
evaluate identically in either implementation, runs resume exactly, and a NaN loss stops training."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from scratch.train import NonFiniteLossError
from simplecnn import run as run_module
from simplecnn.checkpoint import load_model
from simplecnn.cli import main
from simplecnn.run import Interrupted, TrainConfig, train


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """Both implementations trained for one epoch on 3,000 images, via the command line."""
    outs = {}
    for impl in ("numpy", "torch"):
        out = tmp_path_factory.mktemp(impl)
        code = main(["train", "--impl", impl, "--epochs", "1", "--train-limit", "3000", "--seed", "1",
                     "--data-dir", str(mnist_dir), "--out", str(out), "--device", "cpu"])
        assert code == 0
        outs[impl] = out
    return outs


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_training_learns_far_above_chance(trained, impl):
    metrics = json.loads((trained[impl] / "metrics.json").read_text())
    assert metrics["impl"] == impl and metrics["epochs"] == 1
    assert metrics["test_accuracy"] > 85.0, metrics["test_accuracy"]  # chance is 10%
    assert metrics["val_accuracies"][-1] > 85.0
    for key in ("train_losses", "val_losses", "test_loss", "seconds"):
        assert key in metrics
    assert (trained[impl] / "losses.png").stat().st_size > 1000
    assert (trained[impl] / "model.npz").is_file() and (trained[impl] / "checkpoint.npz").is_file()


def test_checkpoints_cross_evaluate_with_the_same_accuracy(trained, mnist_dir, capsys):
    for trained_by in ("numpy", "torch"):
        lines = []
        for evaluated_by in ("numpy", "torch"):
            capsys.readouterr()
            assert main(["evaluate", "--impl", evaluated_by, "--checkpoint",
                         str(trained[trained_by] / "model.npz"), "--data-dir", str(mnist_dir)]) == 0
            lines.append(capsys.readouterr().out.strip().splitlines()[-1])
        accuracy = json.loads((trained[trained_by] / "metrics.json").read_text())["test_accuracy"]
        assert lines[0].startswith("Test Loss: ") and f"Test Accuracy: {accuracy:.2f}%" in lines[0]
        assert lines[0].split(", ")[1] == lines[1].split(", ")[1]  # same accuracy in both


def test_evaluate_plots_are_written(trained, mnist_dir, tmp_path):
    assert main(["evaluate", "--impl", "numpy", "--checkpoint", str(trained["torch"] / "model.npz"),
                 "--data-dir", str(mnist_dir), "--plots", "--out", str(tmp_path)]) == 0
    for name in ("confusion_matrix.png", "conv1_filters.png", "misclassified.png"):
        assert (tmp_path / name).stat().st_size > 5000, name


def _config(mnist_dir, out, impl="numpy", epochs=2, optimizer="adam"):
    return TrainConfig(impl=impl, epochs=epochs, batch_size=32, train_limit=400, val_split=0.25, seed=5,
                       data_dir=str(mnist_dir), out=str(out), device="cpu", optimizer=optimizer)


def _interrupt_after(monkeypatch, steps: int):
    """Deliver a real SIGINT to this process after ``steps`` training steps (via the progress bar)."""
    real_bar = run_module._progress_bar
    count = {"n": 0}

    def bar(*args, **kwargs):
        inner = real_bar(*args, **kwargs)
        update = inner.update

        def update_and_maybe_interrupt(n=1):
            update(n)
            count["n"] += 1
            if count["n"] == steps:
                os.kill(os.getpid(), signal.SIGINT)

        inner.update = update_and_maybe_interrupt
        return inner

    monkeypatch.setattr(run_module, "_progress_bar", bar)


@pytest.mark.parametrize("impl, exact, optimizer", [
    ("numpy", True, "adam"), ("torch", False, "adam"),
    *[("numpy", True, name) for name in ("adamw", "sgd", "momentum", "adagrad", "rmsprop")]])
def test_interrupted_run_resumes_to_the_same_weights(mnist_dir, tmp_path, monkeypatch, impl, exact, optimizer):
    straight = train(_config(mnist_dir, tmp_path / "straight", impl, optimizer=optimizer), log=lambda *_: None)

    _interrupt_after(monkeypatch, 13)  # mid-way through epoch 2 (10 steps per epoch)
    with pytest.raises(Interrupted):
        train(_config(mnist_dir, tmp_path / "cut", impl, optimizer=optimizer), log=lambda *_: None)
    monkeypatch.undo()
    messages = []
    resumed = train(run_module.config_from_checkpoint(tmp_path / "cut"), resume=str(tmp_path / "cut"),
                    log=messages.append)
    assert "Resuming" in messages[0] and "epoch 2, step 3" in messages[0]

    a, b = load_model(tmp_path / "straight" / "model.npz"), load_model(tmp_path / "cut" / "model.npz")
    for key in a:
        if exact:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    if exact:
        assert resumed["train_losses"] == straight["train_losses"]
        assert resumed["test_accuracy"] == straight["test_accuracy"]


def test_ctrl_c_message_says_how_to_resume(mnist_dir, tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, 4)
    code = main(["train", "--epochs", "1", "--train-limit", "400", "--batch-size", "32",
                 "--data-dir", str(mnist_dir), "--out", str(tmp_path)])
    assert code == 130
    out = capsys.readouterr().out
    assert f"simplecnn train --resume {tmp_path}" in out
    assert (tmp_path / "checkpoint.npz").is_file()


def test_resumed_run_can_extend_the_epochs(mnist_dir, tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--train-limit", "300", "--data-dir", str(mnist_dir),
                 "--out", str(tmp_path)]) == 0
    assert main(["train", "--resume", str(tmp_path), "--epochs", "2"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["train_losses"]) == 2


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_nan_loss_stops_training_naming_epoch_and_step(mnist_dir, tmp_path, monkeypatch, impl):
    real_split = run_module.split_mnist

    def split_with_a_nan_image(*args, **kwargs):
        data = real_split(*args, **kwargs)
        data.train_x[:] = np.nan  # every batch is poisoned; the first step must stop the run
        return data

    monkeypatch.setattr(run_module, "split_mnist", split_with_a_nan_image)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        train(_config(mnist_dir, tmp_path, impl), log=lambda *_: None)
    assert not (tmp_path / "model.npz").exists()

"""The guide's choices (--optimizer, --activation, --pool) on both implementations: recorded, rebuilt by
evaluate, portable between implementations, resumable for every optimizer; and ``simplecnn sweep``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from parity_tests.parity import assert_close
from simplecnn.backends import OPTIMIZERS, NumpyBackend, TorchBackend, default_lr
from simplecnn.checkpoint import load_model_config
from simplecnn.cli import main
from torch_impl.mirror import TOLERANCES

CHOICES = ["--optimizer", "rmsprop", "--activation", "tanh", "--pool", "avg"]


@pytest.fixture(scope="module")
def trained_choices(mnist_dir, tmp_path_factory):
    """Both implementations trained with RMSprop, tanh and average pooling, one epoch on 1,000 images."""
    outs = {}
    for impl in ("numpy", "torch"):
        out = tmp_path_factory.mktemp(f"choices_{impl}")
        assert main(["train", "--impl", impl, *CHOICES, "--epochs", "1", "--train-limit", "1000", "--seed", "2",
                     "--data-dir", str(mnist_dir), "--out", str(out), "--device", "cpu"]) == 0
        outs[impl] = out
    return outs


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_choices_are_recorded_in_metrics_and_checkpoint(trained_choices, impl):
    metrics = json.loads((trained_choices[impl] / "metrics.json").read_text())
    recorded = {"optimizer": "rmsprop", "activation": "tanh", "pool": "avg"}
    assert {k: metrics[k] for k in recorded} == recorded
    assert metrics["lr"] == default_lr("rmsprop")
    assert metrics["test_accuracy"] > 50.0, metrics["test_accuracy"]  # it learns (chance is 10%)
    assert {k: load_model_config(trained_choices[impl] / "model.npz")[k] for k in recorded} == recorded
    assert {k: load_model_config(trained_choices[impl] / "checkpoint.npz")[k] for k in recorded} == recorded


def test_choice_checkpoints_cross_evaluate(trained_choices, mnist_dir, capsys):
    """evaluate rebuilds tanh + average pooling from the checkpoint: its accuracy is the run's own, in
    both implementations (with the default ReLU + max-pool network it would not be)."""
    for trained_by in ("numpy", "torch"):
        accuracy = json.loads((trained_choices[trained_by] / "metrics.json").read_text())["test_accuracy"]
        for evaluated_by in ("numpy", "torch"):
            capsys.readouterr()
            assert main(["evaluate", "--impl", evaluated_by, "--checkpoint",
                         str(trained_choices[trained_by] / "model.npz"), "--data-dir", str(mnist_dir)]) == 0
            line = capsys.readouterr().out.strip().splitlines()[-1]
            assert f"Test Accuracy: {accuracy:.2f}%" in line, (trained_by, evaluated_by, line)


def _batch(rng: np.random.Generator, n: int = 6):
    return rng.standard_normal((n, 1, 28, 28)), rng.integers(0, 10, n)


def _steps(backends, rng: np.random.Generator, masks_from: NumpyBackend, count: int) -> None:
    """``count`` training steps on the same random batches and dropout masks for every backend."""
    for _ in range(count):
        x, y = _batch(rng)
        masks = masks_from.model.sample_dropout_masks(len(x))
        for backend in backends:
            backend.train_step(x, y, masks)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_torch_optimizer_state_round_trips_and_is_portable(optimizer):
    """torch's state, as flat NumPy keys, restores the exact optimizer (the next steps are bit-identical),
    has the NumPy optimizer's keys and shapes, and NumPy's state continues in torch as NumPy would."""
    rng = np.random.default_rng(3)
    choices = {"optimizer": optimizer, "activation": "leaky_relu", "pool": "avg"}
    lr = 1e-3  # small enough for float64 parity over a few steps for every optimizer
    ours = NumpyBackend(0, np.float64, lr, **choices)
    first = TorchBackend(0, np.float64, lr, device="cpu", **choices)
    first.load_model_state(ours.model_state())
    _steps([ours, first], rng, ours, 3)

    flat = first.optimizer_state()
    numpy_flat = ours.optimizer_state()
    assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in numpy_flat.items()}
    assert int(flat["step"]) == int(numpy_flat["step"]) == 3
    assert len(flat) > 1 or optimizer == "sgd"

    restored = TorchBackend(1, np.float64, lr, device="cpu", **choices)
    restored.load_model_state(first.model_state())
    restored.load_optimizer_state(flat)
    for key, value in restored.optimizer_state().items():
        np.testing.assert_array_equal(value, flat[key], err_msg=key)
    portable = TorchBackend(2, np.float64, lr, device="cpu", **choices)
    portable.load_model_state(ours.model_state())
    portable.load_optimizer_state(numpy_flat)

    _steps([ours, first, restored, portable], rng, ours, 2)
    for key, value in first.model_state().items():
        np.testing.assert_array_equal(restored.model_state()[key], value, err_msg=key)
    tolerance = TOLERANCES[np.dtype(np.float64)].forward
    for key, value in ours.model_state().items():
        if value.dtype.kind == "f" and key not in ("conv1.bias", "conv2.bias", "batch1.running_mean",
                                                   "batch2.running_mean"):  # see compare.BN_ABSORBED
            assert_close(portable.model_state()[key], value, tolerance, scale=1.0, what=f"{optimizer} {key}")


def test_sweep_runs_every_combination_from_the_same_start(mnist_dir, tmp_path, capsys):
    """Each run equals a plain ``train`` of its combination (same initial weights, batches and masks), not a
    continuation of the run before it; sweep.json, the plot and the table are written."""
    common = ["--epochs", "1", "--train-limit", "300", "--batch-size", "32", "--seed", "4",
              "--data-dir", str(mnist_dir)]
    assert main(["sweep", "--optimizer", "adam,momentum", "--pool", "max,avg", *common,
                 "--out", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    runs = {run["name"]: run for run in result["runs"]}
    assert list(runs) == ["adam/max", "adam/avg", "momentum/max", "momentum/avg"]
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 5000
    header = next(line for line in out.splitlines() if line.startswith("run"))
    assert header.split() == ["run", "lr", "train", "loss", "val", "loss", "test", "acc", "seconds"]
    for name, run in runs.items():
        assert any(line.split()[:2] == [name, f"{run['lr']:g}"] for line in out.splitlines())
        assert len(run["val_losses"]) == len(run["epochs_seen"]) == 4 and run["epochs_seen"][-1] == 1.0
    assert runs["momentum/max"]["lr"] == default_lr("momentum")

    assert main(["train", "--optimizer", "momentum", "--pool", "avg", *common, "--out", str(tmp_path / "t")]) == 0
    alone = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert runs["momentum/avg"]["test_accuracy"] == alone["test_accuracy"]
    assert runs["momentum/avg"]["test_loss"] == alone["test_loss"]
    assert runs["momentum/avg"]["val_losses"][-1] == alone["val_losses"][-1]


@pytest.mark.parametrize("argv, words", [
    (["sweep", "--optimizer", "adam,nesterov"], ["--optimizer", "'nesterov'", "adam, adamw, sgd"]),
    (["sweep", "--activation", "relu,,tanh"], ["--activation", "empty item"]),
    (["sweep", "--pool", "avg,avg"], ["--pool", "avg", "more than once"]),
    (["sweep", "--impl", "jax"], ["--impl", "jax"]),
    (["train", "--optimizer", "lbfgs"], ["--optimizer", "lbfgs"]),
    (["train", "--activation", "gelu"], ["--activation", "gelu"]),
    (["compare", "--pool", "min"], ["--pool", "min"]),
])
def test_bad_choices_give_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simplecnn: error: "), err
    for word in words:
        assert word in err


def test_models_reject_unknown_choices_by_name():
    import scratch
    import torch_impl

    with pytest.raises(ValueError, match="activation.*'swish'"):
        scratch.SimpleCNN(activation="swish")
    with pytest.raises(ValueError, match="pool.*'min'"):
        torch_impl.SimpleCNN(pool="min")
    with pytest.raises(ValueError, match="optimizer.*'lbfgs'"):
        NumpyBackend(0, optimizer="lbfgs")

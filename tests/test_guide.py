"""The guide's script runs as written against both implementations (issue 12 §1), and its API shares
the CLI's data, batch order and training loop."""

from __future__ import annotations

import functools
import importlib
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import scratch
import torch_impl
from scratch.data import epoch_batches, load_dataset, split_mnist
from simplecnn.backends import make_backend

REPO = Path(__file__).resolve().parents[1]

#: The guide's script, as the issue quotes it.
GUIDE_SCRIPT = """\
cnn_model, loss_fn, adam_optimizer, h_device = _setup_model_for_training(num_class, learning_rate)
train_loader, val_loader, test_loader = get_mnist_dataloaders(batch_size, validation_split)
train_losses, validation_losses = train_model(cnn_model, loss_fn, adam_optimizer, train_loader, val_loader, h_device)
test_accuracy, test_loss = evaluate_model(cnn_model, loss_fn, test_loader, h_device)
print(f"\\nTest Loss: {test_loss:.4f},Test Accuracy: {test_accuracy:.2f}%")
plot_training_losses(train_losses, validation_losses)
"""

PACKAGES = {"numpy": "scratch", "torch": "torch_impl"}
GUIDE_NAMES = ("_setup_model_for_training", "get_mnist_dataloaders", "train_model", "evaluate_model",
               "plot_training_losses")


def test_the_example_holds_the_guides_lines_unchanged():
    text = (REPO / "examples" / "guide.py").read_text()
    body = text.split("# --- the guide's script ---\n")[1].split("    # --- end of the guide's script ---")[0]
    assert [line.strip() for line in body.splitlines()] == GUIDE_SCRIPT.splitlines()


@pytest.mark.parametrize("impl", PACKAGES)
def test_guide_script_runs_unchanged(impl, tiny_idx, tmp_path, monkeypatch, capsys):
    package = importlib.import_module(PACKAGES[impl])
    namespace = {name: getattr(package, name) for name in GUIDE_NAMES}
    # The data is the generated folder: the call keeps the script's two arguments, the folder is a default.
    namespace["get_mnist_dataloaders"] = functools.partial(package.get_mnist_dataloaders, data_dir=tiny_idx,
                                                           dataset="idx")
    namespace.update(num_class=3, learning_rate=1e-3, batch_size=32, validation_split=0.25)
    monkeypatch.chdir(tmp_path)
    exec(GUIDE_SCRIPT, namespace)
    out = capsys.readouterr().out
    assert len(namespace["train_losses"]) == len(namespace["validation_losses"]) == 10  # epochs=10, the default
    assert all(math.isfinite(v) for v in namespace["train_losses"] + namespace["validation_losses"])
    assert "Epoch 10/10: train loss" in out and "val accuracy" in out
    assert f"Test Loss: {namespace['test_loss']:.4f},Test Accuracy: {namespace['test_accuracy']:.2f}%" in out
    assert namespace["test_accuracy"] > 90.0  # the blocks are easy: far above chance (33%)
    assert namespace["train_losses"][-1] < namespace["train_losses"][0]
    assert (tmp_path / "training_losses.png").stat().st_size > 0  # no display: saved, not shown


def test_both_implementations_get_identical_batches(tiny_idx):
    loaders = [importlib.import_module(p).get_mnist_dataloaders(16, 0.25, data_dir=tiny_idx, dataset="idx", seed=3)
               for p in PACKAGES.values()]
    for numpy_loader, torch_loader in zip(*loaders, strict=True):
        for _ in range(2):  # a second pass: the next epoch's order, the same in both
            ours, theirs = list(numpy_loader), list(torch_loader)
            assert len(ours) == len(theirs) == len(numpy_loader) == len(torch_loader)
            for (x, y), (tx, ty) in zip(ours, theirs, strict=True):
                np.testing.assert_array_equal(x, tx.numpy())
                np.testing.assert_array_equal(y, ty.numpy())


def test_training_batches_follow_the_clis_seeded_order(tiny_idx):
    train, _, _ = scratch.get_mnist_dataloaders(16, 0.25, data_dir=tiny_idx, dataset="idx", seed=5)
    split = split_mnist(load_dataset("idx", tiny_idx), 0.25, 5)
    for epoch in (1, 2):
        batches = list(train)
        expected = epoch_batches(len(split.train_x), 16, 5, epoch)
        assert len(batches) == len(expected)
        for (x, y), idx in zip(batches, expected, strict=True):
            np.testing.assert_array_equal(x, split.train_x[idx])
            np.testing.assert_array_equal(y, split.train_y[idx])


def test_numpy_train_model_is_the_clis_training_loop(tiny_idx):
    """One epoch of the guide's train_model and one epoch of the CLI's backend end in the same weights."""
    train, val, _ = scratch.get_mnist_dataloaders(16, 0.25, data_dir=tiny_idx, dataset="idx", seed=2)
    model, loss_fn, optimizer, device = scratch.setup_model_for_training(3, 2e-3, seed=2)
    scratch.train_model(model, loss_fn, optimizer, train, val, device, epochs=1)
    split = split_mnist(load_dataset("idx", tiny_idx), 0.25, 2)
    backend = make_backend("numpy", seed=2, lr=2e-3, num_classes=3)
    backend.train_epoch(split.train_x, split.train_y, epoch_batches(len(split.train_x), 16, 2, 1), 1)
    for name, value in backend.model_state().items():
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)


def test_evaluate_model_returns_accuracy_then_mean_loss(tiny_idx):
    _, _, test = scratch.get_mnist_dataloaders(7, 0.25, data_dir=tiny_idx, dataset="idx")
    model, loss_fn, _, device = scratch.setup_model_for_training(3, seed=1)
    accuracy, loss = scratch.evaluate_model(model, loss_fn, test, device)
    x = np.concatenate([x for x, _ in test])
    y = np.concatenate([y for _, y in test])
    with scratch.no_grad():
        model.eval()
        logits = model(x)
    assert accuracy == pytest.approx(100.0 * np.mean(logits.argmax(1) == y))
    assert loss == pytest.approx(scratch.cross_entropy(logits, y)[0], rel=1e-5)
    torch_model, torch_loss, _, torch_device = torch_impl.setup_model_for_training(3, device="cpu")
    _, _, torch_test = torch_impl.get_mnist_dataloaders(7, 0.25, data_dir=tiny_idx, dataset="idx")
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    torch_accuracy, torch_loss_value = torch_impl.evaluate_model(torch_model, torch_loss, torch_test, torch_device)
    assert torch_accuracy == pytest.approx(accuracy) and torch_loss_value == pytest.approx(loss, rel=1e-4)


def test_numpy_guide_refuses_a_gpu_device(tiny_idx):
    model, loss_fn, optimizer, _ = scratch.setup_model_for_training(3)
    _, _, test = scratch.get_mnist_dataloaders(8, 0.25, data_dir=tiny_idx, dataset="idx")
    with pytest.raises(ValueError, match="CPU only.*'cuda'"):
        scratch.evaluate_model(model, loss_fn, test, "cuda")


def test_plot_training_losses_saves_where_asked(tmp_path):
    saved = scratch.plot_training_losses([1.0, 0.5], [1.1, 0.7], tmp_path / "sub" / "losses.png")
    assert saved == tmp_path / "sub" / "losses.png" and saved.stat().st_size > 0
    assert torch_impl.plot_training_losses is scratch.plot_training_losses


def test_guide_example_runs(tiny_idx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(REPO / "examples" / "guide.py"), run_name="not_main")["main"](
        ["--impl", "torch", "--epochs", "1", "--dataset", "idx", "--data-dir", str(tiny_idx)])
    assert "Epoch 1/1" in capsys.readouterr().out
    assert (tmp_path / "training_losses.png").exists()

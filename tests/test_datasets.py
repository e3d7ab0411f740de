"""The MNIST family (issue 12 §2): --dataset, the registry's folders and checksums, the idx folder, and
the one-line errors. Every data set here is a small generated one (tests/conftest.py write_mnist_like)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from conftest import write_idx, write_mnist_like

from scratch import data
from scratch.data import DATASETS, DataError, load_dataset, pixel_statistics, raw_dir
from simplecnn.checkpoint import MODEL_CONFIG_KEY, load_model, load_model_config, save_model
from simplecnn.cli import main
from simplecnn.plots import plot_confusion_matrix


def _as_known(monkeypatch, dataset: str, arrays: dict[str, np.ndarray]) -> None:
    """Make the registry's checksums for ``dataset`` those of ``arrays`` (the real files are not in tests)."""
    sums = {}
    for name, array in arrays.items():
        header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        sums[name] = hashlib.sha256(header + array.tobytes()).hexdigest()
    monkeypatch.setitem(DATASETS, dataset, dataclasses.replace(DATASETS[dataset], sha256=sums))


def _train(tmp_path, capsys, *options):
    code = main(["train", "--epochs", "1", "--batch-size", "32", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_fashion_mnist_gz_files_in_their_folder_train(impl, tmp_path, monkeypatch, capsys):
    arrays = write_mnist_like(raw_dir(tmp_path / "d", "fashion-mnist"), classes=10, gz=True)
    assert (tmp_path / "d" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    _as_known(monkeypatch, "fashion-mnist", arrays)
    _train(tmp_path, capsys, "--impl", impl, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "d"),
           "--out", str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == metrics["config"]["dataset"] == "fashion-mnist" and metrics["num_classes"] == 10
    config = load_model_config(tmp_path / "run" / "model.npz")
    assert config["dataset"] == "fashion-mnist" and config["classes"][9] == "Ankle boot"
    assert MODEL_CONFIG_KEY not in load_model(tmp_path / "run" / "model.npz")


def test_fashion_mnist_normalization_is_its_own():
    info = DATASETS["fashion-mnist"]
    assert (info.mean, info.std) == (0.2860, 0.3530) and (DATASETS["mnist"].mean, DATASETS["mnist"].std) != (
        info.mean, info.std)


def test_idx_folder_trains_with_its_class_count_and_evaluates(tiny_idx, tmp_path, capsys):
    out = _train(tmp_path, capsys, "--dataset", "idx", "--data-dir", str(tiny_idx), "--out", str(tmp_path / "r"))
    test_line = [line for line in out.splitlines() if line.startswith("Test Loss")][0]
    state = load_model(tmp_path / "r" / "model.npz")
    assert state["fc2.weight"].shape == (3, 512)  # three classes in the labels: three outputs
    assert load_model_config(tmp_path / "r" / "model.npz")["num_classes"] == 3
    for impl in ("numpy", "torch"):
        assert main(["evaluate", "--impl", impl, "--checkpoint", str(tmp_path / "r"), "--data-dir", str(tiny_idx),
                     "--plots"]) == 0
        printed = capsys.readouterr().out
        assert printed.startswith(test_line) and "trained on" not in printed  # same set: no note
    assert (tmp_path / "r" / "confusion_matrix.png").is_file()


def test_evaluating_on_another_data_set_says_so(tiny_idx, tmp_path, monkeypatch, capsys):
    _train(tmp_path, capsys, "--dataset", "idx", "--data-dir", str(tiny_idx), "--out", str(tmp_path / "r"))
    write_mnist_like(raw_dir(tmp_path / "k", "kmnist"), classes=3, seed=4)
    code = main(["evaluate", "--checkpoint", str(tmp_path / "r"), "--dataset", "kmnist", "--data-dir",
                 str(tmp_path / "k")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "note: this model was trained on MNIST-format folder (idx); evaluating it on KMNIST (kmnist)" in printed


def test_a_model_without_a_recorded_config_evaluates_as_mnist_sized(tmp_path):
    import scratch

    save_model(tmp_path / "m.npz", scratch.SimpleCNN(seed=0).state_dict())
    assert load_model_config(tmp_path / "m.npz") == {}
    save_model(tmp_path / "c.npz", scratch.SimpleCNN(4, seed=0).state_dict(), {"num_classes": 4, "dataset": "idx"})
    assert load_model_config(tmp_path / "c.npz") == {"num_classes": 4, "dataset": "idx"}
    assert set(load_model(tmp_path / "c.npz")) == set(scratch.SimpleCNN(4, seed=0).state_dict())


def test_kmnist_is_checked_by_structure_and_normalized_from_its_images(tmp_path):
    arrays = write_mnist_like(raw_dir(tmp_path, "kmnist"), classes=10)
    kmnist = load_dataset("kmnist", tmp_path, download=False)
    assert kmnist.classes[:2] == ("o", "ki") and kmnist.num_classes == 10
    assert (kmnist.mean, kmnist.std) == pytest.approx(pixel_statistics(arrays["train-images-idx3-ubyte"]))


def test_pixel_statistics_are_the_mean_and_std_of_the_scaled_pixels():
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    mean, std = pixel_statistics(images)
    assert mean == pytest.approx(np.mean(images / 255.0), rel=1e-12)
    assert std == pytest.approx(np.std(images / 255.0), rel=1e-12)


def test_mnist_normalization_constants_are_its_training_statistics(mnist_dir):
    mean, std = pixel_statistics(load_dataset("mnist", mnist_dir, download=False).train_images)
    assert (round(mean, 4), round(std, 4)) == (DATASETS["mnist"].mean, DATASETS["mnist"].std)


def test_checksum_mismatch_names_the_set_and_suggests_the_right_one(tmp_path, monkeypatch):
    arrays = write_mnist_like(raw_dir(tmp_path, "mnist"), classes=10)
    _as_known(monkeypatch, "fashion-mnist", arrays)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    message = str(err.value)
    assert "expected MNIST's" in message and "Fashion-MNIST's: use --dataset fashion-mnist" in message
    assert "\n" not in message
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(DATASETS["fashion-mnist"], sha256={}))
    with pytest.raises(DataError, match="checksum mismatch .*expected MNIST's .*not MNIST.*--dataset idx"):
        load_dataset("mnist", tmp_path, download=False)


def _cli_error(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simplecnn: error: "), err
    return code, err


def test_unknown_data_set_is_one_line(tmp_path, capsys):
    code, err = _cli_error(capsys, "train", "--dataset", "cifar10", "--out", str(tmp_path / "o"))
    assert code == 2 and "--dataset" in err and "cifar10" in err and "fashion-mnist" in err
    with pytest.raises(DataError, match="unknown data set 'cifar10': expected one of mnist, fashion-mnist"):
        load_dataset("cifar10", tmp_path)


def test_three_of_four_files_is_one_line(tiny_idx, tmp_path, capsys):
    (tiny_idx / "t10k-labels-idx1-ubyte").unlink()
    code, err = _cli_error(capsys, "train", "--dataset", "idx", "--data-dir", str(tiny_idx), "--out",
                           str(tmp_path / "o"))
    assert code == 1 and "missing: t10k-labels-idx1-ubyte" in err and str(tiny_idx) in err


def test_three_of_four_files_names_the_folder_and_all_four(tiny_idx):
    (tiny_idx / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("idx", tiny_idx)
    assert all(name in str(err.value) for name in data.FILE_NAMES) and "--dataset idx" in str(err.value)


def test_idx_test_labels_outside_the_class_count(tiny_idx, tmp_path, capsys):
    labels = np.zeros(40, np.uint8)
    labels[7] = 5  # the training labels are 0-2: three classes
    write_idx(tiny_idx / "t10k-labels-idx1-ubyte", labels)
    code, err = _cli_error(capsys, "train", "--dataset", "idx", "--data-dir", str(tiny_idx), "--out",
                           str(tmp_path / "o"))
    assert code == 1 and "t10k labels contain 5, outside the 3 classes" in err


def test_known_set_labels_outside_its_classes(tmp_path):
    arrays = write_mnist_like(raw_dir(tmp_path, "kmnist"), classes=10)
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[3] = 10
    write_idx(raw_dir(tmp_path, "kmnist") / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="train labels contain 10, outside the 10 classes of KMNIST"):
        load_dataset("kmnist", tmp_path, download=False)


def test_images_that_are_not_28x28(tiny_idx, tmp_path, capsys):
    write_idx(tiny_idx / "train-images-idx3-ubyte", np.zeros((120, 32, 32), np.uint8))
    code, err = _cli_error(capsys, "train", "--dataset", "idx", "--data-dir", str(tiny_idx), "--out",
                           str(tmp_path / "o"))
    assert code == 1 and "train images have shape (120, 32, 32), expected (N, 28, 28)" in err


def test_idx_folders_are_never_downloaded(tmp_path):
    with pytest.raises(DataError, match="--dataset idx needs all four of"):
        load_dataset("idx", tmp_path / "empty", download=True)


def test_confusion_matrix_has_one_row_per_class(tmp_path):
    labels, predicted = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])
    matrix = plot_confusion_matrix(labels, predicted, tmp_path / "c.png", ("Coat", "Bag", "Shirt"))
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert plot_confusion_matrix(labels, predicted, tmp_path / "d.png").shape == (10, 10)  # digits by default

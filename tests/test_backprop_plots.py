"""``evaluate --plots --image INDEX``: each layer's output beside dL/d(output), for either implementation.

The real check: for the same weights and the same image, the NumPy implementation's own cached values
and torch's (hooks + retain_grad) agree layer by layer in float64, within the parity suite's tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from simplecnn.backprop_plots import BACKPROP_FILE, numpy_trace, plot_backprop, torch_trace
from simplecnn.checkpoint import save_model
from simplecnn.cli import main
from torch_impl.mirror import TOLERANCES, Comparison, torch_simplecnn


def _model_with_running_statistics(seed: int) -> scratch.SimpleCNN:
    """A float64 model whose batch-norm running statistics and affine parameters are not the defaults
    (0, 1, 1, 0), so that eval-mode batch-norm really transforms its input and its gradient."""
    model = scratch.SimpleCNN(seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for layer in ("batch1", "batch2"):
        size = state[f"{layer}.running_mean"].shape
        state[f"{layer}.running_mean"] = rng.normal(0.0, 0.5, size)
        state[f"{layer}.running_var"] = rng.uniform(0.2, 3.0, size)
        state[f"{layer}.weight"] = rng.uniform(0.5, 2.0, size)
        state[f"{layer}.bias"] = rng.normal(0.0, 0.3, size)
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_torch_capture_the_same_activations_and_gradients(seed):
    model = _model_with_running_statistics(seed)
    twin = torch_simplecnn(model)
    rng = np.random.default_rng(100 + seed)
    image = rng.normal(0.0, 1.0, (1, 1, 28, 28))  # continuous values: no tied maxima in the pools
    label = int(rng.integers(10))
    before = image.copy()
    ours = numpy_trace(model, image, label)
    theirs = torch_trace(twin, image, label, list(model.layers))
    np.testing.assert_array_equal(image, before)  # the input is not changed

    assert [layer.name for layer in ours.layers] == list(model.layers) == [layer.name for layer in theirs.layers]
    assert ours.label == theirs.label == label and ours.predicted == theirs.predicted
    comparisons = [Comparison("loss", np.float64(ours.loss), np.float64(theirs.loss), kind="forward")]
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        comparisons.append(Comparison(f"{a.name} output", a.output, b.output, kind="forward"))
        comparisons.append(Comparison(f"dL/d({a.name} output)", a.grad, b.grad, kind="backward"))
    problems = [p for c in comparisons if (p := c.problem(TOLERANCES[np.dtype(np.float64)])) is not None]
    assert problems == []
    # The captured values are the layers' own, not one value repeated: every step changes something
    # except eval-mode dropout (the identity) and flatten (a reshape).
    by_name = {layer.name: layer for layer in ours.layers}
    np.testing.assert_array_equal(by_name["dropout1"].output, by_name["max1"].output)
    assert not np.array_equal(by_name["relu1"].output, by_name["batch1"].output)
    assert not np.array_equal(by_name["relu1"].grad, by_name["batch1"].grad)
    # What docs/01-overview.md tells a learner to look for. The logits' gradient is softmax - onehot:
    # negative at the true class only, summing to zero.
    logits = by_name["fc2"]
    assert logits.grad[label] < 0 and (np.delete(logits.grad, label) > 0).all()
    assert abs(logits.grad.sum()) < 1e-12
    # ReLU gates: no gradient reaches the batch-norm output where the ReLU's output is 0.
    for bn, relu in (("batch1", "relu1"), ("batch2", "relu2")):
        off = by_name[relu].output == 0
        assert off.any() and (by_name[bn].grad[off] == 0).all()
    np.testing.assert_array_equal(by_name["dropout2"].grad, by_name["max2"].grad)
    # Max-pool routes each window's gradient to one cell: at most one nonzero per 2x2 window.
    windows = (by_name["relu1"].grad != 0).reshape(32, 12, 2, 12, 2).sum(axis=(2, 4))
    assert windows.max() == 1


def test_the_figure_is_drawn(tmp_path):
    model = _model_with_running_statistics(0)
    image = np.random.default_rng(0).normal(size=(1, 1, 28, 28))
    plot_backprop(numpy_trace(model, image, 3), image, tmp_path / BACKPROP_FILE, title="test")
    assert (tmp_path / BACKPROP_FILE).stat().st_size > 20000


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("untrained") / "model.npz"
    save_model(path, scratch.SimpleCNN(seed=3).state_dict())
    return path


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_evaluate_plots_write_the_backprop_figure(impl, untrained_checkpoint, mnist_dir, tmp_path, capsys):
    assert main(["evaluate", "--impl", impl, "--checkpoint", str(untrained_checkpoint), "--data-dir",
                 str(mnist_dir), "--plots", "--image", "9999", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert (tmp_path / BACKPROP_FILE).stat().st_size > 20000
    assert BACKPROP_FILE in capsys.readouterr().out


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_bad_image_index_fails_before_loading_data(value, untrained_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("scratch.data.load_mnist", lambda *a: pytest.fail("data loaded"))
    assert main(["evaluate", "--checkpoint", str(untrained_checkpoint), "--plots", "--image", value,
                 "--out", str(tmp_path)]) == 2
    _one_error_line(capsys, "--image", value)


def test_image_beyond_the_test_set(untrained_checkpoint, mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("simplecnn.backends.NumpyBackend.evaluate", lambda *a: pytest.fail("evaluated"))
    assert main(["evaluate", "--checkpoint", str(untrained_checkpoint), "--data-dir", str(mnist_dir), "--plots",
                 "--image", "10000", "--out", str(tmp_path)]) == 2
    _one_error_line(capsys, "--image 10000", "10000 images")
    assert not (tmp_path / BACKPROP_FILE).exists()


def test_image_without_plots_is_refused(untrained_checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(untrained_checkpoint), "--image", "3"]) == 2
    _one_error_line(capsys, "--image", "--plots")

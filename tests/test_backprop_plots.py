"""`evaluate --plots --image INDEX`: backward-pass figures, and their values agree across implementations."""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from simplecnn.backprop_plots import SHOWN_LAYERS, trace_numpy, trace_torch
from simplecnn.checkpoint import save_model
from simplecnn.cli import main

torch = pytest.importorskip("torch")
from torch_impl.mirror import TOLERANCES, Comparison, torch_simplecnn  # noqa: E402


def _model_with_running_stats(dtype, seed: int = 3) -> scratch.SimpleCNN:
    """A SimpleCNN whose batch-norm running statistics are not the (0, 1) defaults, so eval mode matters."""
    model = scratch.SimpleCNN(seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = rng.normal(0, 0.3, value.shape).astype(dtype)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(dtype)
    model.load_state_dict(state)
    return model


def test_numpy_and_torch_traces_agree_in_float64():
    model = _model_with_running_stats(np.float64)
    twin = torch_simplecnn(model)
    image = np.random.default_rng(7).normal(size=(1, 1, 28, 28))
    before = image.copy()
    ours, theirs = trace_numpy(model, image, 4), trace_torch(twin, image, 4)
    np.testing.assert_array_equal(image, before)
    assert model.training and twin.training  # the trace restores the mode it found
    assert list(ours.outputs) == list(theirs.outputs) == list(SHOWN_LAYERS)
    tolerance = TOLERANCES[np.dtype(np.float64)]
    comparisons = [Comparison("loss", np.array(ours.loss), np.array(theirs.loss), kind="forward")]
    comparisons += [Comparison(f"{n} output", ours.outputs[n], theirs.outputs[n], kind="forward")
                    for n in SHOWN_LAYERS]
    comparisons += [Comparison(f"dL/d {n}", ours.grads[n], theirs.grads[n]) for n in SHOWN_LAYERS]
    problems = [p for c in comparisons if (p := c.problem(tolerance))]
    assert not problems, problems
    assert ours.predicted == theirs.predicted
    # Eval-mode dropout is the identity forward and backward: its output and gradient pass through unchanged.
    np.testing.assert_array_equal(ours.outputs["dropout1"], ours.outputs["max1"])
    np.testing.assert_array_equal(ours.grads["max2"], ours.grads["dropout2"])
    assert np.abs(ours.grads["conv1"]).max() > 0
    # Max-pool routes each 2x2 window's gradient to one cell: at most one non-zero per window (docs 01).
    per_window = (ours.grads["conv1"] != 0).reshape(1, 32, 12, 2, 12, 2).sum(axis=(3, 5))
    assert per_window.max() == 1


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_evaluate_plots_writes_one_figure_per_layer(impl, mnist_dir, tmp_path, capsys):
    save_model(tmp_path / "model.npz", _model_with_running_stats(np.float32).state_dict())
    code = main(["evaluate", "--impl", impl, "--checkpoint", str(tmp_path / "model.npz"), "--data-dir",
                 str(mnist_dir), "--plots", "--image", "17", "--out", str(tmp_path / "plots")])
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "plots").glob("backprop_*.png"))
    assert written == [f"backprop_{i:02d}_{n}.png" for i, n in enumerate(SHOWN_LAYERS, start=1)]
    assert "test image 17" in capsys.readouterr().out


@pytest.mark.parametrize("index", ["-1", "10000"])
def test_bad_image_index_is_one_line_exit_2(index, mnist_dir, tmp_path, capsys):
    save_model(tmp_path / "model.npz", scratch.SimpleCNN(seed=0).state_dict())
    code = main(["evaluate", "--checkpoint", str(tmp_path / "model.npz"), "--data-dir", str(mnist_dir),
                 "--plots", "--image", index])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--image {index}" in err and "0..9999" in err


def test_image_without_plots_is_one_line_exit_2(mnist_dir, tmp_path, capsys, monkeypatch):
    """``--image`` picks the image of the figures: without ``--plots`` it would be silently ignored."""
    save_model(tmp_path / "model.npz", scratch.SimpleCNN(seed=0).state_dict())
    monkeypatch.setattr("scratch.data.load_mnist", lambda *a: pytest.fail("evaluation started"))
    code = main(["evaluate", "--checkpoint", str(tmp_path / "model.npz"), "--image", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--image" in err and "--plots" in err


def test_plots_check_the_backward_pass_files_before_evaluating(tmp_path, capsys, monkeypatch):
    """A folder where a backward-pass figure would go is an output problem found before any work."""
    save_model(tmp_path / "model.npz", scratch.SimpleCNN(seed=0).state_dict())
    (tmp_path / "plots" / "backprop_03_max1.png").mkdir(parents=True)
    monkeypatch.setattr("scratch.data.load_mnist", lambda *a: pytest.fail("evaluation started"))
    code = main(["evaluate", "--checkpoint", str(tmp_path / "model.npz"), "--plots", "--out", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert code == 2 and "backprop_03_max1.png" in err


def test_what_the_overview_tells_a_learner_to_look_for():
    """docs/01-overview.md: ReLU stops the gradient where batch-norm's output was negative; the logits'
    gradient is softmax - onehot, so a confident right answer (tiny loss) has gradients as tiny."""
    model = _model_with_running_stats(np.float64)
    rng = np.random.default_rng(11)
    image = rng.normal(size=(1, 1, 28, 28))
    for label in range(10):
        trace = trace_numpy(model, image, label)
        for bn in ("batch1", "batch2"):
            negative = trace.outputs[bn] < 0
            assert negative.any() and (trace.grads[bn][negative] == 0).all()
            assert (trace.grads[bn][trace.outputs[bn] > 0] != 0).any()
        logits = trace.outputs["fc2"][0]
        softmax = np.exp(logits - logits.max())
        softmax /= softmax.sum()
        np.testing.assert_allclose(trace.grads["fc2"][0], softmax - np.eye(10)[label], rtol=1e-12, atol=1e-15)
        # max |softmax - onehot| = 1 - p(label) <= -log p(label) = loss: the gradients are no larger than the loss
        assert 0 < np.abs(trace.grads["fc2"]).max() <= trace.loss

"""``simplecnn gradcheck``'s backend: every component passes, the table is printed, failures are caught."""

import numpy as np
import pytest

from simplecnn import gradcheck
from torch_impl import mirror

EXPECTED_COMPONENTS = ["conv2d", "maxpool2d", "batchnorm2d (train)", "batchnorm2d (eval)", "dropout", "linear",
                       "relu", "flatten", "cross_entropy", "adam", "adamw", "simplecnn",
                       "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "avgpool2d",
                       "avgpool2d (padding not counted, ceil mode)", "avgpool2d (divisor_override",
                       "CrossEntropyLoss (weight, ignore_index, label_smoothing)",
                       "CrossEntropyLoss (class probabilities)", "MSELoss", "L1Loss", "MeanBiasError",
                       "MultiMarginLoss (p=1", "MultiMarginLoss (p=2", "sgd", "sgd (momentum", "sgd (nesterov)",
                       "adagrad", "rmsprop", "rmsprop (centered",
                       "conv2d (padding same", "conv2d (groups", "conv2d (depthwise", "conv2d (circular, unbatched)",
                       "maxpool2d (return_indices, unbatched)", "batchnorm2d (affine=False", "batchnorm2d (bias=False",
                       "batchnorm2d (track_running_stats=False", "linear (unbatched", "relu (unbatched)"]


def table_rows(output: str) -> dict[str, list[str]]:
    """``component -> [max abs error, max rel error, ok]`` from the printed table."""
    rows = [line.split("|") for line in output.splitlines() if line.count("|") == 3]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:] if not cells[0].startswith("-")}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradcheck_passes_and_prints_one_row_per_component(dtype, capsys):
    assert gradcheck.run(dtype) == 0
    rows = table_rows(capsys.readouterr().out)
    for expected in EXPECTED_COMPONENTS:
        assert any(name.startswith(expected) for name in rows), f"no row for {expected}"
    tolerance = mirror.TOLERANCES[np.dtype(dtype)]
    for name, (abs_error, rel_error, ok) in rows.items():
        assert ok == "ok", name
        assert float(abs_error) >= 0 and float(rel_error) <= tolerance.backward, name


def test_gradcheck_fails_when_a_gradient_is_wrong(monkeypatch, capsys):
    """Break the linear layer's weight gradient: gradcheck must say so and return 1."""
    import scratch.linear

    original = scratch.linear.linear_backward

    def wrong_backward(grad_out, cache):
        dx, dweight, dbias = original(grad_out, cache)
        return dx, dweight * 1.001, dbias

    monkeypatch.setattr(scratch.linear, "linear_backward", wrong_backward)
    assert gradcheck.run("float64") == 1
    output = capsys.readouterr().out
    assert table_rows(output)["linear"][2] == "FAILED"
    assert "grad weight" in output


def test_gradcheck_rejects_an_unknown_dtype():
    with pytest.raises(ValueError, match="float16"):
        gradcheck.run("float16")

"""Checkpoints: atomic writes, every key and shape checked with all problems reported at once."""

from __future__ import annotations

import numpy as np
import pytest

import scratch
from scratch.module import StateDictError
from simplecnn import checkpoint
from simplecnn.backends import TorchBackend


def test_atomic_write_leaves_the_old_file_intact_when_writing_fails(tmp_path):
    path = tmp_path / "model.npz"
    checkpoint.save_arrays(path, {"a": np.arange(3)})

    def failing_write(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_atomically(path, failing_write)
    np.testing.assert_array_equal(checkpoint.load_arrays(path)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left behind


def _broken_state():
    state = scratch.SimpleCNN(seed=0).state_dict()
    del state["fc2.bias"]
    state["conv1.weight"] = np.zeros((32, 1, 3, 3), np.float32)
    state["extra.weight"] = np.zeros(3, np.float32)
    return state


@pytest.mark.parametrize("load", [
    lambda s: scratch.SimpleCNN(seed=0).load_state_dict(s),
    lambda s: TorchBackend(seed=0, device="cpu").load_model_state(s),
])
def test_every_mismatch_is_reported_at_once(load):
    with pytest.raises(StateDictError) as err:
        load(_broken_state())
    message = str(err.value)
    assert "missing key 'fc2.bias'" in message
    assert "unexpected key 'extra.weight'" in message
    assert "'conv1.weight': expected shape (32, 1, 5, 5), got (32, 1, 3, 3)" in message


def test_portable_checkpoint_round_trips_between_implementations(tmp_path):
    model = scratch.SimpleCNN(seed=7)
    checkpoint.save_model(tmp_path / "model.npz", model.state_dict())
    torch_side = TorchBackend(seed=1, device="cpu")
    torch_side.load_model_state(checkpoint.load_model(tmp_path / "model.npz"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(torch_side.model_state()[key], value)


def test_training_checkpoint_holds_model_optimizer_and_meta(tmp_path):
    model = scratch.SimpleCNN(seed=0)
    optimizer = scratch.Adam(model.parameters())
    for p in model.parameters().values():
        p.grad = np.ones_like(p.data)
    optimizer.step()
    checkpoint.save_training_checkpoint(tmp_path, model.state_dict(), optimizer.state_dict(), {"epoch": 3})
    model_state, optim_state, meta = checkpoint.load_training_checkpoint(tmp_path)
    assert meta == {"epoch": 3} and int(optim_state["step"]) == 1
    assert set(model_state) == set(model.state_dict())
    np.testing.assert_array_equal(optim_state["exp_avg.fc1.weight"], optimizer.exp_avg["fc1.weight"])
    # the model part of a training checkpoint is itself a loadable model
    assert set(checkpoint.load_model(tmp_path / "checkpoint.npz")) == set(model.state_dict())

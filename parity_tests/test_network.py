"""The whole SimpleCNN: scratch vs ``torch_impl.SimpleCNN`` trained side by side for a few Adam steps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch
import torch_impl
from torch_impl.mirror import TOLERANCES, simplecnn_training_comparisons

from .parity import whole_network_examples


def test_both_models_have_the_same_state_dict_keys_and_shapes():
    """A checkpoint moves between the implementations only if every key and shape is the same."""
    ours = scratch.SimpleCNN(seed=0).state_dict()
    theirs = torch_impl.SimpleCNN().state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=whole_network_examples(settings.default.max_examples))
@given(st.integers(0, 2**16))
def test_simplecnn_training_matches_torch(dtype, seed):
    """Same weights (through the state dict), same batches, same dropout masks: at each of 3 Adam steps
    the loss, the gradient of every parameter, and every parameter and buffer after the step (running
    statistics, num_batches_tracked) agree; so do the eval-mode logits at the end (running statistics
    used, dropout off). conv1.bias and conv2.bias feed batch-norm, so their true gradient is zero; they
    are compared against the size of their layer's other gradients (see simplecnn_training_comparisons)."""
    tolerance = TOLERANCES[np.dtype(dtype)]
    for comparison in simplecnn_training_comparisons(dtype, seed=seed, batch_size=3, steps=3):
        problem = comparison.problem(tolerance)
        assert problem is None, problem

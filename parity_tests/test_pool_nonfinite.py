"""MaxPool2d with an infinite or NaN upstream gradient: the losers of a window get 0, as in torch.

A backward pass that multiplies the gradient by the 0/1 winner mask would give them ``inf * 0 = NaN``
(docs/04-max-pooling.md, "PyTorch semantics that matter")."""

import numpy as np
import pytest
from hypothesis import given

from torch_impl.mirror import TOLERANCES, to_numpy, to_torch, torch_twin

from .parity import DTYPES, assert_close, random_upstream
from .test_pool import distinct_input, make_pool, output_shape, pool_configs


@pytest.mark.parametrize("dtype", DTYPES)
@given(pool_configs())
def test_maxpool2d_infinite_upstream_gradient_gives_torchs_zeros(dtype, config_and_seed):
    """Some upstream entries are +inf, -inf or NaN: dL/dx equals torch's exactly, NaN for NaN
    (and where overlapping windows add +inf and -inf into one pixel, as torch does too)."""
    config, seed = config_and_seed
    rng = np.random.default_rng(seed)
    layer = make_pool({**config, "return_indices": False})    # the output only; indices are tested elsewhere
    x = distinct_input(config, dtype, rng)
    grad_out = random_upstream(rng, output_shape(config), dtype)
    special = rng.integers(0, 4, size=grad_out.shape)        # 0: finite, 1: +inf, 2: -inf, 3: NaN
    special[(0,) * grad_out.ndim] = 1                        # at least one infinite entry
    grad_out[special == 1], grad_out[special == 2], grad_out[special == 3] = np.inf, -np.inf, np.nan
    x_before, g_before = x.copy(), grad_out.copy()

    layer(x)
    with np.errstate(invalid="ignore"):     # overlapping windows may add +inf and -inf: NaN, as in torch
        ours = layer.backward(grad_out)
    x_torch = to_torch(x, requires_grad=True)
    torch_twin(layer)(x_torch).backward(to_torch(grad_out))
    theirs = to_numpy(x_torch.grad)

    finite = np.isfinite(theirs)
    np.testing.assert_array_equal(ours[~finite], theirs[~finite])   # the same NaN and inf
    assert_close(ours[finite], theirs[finite], TOLERANCES[np.dtype(dtype)].backward,
                 scale=float(np.max(np.abs(grad_out[np.isfinite(grad_out)]), initial=0.0)),
                 what="dL/dx where torch's is finite (the losers' zeros included)")
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(grad_out, g_before, strict=True)

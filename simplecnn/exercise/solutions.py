"""Reference solutions of the exercises whose function is not one of ``scratch/``'s, and the forward
passes the exercise files are given.

Each exercise file (written by ``simplecnn exercise start``) copies its given forward pass from here,
so that the learner reads exactly what the grader runs. Where the learner's function is scratch's own
(``linear_backward``, ``maxpool2d_backward``), the reference is scratch's function itself. These
functions are written the way the docs derive them, vectorized, one screen each.
"""

from __future__ import annotations

import numpy as np

from scratch.conv import col2im, im2col
from scratch.conv import conv2d_forward as _conv2d_forward_fast
from scratch.loss import cross_entropy, log_softmax

# --- ReLU ---------------------------------------------------------------------------------------------


def relu_forward(x):
    """``y = max(x, 0)``. The cache is the input ``x`` itself."""
    return np.maximum(x, 0), x


def relu_backward(grad_out, cache):
    """``dL/dx = dL/dy * [x > 0]`` (PyTorch takes the derivative at exactly 0 as 0)."""
    x = cache
    return grad_out * (x > 0)


# --- Dropout ------------------------------------------------------------------------------------------


def dropout_forward(x, keep_mask, p):
    """``y = x * keep_mask / (1 - p)`` (all zeros when ``p = 1``). The cache is ``(keep_mask, p)``."""
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    return x * keep_mask * x.dtype.type(scale), (keep_mask, p)


def dropout_backward(grad_out, cache):
    """``dL/dx = dL/dy * keep_mask / (1 - p)``: the same mask, the same scale (0 when ``p = 1``)."""
    keep_mask, p = cache
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    return grad_out * keep_mask * grad_out.dtype.type(scale)


# --- Softmax cross-entropy ----------------------------------------------------------------------------


def cross_entropy_forward(logits, targets, reduction="mean"):
    """The loss (a float), and the cache ``(log_p, targets, reduction)``, ``log_p`` the log-softmax."""
    loss, _ = cross_entropy(logits, targets, reduction)
    return loss, (log_softmax(logits), targets, reduction)


def cross_entropy_backward(cache):
    """``dL/dz = (softmax(z) - onehot(t)) / N`` (no ``/ N`` for ``reduction="sum"``)."""
    log_p, targets, reduction = cache
    n = len(targets)
    grad = np.exp(log_p)
    grad[np.arange(n), targets] -= 1
    if reduction == "mean":
        grad /= log_p.dtype.type(n)
    return grad


# --- Convolution, one gradient at a time --------------------------------------------------------------


def conv2d_forward(x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """``y = conv2d(x, w) + b`` (scratch's fast forward). The cache is ``(x, weight, stride, padding,
    dilation)``."""
    y, _ = _conv2d_forward_fast(x, weight, bias, stride, padding, dilation)
    return y, (x, weight, stride, padding, dilation)


def conv2d_bias_grad(grad_out, cache):
    """``dL/db[o] = sum_{n,i,j} g[n, o, i, j]``: every output position of channel o adds ``b[o]``."""
    return grad_out.sum(axis=(0, 2, 3))


def conv2d_weight_grad(grad_out, cache):
    """``dL/dw[o, c, u, v] = sum_{n,i,j} g[n, o, i, j] xp[n, c, s i + d u, s j + d v]``: a correlation of
    the padded input with the gradient."""
    x, weight, stride, padding, dilation = cache
    (ph, pw) = padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = im2col(x_pad, weight.shape[2:], stride, dilation, grad_out.shape[2:])   # (N, C, kh, kw, Ho, Wo)
    return np.tensordot(grad_out, cols, axes=([0, 2, 3], [0, 4, 5]))         # (O, C, kh, kw)


def conv2d_input_grad(grad_out, cache):
    """``dL/dx``: every patch entry's gradient ``sum_o w[o, c, u, v] g[n, o, i, j]`` added back to the pixel
    it was read from (col2im; overlapping patches add up), then the padding cropped."""
    x, weight, stride, padding, dilation = cache
    (ph, pw), (h, w) = padding, x.shape[2:]
    dcols = np.tensordot(weight, grad_out, axes=([0], [1]))        # (C, kh, kw, N, Ho, Wo)
    dcols = np.ascontiguousarray(dcols.transpose(3, 0, 1, 2, 4, 5))  # (N, C, kh, kw, Ho, Wo)
    padded_shape = (x.shape[0], x.shape[1], h + 2 * ph, w + 2 * pw)
    return col2im(dcols, padded_shape, stride, dilation)[:, :, ph:ph + h, pw:pw + w]


# --- Batch normalization ------------------------------------------------------------------------------


def batchnorm2d_eval_backward(grad_out, cache):
    """Evaluation mode: mu and var are the running statistics, constants. With ``g = dL/dy``::

        dL/dx = gamma * inv_std * g,   dL/dgamma = sum(g * x_hat),   dL/dbeta = sum(g)   (over n, h, w)
    """
    x_hat, inv_std, gamma, _ = cache
    dgamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
    dbeta = grad_out.sum(axis=(0, 2, 3))
    return (gamma * inv_std).reshape(1, -1, 1, 1) * grad_out, dgamma, dbeta


def batchnorm2d_train_backward(grad_out, cache):
    """Training: mu and var depend on every x of the channel, which adds two correction terms::

        dL/dx = gamma * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))     means over (n, h, w)
    """
    x_hat, inv_std, gamma, _ = cache
    m = grad_out.size // grad_out.shape[1]
    dgamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
    dbeta = grad_out.sum(axis=(0, 2, 3))
    mean_g, mean_g_xhat = (dbeta / m).reshape(1, -1, 1, 1), (dgamma / m).reshape(1, -1, 1, 1)
    dx = (gamma * inv_std).reshape(1, -1, 1, 1) * (grad_out - mean_g - x_hat * mean_g_xhat)
    return dx, dgamma, dbeta


# --- Adam ---------------------------------------------------------------------------------------------


def adam_update(theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    """One Adam step for one parameter, in place (``theta``, ``exp_avg``, ``exp_avg_sq``); ``step`` = t >= 1."""
    beta1, beta2 = betas
    if weight_decay:
        grad = grad + weight_decay * theta                       # L2: folded into the gradient
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1 ** step)                        # bias corrections
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    theta -= lr * m_hat / (np.sqrt(v_hat) + eps)                 # eps after the square root

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


# --- Leaky ReLU ---------------------------------------------------------------------------------------


def leaky_relu_forward(x, negative_slope=0.01):
    """``y = x`` where ``x > 0``, else ``negative_slope * x``. The cache is ``(x, negative_slope)``."""
    return np.where(x > 0, x, x * x.dtype.type(negative_slope)), (x, negative_slope)


def leaky_relu_backward(grad_out, cache):
    """``dL/dx = dL/dy * (1 if x > 0 else negative_slope)``; at exactly ``x = 0`` the slope is
    ``negative_slope`` (PyTorch tests ``x > 0``)."""
    x, negative_slope = cache
    return np.where(x > 0, grad_out, grad_out * grad_out.dtype.type(negative_slope))


# --- The losses (docs/13-losses.md) -------------------------------------------------------------------


def reduce_losses(losses, reduction):
    """The per-element losses reduced: their mean, their sum, or themselves (``"none"``)."""
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def mse_forward(input, target, reduction="mean"):
    """``l = (x - t)^2`` per element, reduced. The cache is ``(input, target, reduction)``."""
    diff = input - target
    return reduce_losses(diff * diff, reduction), (input, target, reduction)


def mse_backward(grad_output, cache):
    """``dL/dx = g * 2 (x - t)``, divided by N (the number of elements) for ``"mean"``."""
    input, target, reduction = cache
    grad = 2 * (input - target) * grad_output
    return grad / input.size if reduction == "mean" else grad


def l1_forward(input, target, reduction="mean"):
    """``l = |x - t|`` per element, reduced. The cache is ``(input, target, reduction)``."""
    return reduce_losses(np.abs(input - target), reduction), (input, target, reduction)


def l1_backward(grad_output, cache):
    """``dL/dx = g * sign(x - t)`` (0 where ``x == t``, PyTorch's subgradient), / N for ``"mean"``."""
    input, target, reduction = cache
    grad = np.sign(input - target) * grad_output
    return grad / input.size if reduction == "mean" else grad


def mean_bias_error_forward(input, target, reduction="mean"):
    """``l = x - t`` per element (signed), reduced. The cache is ``(input, target, reduction)``."""
    return reduce_losses(input - target, reduction), (input, target, reduction)


def mean_bias_error_backward(grad_output, cache):
    """``dL/dx = g`` everywhere (``dl/dx = 1``), / N for ``"mean"``."""
    input, target, reduction = cache
    grad = np.ones_like(input) * grad_output
    return grad / input.size if reduction == "mean" else grad


def multi_margin_forward(x, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """``z[n, j] = margin - x[n, t_n] + x[n, j]``, ``l[n] = w[t_n] / C * sum_{j != t_n} max(0, z[n, j])^p``
    (``w = 1`` without weight), reduced over n. The cache is ``(z, target, p, weight, reduction)``."""
    n, classes = x.shape
    rows = np.arange(n)
    z = x.dtype.type(margin) - x[rows, target][:, None] + x
    hinge = np.maximum(z, 0)
    hinge[rows, target] = 0                       # j == t_n is not in the sum
    scale = (np.ones(n, x.dtype) if weight is None else weight[target].astype(x.dtype)) / x.dtype.type(classes)
    losses = (hinge if p == 1 else hinge * hinge).sum(axis=1) * scale
    return reduce_losses(losses, reduction), (z, target, p, weight, reduction)


def multi_margin_backward(grad_output, cache):
    """``dL/dx[n, j] = g[n] w[t_n] / C * p max(0, z)^(p-1) [z > 0]`` for ``j != t_n`` (0 at exactly
    ``z = 0``, as in PyTorch), ``dL/dx[n, t_n] = -sum_{j != t_n} dL/dx[n, j]``; ``g / N`` for ``"mean"``."""
    z, target, p, weight, reduction = cache
    n, classes = z.shape
    rows = np.arange(n)
    g = np.broadcast_to(grad_output, (n,)).astype(z.dtype)
    if reduction == "mean":
        g = g / z.dtype.type(n)
    scale = (np.ones(n, z.dtype) if weight is None else weight[target].astype(z.dtype)) / z.dtype.type(classes)
    active = z > 0
    active[rows, target] = False
    dx = (active if p == 1 else 2 * np.where(active, z, 0)) * (g * scale)[:, None]
    dx = dx.astype(z.dtype)
    dx[rows, target] = -dx.sum(axis=1)
    return dx


# --- SGD, Adagrad, RMSprop (docs/14-optimizers.md) ----------------------------------------------------


def sgd_update(theta, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
    """One ``torch.optim.SGD`` step for one parameter, in place (``theta``, ``momentum_buffer``)."""
    if weight_decay:
        grad = grad + weight_decay * theta
    if momentum:
        if step == 1:
            momentum_buffer[...] = grad                       # the buffer starts as the gradient
        else:
            momentum_buffer[...] = momentum * momentum_buffer + (1 - dampening) * grad
        grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    theta -= lr * grad


def adagrad_update(theta, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
    """One ``torch.optim.Adagrad`` step for one parameter, in place (``theta``, ``state_sum``)."""
    if weight_decay:
        grad = grad + weight_decay * theta
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += grad * grad
    theta -= clr * grad / (np.sqrt(state_sum) + eps)          # eps after the square root


def rmsprop_update(theta, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                   centered):
    """One ``torch.optim.RMSprop`` step for one parameter, in place (``theta`` and the state arrays;
    ``grad_avg`` is None unless ``centered``, ``momentum_buffer`` None unless ``momentum > 0``)."""
    if weight_decay:
        grad = grad + weight_decay * theta
    square_avg[...] = alpha * square_avg + (1 - alpha) * grad * grad
    if centered:
        grad_avg += (1 - alpha) * (grad - grad_avg)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        momentum_buffer[...] = momentum * momentum_buffer + grad / avg
        theta -= lr * momentum_buffer
    else:
        theta -= lr * grad / avg

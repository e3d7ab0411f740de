"""SimpleCNN from scratch: every forward and backward pass written by hand in NumPy.

Reading order (see docs/): ``module`` (the layer shape), ``conv``, ``pool``, ``batchnorm``,
``dropout``, ``linear``/``activations``, ``loss``, ``optim``, then ``model``. ``naive`` holds the loop
versions used as a second oracle, ``numerical`` the finite-difference one.

This package never imports torch.
"""

from .activations import Flatten, ReLU, relu_backward, relu_forward
from .batchnorm import BatchNorm2d, batchnorm2d_backward, batchnorm2d_forward
from .conv import Conv2d, conv2d_backward, conv2d_forward
from .dropout import Dropout, dropout_backward, dropout_forward
from .linear import Linear, linear_backward, linear_forward
from .loss import cross_entropy, log_softmax
from .model import Sequential, SimpleCNN
from .module import Layer, Parameter, StateDictError, grad_enabled, no_grad
from .optim import Adam, AdamW
from .pool import MaxPool2d, maxpool2d_backward, maxpool2d_forward, maxpool2d_indices

__all__ = [
    "Adam", "AdamW", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Layer", "Linear", "MaxPool2d",
    "Parameter", "ReLU", "Sequential", "SimpleCNN", "StateDictError", "batchnorm2d_backward",
    "batchnorm2d_forward", "conv2d_backward", "conv2d_forward", "cross_entropy", "dropout_backward",
    "dropout_forward", "grad_enabled", "linear_backward", "linear_forward", "log_softmax",
    "maxpool2d_backward", "maxpool2d_forward", "maxpool2d_indices", "no_grad", "relu_backward", "relu_forward",
]

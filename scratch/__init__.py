"""SimpleCNN from scratch: every forward and backward pass written by hand in NumPy.

Reading order (see docs/): ``module`` (the layer shape), ``conv``, ``pool``, ``batchnorm``,
``dropout``, ``linear``/``activations``, ``loss``, ``optim``, then ``model``. Beyond the guide's network
(docs/11-14): the other activations (``Sigmoid``, ``Tanh``, ``LeakyReLU``, ``Softmax``, ``LogSoftmax``
in ``activations``), average pooling (``AvgPool2d`` in ``pool``), the loss classes (``CrossEntropyLoss``,
``MSELoss``, ``L1Loss``, ``MultiMarginLoss``, ``MeanBiasError`` in ``loss``) and the optimizers ``SGD``,
``Adagrad``, ``RMSprop`` (in ``optim``). ``guide`` holds the guide's API (``setup_model_for_training``,
``get_mnist_dataloaders``, ``train_model``, ``evaluate_model``, ``plot_training_losses``). ``naive`` holds the loop
versions used as a second oracle, ``numerical`` the finite-difference one.
``parallel`` splits the memory-bound passes (im2col, col2im, batch-norm, ...) between the cores;
``memory`` keeps freed arrays in the process; ``inference`` merges layers for evaluation.

This package never imports torch.
"""

import os

# OpenBLAS's worker threads busy-wait ~0.1 s after every matrix product before they sleep, so that the
# next product starts sooner. Between the products scratch runs worker threads of its own
# (scratch/parallel.py), and a spinning BLAS thread would take one of their cores: tell OpenBLAS to sleep
# at once. OpenBLAS reads this when NumPy loads it, so it takes effect when scratch is imported before
# NumPy (as the simplecnn command does); a value already in the environment wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# Freed arrays stay in the process instead of going back to the operating system, so that the next
# training step does not pay a page fault for every 4 KiB of them (scratch/memory.py; SIMPLECNN_KEEP_MEMORY=0
# turns this off).
from .memory import keep_freed_memory_unless_disabled

keep_freed_memory_unless_disabled()

from .activations import (
                          Flatten,
                          LeakyReLU,
                          LogSoftmax,
                          ReLU,
                          Sigmoid,
                          Softmax,
                          Tanh,
                          leaky_relu_backward,
                          leaky_relu_forward,
                          log_softmax_backward,
                          log_softmax_forward,
                          relu_backward,
                          relu_forward,
                          sigmoid_backward,
                          sigmoid_forward,
                          softmax_backward,
                          softmax_forward,
                          tanh_backward,
                          tanh_forward,
)
from .batchnorm import BatchNorm2d, batchnorm2d_backward, batchnorm2d_forward, batchnorm2d_inference
from .conv import Conv2d, conv2d_backward, conv2d_forward
from .dropout import Dropout, dropout_backward, dropout_forward
from .guide import (
                          _setup_model_for_training,
                          evaluate_model,
                          get_mnist_dataloaders,
                          plot_training_losses,
                          setup_model_for_training,
                          train_model,
)
from .inference import fold_batchnorm, inference_forward, inference_steps
from .linear import Linear, linear_backward, linear_forward
from .loss import (
                          CrossEntropyLoss,
                          L1Loss,
                          MeanBiasError,
                          MSELoss,
                          MultiMarginLoss,
                          cross_entropy,
                          log_softmax,
)
from .model import Sequential, SimpleCNN
from .module import Layer, Parameter, StateDictError, grad_enabled, no_grad
from .optim import SGD, Adagrad, Adam, AdamW, RMSprop
from .pool import (
                          AvgPool2d,
                          MaxPool2d,
                          avgpool2d_backward,
                          avgpool2d_forward,
                          maxpool2d_backward,
                          maxpool2d_forward,
                          maxpool2d_indices,
                          maxpool2d_inference,
)

__all__ = [
                          "SGD",
                          "Adagrad",
                          "Adam",
                          "AdamW",
                          "AvgPool2d",
                          "BatchNorm2d",
                          "Conv2d",
                          "CrossEntropyLoss",
                          "Dropout",
                          "Flatten",
                          "L1Loss",
                          "Layer",
                          "LeakyReLU",
                          "Linear",
                          "LogSoftmax",
                          "MSELoss",
                          "MaxPool2d",
                          "MeanBiasError",
                          "MultiMarginLoss",
                          "Parameter",
                          "RMSprop",
                          "ReLU",
                          "Sequential",
                          "Sigmoid",
                          "SimpleCNN",
                          "Softmax",
                          "StateDictError",
                          "Tanh",
                          "_setup_model_for_training",
                          "avgpool2d_backward",
                          "avgpool2d_forward",
                          "batchnorm2d_backward",
                          "batchnorm2d_forward",
                          "batchnorm2d_inference",
                          "conv2d_backward",
                          "conv2d_forward",
                          "cross_entropy",
                          "dropout_backward",
                          "dropout_forward",
                          "evaluate_model",
                          "fold_batchnorm",
                          "get_mnist_dataloaders",
                          "grad_enabled",
                          "inference_forward",
                          "inference_steps",
                          "leaky_relu_backward",
                          "leaky_relu_forward",
                          "linear_backward",
                          "linear_forward",
                          "log_softmax",
                          "log_softmax_backward",
                          "log_softmax_forward",
                          "maxpool2d_backward",
                          "maxpool2d_forward",
                          "maxpool2d_inference",
                          "maxpool2d_indices",
                          "no_grad",
                          "plot_training_losses",
                          "relu_backward",
                          "relu_forward",
                          "setup_model_for_training",
                          "sigmoid_backward",
                          "sigmoid_forward",
                          "softmax_backward",
                          "softmax_forward",
                          "tanh_backward",
                          "tanh_forward",
                          "train_model",
]

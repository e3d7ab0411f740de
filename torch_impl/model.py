"""SimpleCNN written the idiomatic ``torch.nn`` way: layers in ``__init__``, the wiring in ``forward``.

``activation`` and ``pool`` swap in the guide's other choices (see ``scratch.model``); the defaults are
the guide's network, and no choice adds a parameter, so the state dict keys never change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scratch.model import ACTIVATIONS, POOLS, check_choice

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_POOLS: dict[str, Callable[[], nn.Module]] = {
    "max": lambda: nn.MaxPool2d(2, stride=2), "avg": lambda: nn.AvgPool2d(2, stride=2)}
assert _ACTIVATIONS.keys() == ACTIVATIONS.keys() and _POOLS.keys() == POOLS.keys()


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int = 10, activation: str = "relu", pool: str = "max") -> None:
        super().__init__()
        self.activation = check_choice("activation", activation, _ACTIVATIONS)
        self.pool = check_choice("pool", pool, _POOLS)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)
        self.batch1 = nn.BatchNorm2d(32)
        self.max1 = _POOLS[pool]()
        self.dropout1 = nn.Dropout(p=0.45)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.batch2 = nn.BatchNorm2d(64)
        self.max2 = _POOLS[pool]()
        self.dropout2 = nn.Dropout(p=0.35)
        self.fc1 = nn.Linear(1024, 512)
        self.fc2 = nn.Linear(512, num_classes)
        self.act = _ACTIVATIONS[activation]()  # no parameters: the state dict keys stay the guide's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.max1(self.act(self.batch1(self.conv1(x)))))
        x = self.dropout2(self.max2(self.act(self.batch2(self.conv2(x)))))
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        return self.fc2(x)  # logits: the softmax lives in the loss

"""SimpleCNN written the idiomatic ``torch.nn`` way: layers in ``__init__``, the wiring in ``forward``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimpleCNN(nn.Module):
    """The guide's network; ``num_classes`` outputs (the last layer follows)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"SimpleCNN: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)
        self.batch1 = nn.BatchNorm2d(32)
        self.max1 = nn.MaxPool2d(2, stride=2)
        self.dropout1 = nn.Dropout(p=0.45)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.batch2 = nn.BatchNorm2d(64)
        self.max2 = nn.MaxPool2d(2, stride=2)
        self.dropout2 = nn.Dropout(p=0.35)
        self.fc1 = nn.Linear(1024, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.max1(F.relu(self.batch1(self.conv1(x)))))
        x = self.dropout2(self.max2(F.relu(self.batch2(self.conv2(x)))))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)  # logits: the softmax lives in the loss

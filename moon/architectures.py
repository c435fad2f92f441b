"""The architectures of the study, by name (:data:`ARCHITECTURES`: the one list of model names;
``moon.config.MODELS`` is derived from it). Contract (design.md, section 3):

* ``forward(x)`` returns raw logits ``[B, C]`` (never log-softmax: energy and DICE need logits);
* ``features(x)`` returns the penultimate features ``[B, D]``, the input of the head;
* ``head`` is the final ``nn.Linear``; C = K, or K+1 with the unknown class (its last row).

Every model takes ``in_channels`` and ``image_size`` so one architecture serves 28x28 grey and
32x32 colour data. This module needs only torch, so the config can validate names against it;
:mod:`moon.models` builds the model a run configuration asks for.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """A body that produces features, followed by a linear head."""

    body: nn.Module
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def num_outputs(self) -> int:
        return self.head.out_features


class MLP(Classifier):
    """LeNet-300-100 of the sparse-training literature: in -> 300 -> 100 -> C, ReLU; with
    ``width = w > 0``, in -> w -> w -> C (the wide MLP of the capacity axis)."""

    def __init__(self, num_outputs: int, in_channels: int = 1, image_size: int = 28,
                 width: int = 0):
        super().__init__()
        d_in = in_channels * image_size * image_size
        h1, h2 = (width, width) if width else (300, 100)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d_in, h1), nn.ReLU(inplace=True),
                                  nn.Linear(h1, h2), nn.ReLU(inplace=True))
        self.head = nn.Linear(h2, num_outputs)


class LeNet5(Classifier):
    """LeNet-5 with ReLU and max-pooling: conv6-5 -> pool -> conv16-5 -> pool -> 120 -> 84 -> C.

    The first convolution pads so that both 28x28 and 32x32 inputs reach 16x5x5 after the second
    pooling (28 + 2*2 = 32, the original input size).
    """

    def __init__(self, num_outputs: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        pad = max(0, (32 - image_size) // 2)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True))
        self.head = nn.Linear(84, num_outputs)


class ResNet18(Classifier):
    """torchvision's ResNet-18, CIFAR variant: 3x3 stride-1 stem, no max-pool, 512-d features."""

    def __init__(self, num_outputs: int, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(num_classes=num_outputs)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2,
                                  net.layer3, net.layer4, net.avgpool, nn.Flatten())
        self.head = net.fc


class _WideBlock(nn.Module):
    """Pre-activation wide basic block (BN-ReLU-conv3x3, twice) with a 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        return self.conv2(torch.relu(self.bn2(o))) + skip


class WideResNet(Classifier):
    """WRN-depth-k (default WRN-22-2, the RigL reference model), for 32x32 inputs."""

    def __init__(self, num_outputs: int, in_channels: int = 3, image_size: int = 32,
                 depth: int = 22, widen: int = 2):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                c_in = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(_WideBlock(c_in, widths[stage + 1], stride if i == 0 else 1))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[3], num_outputs)


ARCHITECTURES: dict[str, type[Classifier]] = {
    "mlp": MLP, "lenet5": LeNet5, "resnet18": ResNet18, "wrn": WideResNet}


def build_model(name: str, num_outputs: int, in_channels: int, image_size: int,
                width: int = 0) -> Classifier:
    """Build architecture ``name`` with ``num_outputs`` logits for ``[in_channels, size, size]``
    (``width``: the MLP's hidden width, 0 for LeNet-300-100)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"model={name!r} is not known; choose one of {', '.join(ARCHITECTURES)}")
    extra = {"width": width} if width else {}
    return ARCHITECTURES[name](num_outputs, in_channels=in_channels, image_size=image_size, **extra)

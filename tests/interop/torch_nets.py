"""Small PyTorch models named like torchvision's (torchvision itself is not needed): ResNet, VGG, DenseNet
styles, a 1-D and a 3-D convolution network. Import only where torch is installed."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: ``relu`` is called twice, the residual add is functional."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetish(nn.Module):
    """conv1/bn1/relu/maxpool, layer1..layer4 of two BasicBlocks, avgpool, torch.flatten, fc."""

    def __init__(self, widths: tuple[int, ...] = (4, 6, 8, 8), classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = widths[0]
        for index, planes in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                         BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGGish(nn.Module):
    """features.N / classifier.N Sequentials, with a Dropout and ``x.view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(24, 10), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(10, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


class DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(channels, growth, 3, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, channels: int, growth: int) -> None:
        super().__init__()
        for index in range(layers):
            self.add_module(f"denselayer{index + 1}", DenseLayer(channels + index * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNetish(nn.Module):
    """torchvision's DenseNet naming (features.conv0, features.denseblock1.denselayer1.norm1, ...), softmax at the end."""

    def __init__(self, growth: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, 6, 3, padding=1, bias=False)), ("norm0", nn.BatchNorm2d(6)),
            ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(2)),
            ("denseblock1", DenseBlock(2, 6, growth)),
            ("transition1", nn.Sequential(OrderedDict([
                ("norm", nn.BatchNorm2d(6 + 2 * growth)), ("relu", nn.ReLU(inplace=True)),
                ("conv", nn.Conv2d(6 + 2 * growth, 8, 1, bias=False)), ("pool", nn.AvgPool2d(2))]))),
            ("denseblock2", DenseBlock(2, 8, growth)),
            ("norm5", nn.BatchNorm2d(8 + 2 * growth))]))
        self.classifier = nn.Linear(8 + 2 * growth, classes)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.softmax(self.classifier(torch.flatten(out, 1)))


class Conv1dNet(nn.Module):
    """A sequence model (B, C, T): dilated Conv1d, BatchNorm1d, MaxPool1d, global average over time."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(),
                                  nn.MaxPool1d(2), nn.Conv1d(4, 6, 3, padding=2, dilation=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.body(x)).flatten(1))


class Conv3dNet(nn.Module):
    """A volume model (B, C, H, W, D): Conv3d, BatchNorm3d, MaxPool3d, global average."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2))
        self.block = nn.Sequential(nn.Conv3d(4, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters (so that folding would show)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) * 2 - 1)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) * 2 - 1)
    return model


# name -> (constructor, example input shape, refcam format, feature layer for the Grad-CAM check)
MODELS = {
    "resnet": (ResNetish, (1, 3, 40, 40), "BCSS", "layer4"),
    "vgg": (VGGish, (1, 3, 16, 16), "BCSS", "features"),
    "densenet": (DenseNetish, (1, 3, 16, 16), "BCSS", "features"),
    "conv1d": (Conv1dNet, (1, 2, 24), "BCT", "body"),
    "conv3d": (Conv3dNet, (1, 1, 8, 8, 6), "BCSSS", "block"),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """Model ``name`` in float32 and eval mode with random batch-norm statistics, and a float32 input."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    constructor, shape, _, _ = MODELS[name]
    model = randomize_batch_norm(constructor().float(), generator).eval()
    return model, torch.randn(shape, generator=generator, dtype=torch.float32)

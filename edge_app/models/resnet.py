"""ResNet-18/34/50/101/152 (He et al. 2015) with torchvision-identical state-dict keys and shapes.

torchvision does not import with the CPU torch we can install (FACTS.md), so the family is defined here.
Keys (``conv1``, ``bn1``, ``layer{1..4}.{i}.*``, ``layerN.0.downsample.{0,1}``, ``fc``) match torchvision's,
so ImageNet weights saved from torchvision load with ``load_state_dict`` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or projected) skip: ResNet-18/34."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        ch: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, ch, stride)
        self.bn1 = norm_layer(ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(ch, ch)
        self.bn2 = norm_layer(ch)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision's "ResNet v1.5"), 1x1 expand: ResNet-50/101/152."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        ch: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_ch, ch)
        self.bn1 = norm_layer(ch)
        self.conv2 = conv3x3(ch, ch, stride)
        self.bn2 = norm_layer(ch)
        self.conv3 = conv1x1(ch, ch * self.expansion)
        self.bn3 = norm_layer(ch * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """The ResNet trunk plus a linear head; ``forward = forward_head(forward_features(x))``."""

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.block = block
        self.layers_cfg = tuple(layers)
        self.num_classes = num_classes
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Each residual branch starts as identity: helps short from-scratch training converge.
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: Block, ch: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != ch * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, ch * block.expansion, stride),
                self._norm_layer(ch * block.expansion),
            )
        layers = [block(self.inplanes, ch, stride, downsample, self._norm_layer)]
        self.inplanes = ch * block.expansion
        layers += [block(self.inplanes, ch, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) normalised float -> (N,C,H/32,W/32) feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled features (``pre_logits``) or class logits."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` classes."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)

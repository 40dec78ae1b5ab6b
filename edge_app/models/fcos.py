"""FCOS head (Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object Detection") with torchvision's keys.

As torchvision 0.29's ``models/detection/fcos.py``: per branch four (3x3 conv with bias, ``GroupNorm(32, C)``,
ReLU) stages kept flat in one ``nn.Sequential`` (keys ``conv.{0,1,3,4,6,7,9,10}.*``), then the predictors:
``cls_logits`` (K per location), ``bbox_reg`` (left, top, right, bottom distances in anchor sizes, through a
ReLU) and ``bbox_ctrness`` (centerness logit) on the regression tower. One "anchor" per location.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_app.models.retinanet import NUM_CONVS, PRIOR_PROBABILITY, to_rows


def _tower(channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(NUM_CONVS):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(32, channels), nn.ReLU(inplace=True)]
    tower = nn.Sequential(*layers)
    for m in tower:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0)
    return tower


class FCOSClassificationHead(nn.Module):
    """Class logits per location: list of (N, C, H, W) -> list of (N, H*W, K)."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.conv = _tower(in_channels)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
        self.num_classes = num_classes

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits per level, (N, H*W, K)."""
        return [to_rows(self.cls_logits(self.conv(f)), self.num_classes) for f in x]


class FCOSRegressionHead(nn.Module):
    """Box distances and centerness per location: lists of (N, H*W, 4) and (N, H*W, 1)."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = _tower(in_channels)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors * 1, kernel_size=3, stride=1, padding=1)
        for layer in (self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(distances >= 0, centerness logits) per level."""
        regs, ctrs = [], []
        for f in x:
            feat = self.conv(f)
            regs.append(to_rows(torch.relu(self.bbox_reg(feat)), 4))
            ctrs.append(to_rows(self.bbox_ctrness(feat), 1))
        return regs, ctrs


class FCOSHead(nn.Module):
    """Classification and regression branches (torchvision's ``FCOSHead``, ``num_convs`` = 4)."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.classification_head = FCOSClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors)

    def forward(self, x: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Pyramid levels -> ``cls_logits``, ``bbox_regression``, ``bbox_ctrness`` per level."""
        reg, ctr = self.regression_head(x)
        return {"cls_logits": self.classification_head(x), "bbox_regression": reg, "bbox_ctrness": ctr}

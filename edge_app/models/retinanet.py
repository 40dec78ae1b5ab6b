"""RetinaNet heads (Lin et al. 2017, "Focal Loss for Dense Object Detection") with torchvision's keys.

As torchvision 0.29's ``models/detection/retinanet.py``: four 3x3 convs then a 3x3 predictor, shared across
pyramid levels, one branch for class logits (A x K per location) and one for box deltas (A x 4). v1 convs carry
a bias and no norm (``conv.{i}.0.*``); v2 (``retinanet_resnet50_fpn_v2``) puts ``GroupNorm(32, C)`` after each
bias-free conv (``conv.{i}.0.weight``, ``conv.{i}.1.*``). Anchors and the box decode live in
:mod:`edge_app.models.tv_detection`; this file holds only the learned layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_CONVS = 4  # the tower depth of both branches, torchvision's fixed value
PRIOR_PROBABILITY = 0.01  # focal-loss prior: every class starts at sigmoid = 0.01


def _tower(channels: int, group_norm: bool) -> nn.Sequential:
    # Conv2dNormActivation layout: Sequential(conv[, norm], relu) per stage -> keys conv.{i}.0 / conv.{i}.1.
    stages = []
    for _ in range(NUM_CONVS):
        if group_norm:
            stage = [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.GroupNorm(32, channels)]
        else:
            stage = [nn.Conv2d(channels, channels, 3, padding=1)]
        stages.append(nn.Sequential(*stage, nn.ReLU(inplace=True)))
    tower = nn.Sequential(*stages)
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return tower


def to_rows(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """(N, A*P, H, W) -> (N, H*W*A, P): rows in torchvision's order (location-major, then anchor)."""
    n, _, h, w = x.shape
    return x.view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)


class RetinaNetClassificationHead(nn.Module):
    """Class logits per anchor: list of (N, C, H, W) -> list of (N, H*W*A, K)."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, group_norm: bool = False) -> None:
        super().__init__()
        self.conv = _tower(in_channels, group_norm)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
        self.num_classes = num_classes
        self.num_anchors = num_anchors

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits per level, (N, H*W*A, K)."""
        return [to_rows(self.cls_logits(self.conv(f)), self.num_classes) for f in x]


class RetinaNetRegressionHead(nn.Module):
    """Box deltas (dx, dy, dw, dh) per anchor: list of (N, C, H, W) -> list of (N, H*W*A, 4)."""

    def __init__(self, in_channels: int, num_anchors: int, group_norm: bool = False) -> None:
        super().__init__()
        self.conv = _tower(in_channels, group_norm)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Deltas per level, (N, H*W*A, 4)."""
        return [to_rows(self.bbox_reg(self.conv(f)), 4) for f in x]


class RetinaNetHead(nn.Module):
    """Both branches; ``group_norm`` selects the v2 head."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, group_norm: bool = False) -> None:
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes, group_norm)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, group_norm)

    def forward(self, x: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Pyramid levels -> ``cls_logits`` and ``bbox_regression`` per level (torchvision's names)."""
        return {"cls_logits": self.classification_head(x), "bbox_regression": self.regression_head(x)}

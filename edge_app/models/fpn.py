"""Feature Pyramid Network (Lin et al. 2017) with torchvision's module layout and state-dict keys.

Keys are those torchvision 0.29 writes (``ops/feature_pyramid_network.py``): ``inner_blocks.{i}.0.*`` (1x1
lateral convs), ``layer_blocks.{i}.0.*`` (3x3 output convs) and ``extra_blocks.p6.*`` / ``extra_blocks.p7.*``.
Each block is a one-element ``nn.Sequential`` because torchvision builds them as ``Conv2dNormActivation`` with
neither norm nor activation. Files written before torchvision 0.13 (among them the RetinaNet v1 COCO file) name
them ``inner_blocks.{i}.*``; :func:`edge_app.models.tv_detection.upgrade_legacy_keys` renames those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    # A one-conv Sequential: the ".0." in torchvision's keys.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2))


class LastLevelP6P7(nn.Module):
    """P6 and P7 (two stride-2 3x3 convs, ReLU between) on top of the pyramid.

    torchvision takes P6 from P5 when ``in_channels == out_channels`` (RetinaNet v1, FCOS: ``LastLevelP6P7(256,
    256)``) and from C5 otherwise (RetinaNet v2: ``LastLevelP6P7(2048, 256)``); the rule is kept as is, so the
    same constructor arguments give the same network.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_p5 = in_channels == out_channels

    def forward(self, p: list[torch.Tensor], c: list[torch.Tensor]) -> list[torch.Tensor]:
        """Append P6 and P7 to the pyramid ``p`` (``c`` holds the backbone features C3..C5)."""
        p6 = self.p6(p[-1] if self.use_p5 else c[-1])
        p7 = self.p7(F.relu(p6))
        return [*p, p6, p7]


class FeaturePyramidNetwork(nn.Module):
    """Top-down pathway with lateral 1x1 convs and 3x3 output convs; highest resolution first in and out."""

    def __init__(
        self, in_channels_list: list[int], out_channels: int, extra_blocks: LastLevelP6P7 | None = None
    ) -> None:
        super().__init__()
        if any(c <= 0 for c in in_channels_list):
            raise ValueError(f"every FPN input needs channels, got {in_channels_list}")
        self.inner_blocks = nn.ModuleList(_conv_block(c, out_channels, 1) for c in in_channels_list)
        self.layer_blocks = nn.ModuleList(_conv_block(out_channels, out_channels, 3) for _ in in_channels_list)
        # torchvision initialises its own convs before the extra block exists, then leaves the extra block's.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)
        self.extra_blocks = extra_blocks
        self.out_channels = out_channels

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone features (C3, C4, C5) -> pyramid (P3, P4, P5[, P6, P7])."""
        last_inner = self.inner_blocks[-1](x[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(x) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](x[idx])
            # Upsample to the lateral's size (exports as Resize with int64 sizes, as torchvision does it).
            top_down = F.interpolate(last_inner, size=inner_lateral.shape[-2:], mode="nearest")
            last_inner = inner_lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_blocks is not None:
            results = self.extra_blocks(results, x)
        return results

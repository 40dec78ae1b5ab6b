"""CenterNet targets and losses (Zhou et al. 2019, "Objects as Points"), at the heads' stride.

Heatmap: a Gaussian per object centre on its class channel, radius from CornerNet's IoU >= 0.7 rule; loss:
penalty-reduced focal loss (alpha 2, beta 4). Size (in cells) and sub-cell offset: L1 at the centre cells only.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from edge_app.models.detector import STRIDE, DetMaps

log = logging.getLogger(__name__)

MAX_OBJECTS = 128  # per image in the loss targets; more are dropped (with a log line)


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: a corner shift that keeps IoU >= ``min_overlap`` with the true box (CornerNet eq.)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def make_targets(
    boxes: list[np.ndarray], classes: list[np.ndarray], num_classes: int, out_h: int, out_w: int, stride: int = STRIDE
) -> dict[str, np.ndarray]:
    """Batch targets at the output resolution: heat (N,C,h,w), ind (N,M), size/offset (N,M,2), mask (N,M)."""
    n = len(boxes)
    heat = np.zeros((n, num_classes, out_h, out_w), np.float32)
    ind = np.zeros((n, MAX_OBJECTS), np.int64)
    size = np.zeros((n, MAX_OBJECTS, 2), np.float32)
    off = np.zeros((n, MAX_OBJECTS, 2), np.float32)
    mask = np.zeros((n, MAX_OBJECTS), np.float32)
    for i, (bs, cs) in enumerate(zip(boxes, classes)):
        if len(bs) > MAX_OBJECTS:
            log.info("image with %d boxes: the first %d are used", len(bs), MAX_OBJECTS)
        for j, (b, c) in enumerate(zip(bs[:MAX_OBJECTS], cs[:MAX_OBJECTS])):
            bw, bh = (b[2] - b[0]) / stride, (b[3] - b[1]) / stride
            if bw <= 0 or bh <= 0:
                continue
            cx, cy = (b[0] + b[2]) / 2 / stride, (b[1] + b[3]) / 2 / stride
            ix, iy = min(out_w - 1, max(0, int(cx))), min(out_h - 1, max(0, int(cy)))
            r = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw))))
            sigma = (2 * r + 1) / 6
            ys, xs = (
                np.arange(max(0, iy - r), min(out_h, iy + r + 1)),
                np.arange(max(0, ix - r), min(out_w, ix + r + 1)),
            )
            g = np.exp(-((ys[:, None] - iy) ** 2 + (xs[None, :] - ix) ** 2) / (2 * sigma * sigma)).astype(np.float32)
            region = heat[i, int(c), ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
            np.maximum(region, g, out=region)
            ind[i, j] = iy * out_w + ix
            size[i, j] = (bw, bh)
            off[i, j] = (cx - ix, cy - iy)
            mask[i, j] = 1.0
    return {"heat": heat, "ind": ind, "size": size, "offset": off, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of objects."""
    x = logits.float()
    log_p, log_1p = F.logsigmoid(x), F.logsigmoid(-x)
    p = torch.sigmoid(x)
    pos = target.eq(1).float()
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_1p * p**2 * (1 - target) ** 4 * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def reg_l1(pred: torch.Tensor, ind: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between ``pred`` (N,2,h,w) at the object cells ``ind`` (N,M) and ``target`` (N,M,2), over the mask."""
    n, c = pred.shape[:2]
    got = torch.gather(pred.float().flatten(2), 2, ind.unsqueeze(1).expand(n, c, ind.shape[1])).permute(0, 2, 1)
    m = mask.unsqueeze(2)
    return (torch.abs(got - target) * m).sum() / (m.sum() * c).clamp(min=1.0)


def detection_loss(
    maps: DetMaps, t: dict[str, torch.Tensor], size_weight: float = 0.1, offset_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (focal + weighted L1s) and its parts."""
    lh = focal_loss(maps.heat, t["heat"])
    ls = reg_l1(maps.size, t["ind"], t["size"], t["mask"])
    lo = reg_l1(maps.offset, t["ind"], t["offset"], t["mask"])
    total = lh + size_weight * ls + offset_weight * lo
    return total, {"heat": float(lh.detach()), "size": float(ls.detach()), "offset": float(lo.detach())}

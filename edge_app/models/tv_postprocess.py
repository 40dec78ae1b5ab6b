"""The postprocess of torchvision's FCOS / RetinaNet as a static graph: anchors, box decoding, class-aware NMS.

:class:`TvPostprocess` follows torchvision's ``postprocess_detections`` step for step (per level: score
threshold, top-k candidates, decode, clip; then class-aware greedy NMS and the best ``detections_per_img``) in a
static form: anchors are constants for the fixed input size, and NMS is ONNX ``NonMaxSuppression`` (native in
TensorRT >= 8.5, ONNX Runtime, OpenVINO) fed one score row per class, so it is class-aware without coordinate
offsets. Decode and NMS stay in FP32 (class offsets overflow FP16; the calibration keeps them float).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edge_app.errors import UserError

Kind = Literal["fcos", "retinanet"]
TRT_NMS_MAX_BOXES = 5000  # TensorRT's INMSLayer takes at most 5000 boxes (2000 on SM 5.3/6.2)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # torchvision BoxCoder: dw, dh clamp before exp()
DETS_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class")
# RetinaNet's AnchorGenerator: 3 scales x 3 aspect ratios per level; FCOS: one "anchor" the size of the stride.
RETINANET_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (32, 64, 128, 256, 512))
RETINANET_RATIOS = (0.5, 1.0, 2.0)
FCOS_SIZES = ((8,), (16,), (32,), (64,), (128,))


def level_grids(input_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature map sizes of P3..P7: every stride-2 conv/pool (kernel 3, pad 1; 7, pad 3) gives ceil(x / 2)."""
    sizes = []
    h, w = input_hw
    for level in range(1, 8):
        h, w = -(-h // 2), -(-w // 2)
        if level >= 3:
            sizes.append((h, w))
    return sizes


def make_anchors_of(kind: Kind, input_hw: tuple[int, int]) -> list[torch.Tensor]:
    """Anchors (x1, y1, x2, y2) per level for a fixed input, bit-equal to torchvision's AnchorGenerator.

    Order: location-major (row, column), then anchor (aspect ratio-major, then scale), as the head rows.
    """
    sizes, ratios = (FCOS_SIZES, (1.0,)) if kind == "fcos" else (RETINANET_SIZES, RETINANET_RATIOS)
    out = []
    for (gh, gw), scales in zip(level_grids(input_hw), sizes):
        # AnchorGenerator.generate_anchors, in float32 as torchvision computes it
        s = torch.as_tensor(scales, dtype=torch.float32)
        r = torch.as_tensor(ratios, dtype=torch.float32)
        h_ratios = torch.sqrt(r)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * s[None, :]).view(-1)
        hs = (h_ratios[:, None] * s[None, :]).view(-1)
        base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()
        # grid_anchors: integer strides = image size // grid size, int32 shifts
        sy, sx = input_hw[0] // gh, input_hw[1] // gw
        shift_y, shift_x = torch.meshgrid(
            torch.arange(0, gh, dtype=torch.int32) * sy, torch.arange(0, gw, dtype=torch.int32) * sx, indexing="ij"
        )
        shifts = torch.stack((shift_x.reshape(-1), shift_y.reshape(-1)) * 2, dim=1)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
    return out


def decode_deltas(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BoxCoder(weights=(1, 1, 1, 1)).decode_single`` on (..., 4) tensors (RetinaNet)."""
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    ctr_x = anchors[..., 0] + 0.5 * widths
    ctr_y = anchors[..., 1] + 0.5 * heights
    dw = torch.clamp(deltas[..., 2], max=BBOX_XFORM_CLIP)
    dh = torch.clamp(deltas[..., 3], max=BBOX_XFORM_CLIP)
    pred_ctr_x = deltas[..., 0] * widths + ctr_x
    pred_ctr_y = deltas[..., 1] * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)


def decode_ltrb(dist: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BoxLinearCoder(normalize_by_size=True).decode`` (FCOS: distances in anchor sizes)."""
    ctr_x = 0.5 * (anchors[..., 0] + anchors[..., 2])
    ctr_y = 0.5 * (anchors[..., 1] + anchors[..., 3])
    w = anchors[..., 2] - anchors[..., 0]
    h = anchors[..., 3] - anchors[..., 1]
    rel = dist * torch.stack((w, h, w, h), dim=-1)
    return torch.stack((ctr_x - rel[..., 0], ctr_y - rel[..., 1], ctr_x + rel[..., 2], ctr_y + rel[..., 3]), dim=-1)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> list[int]:
    """Greedy NMS of one class, as torchvision's CPU kernel and ONNX Runtime compute it (float32).

    Best score first; a box is dropped when its IoU with a kept box is > ``iou_threshold``; zero-area boxes
    suppress nothing (IoU 0/0 is NaN in torchvision, a skipped pair in ONNX Runtime). Indices, best first.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes.astype(np.float32)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(b), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) >= max_keep:
            break
        iw = np.maximum(np.float32(0), np.minimum(x2[i], x2) - np.maximum(x1[i], x1))
        ih = np.maximum(np.float32(0), np.minimum(y2[i], y2) - np.maximum(y1[i], y1))
        inter = iw * ih
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas - inter)
        suppressed |= iou > np.float32(iou_threshold)
    return keep


class OnnxNonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset 11+): selected (batch, class, box) triplets, int64 (S, 3).

    ``forward`` is the eager semantics (for the PyTorch backend), ``symbolic`` what the TorchScript exporter
    writes: one standard node, no plugin.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float, score_thresh: float
    ) -> torch.Tensor:
        """boxes (N, M, 4), scores (N, C, M) -> selected indices (S, 3)."""
        b_np = boxes.detach().float().cpu().numpy()
        s_np = scores.detach().float().cpu().numpy()
        rows: list[tuple[int, int, int]] = []
        for n, c in zip(*np.nonzero((s_np > score_thresh).any(axis=2))):
            cand = np.flatnonzero(s_np[n, c] > score_thresh)
            kept = greedy_nms(b_np[n, cand], s_np[n, c, cand], iou, max_per_class)
            rows += [(int(n), int(c), int(cand[k])) for k in kept]
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(
        g: Any, boxes: Any, scores: Any, max_per_class: int, iou: float, score_thresh: float
    ) -> Any:  # pragma: no cover - runs inside torch.onnx.export
        """The ONNX node (scalar threshold inputs, corner box format)."""
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor(max_per_class, dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor(iou, dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor(score_thresh, dtype=torch.float32)),
            center_point_box_i=0,
        )


def _take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # x (N, R, 4), idx (N, k) -> (N, k, 4). One GatherElements per column: their outputs take idx's shape, so
    # ONNX shape inference keeps k static (an Expand-ed index would make the graph's K dimension dynamic).
    return torch.stack([torch.gather(x[..., j], 1, idx) for j in range(x.shape[-1])], dim=-1)


class TvPostprocess(nn.Module):
    """Head outputs -> ``dets`` (N, K, 6) with torchvision's ``postprocess_detections`` semantics, static shapes.

    Per level: scores (sigmoid; FCOS: sqrt(sigmoid(cls) * sigmoid(ctrness))) over all (location, class)
    pairs, TopK ``topk_candidates``, scores <= ``score_thresh`` set to 0 (torchvision keeps the top-k of those
    above it: the same set), decode, clip to the input. Then every candidate gets a score row of its own class
    only (N, C, M), NonMaxSuppression (class-aware by construction), the selected triplets are scattered into a
    zero mask, and TopK K over (N, C*M) gives the fixed rows, best first. Decode and NMS stay in FP32.
    """

    def __init__(
        self,
        kind: Kind,
        num_classes: int,
        input_hw: tuple[int, int],
        score_thresh: float,
        nms_iou: float,
        max_det: int,
        topk_candidates: int,
    ) -> None:
        super().__init__()
        self.kind, self.num_classes, self.input_hw = kind, num_classes, input_hw
        self.score_thresh, self.nms_iou, self.max_det = score_thresh, nms_iou, max_det
        anchors = make_anchors_of(kind, input_hw)
        for i, a in enumerate(anchors):  # constants of the graph; not weights, so not in the state dict
            self.register_buffer(f"anchors{i}", a, persistent=False)
        self.k_per_level = [min(topk_candidates, len(a) * num_classes) for a in anchors]
        self.num_candidates = sum(self.k_per_level)
        if self.num_candidates > TRT_NMS_MAX_BOXES:
            raise UserError(
                f"topk_candidates {topk_candidates} gives {self.num_candidates} boxes into NMS, more than TensorRT's "
                f"{TRT_NMS_MAX_BOXES}; use topk_candidates <= {TRT_NMS_MAX_BOXES // len(anchors)}"
            )
        if max_det > self.num_candidates * num_classes:
            raise UserError(f"max_det {max_det} exceeds the {self.num_candidates} candidates; lower max_det")
        self.register_buffer("class_ids", torch.arange(num_classes).view(1, -1, 1), persistent=False)

    def _level(self, i: int, out: dict[str, list[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        logits = out["cls_logits"][i]
        scores = torch.sigmoid(logits)
        if self.kind == "fcos":
            scores = torch.sqrt(scores * torch.sigmoid(out["bbox_ctrness"][i]))
        top, idx = scores.flatten(1).topk(self.k_per_level[i], dim=1)
        top = top * (top > self.score_thresh).to(top.dtype)
        anchor_idx = torch.div(idx, self.num_classes, rounding_mode="trunc")  # idx >= 0: a plain integer Div
        labels = idx - anchor_idx * self.num_classes
        reg = _take_rows(out["bbox_regression"][i], anchor_idx)
        anchors = getattr(self, f"anchors{i}")[anchor_idx]
        boxes = decode_ltrb(reg, anchors) if self.kind == "fcos" else decode_deltas(reg, anchors)
        h, w = self.input_hw
        boxes = torch.stack(
            (
                boxes[..., 0].clamp(0, w),
                boxes[..., 1].clamp(0, h),
                boxes[..., 2].clamp(0, w),
                boxes[..., 3].clamp(0, h),
            ),
            dim=-1,
        )
        return boxes, top, labels

    def forward(self, out: dict[str, list[torch.Tensor]]) -> torch.Tensor:
        """Raw head outputs per level -> ``dets`` (N, K, 6)."""
        parts = [self._level(i, out) for i in range(len(self.k_per_level))]
        boxes = torch.cat([p[0] for p in parts], dim=1)  # (N, M, 4)
        scores = torch.cat([p[1] for p in parts], dim=1)  # (N, M)
        labels = torch.cat([p[2] for p in parts], dim=1)  # (N, M) int64
        class_scores = scores.unsqueeze(1) * (labels.unsqueeze(1) == self.class_ids).to(scores.dtype)  # (N, C, M)
        sel = OnnxNonMaxSuppression.apply(boxes, class_scores, self.max_det, self.nms_iou, self.score_thresh)
        m = boxes.shape[1]
        flat = (sel[:, 0] * self.num_classes + sel[:, 1]) * m + sel[:, 2]
        mask = torch.zeros_like(class_scores).reshape(-1).scatter(0, flat, torch.ones_like(flat, dtype=scores.dtype))
        kept = (class_scores * mask.reshape_as(class_scores)).flatten(1)  # (N, C*M): NMS survivors only
        top, idx = kept.topk(self.max_det, dim=1)
        cls = torch.div(idx, m, rounding_mode="trunc")
        rows = _take_rows(boxes, idx - cls * m)
        valid = (top > 0).to(top.dtype).unsqueeze(2)  # padding rows: all six columns 0
        dets = torch.cat((rows * valid, top.unsqueeze(2), cls.to(top.dtype).unsqueeze(2) * valid), dim=2)
        # A Reshape to constant (-1, K, 6): ONNX shape inference loses K behind the data-dependent NMS, and the
        # graph output must declare every dimension but the batch (TensorRT's rule, and meta.json's K).
        return dets.reshape(-1, self.max_det, len(DETS_COLUMNS))

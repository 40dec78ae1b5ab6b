"""torchvision's COCO detectors with ResNet-50 backbones (FCOS, RetinaNet v1/v2) as project code.

torchvision does not import beside our CPU torch (FACTS.md), so the networks are rebuilt here with torchvision
0.29's state-dict keys (``backbone.body.*`` from the project's ResNet, ``backbone.fpn.*``, ``head.*``): a file
written by ``torch.save(torchvision.models.detection.fcos_resnet50_fpn(weights=...).state_dict(), path)`` loads
strictly with :func:`load_tv_detector_weights`.

:class:`TvDetectorGraph` is the exported graph: uint8 NHWC BGR in, ``dets`` (N, K, 6) = x1, y1, x2, y2, score,
class (torchvision's label ids, 0..90 for COCO) in input pixels out, zero-score rows as padding. Its
postprocess follows torchvision's ``postprocess_detections`` step for step (per level: score threshold, top-k
candidates, decode, clip; then class-aware greedy NMS and the best ``detections_per_img``) in a static form:
anchors are constants for the fixed input size, and NMS is ONNX ``NonMaxSuppression`` (native in TensorRT >=
8.5, ONNX Runtime, OpenVINO) fed one score row per class, so it is class-aware without coordinate offsets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edge_app.errors import UserError
from edge_app.models.fcos import FCOSHead
from edge_app.models.fpn import FeaturePyramidNetwork, LastLevelP6P7
from edge_app.models.preprocess import InGraphPreprocess
from edge_app.models.registry import create_model
from edge_app.models.retinanet import RetinaNetHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # GeneralizedRCNNTransform's defaults (RGB, on 0-1 images)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRT_NMS_MAX_BOXES = 5000  # TensorRT's INMSLayer takes at most 5000 boxes (2000 on SM 5.3/6.2)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # torchvision BoxCoder: dw, dh clamp before exp()
DETS_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class")


@dataclass(frozen=True)
class TvDetectorSpec:
    """One torchvision detector: its layout and the postprocess defaults of its constructor."""

    arch: str
    kind: Literal["fcos", "retinanet"]
    head_group_norm: bool  # RetinaNet v2: GroupNorm in the head towers
    p6_from_c5: bool  # RetinaNet v2: LastLevelP6P7(2048, 256) takes P6 from C5; v1/FCOS from P5
    score_thresh: float
    nms_iou: float
    detections_per_img: int
    topk_candidates: int  # per pyramid level, before NMS
    bn_eps: float  # COCO_V1 RetinaNet weights run FrozenBatchNorm with eps 0 (torchvision's overwrite_eps)
    box_ap: float  # COCO val2017 box AP of torchvision's weights (their metadata; not measured here)
    weights_url: str


TV_DETECTORS: dict[str, TvDetectorSpec] = {
    s.arch: s
    for s in (
        TvDetectorSpec(
            "fcos_resnet50_fpn", "fcos", False, False, 0.2, 0.6, 100, 1000, 1e-5, 39.2,
            "https://download.pytorch.org/models/fcos_resnet50_fpn_coco-99b0c9b7.pth",
        ),
        TvDetectorSpec(
            "retinanet_resnet50_fpn", "retinanet", False, False, 0.05, 0.5, 300, 1000, 0.0, 36.4,
            "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
        ),
        TvDetectorSpec(
            "retinanet_resnet50_fpn_v2", "retinanet", True, True, 0.05, 0.5, 300, 1000, 1e-5, 41.5,
            "https://download.pytorch.org/models/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
        ),
    )
}  # fmt: skip
# RetinaNet's AnchorGenerator: 3 scales x 3 aspect ratios per level; FCOS: one "anchor" the size of the stride.
RETINANET_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (32, 64, 128, 256, 512))
RETINANET_RATIOS = (0.5, 1.0, 2.0)
FCOS_SIZES = ((8,), (16,), (32,), (64,), (128,))


def spec_of(arch: str) -> TvDetectorSpec:
    """The spec of ``arch``; UserError naming the choices otherwise."""
    if arch not in TV_DETECTORS:
        raise UserError(f"unknown detector architecture '{arch}'; choose one of {', '.join(TV_DETECTORS)}")
    return TV_DETECTORS[arch]


class ResNetBody(nn.Module):
    """The ResNet trunk as torchvision's ``IntermediateLayerGetter`` keeps it (no avgpool/fc): C3, C4, C5 out."""

    def __init__(self, arch: str = "resnet50", bn_eps: float = 1e-5) -> None:
        super().__init__()
        net = create_model(arch, num_classes=1)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = bn_eps
        c5 = net.num_features
        self.channels = [c5 // 4, c5 // 2, c5]  # torchvision: inplanes // 8 * 2 ** (i - 1), i = 2, 3, 4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised (N, 3, H, W) -> [C3, C4, C5] at strides 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


class BackboneWithFPN(nn.Module):
    """``body`` + ``fpn``: normalised images -> pyramid P3..P7."""

    def __init__(self, body: ResNetBody, out_channels: int, p6_from_c5: bool) -> None:
        super().__init__()
        self.body = body
        extra = LastLevelP6P7(body.channels[-1] if p6_from_c5 else out_channels, out_channels)
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pyramid levels, highest resolution first."""
        return self.fpn(self.body(x))


class TvDetector(nn.Module):
    """``backbone`` + ``head`` with torchvision's keys; forward gives the raw head outputs per level."""

    def __init__(self, spec: TvDetectorSpec, num_classes: int, body: str, fpn_channels: int, bn_eps: float) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        self.backbone = BackboneWithFPN(ResNetBody(body, bn_eps), fpn_channels, spec.p6_from_c5)
        if spec.kind == "fcos":
            self.num_anchors = 1
            self.head: nn.Module = FCOSHead(fpn_channels, 1, num_classes)
        else:
            self.num_anchors = len(RETINANET_SIZES[0]) * len(RETINANET_RATIOS)
            self.head = RetinaNetHead(fpn_channels, self.num_anchors, num_classes, spec.head_group_norm)

    @property
    def arch(self) -> str:
        """torchvision's builder name of this network."""
        return self.spec.arch

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Normalised (N, 3, H, W) -> ``cls_logits`` (N, HWA, K), ``bbox_regression`` (N, HWA, 4)[,
        ``bbox_ctrness`` (N, HWA, 1)] per level."""
        return self.head(self.backbone(x))


def build_tv_detector(
    arch: str,
    num_classes: int = 91,
    *,
    body: str = "resnet50",
    fpn_channels: int = 256,
    bn_eps: float | None = None,
) -> TvDetector:
    """torchvision's ``arch`` (randomly initialised as torchvision does) with its state-dict keys.

    ``body`` and ``fpn_channels`` exist for small test networks (e.g. ``resnet18``, 32; GroupNorm needs a
    multiple of 32); real weights need the defaults. ``bn_eps`` defaults to what torchvision's COCO weights run.
    """
    spec = spec_of(arch)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}; COCO detectors have 91")
    if fpn_channels < 32 or fpn_channels % 32:
        raise UserError(f"fpn_channels {fpn_channels} is not a positive multiple of 32 (GroupNorm uses 32 groups)")
    return TvDetector(spec, num_classes, body, fpn_channels, spec.bn_eps if bn_eps is None else bn_eps)


def _detected_arch(state: Mapping[str, Any]) -> tuple[str, str] | None:
    # (arch, the key that shows it), from head layouts that only one architecture has.
    for arch, key in (
        ("fcos_resnet50_fpn", "head.regression_head.bbox_ctrness.weight"),
        ("retinanet_resnet50_fpn_v2", "head.classification_head.conv.0.1.weight"),
        ("retinanet_resnet50_fpn", "head.classification_head.conv.0.0.bias"),
    ):
        if key in state:
            return arch, key
    return None


def upgrade_legacy_keys(state: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """Rename keys of files written before torchvision 0.13 (e.g. the RetinaNet v1 COCO file) to today's.

    torchvision does this in ``_load_from_state_dict``: FPN blocks became one-conv Sequentials
    (``inner_blocks.0.weight`` -> ``inner_blocks.0.0.weight``), RetinaNet towers Conv2dNormActivation stages
    (``conv.2.weight`` -> ``conv.1.0.weight``; FCOS keeps its flat ``conv.{n}`` keys).
    """
    out = dict(state)
    renames = {}
    for block in ("inner_blocks", "layer_blocks"):
        for i in range(3):
            for t in ("weight", "bias"):
                renames[f"backbone.fpn.{block}.{i}.{t}"] = f"backbone.fpn.{block}.{i}.0.{t}"
    if spec_of(arch).kind == "retinanet":
        for branch in ("classification_head", "regression_head"):
            for i in range(4):
                for t in ("weight", "bias"):
                    renames[f"head.{branch}.conv.{2 * i}.{t}"] = f"head.{branch}.conv.{i}.0.{t}"
    for old, new in renames.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out


def infer_num_classes(state: Mapping[str, Any], arch: str) -> int:
    """Class count of a detector state dict (``cls_logits`` outputs / anchors per location)."""
    w = state.get("head.classification_head.cls_logits.weight")
    if w is None:
        raise UserError(
            f"the weights have no 'head.classification_head.cls_logits.weight'; pass {arch} detector weights"
        )
    return int(w.shape[0]) // (1 if spec_of(arch).kind == "fcos" else len(RETINANET_SIZES[0]) * len(RETINANET_RATIOS))


def load_tv_detector_weights(
    model: TvDetector, path_or_state: str | Path | Mapping[str, Any], arch: str | None = None
) -> dict[str, str]:
    """Load torchvision-format detector weights strictly (``weights_only`` for files); a short report.

    Accepts files of pretrained detectors (FrozenBatchNorm2d: no ``num_batches_tracked``) and of randomly
    initialised or trained ones (BatchNorm2d), and pre-0.13 key names. A classifier file, another
    architecture, another class count, a truncated file or any missing/unexpected/mis-shaped key is one
    UserError sentence naming the key or the problem and the fix.
    """
    from edge_app.models.weights import read_state_dict

    arch = arch or model.arch
    if isinstance(path_or_state, Mapping):
        source, state = "the given state dict", {k.removeprefix("module."): v for k, v in path_or_state.items()}
    else:
        source, state = f"'{path_or_state}'", read_state_dict(path_or_state)
    if "fc.weight" in state or "conv1.weight" in state:
        key = "fc.weight" if "fc.weight" in state else "conv1.weight"
        raise UserError(
            f"{source} holds a ResNet classifier (key '{key}'), not {arch} detector weights; pass the state dict "
            f"of torchvision.models.detection.{arch}"
        )
    state = upgrade_legacy_keys(state, arch)
    own = model.state_dict()
    for k, v in own.items():  # FrozenBatchNorm2d files have no counters; BatchNorm2d keeps but never reads them
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = v
    found = _detected_arch(state)
    if found and found[0] != arch:
        raise UserError(
            f"{source} holds {found[0]} weights (key '{found[1]}'), not {arch}; build arch='{found[0]}' or pass "
            f"{arch} weights"
        )
    key = "head.classification_head.cls_logits.weight"
    if key in state and key in own and state[key].shape != own[key].shape:
        raise UserError(
            f"{source} is a detector for {infer_num_classes(state, arch)} classes ('{key}' has shape "
            f"{tuple(state[key].shape)}), the model has {model.num_classes}; build it with "
            f"num_classes={infer_num_classes(state, arch)}"
        )
    problems = [
        (what, k)
        for what, keys in (
            ("missing", [k for k in own if k not in state]),
            ("unexpected", [k for k in state if k not in own]),
            ("mis-shaped", [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]),
        )
        for k in keys
    ]
    if problems:
        what, k = problems[0]
        more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
        raise UserError(
            f"{source} does not fit {arch} ({what} key '{k}'{more}); pass the state dict of "
            f"torchvision.models.detection.{arch} (ResNet-50 body, 256 FPN channels)"
        )
    model.load_state_dict(state, strict=True)
    return {"weights": source.strip("'"), "arch": arch, "classes": str(model.num_classes)}


def level_grids(input_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature map sizes of P3..P7: every stride-2 conv/pool (kernel 3, pad 1; 7, pad 3) gives ceil(x / 2)."""
    sizes = []
    h, w = input_hw
    for level in range(1, 8):
        h, w = -(-h // 2), -(-w // 2)
        if level >= 3:
            sizes.append((h, w))
    return sizes


def make_anchors(arch: str, input_hw: tuple[int, int]) -> list[torch.Tensor]:
    """Anchors (x1, y1, x2, y2) per level for a fixed input, bit-equal to torchvision's AnchorGenerator.

    Order: location-major (row, column), then anchor (aspect ratio-major, then scale), as the head rows.
    """
    spec = spec_of(arch)
    sizes, ratios = (FCOS_SIZES, (1.0,)) if spec.kind == "fcos" else (RETINANET_SIZES, RETINANET_RATIOS)
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
        arch: str,
        num_classes: int,
        input_hw: tuple[int, int],
        score_thresh: float,
        nms_iou: float,
        max_det: int,
        topk_candidates: int,
    ) -> None:
        super().__init__()
        self.kind, self.num_classes, self.input_hw = spec_of(arch).kind, num_classes, input_hw
        self.score_thresh, self.nms_iou, self.max_det = score_thresh, nms_iou, max_det
        anchors = make_anchors(arch, input_hw)
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


class TvDetectorGraph(nn.Module):
    """uint8 (N, H, W, 3) BGR -> ``dets`` float32 (N, K, 6): the exact graph that is exported.

    Thresholds default to torchvision's for the architecture. ``input_hw`` is fixed (anchors are constants)
    and must be multiples of 32; the frame loop letterboxes to it.
    """

    def __init__(
        self,
        model: TvDetector,
        input_hw: tuple[int, int],
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        score_thresh: float | None = None,
        nms_iou: float | None = None,
        max_det: int | None = None,
        topk_candidates: int | None = None,
    ) -> None:
        super().__init__()
        h, w = input_hw
        if h % 32 or w % 32 or min(h, w) < 32:
            raise UserError(f"input size {h}x{w} is not a multiple of 32 on both sides; use e.g. 512 or 640")
        spec = model.spec
        self.input_hw = (int(h), int(w))
        self.pre = InGraphPreprocess(mean, std)
        self.model = model
        self.post = TvPostprocess(
            spec.arch,
            model.num_classes,
            self.input_hw,
            spec.score_thresh if score_thresh is None else score_thresh,
            spec.nms_iou if nms_iou is None else nms_iou,
            spec.detections_per_img if max_det is None else max_det,
            spec.topk_candidates if topk_candidates is None else topk_candidates,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR batch -> ``dets`` (N, K, 6) in input pixels, zero-score rows as padding."""
        return self.post(self.model(self.pre(images)))

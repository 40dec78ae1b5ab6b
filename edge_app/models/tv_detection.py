"""torchvision's COCO detectors with ResNet-50 backbones (FCOS, RetinaNet v1/v2) as project code.

torchvision does not import beside our CPU torch (FACTS.md), so the networks are rebuilt here with torchvision
0.29's state-dict keys (``backbone.body.*`` from the project's ResNet, ``backbone.fpn.*``, ``head.*``): a file
written by ``torch.save(torchvision.models.detection.fcos_resnet50_fpn(weights=...).state_dict(), path)`` loads
strictly with :func:`load_tv_detector_weights`.

:class:`TvDetectorGraph` is the exported graph: uint8 NHWC BGR in, ``dets`` (N, K, 6) = x1, y1, x2, y2, score,
class (torchvision's label ids, 0..90 for COCO) in input pixels out, zero-score rows as padding. Its
postprocess (anchors, box decoding, class-aware NMS as one ONNX ``NonMaxSuppression``) is
:mod:`edge_app.models.tv_postprocess`; its names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_app.errors import UserError
from edge_app.models.fcos import FCOSHead
from edge_app.models.fpn import FeaturePyramidNetwork, LastLevelP6P7
from edge_app.models.preprocess import InGraphPreprocess
from edge_app.models.registry import create_model
from edge_app.models.retinanet import RetinaNetHead
from edge_app.models.tv_postprocess import (
    DETS_COLUMNS,
    RETINANET_RATIOS,
    RETINANET_SIZES,
    TRT_NMS_MAX_BOXES,
    Kind,
    OnnxNonMaxSuppression,
    TvPostprocess,
    decode_deltas,
    decode_ltrb,
    greedy_nms,
    make_anchors_of,
)

__all__ = [
    "DETS_COLUMNS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRT_NMS_MAX_BOXES",
    "TV_DETECTORS",
    "OnnxNonMaxSuppression",
    "TvDetector",
    "TvDetectorGraph",
    "TvDetectorSpec",
    "build_tv_detector",
    "decode_deltas",
    "decode_ltrb",
    "detected_arch",
    "greedy_nms",
    "infer_num_classes",
    "load_tv_detector_weights",
    "make_anchors",
    "spec_of",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # GeneralizedRCNNTransform's defaults (RGB, on 0-1 images)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TvDetectorSpec:
    """One torchvision detector: its layout and the postprocess defaults of its constructor."""

    arch: str
    kind: Kind
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


def detected_arch(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """(arch, the key that shows it) of a detector state dict, from head layouts only one architecture has."""
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
    found = detected_arch(state)
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


def make_anchors(arch: str, input_hw: tuple[int, int]) -> list[torch.Tensor]:
    """torchvision's anchors of ``arch`` per level for a fixed input (:func:`make_anchors_of` by head kind)."""
    return make_anchors_of(spec_of(arch).kind, input_hw)


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
            spec.kind,
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

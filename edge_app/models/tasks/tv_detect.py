"""The ``tv_detect`` task: torchvision's COCO detectors (FCOS, RetinaNet v1/v2), output ``dets`` (N, K, 6).

A task of its own rather than a new ``detect`` arch because everything a descriptor says differs from the
CenterNet detector's: the network and its checkpoint keys (torchvision's), the export graph (anchors, box
coder, class-aware ``NonMaxSuppression``), the threshold (torchvision's per architecture, also applied inside
the graph), the nodes that stay float (decode and NMS in FP16 too) and the compile hooks (no labelled data:
calibration reports agreement with fp32). What it shares, the ``dets`` layout, is what the ``detect`` mode
reads, so that mode shows it (``default_mode``) with no change of its own.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from edge_app.engine_dir import InputSpec
from edge_app.models.tasks.base import Rebuilt, Task, register_task
from edge_app.models.tasks.detect import head_and_decode_nodes
from edge_app.models.tv_detection import DETS_COLUMNS, TvDetector, TvDetectorGraph, build_tv_detector

TASK = "tv_detect"


def letterbox_pad(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """The BGR uint8 padding that normalises to ~0: torchvision pads its normalised batch with zeros."""
    return tuple(int(round(255 * m)) for m in reversed(mean))  # type: ignore[return-value]


def postprocess_nodes(model: Any, output: str = "dets") -> list[str]:
    """The nodes after the head's last convs (decode, top-k, NMS): they stay FP32 in every file.

    Class-aware NMS and box corners in input pixels need FP32 (FP16 steps are 0.5 px at 640), and ONNX
    ``NonMaxSuppression`` takes float32 only.
    """
    names = set(head_and_decode_nodes(model, output))
    return [n.name for n in model.graph.node if n.name in names and n.op_type != "Conv"]


@register_task
class TvDetect(Task):
    """Object detection with torchvision's COCO detectors: boxes with class and score, best first."""

    name = TASK
    outputs = ("dets",)
    default_mode = "detect"
    default_threshold = 0.2  # FCOS's; an engine stores its own architecture's threshold in meta.json
    checkpoint_keys = ("format", "task", "arch", "labels", "input", "tv_detector", "model", "threshold")
    kept_float_note = "preprocessing, head last convs (cls_logits, bbox_reg, bbox_ctrness), decode, NMS"

    def rebuild(self, ckpt: Mapping[str, Any]) -> Rebuilt:
        labels = list(ckpt["labels"])
        d = ckpt["tv_detector"]
        net = build_tv_detector(
            ckpt["arch"], len(labels), body=d["body"], fpn_channels=d["fpn_channels"], bn_eps=d["bn_eps"]
        )
        net.load_state_dict(ckpt["model"])
        net.eval()
        # The postprocess settings travel with the network (they are part of the exported graph).
        net.post_settings = {k: d[k] for k in ("score_thresh", "nms_iou", "max_det", "topk_candidates")}
        return Rebuilt(net, InputSpec(**ckpt["input"]), labels)

    def graph(self, net: nn.Module, spec: InputSpec) -> nn.Module:
        assert isinstance(net, TvDetector)
        return TvDetectorGraph(net, (spec.height, spec.width), spec.mean, spec.std, **net.post_settings)

    def output_dims(self, net: nn.Module, spec: InputSpec) -> tuple[str | int, ...]:
        return ("batch", int(net.post_settings["max_det"]), len(DETS_COLUMNS))

    def output_layout(self, net: nn.Module, spec: InputSpec) -> dict[str, Any]:
        return {
            "dets": {
                "shape": ["batch", int(net.post_settings["max_det"]), len(DETS_COLUMNS)],
                "dtype": "float32",
                "columns": list(DETS_COLUMNS),
                "coordinates": "model input pixels (map to the frame with input.resize)",
                "order": "score descending",
                "class": "torchvision label id, index into labels (N/A ids never carry a score), stored as float",
                "padding": "rows past the real detections are all zeros (score 0)",
            }
        }

    def meta_settings(self, ckpt: Mapping[str, Any]) -> dict[str, Any]:
        return {"tv_detector": dict(ckpt["tv_detector"])}

    def float_nodes(self, model: Any) -> list[str]:
        return head_and_decode_nodes(model, self.outputs[0])

    def fp32_nodes(self, model: Any) -> list[str]:
        return postprocess_nodes(model, self.outputs[0])

"""The ``detect`` task: the CenterNet-style detector, output ``dets`` (N, K, 6) decoded inside the graph."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from edge_app.engine_dir import InputSpec
from edge_app.models.detector import DETS_COLUMNS, STRIDE, DetectorModel, build_detector
from edge_app.models.tasks.base import Rebuilt, Task, register_task

# Score threshold of an engine whose meta.json names none (training stores the best-F1 one it measured):
# low enough to keep the faint true boxes of a briefly trained model, high enough to drop the padding rows.
DEFAULT_THRESHOLD = 0.3


def head_and_decode_nodes(model: Any, output: str = "dets") -> list[str]:
    """Names of the nodes between the heads' last Convs (included) and ``output`` (an onnx.ModelProto's graph).

    Found from the graph (every node on a path from a last Conv to ``output``), not by name. Keeping them float
    matters: the heatmap scores and box sizes are the output itself, and the decode's peak test (MaxPool == heat)
    must compare the very same float tensor. Measured on the quarter-width ResNet-18 detector at 128 px (300
    validation scenes, entropy ranges): quantizing the head's last convs too cost 0.9 points of mAP@0.5 in the
    u8s8 CPU file (0.6732 -> 0.6642) and 0.1 in the TensorRT file (0.6712 -> 0.6702).
    """
    from edge_app.errors import UserError

    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    seen: set[str] = set()
    stack = [output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        names.append(node.name)
        if node.op_type != "Conv":  # a Conv is a head's last layer: keep it float, stop walking
            stack.extend(i for i in node.input if i)
    if not any(n.op_type == "Conv" for n in model.graph.node if n.name in seen):
        raise UserError(f"no Conv feeds '{output}'; INT8 calibration supports the detectors that export writes")
    return names


@register_task
class Detect(Task):
    """Object detection: boxes with class and score, at most K per image, best first."""

    name = "detect"
    outputs = ("dets",)
    default_mode = "detect"
    default_threshold = DEFAULT_THRESHOLD
    checkpoint_keys = (
        "format",
        "task",
        "arch",
        "labels",
        "input",
        "detector",
        "model",
        "map50",
        "epoch",
        "threshold",
    )
    kept_float_note = "preprocessing, head last convs, sigmoid, decode"

    def rebuild(self, ckpt: Mapping[str, Any]) -> Rebuilt:
        labels = list(ckpt["labels"])
        d = ckpt["detector"]
        # Checkpoints from before the co-located peak factor existed decode with per-class peaks, as they did.
        net = build_detector(
            ckpt["arch"], len(labels), d["width"], d["base_width"], d["max_dets"], d.get("agnostic", 1.0)
        )
        net.load_state_dict(ckpt["model"])
        net.eval()
        return Rebuilt(net, InputSpec(**ckpt["input"]), labels)

    def graph(self, net: nn.Module, spec: InputSpec) -> nn.Module:
        return DetectorModel(net, spec)  # type: ignore[arg-type]

    def rows(self, net: nn.Module, spec: InputSpec) -> int:
        """K, the fixed number of rows of ``dets``: TopK cannot return more than there are map cells."""
        return min(net.max_dets, net.num_classes * (spec.height // STRIDE) * (spec.width // STRIDE))

    def output_dims(self, net: nn.Module, spec: InputSpec) -> tuple[str | int, ...]:
        # The tracer leaves K and 6 symbolic; they are fixed by construction, so say so in the graph (TensorRT
        # then allocates the output statically, consumers can check it without running the model).
        return ("batch", self.rows(net, spec), len(DETS_COLUMNS))

    def output_layout(self, net: nn.Module, spec: InputSpec) -> dict[str, Any]:
        return {
            "dets": {
                "shape": ["batch", net.max_dets, len(DETS_COLUMNS)],
                "dtype": "float32",
                "columns": list(DETS_COLUMNS),
                "coordinates": "model input pixels (map to the frame with input.resize)",
                "order": "score descending",
                "class": "index into labels, stored as float",
                "padding": "rows past the real detections have low scores: keep score >= threshold",
            }
        }

    def with_settings(self, ckpt: Mapping[str, Any], settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """``agnostic``: the decode's co-located peak factor in 0..1 instead of the one training chose."""
        from edge_app.errors import UserError
        from edge_app.models.detector import check_agnostic

        rest = [k for k in settings if k != "agnostic"]
        if rest:
            raise UserError(f"{', '.join(rest)} does not apply to a {self.name} checkpoint")
        if "agnostic" not in settings:
            return ckpt
        try:
            agnostic = check_agnostic(settings["agnostic"])
        except ValueError:
            raise UserError(
                f"--agnostic {settings['agnostic']} is not in 0..1; use 1 (a box per class), 0 (one box per place) "
                "or a factor between"
            ) from None
        return {**ckpt, "detector": {**ckpt["detector"], "agnostic": agnostic}}

    def meta_settings(self, ckpt: Mapping[str, Any]) -> dict[str, Any]:
        return {"detector": dict(ckpt["detector"])}

    def float_nodes(self, model: Any) -> list[str]:
        return head_and_decode_nodes(model, self.outputs[0])

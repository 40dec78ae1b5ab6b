"""``export --weights FILE --arch fcos_resnet50_fpn`` / ``--pretrained``: torchvision's COCO detectors, no training.

The weights (``torch.save(torchvision.models.detection.<arch>(weights=...).state_dict(), path)``) become a
``tv_detect`` checkpoint that goes through the same :func:`edge_app.compile.export.export` as any other, so
the engine folder has the same form. The frame loop letterboxes frames to the fixed input with the padding
that normalises to zero (torchvision pads its normalised batch with zeros); thresholds, NMS IoU and K are
torchvision's for the architecture unless given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_app.compile.export import ExportResult, existing_meta
from edge_app.compile.from_weights import export_checkpoint_of_weights
from edge_app.engine_dir import EngineDir, InputSpec
from edge_app.errors import UserError
from edge_app.fsutil import sha256_file
from edge_app.models.labels import resolve_labels
from edge_app.models.tasks.tv_detect import TASK, letterbox_pad
from edge_app.models.tv_detection import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_tv_detector,
    detected_arch,
    infer_num_classes,
    load_tv_detector_weights,
    spec_of,
    upgrade_legacy_keys,
)
from edge_app.models.weights import arch_of, read_state_dict

MIN_IMG = 128  # below this P7 is a 1x1 map and COCO objects are a few pixels: nothing useful is detected


@dataclass(frozen=True)
class DetectorWeightsSource:
    """A torchvision detector's weights file and how the engine runs it."""

    arch: str
    weights: Path
    labels: str = "coco"  # coco (torchvision's 91 ids), FILE.txt or a,b,c: one name per class id
    img: int = 640  # square input, letterboxed; torchvision itself resizes to 800-1333
    score_thresh: float | None = None  # None: torchvision's for the arch (FCOS 0.2, RetinaNet 0.05)
    nms_iou: float | None = None
    max_det: int | None = None

    def __post_init__(self) -> None:
        spec_of(self.arch)  # unknown arch: one sentence naming the choices
        if not Path(self.weights).is_file():
            raise UserError(f"weights file '{self.weights}' does not exist; pass the path of a saved state dict")
        if self.img < MIN_IMG or self.img % 32:
            raise UserError(
                f"img {self.img} must be a multiple of 32 and at least {MIN_IMG} (the pyramid halves it 7 times); "
                "e.g. 512 or 640"
            )

    def input_spec(self) -> InputSpec:
        """Letterbox to img x img with the padding that normalises to ~0."""
        return InputSpec(
            self.img,
            self.img,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            resize="letterbox",
            pad=letterbox_pad(IMAGENET_MEAN),
        )


def checkpoint_from_detector_weights(src: DetectorWeightsSource) -> dict:
    """A ``tv_detect`` checkpoint holding ``src``'s weights, checked strictly against the architecture.

    The ResNet body and FPN width are read from the file (torchvision's files: resnet50 and 256), so a
    smaller network with the same keys (e.g. a ResNet-18 body) exports the same way.
    """
    from edge_app.models.checkpoint import CHECKPOINT_FORMAT

    spec = spec_of(src.arch)
    state = upgrade_legacy_keys(read_state_dict(src.weights), src.arch)
    found = detected_arch(state)
    body = arch_of({k.removeprefix("backbone.body."): v for k, v in state.items() if k.startswith("backbone.body.")})
    inner = state.get("backbone.fpn.inner_blocks.0.0.weight")
    if (found and found[0] != src.arch) or body is None or inner is None:
        # A classifier, another detector, a partial file: the strict loader's sentence names the key and the fix.
        load_tv_detector_weights(build_tv_detector(src.arch), state, src.arch)
        raise UserError(f"'{src.weights}' holds no {src.arch} weights; pass torchvision's state dict of it")
    n = infer_num_classes(state, src.arch)
    labels = resolve_labels(src.labels)
    if len(labels) != n:
        raise UserError(
            f"{len(labels)} labels were given but the detector in '{src.weights}' has {n} class ids; pass {n} "
            "labels" + (" (coco: torchvision's 91 ids with N/A gaps)" if n == 91 else " (one per class id, in order)")
        )
    model = build_tv_detector(src.arch, n, body=body, fpn_channels=int(inner.shape[0]))
    load_tv_detector_weights(model, state, src.arch)
    post = {
        "score_thresh": spec.score_thresh if src.score_thresh is None else src.score_thresh,
        "nms_iou": spec.nms_iou if src.nms_iou is None else src.nms_iou,
        "max_det": spec.detections_per_img if src.max_det is None else src.max_det,
        "topk_candidates": spec.topk_candidates,
    }
    return {
        "format": CHECKPOINT_FORMAT,
        "task": TASK,
        "arch": src.arch,
        "labels": labels,
        "input": asdict(src.input_spec()),
        "tv_detector": {"body": body, "fpn_channels": int(inner.shape[0]), "bn_eps": spec.bn_eps, **post},
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "threshold": post["score_thresh"],  # the graph already drops lower scores: show what it returns
    }


def export_detector_weights(
    src: DetectorWeightsSource, name: str, engines_root: str | Path = "engines", force: bool = False
) -> ExportResult:
    """Export ``src`` to ``engines_root/name``; up to date, nothing written, when weights and settings match.

    Every check (weights, labels, sizes, the graph, its parity, TensorRT's rules) runs before any file of the
    folder is touched.
    """

    from edge_app.compile.detect import DetParity

    weights_sha = sha256_file(src.weights)
    ed = EngineDir(Path(engines_root) / name)
    old = None if force else existing_meta(ed)
    settings = dataclasses.asdict(src) | {"weights": str(src.weights)}
    if (
        old
        and old.task == TASK
        and old.weights_sha256 == weights_sha
        and old.extra.get("export_settings") == settings
        and old.files.get(ed.onnx_path().name) == sha256_file(ed.onnx_path())
    ):
        return ExportResult(ed.path, ed.onnx_path(), DetParity.from_dict(old.parity), True, old)
    # COCO AP is torchvision's figure, not measured here: no fp32 row.
    return export_checkpoint_of_weights(
        checkpoint_from_detector_weights(src),
        src,
        weights_sha,
        name,
        engines_root,
        force,
        {"export_settings": settings},
    )

"""``run.py export``: a checkpoint or pretrained weights -> engines/NAME (ONNX with its preprocessing + meta.json)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.cli.common import floats3, positive_int
from edge_app.errors import UserError

if TYPE_CHECKING:
    from edge_app.compile.export import ExportResult

HELP = "export a checkpoint or pretrained weights to engines/NAME (ONNX with in-graph preprocessing + meta.json)"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `export` (added to ``p``, the sub-command's parser, or to a new one)."""
    from edge_app.models import list_models
    from edge_app.models.tv_detection import TV_DETECTORS

    p = p or argparse.ArgumentParser(prog="run.py export", description=HELP)
    p.add_argument("checkpoint", nargs="?", help="best.pt or last.pt from `train` (or use --weights / --pretrained)")
    p.add_argument("--name", required=True, help="engine name: writes engines/NAME/")
    p.add_argument("--engines", default="engines", help="folder that holds engine folders (default engines)")
    p.add_argument("--force", action="store_true", help="export even when the folder is up to date")
    p.add_argument(
        "--agnostic",
        type=float,
        default=None,
        metavar="F",
        help="detector checkpoints from `train --task detect`: scale the score of a class peak that another class "
        "out-scores at the same place by F (1: a box per class, CenterNet's; 0: one box per place, a "
        "class-agnostic NMS; default: the factor training chose by validation mAP)",
    )
    g = p.add_argument_group("pretrained weights instead of a checkpoint (no training)")
    g.add_argument(
        "--weights",
        default=None,
        metavar="FILE.pth",
        help="a torchvision-format ResNet or COCO detector state dict (or a checkpoint holding one)",
    )
    g.add_argument(
        "--pretrained",
        nargs="?",
        const="DEFAULT",
        default=None,
        metavar="VARIANT",
        help="download torchvision's weights for --arch (classifiers: DEFAULT, IMAGENET1K_V1 or IMAGENET1K_V2; "
        "detectors: their COCO_V1 file); needs internet once",
    )
    g.add_argument(
        "--arch",
        default=None,
        help=f"with --weights/--pretrained: one of {', '.join(list_models())} (classifiers) or "
        f"{', '.join(TV_DETECTORS)} (COCO detectors)",
    )
    g.add_argument(
        "--labels",
        default=None,
        help="imagenet (the 1000 ImageNet-1k names), coco (torchvision's 91 COCO ids), FILE.txt (one per line) "
        "or a,b,c (default imagenet for classifiers, coco for detectors)",
    )
    g.add_argument(
        "--img",
        "--crop",
        dest="img",
        type=positive_int,
        default=None,
        help="input (crop) size in pixels, a multiple of 32 (default 224 for classifiers; detectors: 640, "
        "letterboxed, at least 128)",
    )
    g.add_argument(
        "--resize",
        type=int,
        default=None,
        metavar="PX",
        help="shorter side resized to PX, then the centre --img crop, as torchvision's eval transform "
        "(default 256 for a 224 crop; 232 for torchvision's V2 weights; 0: stretch the frame instead)",
    )
    g.add_argument(
        "--mean",
        type=floats3("--mean"),
        default=None,
        metavar="R,G,B",
        help="normalisation mean in 0..1 (default ImageNet's)",
    )
    g.add_argument(
        "--std", type=floats3("--std"), default=None, metavar="R,G,B", help="normalisation std (default ImageNet's)"
    )
    return p


def main(a: argparse.Namespace) -> int:
    """Run `export`; returns the exit code."""
    from edge_app.compile.export import export

    from_weights = a.weights is not None or a.pretrained is not None
    if a.checkpoint and from_weights:
        raise UserError("pass either a checkpoint or --weights/--pretrained, not both")
    if not a.checkpoint and not from_weights:
        raise UserError(
            "nothing to export; pass a checkpoint from `train`, --weights FILE.pth or --pretrained (with --arch)"
        )
    if from_weights and a.agnostic is not None:
        raise UserError("--agnostic applies to detector checkpoints from `train`, not to --weights/--pretrained")
    settings = {} if a.agnostic is None else {"agnostic": a.agnostic}
    r = _export_weights(a) if from_weights else export(a.checkpoint, a.name, a.engines, a.force, settings)
    for line in r.summary():
        print(line)
    return 0


def _export_weights(a: argparse.Namespace) -> ExportResult:
    """`export --weights/--pretrained`: a torchvision-format state dict -> an engine folder."""
    from edge_app.compile.from_weights import IMAGENET_MEAN, IMAGENET_STD, WeightsSource, export_weights
    from edge_app.models.tv_detection import TV_DETECTORS
    from edge_app.models.weights import fetch_pretrained, pretrained_entry

    if a.weights and a.pretrained:
        raise UserError("pass either --weights FILE or --pretrained, not both")
    if not a.arch:
        raise UserError("--arch is needed with --weights/--pretrained, e.g. --arch resnet50")
    if a.arch in TV_DETECTORS:
        return _export_detector_weights(a)
    a.img = 224 if a.img is None else a.img
    a.labels = a.labels or "imagenet"
    resize = a.resize
    if a.pretrained:
        entry = pretrained_entry(a.arch, a.pretrained)
        weights = fetch_pretrained(a.arch, a.pretrained)
        resize = resize if resize is not None else round(entry["resize_size"] * a.img / entry["crop_size"])
    else:
        weights = Path(a.weights)
        resize = resize if resize is not None else round(256 * a.img / 224)
    if resize < 0:
        raise UserError(f"--resize {resize} must be 0 (stretch) or a size in pixels, e.g. 256")
    src = WeightsSource(
        a.arch, weights, a.labels, a.img, resize or None, a.mean or IMAGENET_MEAN, a.std or IMAGENET_STD
    )
    return export_weights(src, a.name, a.engines, force=a.force)


def _export_detector_weights(a: argparse.Namespace) -> ExportResult:
    """`export --weights/--pretrained --arch <COCO detector>`: torchvision's detector -> an engine folder."""
    from edge_app.compile.from_detector_weights import DetectorWeightsSource, export_detector_weights
    from edge_app.models.tv_detection import spec_of
    from edge_app.models.weights import download_weights

    for flag, value in (("--resize", a.resize), ("--mean", a.mean), ("--std", a.std)):
        if value is not None:
            raise UserError(f"{flag} does not apply to {a.arch}: detectors letterbox with torchvision's mean and std")
    if a.pretrained and a.pretrained not in ("DEFAULT", "COCO_V1"):
        raise UserError(f"{a.arch} has no weights '{a.pretrained}'; choose DEFAULT or COCO_V1")
    weights = download_weights(spec_of(a.arch).weights_url) if a.pretrained else Path(a.weights)
    try:
        src = DetectorWeightsSource(a.arch, weights, a.labels or "coco", 640 if a.img is None else a.img)
    except UserError as e:
        raise UserError(str(e).replace("img ", "--img ", 1)) from None
    return export_detector_weights(src, a.name, a.engines, force=a.force)

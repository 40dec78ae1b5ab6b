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

    p = p or argparse.ArgumentParser(prog="run.py export", description=HELP)
    p.add_argument("checkpoint", nargs="?", help="best.pt or last.pt from `train` (or use --weights / --pretrained)")
    p.add_argument("--name", required=True, help="engine name: writes engines/NAME/")
    p.add_argument("--engines", default="engines", help="folder that holds engine folders (default engines)")
    p.add_argument("--force", action="store_true", help="export even when the folder is up to date")
    g = p.add_argument_group("pretrained weights instead of a checkpoint (no training)")
    g.add_argument(
        "--weights",
        default=None,
        metavar="FILE.pth",
        help="a torchvision-format ResNet state dict (or a checkpoint holding one)",
    )
    g.add_argument(
        "--pretrained",
        nargs="?",
        const="DEFAULT",
        default=None,
        metavar="VARIANT",
        help="download torchvision's ImageNet weights for --arch (DEFAULT, IMAGENET1K_V1 or IMAGENET1K_V2); needs internet once",
    )
    g.add_argument("--arch", default=None, help=f"with --weights/--pretrained: one of {', '.join(list_models())}")
    g.add_argument(
        "--labels",
        default="imagenet",
        help="imagenet (the 1000 ImageNet-1k names), FILE.txt (one per line) or a,b,c (default imagenet)",
    )
    g.add_argument(
        "--img",
        "--crop",
        dest="img",
        type=positive_int,
        default=224,
        help="input (crop) size in pixels, a multiple of 32 (default 224)",
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
    r = _export_weights(a) if from_weights else export(a.checkpoint, a.name, a.engines, force=a.force)
    for line in r.summary():
        print(line)
    return 0


def _export_weights(a: argparse.Namespace) -> ExportResult:
    """`export --weights/--pretrained`: a torchvision-format state dict -> an engine folder."""
    from edge_app.compile.from_weights import IMAGENET_MEAN, IMAGENET_STD, WeightsSource, export_weights
    from edge_app.models.weights import fetch_pretrained, pretrained_entry

    if a.weights and a.pretrained:
        raise UserError("pass either --weights FILE or --pretrained, not both")
    if not a.arch:
        raise UserError("--arch is needed with --weights/--pretrained, e.g. --arch resnet50")
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

"""``run.py calibrate``: tensor ranges from real images -> INT8 and FP16 models, with an accuracy report."""

from __future__ import annotations

import argparse

HELP = "calibrate with images: cached tensor ranges -> model.int8.trt/cpu.onnx, model.fp16.onnx, accuracy report"


def get_args_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of `calibrate` (added to ``p``, the sub-command's parser, or to a new one)."""
    from edge_app.compile.calibrate import CalibrateConfig
    from edge_app.compile.ranges import METHODS

    p = p or argparse.ArgumentParser(prog="run.py calibrate", description=HELP)
    d = CalibrateConfig()
    p.add_argument("engine", help="engine folder from `export`, e.g. engines/demo")
    p.add_argument(
        "--images",
        default=d.images,
        help="calibration images: a folder (recursive, no labels needed), a video file, or 'synthetic' (default)",
    )
    p.add_argument(
        "--num",
        type=int,
        default=d.num,
        help=f"how many images (or evenly spaced frames) to calibrate on (default {d.num})",
    )
    p.add_argument(
        "--method",
        default=d.method,
        help=f"range calibration: {', '.join(METHODS)} (default {d.method}, as TensorRT's calibrator)",
    )
    p.add_argument(
        "--val",
        default=None,
        metavar="DIR",
        help="labelled data for the accuracy report: a <class>/ image folder (top-1) or COCO/YOLO data (mAP) "
        "(default: the checkpoint's training data)",
    )
    p.add_argument(
        "--cache-dir", default=d.cache_dir, help=f"where the tensor-range cache lives (default {d.cache_dir})"
    )
    p.add_argument("--no-speed", action="store_true", help="skip the INT8-vs-fp32 CPU latency measurement")
    p.add_argument("--force", action="store_true", help="recalibrate and rewrite every model even when up to date")
    return p


def main(a: argparse.Namespace) -> int:
    """Run `calibrate`; returns the exit code."""
    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate

    cfg = CalibrateConfig(
        images=a.images,
        num=a.num,
        method=a.method,
        val=a.val,
        force=a.force,
        cache_dir=a.cache_dir,
        speed=not a.no_speed,
    )
    print(run_calibrate(a.engine, cfg).summary())
    return 0

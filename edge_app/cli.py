"""Sub-commands of ``run.py``: argument parsing and friendly errors only; the work lives in the modules.

Every command turns a :class:`UserError` into one sentence on stderr and exit code 2 (no traceback), and
Ctrl-C into exit code 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from edge_app.errors import UserError

log = logging.getLogger("edge_app")

Handler = Callable[[argparse.Namespace], int]
COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = []


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Register ``fn`` as sub-command ``name``."""
    def deco(fn: Handler) -> Handler:
        COMMANDS.append((name, help, add_args, fn))
        return fn
    return deco


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {s}")
    return v


def engine_args(p: argparse.ArgumentParser) -> None:
    """--backend / --precision / --device, shared by every command that runs an engine."""
    from edge_app.runtime import BACKENDS

    p.add_argument("--backend", default="auto", choices=BACKENDS, help="inference backend (default: fastest available)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"), help="model precision (default: fastest available)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


# ------------------------------------------------------------------------------------------------ train
def _train_args(p: argparse.ArgumentParser) -> None:
    from edge_app.models import list_models
    from edge_app.train import TrainConfig

    d = TrainConfig()
    p.add_argument("--data", default=d.data, help="'synthetic' (built-in, generated) or an image folder: <class>/*.jpg or train/ and val/")
    p.add_argument("--arch", default=d.arch, help=f"one of {', '.join(list_models())} (default {d.arch})")
    p.add_argument("--img", type=positive_int, default=d.img, help=f"input size in pixels (default {d.img})")
    p.add_argument("--epochs", type=positive_int, default=d.epochs)
    p.add_argument("--batch", type=positive_int, default=d.batch)
    p.add_argument("--lr", type=positive_float, default=d.lr, help=f"peak learning rate (AdamW, warm-up + cosine) (default {d.lr})")
    p.add_argument("--weights", default=None, help="torchvision-format .pth to start from (head replaced if class count differs)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue the run of this last.pt")
    p.add_argument("--seed", type=int, default=d.seed)


@command("train", "train or fine-tune a ResNet classifier", _train_args)
def cmd_train(a: argparse.Namespace) -> int:
    from edge_app.models import list_models
    from edge_app.train import TrainConfig, train

    if a.arch not in list_models():
        raise UserError(f"unknown architecture '{a.arch}'; choose one of: {', '.join(list_models())}")
    if a.img < 32:
        raise UserError(f"--img {a.img} is too small for a ResNet (5 stride-2 stages); use at least 32")
    cfg = TrainConfig(data=a.data, arch=a.arch, img=a.img, epochs=a.epochs, batch=a.batch, lr=a.lr,
                      weights=a.weights, device=a.device, out=a.out, seed=a.seed)
    r = train(cfg, resume=a.resume)
    print(f"best val top-1 {r['best_top1']:.4f}; wrote {r['best']}, {r['last']}, {r['out']}/metrics.csv, {r['out']}/metrics.png")
    return 0


# ------------------------------------------------------------------------------------------------ export
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt from `train`")
    p.add_argument("--name", required=True, help="engine name: writes engines/NAME/")
    p.add_argument("--engines", default="engines", help="folder that holds engine folders (default engines)")
    p.add_argument("--force", action="store_true", help="export even when the folder is up to date")


@command("export", "export a checkpoint to engines/NAME (ONNX with in-graph preprocessing + meta.json)", _export_args)
def cmd_export(a: argparse.Namespace) -> int:
    from edge_app.export import export

    r = export(a.checkpoint, a.name, a.engines, force=a.force)
    p = r["parity"]
    state = "up to date, nothing to do" if r["cached"] else "exported"
    print(f"{state}: {r['onnx']} (PyTorch vs ONNX Runtime max |diff| {p['max_abs_diff']:.2e}, tolerance {p['tolerance']:.0e})")
    print(f"wrote {r['engine']}/meta.json")
    return 0


# ------------------------------------------------------------------------------------------------ annotate
def _annotate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="input video file")
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument("--out", default=None, help="annotated video path (default runs/annotate/<stem>.mp4)")
    p.add_argument("--top-k", type=positive_int, default=3)
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    engine_args(p)


@command("annotate", "label every frame of a video file: annotated video + JSON lines", _annotate_args)
def cmd_annotate(a: argparse.Namespace) -> int:
    from edge_app.pipeline import AnnotateConfig, annotate_video
    from edge_app.runtime import open_engine

    out = Path(a.out) if a.out else Path("runs/annotate") / (Path(a.video).stem + ".mp4")
    with open_engine(a.engine, a.backend, a.precision, a.device) as eng:
        print(f"engine: {eng.description} [{getattr(eng, 'choice', '')}]")
        r = annotate_video(eng, a.video, out, out.with_suffix(".jsonl"), AnnotateConfig(top_k=a.top_k, max_frames=a.max_frames))
    lat = r["inference_ms"]
    print(f"annotated {r['frames']} frames at {r['fps']:.1f} frames/s (inference p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms)")
    print(f"wrote {r['video']} and {r['jsonl']}")
    return 0


# ------------------------------------------------------------------------------------------------ demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the demo's own)")
    p.add_argument("--out", default="runs/demo", help="where the demo writes (default runs/demo)")


@command("demo", "the whole chain on built-in synthetic data: data, train, export, evaluate, annotate", _demo_args)
def cmd_demo(a: argparse.Namespace) -> int:
    from edge_app.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=a.out)
    if a.epochs:
        cfg.epochs = a.epochs
    run_demo(cfg)
    return 0


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="edge_app: ResNet recognition on TensorRT / ONNX Runtime / PyTorch with an OpenCV frame loop.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_, add_args, fn in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

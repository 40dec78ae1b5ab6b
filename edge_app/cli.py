"""Sub-commands of ``run.py``: argument parsing and friendly errors only; the work lives in the modules.

Every command turns a :class:`UserError` into one sentence on stderr and exit code 2 (no traceback), and
Ctrl-C into exit code 130.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

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
    from edge_app.engine_dir import PRECISIONS
    from edge_app.runtime import backend_names

    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *backend_names()),
        help="inference backend (default: fastest available)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", *PRECISIONS),
        help="model precision (default: fastest available)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-build", action="store_true", help="with TensorRT: fail instead of building a missing plan")
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="with TensorRT on Jetson: run on DLA core N (a plan built with build --dla N)",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="with TensorRT: replay each call as a CUDA graph (less launch overhead at batch 1)",
    )


def open_from_args(a: argparse.Namespace, use: str = "latency") -> Engine:  # noqa: F821 - imported lazily
    """``open_engine`` with the options of :func:`engine_args`."""
    from edge_app.runtime import open_engine

    if a.dla is not None and a.dla < 0:
        raise UserError(f"--dla {a.dla} is not a DLA core; Jetson AGX Orin/Xavier have cores 0 and 1")
    return open_engine(
        a.engine,
        a.backend,
        a.precision,
        a.device,
        no_build=a.no_build,
        dla_core=a.dla,
        cuda_graphs=a.cuda_graph,
        use=use,
        batch=a.batch if a.batch >= 1 else None,  # a bad --batch is worded by the loop config, not here
    )


# ------------------------------------------------------------------------------------------------ train
def _train_args(p: argparse.ArgumentParser) -> None:
    from edge_app.models import list_models

    # Defaults differ by task (a 64 px classifier, a 128 px quarter-width detector): None means "the task's own".
    p.add_argument(
        "--task",
        default="classify",
        choices=("classify", "detect"),
        help="classify (default) or detect (CenterNet-style head)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="'synthetic' (built-in, generated; default); classify: an image folder <class>/*.jpg or "
        "train/ and val/; detect: a COCO instances.json (or its folder) or a YOLO folder",
    )
    p.add_argument("--arch", default=None, help=f"one of {', '.join(list_models())} (default resnet18)")
    p.add_argument(
        "--img",
        type=positive_int,
        default=None,
        help="input size in pixels (default 64 classify, 128 detect; detect: a multiple of 32)",
    )
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (AdamW, warm-up + cosine)")
    p.add_argument(
        "--weights",
        default=None,
        help="torchvision-format .pth (or, for detect, a classifier checkpoint) to start from",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default runs/train or runs/detect)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue the run of this last.pt")
    p.add_argument("--seed", type=int, default=None)


@command(
    "train", "train or fine-tune a ResNet classifier, or a detector on the ResNet backbone (--task detect)", _train_args
)
def cmd_train(a: argparse.Namespace) -> int:
    from edge_app.models import list_models

    if a.arch is not None and a.arch not in list_models():
        raise UserError(f"unknown architecture '{a.arch}'; choose one of: {', '.join(list_models())}")
    if a.img is not None and a.img < 32:
        raise UserError(f"--img {a.img} is too small for a ResNet (5 stride-2 stages); use at least 32")
    given = {
        k: v
        for k, v in (
            ("data", a.data),
            ("arch", a.arch),
            ("img", a.img),
            ("epochs", a.epochs),
            ("batch", a.batch),
            ("lr", a.lr),
            ("weights", a.weights),
            ("out", a.out),
            ("seed", a.seed),
        )
        if v is not None
    }
    if a.task == "detect":
        from edge_app.training.train_detect import DetectConfig, train_detector

        if a.img is not None and a.img % 32:
            raise UserError(
                f"--img {a.img} is not a multiple of 32 (the detector's stride-32 backbone); e.g. --img 128"
            )
        r = train_detector(DetectConfig(device=a.device, **given), resume=a.resume)
        print(
            f"best val mAP@0.5 {r.best_map50:.4f} (score threshold {r.threshold:.2f}); wrote {r.best}, {r.last}, {r.out}/metrics.csv"
        )
        return 0
    from edge_app.training.train import TrainConfig, train

    r = train(TrainConfig(device=a.device, **given), resume=a.resume)
    print(f"best val top-1 {r.best_top1:.4f}; wrote {r.best}, {r.last}, {r.out}/metrics.csv, {r.out}/metrics.png")
    return 0


# ------------------------------------------------------------------------------------------------ export
def _floats3(flag: str) -> Callable[[str], tuple[float, float, float]]:
    def parse(s: str) -> tuple[float, float, float]:
        try:
            v = tuple(float(x) for x in s.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{s}' is not three comma-separated numbers, e.g. 0.485,0.456,0.406"
            ) from None
        if len(v) != 3:
            raise argparse.ArgumentTypeError(f"{flag} needs three values (R,G,B), got {len(v)}")
        return v  # type: ignore[return-value]

    return parse


def _export_args(p: argparse.ArgumentParser) -> None:
    from edge_app.models import list_models

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
        type=_floats3("--mean"),
        default=None,
        metavar="R,G,B",
        help="normalisation mean in 0..1 (default ImageNet's)",
    )
    g.add_argument(
        "--std", type=_floats3("--std"), default=None, metavar="R,G,B", help="normalisation std (default ImageNet's)"
    )


@command(
    "export",
    "export a checkpoint or pretrained weights to engines/NAME (ONNX with in-graph preprocessing + meta.json)",
    _export_args,
)
def cmd_export(a: argparse.Namespace) -> int:
    from edge_app.compile.export import export

    from_weights = a.weights is not None or a.pretrained is not None
    if a.checkpoint and from_weights:
        raise UserError("pass either a checkpoint or --weights/--pretrained, not both")
    if not a.checkpoint and not from_weights:
        raise UserError(
            "nothing to export; pass a checkpoint from `train`, --weights FILE.pth or --pretrained (with --arch)"
        )
    if from_weights:
        r = _export_weights(a)
    elif _checkpoint_task(a.checkpoint) == "detect":
        from edge_app.compile.export_detect import export_detector

        d = export_detector(a.checkpoint, a.name, a.engines, force=a.force)
        state = "up to date, nothing to do" if d["cached"] else "exported"
        print(f"{state}: {d['onnx']} (detector; PyTorch vs ONNX Runtime max |diff| {d['parity']['max_abs_diff']:.2e})")
        print(f"wrote {d['engine']}/meta.json (task detect, {len(d['meta'].labels)} classes)")
        return 0
    else:
        r = export(a.checkpoint, a.name, a.engines, force=a.force)
    state = "up to date, nothing to do" if r.cached else "exported"
    print(
        f"{state}: {r.onnx} (PyTorch vs ONNX Runtime max |diff| {r.parity.max_abs_diff:.2e}, tolerance {r.parity.tolerance:.0e})"
    )
    spec = r.meta.input
    crop = f"resize {spec.resize_size} + centre crop" if spec.resize_size else spec.resize
    print(
        f"wrote {r.engine}/meta.json ({r.meta.arch}, {len(r.meta.labels)} classes, {spec.width}x{spec.height} input, {crop})"
    )
    return 0


def _checkpoint_task(path: str) -> str:
    """'detect' for a detector checkpoint, else 'classify' (the checkpoint's own errors surface in export)."""
    from edge_app.models.checkpoint import load_checkpoint

    return str(load_checkpoint(path).get("task", "classify"))


def _export_weights(a: argparse.Namespace) -> ExportResult:  # noqa: F821 - imported lazily
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


# ------------------------------------------------------------------------------------------------ annotate
def _annotate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, image files, folders of either, or quoted globs of images",
    )
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default runs/annotate), or OUT.mp4 for a single input; JSON lines go beside each video",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from the last frame its JSON lines hold"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from edge_app.annotate.video import ANNOTATE_BATCH

    _loop_args(p, batch=ANNOTATE_BATCH)  # defined with `live`, below
    p.add_argument(
        "--codec",
        default=None,
        choices=("h264", "vp9", "mjpeg", "mp4v"),  # edge_app.video.sinks.CODECS
        help="video codec (default by extension: .mp4 h264, .webm vp9, .avi mjpeg); vp9 needs --out OUT.webm",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="spread the files over a Ray cluster, one file per task: without ADDRESS a local Ray instance on "
        "this machine, with 'auto' or HOST:PORT an existing cluster (`ray start --head`); the engine folder "
        "is shipped through Ray, but inputs must be at the same path on every node and --out must be a "
        "folder every node can write (a shared folder); put --ray after the inputs",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --ray: Ray actors in the pool, each with one engine (default: one per node)",
    )


@command(
    "annotate", "label every frame of video files: annotated videos + JSON lines, batched, resumable", _annotate_args
)
def cmd_annotate(a: argparse.Namespace) -> int:
    from edge_app.annotate.images import annotate_images, split_inputs
    from edge_app.annotate.video import VIDEO_EXTS, annotate_video, output_paths
    from edge_app.frames.labellers import make_labeller

    if a.ray is not None:
        return _annotate_on_ray(a)
    if a.workers is not None:
        raise UserError(
            f"--workers {a.workers} applies only with --ray; add --ray to spread the files over Ray workers"
        )
    with _loop_flags():
        cfg = _loop_config(a, progress=not a.no_progress)
        read = written = failed = 0
        seconds = 0.0
        with open_from_args(a, use="throughput") as eng:
            videos, images = split_inputs(a.inputs)
            if images and a.out and Path(a.out).suffix.lower() in VIDEO_EXTS:
                raise UserError(
                    f"--out '{a.out}' is one video file but the inputs include {len(images)} images; pass a folder as --out"
                )
            outs = output_paths(videos, a.out)
            print(f"engine: {eng.description} [{eng.choice}]")
            lab = make_labeller(
                eng, a.mode, _mode_configs(a).get(a.mode)
            )  # an engine the mode cannot use fails before any output
            for src, (vid, jl) in zip(videos, outs):
                r = annotate_video(lab, src, vid, jl, cfg, resume=a.resume, codec=a.codec)
                if r.already_complete:
                    print(f"{src}: already complete ({r.frames_restored} frames in {jl}), skipped")
                    continue
                resumed = f", resumed after frame {r.frames_restored - 1}" if r.frames_restored else ""
                print(
                    f"{src}: annotated {r.frames_written} frames ({r.frames_read} read, {r.frames_failed} failed to decode{resumed}) "
                    f"at {r.fps:.1f} frames/s -> {vid}, {jl}"
                )
                read, written, failed, seconds = (
                    read + r.frames_read,
                    written + r.frames_written,
                    failed + r.frames_failed,
                    seconds + r.seconds,
                )
                if r.stopped_by == "interrupt":
                    print(
                        "interrupted: what was written is complete up to the last JSON line; run again with --resume to continue",
                        file=sys.stderr,
                    )
                    return 130
            if images:
                ri = annotate_images(
                    lab, images, a.out or "runs/annotate", cfg.batch, cfg.overlay, a.resume, progress=not a.no_progress
                )
                skipped = f", {ri.skipped} already done" if ri.skipped else ""
                print(
                    f"{len(images)} images: annotated {ri.written}{skipped}, {len(ri.unreadable)} unreadable, "
                    f"{ri.per_second:.1f} images/s -> {ri.jsonl.parent}/, {ri.jsonl}"
                )
                for bad in ri.unreadable[:5]:
                    print(f"  unreadable: {bad}", file=sys.stderr)
                if ri.unreadable and not ri.written and not ri.skipped:
                    raise UserError(
                        f"none of the {len(images)} images could be decoded (e.g. '{ri.unreadable[0]}'); pass JPEG, PNG, BMP, WebP or TIFF files"
                    )
    if len(videos) > 1:
        fps = written / seconds if seconds else 0.0
        print(
            f"total: {len(videos)} files, {read} frames read, {written} written, {failed} failed to decode, {fps:.1f} frames/s"
        )
    return 0


# Library field -> flag, for the errors of `annotate --ray` (the library names fields: a Ray worker never sees a flag).
RAY_FLAGS = {"address": "--ray", "workers": "--workers", "dla_core": "--dla"}


def _annotate_on_ray(a: argparse.Namespace) -> int:
    """`annotate --ray`: the same files, outputs and resume, spread over Ray workers (edge_app.annotate.ray.driver)."""
    from edge_app.annotate.images import split_inputs
    from edge_app.annotate.video import output_paths
    from edge_app.errors import FieldError
    from edge_app.frames import annotate_ray as ar
    from edge_app.frames.labellers import LabellerSpec

    with _loop_flags():
        try:
            opts = ar.RayOptions(
                address=a.ray or None,
                workers=a.workers or 0,
                no_build=a.no_build,
                dla_core=a.dla,
                cuda_graphs=a.cuda_graph,
            )
        except FieldError as e:
            raise e.reworded(RAY_FLAGS) from None
        cfg = _loop_config(a, progress=False)
        inputs, images = split_inputs(a.inputs)
        if images:
            raise UserError(
                f"--ray spreads video files over workers, but {len(images)} inputs are images "
                f"(e.g. '{images[0].path}'); annotate photos without --ray"
            )
        outs = output_paths(inputs, a.out)
        spec = LabellerSpec(
            a.engine, a.mode, _mode_configs(a).get(a.mode), a.backend, a.precision, a.device, use="throughput"
        )
        result = ar.annotate_on_ray(
            spec, ar.make_jobs(inputs, outs, a.resume), cfg, opts, codec=a.codec, progress=not a.no_progress
        )
    for line in ar.format_summary(result):
        print(line)
    if result.interrupted:
        print(
            "interrupted: what was written is complete up to the last JSON line of each file; "
            "run again with --resume to continue",
            file=sys.stderr,
        )
        return 130
    return 0 if result.ok else 1


# ------------------------------------------------------------------------------------------------ demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the demo's own)")
    p.add_argument("--out", default="runs/demo", help="where the demo writes (default runs/demo)")


@command(
    "demo",
    "the whole chain on built-in synthetic data: data, train, export, calibrate, evaluate, annotate, tiles",
    _demo_args,
)
def cmd_demo(a: argparse.Namespace) -> int:
    from edge_app.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=a.out)
    if a.epochs:
        cfg.epochs = a.epochs
    run_demo(cfg)
    return 0


# ------------------------------------------------------------------------------------------------ bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    from edge_app.profiling.bench import BenchConfig
    from edge_app.runtime import backend_names

    d = BenchConfig()
    p.add_argument("engine", help="engine folder, e.g. engines/demo")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1), e.g. 1,8,32")
    p.add_argument(
        "--warmup",
        type=float,
        default=d.warmup,
        help=f"warm-up seconds per variant and batch, not measured (default {d.warmup})",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        help=f"measured seconds per variant and batch (default {d.duration})",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=d.iterations,
        help=f"measured calls (frames with --pipeline) per variant at least; the longer of this and --duration wins (default {d.iterations})",
    )
    p.add_argument(
        "--backends",
        default=None,
        help=f"comma-separated subset of {','.join(backend_names())} (default: every installed one)",
    )
    p.add_argument(
        "--precisions",
        default=None,
        help="comma-separated subset of fp32,fp16,int8 (default: every one with a model file)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: every device present)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for ONNX Runtime, OpenVINO and PyTorch (default: one per core)",
    )
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="TensorRT on Jetson: run on DLA core N (a plan built with build --dla N)",
    )
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each call as a CUDA graph")
    p.add_argument(
        "--slice",
        type=float,
        default=d.slice_s,
        help=f"seconds one variant runs before the next takes its turn (default {d.slice_s})",
    )
    p.add_argument(
        "--pipeline",
        default=None,
        metavar="SOURCE",
        help="time the whole frame loop on this video source (and each of its stages alone) instead of the model alone",
    )
    from edge_app.frames.labellers import mode_names

    p.add_argument(
        "--mode",
        default="classify",
        choices=mode_names(),
        help="with --pipeline: the labelling mode the loop runs, with its default settings (default classify)",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/bench/<engine name>)")


@command(
    "bench", "latency and throughput of every backend x precision of an engine, interleaved in one run", _bench_args
)
def cmd_bench(a: argparse.Namespace) -> int:
    from edge_app.engine_dir import PRECISIONS
    from edge_app.profiling.bench import BenchConfig, parse_batches, parse_list
    from edge_app.runtime import backend_names

    cfg = BenchConfig(
        warmup=a.warmup,
        duration=a.duration,
        iterations=a.iterations,
        batches=parse_batches(a.batch),
        slice_s=a.slice,
        backends=parse_list(a.backends, backend_names(), "--backends"),
        precisions=parse_list(a.precisions, PRECISIONS, "--precisions"),
        device=a.device,
        threads=a.threads,
        dla_core=a.dla,
        cuda_graphs=a.cuda_graph,
    )
    out = Path(a.out) if a.out else Path("runs/bench") / Path(a.engine).name
    if a.pipeline:
        from edge_app.profiling.bench_pipeline import print_pipeline_report, run_pipeline_bench

        with _loop_flags():
            report = run_pipeline_bench(a.engine, a.pipeline, cfg, out, mode=a.mode)
        print_pipeline_report(report)
    else:
        if a.mode != "classify":
            raise UserError(f"--mode {a.mode} applies to the frame loop; add --pipeline SOURCE to time it")
        from edge_app.profiling.bench import print_report, run_bench

        print_report(run_bench(a.engine, cfg, out))
    return 0


# ------------------------------------------------------------------------------------------------ build
def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--precision",
        default="fp16",
        choices=("fp32", "fp16", "int8"),
        help="which ONNX to build from: model.onnx, model.fp16.onnx or model.int8.trt.onnx (default fp16)",
    )
    p.add_argument(
        "--batch",
        default=None,
        help="optimisation profile MIN:OPT:MAX batch sizes, or N for a fixed batch "
        "(default 1:8:32; with --dla: 1, as DLA runs fixed shapes only)",
    )
    p.add_argument(
        "--dla",
        type=int,
        default=None,
        metavar="N",
        help="run on DLA core N with GPU fallback (Jetson Xavier/Orin); needs a fixed batch",
    )
    p.add_argument(
        "--workspace", type=positive_float, default=2.0, metavar="GiB", help="builder workspace limit (default 2)"
    )
    p.add_argument(
        "--opt-level",
        type=int,
        default=3,
        metavar="0-5",
        help="TensorRT builder optimisation level: higher tries more tactics and builds longer (default 3)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when a matching plan exists")


@command(
    "build", "build a TensorRT plan for this GPU and TensorRT version (cached under engines/NAME/plans)", _build_args
)
def cmd_build(a: argparse.Namespace) -> int:
    from edge_app.engine_dir import EngineDir
    from edge_app.runtime.tensorrt import DEFAULT_BATCH, DEFAULT_DLA_BATCH, BatchRange, BuildError, BuildSpec, build

    if a.batch is None and a.dla is not None:
        batch = BatchRange(DEFAULT_DLA_BATCH, DEFAULT_DLA_BATCH, DEFAULT_DLA_BATCH)
        print(
            f"--dla {a.dla}: DLA runs fixed shapes only, so the plan is for batch {DEFAULT_DLA_BATCH} (give --batch N for another size)"
        )
    else:
        batch = BatchRange.parse(a.batch) if a.batch is not None else DEFAULT_BATCH
    spec = BuildSpec(a.precision, batch, a.dla, a.workspace, a.opt_level)
    try:
        r = build(EngineDir(a.engine), spec, force=a.force, verbose=a.verbose)
    except BuildError as e:
        raise UserError(str(e)) from None
    state = "up to date, nothing to do" if r["cached"] else f"built in {r['build_s']:.1f} s"
    print(
        f"{state}: {a.engine}/{r['plan']} (TensorRT {r['trt_version']}, {r['gpu']}, {r['precision']}, batch {':'.join(map(str, r['batch']))})"
    )
    return 0


# ------------------------------------------------------------------------------------------------ doctor
def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command(
    "doctor",
    "what this machine can run (GPU, TensorRT, ONNX Runtime, OpenCV, cameras) and how to fix what is missing",
    _doctor_args,
)
def cmd_doctor(a: argparse.Namespace) -> int:
    import json

    from edge_app.doctor import as_json, format_report, run_checks

    checks = run_checks()
    print(json.dumps(as_json(checks), indent=2) if a.json else format_report(checks))
    return 0


# ------------------------------------------------------------------------------------------------ live
# Config field -> the flag that sets it, for `live` and `annotate`. The library validates once and names the
# field (a Ray worker never sees a flag); _loop_flags() re-words its errors with the flag the user typed.
LOOP_FLAGS = {
    "mode": "--mode",
    "top_k": "--top-k",
    "grid": "--tiles",
    "scales": "--scales",
    "conf": "--conf",
    "iou": "--iou",
    "max_det": "--max-det",
    "batch": "--batch",
    "max_frames": "--max-frames",
    "duration": "--duration",
}


@contextlib.contextmanager
def _loop_flags() -> Iterator[None]:
    """Turn the library's field-named errors (FieldError) into the same sentence naming the flag."""
    from edge_app.errors import FieldError

    try:
        yield
    except FieldError as e:
        raise e.reworded(LOOP_FLAGS) from None


def _loop_args(p: argparse.ArgumentParser, batch: int) -> None:
    """Options shared by `live` and `annotate`: labelling mode and its settings, batching and the overlay."""
    from edge_app.frames.labellers import ClassifyConfig, TileConfig, get_mode, mode_names

    c, t = ClassifyConfig(), TileConfig()
    # Each mode's help is the first line of its class docstring, so a new mode file describes itself here.
    first = [((get_mode(n).__doc__ or "").strip().splitlines() or [""])[0].rstrip(".") for n in mode_names()]
    modes = "; ".join(f"{n}: {d[:1].lower()}{d[1:]}" for n, d in zip(mode_names(), first))
    p.add_argument("--mode", default="classify", choices=mode_names(), help=f"{modes} (default classify)")
    p.add_argument("--top-k", type=int, default=c.top_k, help=f"labels per frame in classify mode (default {c.top_k})")
    p.add_argument(
        "--tiles",
        default="x".join(map(str, t.grid)),
        help="tiles mode: COLSxROWS grid of square tiles at scale 1.0 (default %(default)s)",
    )
    p.add_argument(
        "--scales",
        default=",".join(f"{s:g}" for s in t.scales),
        help="tiles mode: tile scales, comma-separated (default %(default)s)",
    )
    p.add_argument(
        "--conf",
        type=float,
        default=None,
        help=f"minimum score for a box (tiles mode default {t.conf}; detect mode default: the engine's own threshold)",
    )
    p.add_argument("--max-det", type=int, default=100, help="detect mode: boxes per frame at most (default 100)")
    p.add_argument(
        "--iou", type=float, default=t.iou, help=f"tiles mode: class-wise NMS IoU threshold (default {t.iou})"
    )
    p.add_argument("--batch", type=int, default=batch, help=f"frames per engine call (default {batch})")
    p.add_argument(
        "--max-frames", type=int, default=0, help="stop after reading this many frames (default 0: no limit)"
    )
    p.add_argument("--no-labels", action="store_true", help="do not draw whole-frame labels")
    p.add_argument("--no-boxes", action="store_true", help="do not draw boxes")
    p.add_argument("--no-hud", action="store_true", help="do not draw the latency HUD")
    engine_args(p)


def _mode_configs(a: argparse.Namespace) -> dict[str, ModeConfig]:  # noqa: F821 - imported lazily
    """Each mode's settings from its flags. All are built, so a bad value is an error whichever mode runs
    (a typo in --conf is a typo in classify mode too); a mode without flags here runs with its defaults."""
    from edge_app.frames.labellers import ClassifyConfig, TileConfig
    from edge_app.frames.preprocess import parse_grid, parse_scales

    try:
        grid = parse_grid(a.tiles)
    except ValueError as e:
        raise UserError(f"--tiles: {e}") from None
    try:
        scales = parse_scales(a.scales)
    except ValueError as e:
        raise UserError(f"--scales: {e}") from None
    from edge_app.frames.modes.detect import DetectConfig

    tiles = TileConfig(grid=grid, scales=scales, iou=a.iou, **({} if a.conf is None else {"conf": a.conf}))
    return {
        "classify": ClassifyConfig(top_k=a.top_k),
        "tiles": tiles,
        "detect": DetectConfig(conf=a.conf, max_det=a.max_det),
    }


def _loop_config(a: argparse.Namespace, **kw: Any) -> PipelineConfig:  # noqa: F821 - imported lazily
    """PipelineConfig from the shared options; validated by the library (call inside :func:`_loop_flags`)."""
    from edge_app.frames.overlay import OverlayConfig
    from edge_app.frames.pipeline import PipelineConfig

    overlay = OverlayConfig(labels=not a.no_labels, boxes=not a.no_boxes, hud=not a.no_hud)
    return PipelineConfig(
        batch=a.batch,
        max_frames=a.max_frames,
        overlay=overlay,
        **kw,
    )


def _live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", required=True, help="engine folder, e.g. engines/demo")
    p.add_argument(
        "--source",
        default="synthetic",
        help="camera index, /dev/videoN, file, rtsp://, http(s)://, gst:..., csi://N, image folder/glob or synthetic (default)",
    )
    p.add_argument("--width", type=int, default=None, help="requested frame width (with --height)")
    p.add_argument("--height", type=int, default=None, help="requested frame height (with --width)")
    p.add_argument("--fps", type=float, default=None, help="requested frame rate (cameras, synthetic, images)")
    p.add_argument("--loop", action="store_true", help="restart files and image folders at the end")
    p.add_argument("--flip", default=None, choices=("h", "v", "180"), help="mirror or rotate frames")
    p.add_argument(
        "--display",
        action="store_true",
        help="show a window (q or Esc quits); skipped with a message without a display",
    )
    p.add_argument("--save", default=None, metavar="OUT.mp4", help="write the annotated video here")
    p.add_argument(
        "--codec",
        default=None,
        choices=("h264", "vp9", "mjpeg", "mp4v"),  # edge_app.video.sinks.CODECS
        help="codec of --save (default by extension: .mp4 h264, .webm vp9, .avi mjpeg); mp4v plays in no browser",
    )
    p.add_argument("--jsonl", default=None, metavar="OUT.jsonl", help="write one JSON line per frame here")
    p.add_argument(
        "--serve", default=None, metavar="HOST:PORT", help="MJPEG stream + stats page over HTTP, e.g. 127.0.0.1:8080"
    )
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (default 0: no limit)")
    _loop_args(p, batch=1)


@command(
    "live",
    "label a live source (camera, stream, file, synthetic) into a window, files and/or a browser; latency first",
    _live_args,
)
def cmd_live(a: argparse.Namespace) -> int:
    from edge_app.frames.labellers import make_labeller
    from edge_app.frames.pipeline import run_pipeline
    from edge_app.video.sinks import open_sinks
    from edge_app.video.sources import open_source

    with _loop_flags():
        cfg = _loop_config(a, duration=a.duration)
        with open_from_args(a) as eng:
            print(f"engine: {eng.description} [{eng.choice}]")
            lab = make_labeller(
                eng, a.mode, _mode_configs(a).get(a.mode)
            )  # an engine the mode cannot use fails before the source opens
            src = open_source(a.source, width=a.width, height=a.height, fps=a.fps, loop=a.loop, flip=a.flip)
            try:
                sinks = open_sinks(
                    fps=src.fps,
                    size=src.size,
                    video=a.save,
                    jsonl=a.jsonl,
                    display=a.display,
                    serve=a.serve,
                    title=f"edge_app: {a.source}",
                    codec=a.codec,
                )
            except BaseException:
                src.close()
                raise
            from edge_app.video.mjpeg import MjpegSink

            for s in sinks:
                if isinstance(s, MjpegSink):
                    print(f"serving {s.url}", flush=True)
            print(f"source: {src!r}; mode {lab.mode}; Ctrl-C stops", flush=True)
            rep = run_pipeline(lab, src, sinks, cfg)
    print(rep.summary())
    for name, st in rep.stages.items():
        print(f"  {name:12s} p50 {st['p50']:8.2f} ms  p99 {st['p99']:8.2f} ms")
    for what in (a.save, a.jsonl):
        if what:
            print(f"wrote {what}")
    return 130 if rep.stopped_by == "interrupt" else 0


# ------------------------------------------------------------------------------------------------ calibrate
def _calibrate_args(p: argparse.ArgumentParser) -> None:
    from edge_app.compile.calibrate import CalibrateConfig
    from edge_app.compile.ranges import METHODS

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
        help="labelled <class>/ image folder for the top-1 report (default: the checkpoint's training data)",
    )
    p.add_argument(
        "--cache-dir", default=d.cache_dir, help=f"where the tensor-range cache lives (default {d.cache_dir})"
    )
    p.add_argument("--no-speed", action="store_true", help="skip the INT8-vs-fp32 CPU latency measurement")
    p.add_argument("--force", action="store_true", help="recalibrate and rewrite every model even when up to date")


@command(
    "calibrate",
    "calibrate with images: cached tensor ranges -> model.int8.trt/cpu.onnx, model.fp16.onnx, accuracy report",
    _calibrate_args,
)
def cmd_calibrate(a: argparse.Namespace) -> int:
    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate
    from edge_app.engine_dir import EngineDir

    cfg = CalibrateConfig(
        images=a.images,
        num=a.num,
        method=a.method,
        val=a.val,
        force=a.force,
        cache_dir=a.cache_dir,
        speed=not a.no_speed,
    )
    if EngineDir(a.engine).load_meta().extra.get("task") == "detect":
        from edge_app.compile.calibrate_detect import run_calibrate_detect

        d = run_calibrate_detect(a.engine, cfg)
        print(f"done in {d.get('seconds', 0.0):.1f}s")
        return 0
    r = run_calibrate(a.engine, cfg)
    print(f"done in {r.seconds:.1f}s")
    return 0


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="edge_app: ResNet recognition on TensorRT / ONNX Runtime / PyTorch with an OpenCV frame loop.",
    )
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
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

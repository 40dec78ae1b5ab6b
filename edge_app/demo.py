"""``run.py demo``: the whole chain on built-in synthetic data, with a summary of what it measured.

Every step is cached: the dataset and video by their config, the training run by its config and
completion, the export by the checkpoint's hash. A second run redoes only evaluation and annotation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from edge_app.annotate.video import ANNOTATE_BATCH, annotate_video
from edge_app.compile.export import export
from edge_app.data.folder import load_image_folder
from edge_app.data.synthetic import SyntheticConfig, VideoConfig, write_dataset, write_video
from edge_app.engine_dir import InputSpec
from edge_app.eval.classification import predict_logits
from edge_app.frames.labellers import make_labeller
from edge_app.fsutil import atomic_write_bytes
from edge_app.models.checkpoint import load_checkpoint
from edge_app.runtime import open_engine
from edge_app.training.classify import TrainConfig, train
from edge_app.training.metrics import Agreement, compare, top1

if TYPE_CHECKING:
    from edge_app.compile.calibrate import CalibrateResult
    from edge_app.eval.boxes import BoxEvalReport
    from edge_app.eval.heldout import HeldoutReport
    from edge_app.eval.modes import ModeScore


@dataclass
class DemoConfig:
    """The demo's fixed recipe: ResNet-18 at 64 px, sized to finish in a few minutes on 2 CPU cores."""

    data: str = "data/synthetic"
    video: str = "data/synthetic_video.mp4"
    engines: str = "engines"
    name: str = "demo"
    out: str = "runs/demo"
    arch: str = "resnet18"
    img: int = 64
    epochs: int = 14
    # The detector (engines/demo-det): the quarter-width ResNet-18 CenterNet at 128 px, trained briefly so the
    # whole demo stays within 15 minutes on 2 CPU cores; `train --task detect` with more epochs does better.
    # Batch 16 at lr 8e-3: on the demo's validation split (6 epochs, 5000 scenes) it reached mAP@0.5 0.58,
    # against 0.40 (batch 32, 8e-3), 0.36 (32, 4e-3) and 0.25 (32, 2e-3, the long-run default).
    detector: bool = True
    det_name: str = "demo-det"
    det_img: int = 128
    det_epochs: int = 6
    det_scenes: int = 4000
    det_batch: int = 16
    det_lr: float = 8e-3
    det_val_scenes: int = 200
    det_calib: int = 256
    det_frames: int = 60  # held-out video frames scored (every 5th)


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured (it prints the same as its summary)."""

    top1_torch: float  # validation top-1 of the checkpoint in PyTorch fp32
    top1_onnxruntime: float  # ... of model.onnx in ONNX Runtime
    parity: Agreement  # ONNX Runtime fp32 against PyTorch fp32 on the validation set
    int8: CalibrateResult  # INT8/FP16 accuracy report and CPU speed
    annotate: Any  # annotate_video's result (its type belongs to edge_app.frames)
    tiles: BoxEvalReport  # tiles mode's boxes against the video's ground truth
    detector: DetectorFigures | None  # the detector step's figures (None: DemoConfig.detector off)
    seconds: float
    written: tuple[str, ...]


def _step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.perf_counter()


def _finished_run(ckpt_path: Path, cfg: Any, skip: tuple[str, ...]) -> bool:
    """True when ``ckpt_path`` is a finished run (all ``cfg.epochs``) of ``cfg``, fields in ``skip`` aside."""
    if not ckpt_path.is_file():
        return False
    try:
        ck = load_checkpoint(ckpt_path)
    except Exception:
        return False
    saved = {k: v for k, v in ck.get("config", {}).items() if k not in skip}
    want = {k: v for k, v in asdict(cfg).items() if k not in skip}
    return saved == want and ck.get("epoch") == cfg.epochs


def _trained(ckpt_path: Path, cfg: TrainConfig, data_root: Path) -> bool:
    """True when ``ckpt_path`` is a finished run of exactly ``cfg`` on the current dataset recipe."""
    # A changed recipe rewrites the images under the same path: the stamp says which recipe trained it.
    stamp = ckpt_path.parent / "dataset.json"
    same_data = stamp.is_file() and stamp.read_bytes() == (data_root / "dataset.json").read_bytes()
    return same_data and _finished_run(ckpt_path, cfg, ("device", "out", "workers_threads"))


@dataclass(frozen=True)
class DetectorFigures:
    """What the demo's detector step measured."""

    engine: Path
    heldout: HeldoutReport  # mAP per model file on the held-out scenes and video
    modes: Mapping[str, ModeScore]  # detect and tiles on the same held-out frames
    written: tuple[str, ...]


def _detector_step(cfg: DemoConfig, classifier: Path) -> DetectorFigures:
    """Train, export and calibrate the detector, then score it on the held-out video beside tiles mode."""
    from edge_app.compile.calibrate import CalibrateConfig
    from edge_app.engine_dir import EngineDir
    from edge_app.eval.heldout import heldout_report
    from edge_app.eval.modes import heldout_comparison
    from edge_app.training.detect import DetectConfig, train_detector

    out = Path(cfg.out) / "detect"
    dcfg = DetectConfig(
        img=cfg.det_img,
        epochs=cfg.det_epochs,
        scenes=cfg.det_scenes,
        val_scenes=cfg.det_val_scenes,
        batch=cfg.det_batch,
        lr=cfg.det_lr,
        out=str(out),
    )
    t = _step(
        f"detector: train a quarter-width {dcfg.arch} CenterNet at {dcfg.img}x{dcfg.img} for {dcfg.epochs} epochs "
        f"on {dcfg.scenes} built-in scenes"
    )
    if _finished_run(out / "last.pt", dcfg, ("device", "out", "threads")):
        print(f"    reusing finished run {out / 'last.pt'}")
    else:
        train_detector(dcfg)
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step(f"export the detector to {cfg.engines}/{cfg.det_name}; calibrate INT8 (head kept float) and FP16")
    from edge_app.compile.calibrate import run_calibrate

    engine = export(out / "best.pt", cfg.det_name, cfg.engines).engine
    run_calibrate(engine, CalibrateConfig(num=cfg.det_calib), say=lambda s: print(f"    {s}"))
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step("held-out video: detector mAP per model file; detect vs tiles on the same frames, timed side by side")
    ed = EngineDir(engine)
    heldout = heldout_report(ed, ed.load_meta(), n_scenes=cfg.det_val_scenes, n_frames=cfg.det_frames)
    with open_engine(engine) as det, open_engine(classifier) as cls:
        modes = heldout_comparison(det, cls, cfg.det_frames)
    print(f"    {time.perf_counter() - t:.1f}s")
    return DetectorFigures(engine, heldout, modes, (str(out / "best.pt"), str(engine)))


def _print_detector(d: DetectorFigures) -> None:
    v = d.heldout.video
    det, til = d.modes["detect"], d.modes["tiles"]
    names = {"fp32": "fp32", "fp16": "fp16", "int8.trt": "int8 TensorRT-form", "int8.cpu": "int8 CPU-form"}
    maps = "   ".join(f"{names[k]} {v[k].map50:.3f}" for k in names if k in v)
    print(f"  detector mAP@0.5      {maps}  (held-out 720p video, {det.frames} frames, ONNX Runtime)")
    for r in (det, til):
        print(
            f"  {r.mode + ' mode':21s} mAP@0.5 {r.map50:.3f}  mAP@0.5:0.95 {r.map50_95:.3f}  P {r.precision:.3f} "
            f"R {r.recall:.3f} @conf {r.conf:.2f}  {r.ms_per_frame:.1f} ms/frame  ({r.engine})"
        )
    print(
        f"  detect vs tiles       {det.ms_per_frame / til.ms_per_frame:.2f}x the ms per 720p frame, "
        f"{det.map50 - til.map50:+.3f} mAP@0.5 (same {det.frames} held-out frames, faster-coco-eval, timed in turns)"
    )


def run_demo(cfg: DemoConfig = DemoConfig()) -> DemoResult:
    """Generate data, train, export, evaluate and annotate; print and return the summary."""
    t_all = time.perf_counter()
    out = Path(cfg.out)
    written: list[str] = []

    t = _step("synthetic dataset and video (cached after the first run)")
    root = write_dataset(cfg.data, SyntheticConfig(), progress=True)
    video, truth = write_video(cfg.video, VideoConfig())
    written += [str(root), str(video), str(truth)]
    print(f"    {time.perf_counter() - t:.1f}s")

    tcfg = TrainConfig(data=str(root), arch=cfg.arch, img=cfg.img, epochs=cfg.epochs, out=str(out / "train"))
    last = out / "train" / "last.pt"
    t = _step(f"train {cfg.arch} at {cfg.img}x{cfg.img} for {cfg.epochs} epochs")
    if _trained(last, tcfg, Path(root)):
        print(f"    reusing finished run {last}")
    else:
        train(tcfg)
        atomic_write_bytes(out / "train" / "dataset.json", (Path(root) / "dataset.json").read_bytes())
    best = out / "train" / "best.pt"
    written += [str(best), str(last), str(out / "train" / "metrics.csv"), str(out / "train" / "metrics.png")]
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step(f"export to {cfg.engines}/{cfg.name}")
    ex = export(best, cfg.name, cfg.engines)
    engine_dir = ex.engine
    written += [str(ex.onnx), f"{engine_dir}/meta.json"]
    print(
        f"    {'up to date' if ex.cached else 'exported'}; parity max |diff| {ex.parity.max_abs_diff:.2e}  {time.perf_counter() - t:.1f}s"
    )

    t = _step("calibrate: INT8 (TensorRT s8s8, CPU u8s8) and FP16 models from cached ranges, accuracy report")
    from edge_app.compile.calibrate import CalibrateConfig, run_calibrate

    # Calibrate on the train split and report on the validation split, so the INT8 figures are fair.
    q8 = run_calibrate(
        engine_dir, CalibrateConfig(images=str(Path(root) / "train"), val=str(root)), say=lambda s: print(f"    {s}")
    )
    written += [w for w in q8.written if w not in written]
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step("evaluate on the validation set: PyTorch vs ONNX Runtime")
    spec: InputSpec = ex.meta.input
    _, val, _ = load_image_folder(root, spec)
    with open_engine(engine_dir, "torch") as te, open_engine(engine_dir, "onnxruntime", "fp32") as oe:
        ref = predict_logits(te, val)
        got = predict_logits(oe, val)
    top1_torch, top1_ort = top1(ref, val.labels), top1(got, val.labels)
    par = compare(got, ref)
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step("annotate the synthetic video (classify mode)")
    with open_engine(engine_dir) as eng:
        backend = eng.description
        ann = annotate_video(make_labeller(eng), video, out / "annotated.mp4", out / "annotated.jsonl")
    written += [str(ann.video), str(ann.jsonl)]
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step("tiles mode on the synthetic video: precision / recall of boxes against its ground truth")
    from edge_app.eval.boxes import evaluate_video

    with open_engine(engine_dir) as eng:
        det = evaluate_video(eng, video, truth)  # tiles mode with its measured defaults
        det_backend = eng.description
    print(f"    {time.perf_counter() - t:.1f}s")

    detector = _detector_step(cfg, engine_dir) if cfg.detector else None
    if detector:
        written += list(detector.written)

    wall = time.perf_counter() - t_all
    lat = ann.inference_ms
    print()
    print("demo summary")
    print(
        f"  validation top-1      PyTorch fp32 {top1_torch:.4f}   ONNX Runtime fp32 {top1_ort:.4f}  ({len(val)} images, {len(ex.meta.labels)} classes)"
    )
    print(
        f"  parity                PyTorch vs ONNX Runtime: top-1 agreement {par.agreement:.4f}, max |logit diff| {par.max_abs_dev:.2e}"
    )
    trt8, cpu8, fp32, sp8 = q8.report["int8.trt"], q8.report["int8.cpu"], q8.report["fp32"], q8.speed
    print(
        f"  INT8 top-1            TensorRT s8s8 {trt8.top1:.4f} (agreement {trt8.agreement:.4f})   "
        f"CPU u8s8 {cpu8.top1:.4f} (agreement {cpu8.agreement:.4f})   fp32 {fp32.top1:.4f}"
    )
    if sp8:
        print(
            f"  INT8 vs fp32 on CPU   {sp8.int8_ms:.2f} ms vs {sp8.fp32_ms:.2f} ms: {sp8.ratio:.2f}x the fp32 latency (ONNX Runtime, batch 1, {sp8.threads} threads)"
        )
    print(f"  annotation            {ann.frames_written} frames with {backend}, {ann.fps:.1f} frames/s")
    print(
        f"  inference latency     p50 {lat['p50']:.2f} ms   p99 {lat['p99']:.2f} ms  (per frame, batches of {ANNOTATE_BATCH}, {spec.width}x{spec.height})"
    )
    print(
        f"  tiles detection       precision {det.precision:.3f}  recall {det.recall:.3f}  (IoU >= 0.3 and class match, {det.frames} frames, "
        f"{det.tiles_per_frame} tiles/frame in one batch, {det.ms_per_frame:.0f} ms/frame, {det_backend})"
    )
    if detector:
        _print_detector(detector)
    print(f"  wall time             {wall:.1f}s")
    print("  wrote:")
    for w in written:
        print(f"    {w}")
    return DemoResult(
        top1_torch=top1_torch,
        top1_onnxruntime=top1_ort,
        parity=par,
        int8=q8,
        annotate=ann,
        tiles=det,
        detector=detector,
        seconds=wall,
        written=tuple(written),
    )

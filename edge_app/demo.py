"""``run.py demo``: the whole chain on built-in synthetic data, with a summary of what it measured.

Every step is cached: the dataset and video by their config, the training run by its config and
completion, the export by the checkpoint's hash. A second run redoes only evaluation and annotation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.data.folder import load_image_folder
from edge_app.data.synthetic import SyntheticConfig, VideoConfig, write_dataset, write_video
from edge_app.engine_dir import InputSpec
from edge_app.evaluate import compare, predict_logits, top1
from edge_app.export import export
from edge_app.pipeline import AnnotateConfig, annotate_video
from edge_app.runtime import open_engine
from edge_app.train import TrainConfig, load_checkpoint, train


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


def _step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.perf_counter()


def _trained(ckpt_path: Path, cfg: TrainConfig) -> bool:
    """True when ``ckpt_path`` is a finished run of exactly ``cfg``."""
    if not ckpt_path.is_file():
        return False
    try:
        ck = load_checkpoint(ckpt_path)
    except Exception:
        return False
    saved = {k: v for k, v in ck.get("config", {}).items() if k not in ("device", "out", "workers_threads")}
    want = {k: v for k, v in asdict(cfg).items() if k not in ("device", "out", "workers_threads")}
    return saved == want and ck.get("epoch") == cfg.epochs


def run_demo(cfg: DemoConfig = DemoConfig()) -> dict[str, Any]:
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
    if _trained(last, tcfg):
        print(f"    reusing finished run {last}")
    else:
        train(tcfg)
    best = out / "train" / "best.pt"
    written += [str(best), str(last), str(out / "train" / "metrics.csv"), str(out / "train" / "metrics.png")]
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step(f"export to {cfg.engines}/{cfg.name}")
    ex = export(best, cfg.name, cfg.engines)
    engine_dir = ex["engine"]
    written += [ex["onnx"], f"{engine_dir}/meta.json"]
    print(f"    {'up to date' if ex['cached'] else 'exported'}; parity max |diff| {ex['parity']['max_abs_diff']:.2e}  {time.perf_counter() - t:.1f}s")

    t = _step("evaluate on the validation set: PyTorch vs ONNX Runtime")
    spec: InputSpec = ex["meta"].input
    _, val, _ = load_image_folder(root, spec)
    with open_engine(engine_dir, "torch") as te, open_engine(engine_dir, "onnxruntime", "fp32") as oe:
        ref = predict_logits(te, val)
        got = predict_logits(oe, val)
    acc = {"torch_fp32": top1(ref, val.labels), "onnxruntime_fp32": top1(got, val.labels)}
    par = compare(got, ref)
    print(f"    {time.perf_counter() - t:.1f}s")

    t = _step("annotate the synthetic video (classify mode)")
    with open_engine(engine_dir) as eng:
        backend = eng.description
        ann = annotate_video(eng, video, out / "annotated.mp4", out / "annotated.jsonl", AnnotateConfig())
    written += [ann["video"], ann["jsonl"]]
    print(f"    {time.perf_counter() - t:.1f}s")

    wall = time.perf_counter() - t_all
    lat = ann["inference_ms"]
    print()
    print("demo summary")
    print(f"  validation top-1      PyTorch fp32 {acc['torch_fp32']:.4f}   ONNX Runtime fp32 {acc['onnxruntime_fp32']:.4f}  ({len(val)} images, {len(spec and ex['meta'].labels)} classes)")
    print(f"  parity                PyTorch vs ONNX Runtime: top-1 agreement {par['agreement']:.4f}, max |logit diff| {par['max_abs_dev']:.2e}")
    print(f"  annotation            {ann['frames']} frames with {backend}, {ann['fps']:.1f} frames/s")
    print(f"  inference latency     p50 {lat['p50']:.2f} ms   p99 {lat['p99']:.2f} ms  (batch 1, {spec.width}x{spec.height})")
    print(f"  wall time             {wall:.1f}s")
    print("  wrote:")
    for w in written:
        print(f"    {w}")
    return {"accuracy": acc, "parity": par, "annotate": ann, "seconds": wall, "written": written}

"""How faithful edge_app's FCOS / RetinaNet graphs are to torchvision's own detectors, on real photographs.

Reference: ``torchvision.models.detection.<arch>(weights=None, min_size=S, max_size=S)`` fed the letterboxed
S x S photo as a float 0-1 RGB tensor, so its resize is a no-op (scale 1.0) and its padding adds nothing (S is
a multiple of 32). Compared: edge_app's ``TvDetectorGraph`` (uint8 BGR in, in-graph preprocessing, decode and
ONNX-style NMS) run by PyTorch, by ONNX Runtime fp32 from the exported ONNX file, and optionally by OpenVINO
(fp32, and with an f16 / bf16 inference precision hint). Every network holds the SAME state dict.

Weights: no COCO weights can be downloaded here, and torchvision's random init makes every class score 0.01,
so the heads are made discriminative, seeded: the predictors are re-drawn and scaled so their outputs respond
to image content (logit std 4 per channel on the calibration photos), a few real COCO classes get a bias that
lets their top 0.01% locations fire (score > 0.5), the others are pushed far below every threshold, and the
box branches get deltas of useful size (RetinaNet: std 0.3; FCOS: distances around 1.5 anchor sizes). The
backbone and FPN keep torchvision's random init (BatchNorm2d, eps 1e-5). COCO AP itself is NOT measured.

Matching, per photo, against torchvision's detections with score > --score: same class and IoU >= --iou
(greedy, best score first). Reported: matched %, unmatched both ways, max score difference of matches.

Run it in the torch/torchvision pair that works here (FACTS.md), with the repository on PYTHONPATH:

    PYTHONPATH=. /tmp/tvenv/bin/python scripts/torchvision_detector_agreement.py \\
        --photos .venv/lib/python3.11/site-packages/skimage/data --sizes 640,512 --openvino
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.models.tv_detection import (  # noqa: E402
    IMAGENET_MEAN,
    TV_DETECTORS,
    TvDetector,
    TvDetectorGraph,
    build_tv_detector,
)

# scikit-image's sample photographs (evaluation only, never training); grey ones are made 3-channel.
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png", "moon.png", "page.png",
    "text.png", "grass.png", "gravel.png", "brick.png", "clock_motion.png", "cell.png", "color.png",
)  # fmt: skip
ACTIVE_CLASSES = 8  # COCO classes that can fire; the rest never pass a threshold
FIRE_QUANTILE = 0.9999  # per channel, the calibration locations above this quantile score > 0.5


def load_photos(folder: Path, min_count: int) -> list[tuple[str, np.ndarray]]:
    """BGR uint8 photos; crops and mirror images of the colour ones until there are ``min_count``."""
    photos = []
    for name in PHOTOS:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)  # grey files come back as 3 equal channels
        if img is not None:
            photos.append((name, img))
    extra = []
    for name, img in photos[:6]:
        h, w = img.shape[:2]
        extra.append((f"{name}:crop", img[h // 8 : h - h // 4, w // 6 : w - w // 8]))
        extra.append((f"{name}:flip", img[:, ::-1]))
    return photos + extra[: max(0, min_count - len(photos))]


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Fit inside size x size (aspect kept, bilinear), centred, padded with the ImageNet mean colour (which
    normalises to 0, like torchvision's zero padding)."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    pad = tuple(int(round(255 * m)) for m in IMAGENET_MEAN[::-1])  # BGR
    out = np.empty((size, size, 3), np.uint8)
    out[:] = pad
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = resized
    return out


@torch.no_grad()
def make_discriminative(model: TvDetector, calib: torch.Tensor, seed: int) -> list[int]:
    """Re-draw the predictors so scores and boxes depend on image content (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    head = model.head
    feats: dict[str, list[torch.Tensor]] = {"cls": [], "reg": []}
    hooks = [
        head.classification_head.cls_logits.register_forward_pre_hook(lambda m, a: feats["cls"].append(a[0])),
        head.regression_head.bbox_reg.register_forward_pre_hook(lambda m, a: feats["reg"].append(a[0])),
    ]
    model(calib)
    for h in hooks:
        h.remove()

    def redraw(conv: torch.nn.Conv2d, key: str, std: float) -> torch.Tensor:
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.zero_()
        outs = torch.cat([conv(f).flatten(2) for f in feats[key]], dim=2).transpose(0, 1).flatten(1)
        conv.weight.mul_((std / outs.std(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1))
        return outs * (std / outs.std(dim=1, keepdim=True).clamp_min(1e-12))  # unbiased outputs, (channels, n)

    k = model.num_classes
    names = (Path(__file__).resolve().parents[1] / "edge_app/models/data/coco_labels.txt").read_text().splitlines()
    real = [i for i, n in enumerate(names[:k]) if n not in ("N/A", "__background__")] or list(range(k))
    active = sorted(real[int(i)] for i in torch.randperm(len(real), generator=g)[:ACTIVE_CLASSES])
    cls = head.classification_head.cls_logits
    z = redraw(cls, "cls", 4.0)
    sample = z[:, torch.randperm(z.shape[1], generator=g)[: min(z.shape[1], 200_000)]]
    q = torch.quantile(sample, FIRE_QUANTILE, dim=1)
    is_active = torch.zeros(cls.out_channels, dtype=torch.bool)
    for c in active:
        is_active[c::k] = True  # channel = anchor * K + class
    cls.bias.copy_(torch.where(is_active, -q, -q - 12.0))
    reg = head.regression_head
    if hasattr(reg, "bbox_ctrness"):  # FCOS: distances (through a ReLU) around 1.5 anchor sizes, centerness
        redraw(reg.bbox_reg, "reg", 0.5)
        reg.bbox_reg.bias.fill_(1.5)
        redraw(reg.bbox_ctrness, "reg", 1.0)
        reg.bbox_ctrness.bias.fill_(1.0)
    else:
        redraw(reg.bbox_reg, "reg", 0.3)
    return active


def export_onnx(graph: torch.nn.Module, size: int) -> bytes:
    """As edge_app's export: TorchScript exporter, opset 17, dynamic batch, one self-contained file."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.zeros((1, size, size, 3), dtype=torch.uint8),),
            buf,
            input_names=["images"],
            output_names=["dets"],
            dynamic_axes={"images": {0: "batch"}, "dets": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) boxes; two zero-area boxes (clipped at the border, which torchvision
    keeps) count as IoU 1 when their corners agree within 0.01 px."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    out = inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)
    same = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2) <= 0.01
    return np.where(same, 1.0, out)


def match(ref: np.ndarray, got: np.ndarray, score: float, min_iou: float) -> tuple[int, int, int, float]:
    """(matched, unmatched ref, unmatched ours, max |score diff|) for rows x1,y1,x2,y2,score,class."""
    ref, got = ref[ref[:, 4] > score], got[got[:, 4] > score]
    used = np.zeros(len(got), bool)
    n, diff = 0, 0.0
    ious = iou(ref[:, :4], got[:, :4]) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    for i in np.argsort(-ref[:, 4], kind="stable"):
        ok = (~used) & (got[:, 5] == ref[i, 5]) & (ious[i] >= min_iou)
        if ok.any():
            j = int(np.argmax(np.where(ok, ious[i], -1)))
            used[j] = True
            n += 1
            diff = max(diff, abs(float(got[j, 4] - ref[i, 4])))
    return n, len(ref) - n, int((~used).sum()), diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="folder of photographs (scikit-image's data folder)")
    ap.add_argument("--archs", default="fcos_resnet50_fpn,retinanet_resnet50_fpn_v2")
    ap.add_argument("--sizes", default="640,512")
    ap.add_argument("--min-photos", type=int, default=24)
    ap.add_argument("--score", type=float, default=0.3, help="compare detections above this score")
    ap.add_argument("--iou", type=float, default=0.99, help="IoU a match needs")
    ap.add_argument("--loose-iou", type=float, default=0.5, help="second, looser match (reduced precisions)")
    ap.add_argument("--openvino", action="store_true", help="also OpenVINO fp32 and f16/bf16 hints")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/torchvision_detector_agreement.json")
    a = ap.parse_args()

    import onnxruntime as ort
    import torchvision
    from torchvision.models import detection

    torch.set_num_threads(a.threads)
    photos = load_photos(Path(a.photos), a.min_photos)
    if not photos:
        print(f"no photographs found in {a.photos}", file=sys.stderr)
        return 2
    report: dict = {"torchvision": torchvision.__version__, "torch": torch.__version__, "photos": len(photos)}
    rows = []
    for arch in a.archs.split(","):
        spec = TV_DETECTORS[arch]
        for size in (int(s) for s in a.sizes.split(",")):
            torch.manual_seed(a.seed)
            ours = build_tv_detector(arch, bn_eps=1e-5).eval()  # random-init torchvision: BatchNorm2d, eps 1e-5
            images = [letterbox(img, size) for _, img in photos]
            calib = TvDetectorGraph(ours, (size, size)).pre(torch.from_numpy(np.stack(images[:3])))
            active = make_discriminative(ours, calib, a.seed)
            tv = getattr(detection, arch)(weights=None, weights_backbone=None, min_size=size, max_size=size).eval()
            tv.load_state_dict(ours.state_dict())
            graph = TvDetectorGraph(ours, (size, size)).eval()
            onnx_model = export_onnx(graph, size)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = a.threads
            runners = {
                "pytorch": (lambda gr: lambda x: gr(torch.from_numpy(x)).numpy())(graph),
                "onnxruntime fp32": (lambda s: lambda x: s.run(None, {"images": x})[0])(
                    ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
                ),
            }
            if a.openvino:
                import openvino as ov

                core = ov.Core()
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / "model.onnx").write_bytes(onnx_model)
                    ov_model = core.read_model(str(Path(tmp) / "model.onnx"))
                for hint in ("f32", "f16"):
                    cm = core.compile_model(
                        ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": a.threads}
                    )
                    # The CPU plugin may run another precision than asked (f16 -> bf16 on AMX): name what it ran.
                    ran = str(cm.get_property("INFERENCE_PRECISION_HINT")).lower().replace("<type: '", "")
                    runners[f"openvino {hint} hint (ran {ran.strip(chr(39) + '>')})"] = (lambda c: lambda x: c(x)[0])(
                        cm
                    )
            stats = {k: [0, 0, 0, 0.0, 0] for k in runners}
            times = {k: 0.0 for k in ["torchvision", *runners]}
            n_ref = 0
            for img in images:
                rgb = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.0
                with torch.no_grad():
                    t0 = time.perf_counter()
                    out = tv([rgb])[0]
                    times["torchvision"] += time.perf_counter() - t0
                ref = torch.cat([out["boxes"], out["scores"][:, None], out["labels"][:, None].float()], 1).numpy()
                n_ref += int((ref[:, 4] > a.score).sum())
                for name, run in runners.items():
                    with torch.no_grad():
                        t0 = time.perf_counter()
                        dets = run(img[None])[0]
                        times[name] += time.perf_counter() - t0
                    m, u_ref, u_got, d = match(ref, dets, a.score, a.iou)
                    s = stats[name]
                    s[0], s[1], s[2], s[3] = s[0] + m, s[1] + u_ref, s[2] + u_got, max(s[3], d)
                    s[4] += match(ref, dets, a.score, a.loose_iou)[0]
            for name, (m, u_ref, u_got, d, m_loose) in stats.items():
                row = {
                    "arch": arch,
                    "input": size,
                    "backend": name,
                    "torchvision_dets": n_ref,
                    "matched_pct": 100.0 * m / max(1, n_ref),
                    "matched_loose_pct": 100.0 * m_loose / max(1, n_ref),
                    "unmatched_torchvision": u_ref,
                    "unmatched_ours": u_got,
                    "max_score_diff": d,
                    "ms_per_image": 1000 * times[name] / len(images),
                    "torchvision_ms_per_image": 1000 * times["torchvision"] / len(images),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            report.setdefault("active_classes", {})[arch] = active
            report.setdefault("thresholds", {})[arch] = {
                "score": spec.score_thresh,
                "nms_iou": spec.nms_iou,
                "detections_per_img": spec.detections_per_img,
                "topk_candidates": spec.topk_candidates,
            }
    report["rows"] = rows
    print(f"\n{len(photos)} photographs, detections with score > {a.score}, match = same class and IoU >= {a.iou}\n")
    print(
        f"| arch | input | backend | torchvision dets | matched (IoU >= {a.iou}) | unmatched tv / ours | "
        f"max score diff | matched (IoU >= {a.loose_iou}) | ms/img (torchvision) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arch']} | {r['input']} | {r['backend']} | {r['torchvision_dets']} | {r['matched_pct']:.2f}% | "
            f"{r['unmatched_torchvision']} / {r['unmatched_ours']} | {r['max_score_diff']:.2e} | "
            f"{r['matched_loose_pct']:.2f}% | "
            f"{r['ms_per_image']:.0f} (tv {r['torchvision_ms_per_image']:.0f}) |"
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

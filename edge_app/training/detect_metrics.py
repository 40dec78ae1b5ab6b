"""Detector accuracy: COCO mAP (faster-coco-eval) and precision/recall at an operating threshold.

mAP@0.5 and mAP@0.5:0.95 come from faster-coco-eval (C++ port of pycocotools; same numbers on the same data,
FACTS.md), never from hand-written AP. Precision and recall at one score threshold are what a user of the
frame loop sees; :func:`best_threshold` picks that threshold on validation data (max F1) so the held-out set
never chooses it.

Predictions are the detector's ``dets`` rows (x1, y1, x2, y2, score, class); ground truth is boxes (M,4) and
class ids (M,), both in the same pixels.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

MIN_SCORE = 0.001  # rows below this are padding of the fixed-size output, not detections (COCO's own cut-off)


@dataclass(frozen=True)
class DetectionAccuracy:
    """Accuracy of a detector on one set of images."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    threshold: float  # score threshold of precision/recall
    iou: float  # IoU of a true positive for precision/recall
    images: int
    boxes: int
    per_class_ap50: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for logs and reports."""
        return (
            f"mAP@0.5 {self.map50:.4f}  mAP@0.5:0.95 {self.map50_95:.4f}  P {self.precision:.3f} R {self.recall:.3f} "
            f"@score>={self.threshold:.2f} (n={self.images} images, {self.boxes} boxes)"
        )


def coco_map(
    dets: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], gt_classes: Sequence[np.ndarray], names: Sequence[str]
) -> dict[str, Any]:
    """{'map50', 'map50_95', 'per_class_ap50'} with faster-coco-eval's COCOeval (bbox, 100 detections per image).

    An empty ground truth set (no box at all) has no defined AP: NaN is returned.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if len(dets) != len(gt_boxes):
        raise ValueError(f"{len(dets)} prediction arrays for {len(gt_boxes)} images")
    images, anns, results = [], [], []
    aid = 1
    for i, (b, c) in enumerate(zip(gt_boxes, gt_classes)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for box, cls in zip(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(c).reshape(-1)):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append(
                {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": int(cls) + 1,
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            aid += 1
    if not anns:
        return {"map50": float("nan"), "map50_95": float("nan"), "per_class_ap50": {}}
    for i, d in enumerate(dets):
        d = np.asarray(d, np.float64).reshape(-1, 6)
        d = d[d[:, 4] >= MIN_SCORE]
        for x1, y1, x2, y2, s, c in d:
            results.append(
                {"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            )
    gt = COCO(
        {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    )
    if not results:
        return {"map50": 0.0, "map50_95": 0.0, "per_class_ap50": {n: 0.0 for n in names}}
    dt = gt.loadRes(results)
    ev = COCOeval_faster(gt, dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K classes, A areas, M max dets]; -1 where a class has no GT.
    prec = ev.eval["precision"]
    per_class = {}
    for k, n in enumerate(names):
        p = prec[0, :, k, 0, -1]
        p = p[p > -1]
        if p.size:
            per_class[n] = float(p.mean())
    return {"map50": float(ev.stats[1]), "map50_95": float(ev.stats[0]), "per_class_ap50": per_class}


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def match_counts(
    dets: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    threshold: float,
    iou: float = 0.5,
) -> tuple[int, int, int]:
    """(tp, fp, fn) of detections scoring >= ``threshold``: greedy by score, same class, one match per GT box."""
    tp = fp = fn = 0
    for d, b, c in zip(dets, gt_boxes, gt_classes):
        d = np.asarray(d, np.float64).reshape(-1, 6)
        d = d[d[:, 4] >= threshold]
        d = d[np.argsort(-d[:, 4], kind="stable")]
        b = np.asarray(b, np.float64).reshape(-1, 4)
        c = np.asarray(c).reshape(-1)
        used = np.zeros(len(b), bool)
        for row in d:
            cand = np.flatnonzero((c == int(row[5])) & ~used)
            if cand.size:
                ious = _iou(row[:4], b[cand])
                j = int(np.argmax(ious))
                if ious[j] >= iou:
                    used[cand[j]] = True
                    tp += 1
                    continue
            fp += 1
        fn += int((~used).sum())
    return tp, fp, fn


def best_threshold(
    dets: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    iou: float = 0.5,
    grid: Sequence[float] = tuple(np.round(np.arange(0.1, 0.91, 0.05), 2)),
) -> float:
    """The score threshold with the highest F1 on this (validation) data."""
    best, best_f1 = 0.3, -1.0
    for t in grid:
        tp, fp, fn = match_counts(dets, gt_boxes, gt_classes, float(t), iou)
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def evaluate_dets(
    dets: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    names: Sequence[str],
    threshold: float = 0.3,
    iou: float = 0.5,
) -> DetectionAccuracy:
    """mAP (faster-coco-eval) and P/R at ``threshold`` of one set of predictions."""
    m = coco_map(dets, gt_boxes, gt_classes, names)
    tp, fp, fn = match_counts(dets, gt_boxes, gt_classes, threshold, iou)
    return DetectionAccuracy(
        map50=m["map50"],
        map50_95=m["map50_95"],
        precision=tp / max(1, tp + fp),
        recall=tp / max(1, tp + fn),
        threshold=threshold,
        iou=iou,
        images=len(gt_boxes),
        boxes=int(sum(len(np.asarray(b).reshape(-1, 4)) for b in gt_boxes)),
        per_class_ap50=m["per_class_ap50"],
    )


def predict(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    """``dets`` per image from ``run`` ((N,H,W,3) uint8 -> (N,K,6)), called in batches of ``batch``."""
    out: list[np.ndarray] = []
    for s in range(0, len(images), batch):
        out.extend(np.asarray(run(images[s : s + batch]), np.float32))
    return out
